/* SPDX-License-Identifier: Apache-2.0
 * libFuzzer target for blocklists. The input is split at the first NUL byte:
 *  - before it: either an :addOrUpdateBlocklistItems JSON body (when it starts with '{'), parsed by
 *    custos_cs_parse_items, or lines of items ("r:" prefix = regex, "w:" = raw whole word, else normalised term),
 *    each checked with custos_blocklist_item_check;
 *  - after it: a text, scanned in block mode and then fed as a stream in chunks whose sizes come from the text.
 * Checks: no crash, leak or sanitizer report; hit offsets lie inside the text (block) or the stream; each item is
 * reported at most once per scan. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/contentsafety.h"
#include "safety/blocklist.h"
#include "util/json.h"

#define CHECK(cond)                                                                                                    \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz_blocklist: check failed: %s (line %d)\n", #cond, __LINE__);                          \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

#define MAX_ITEMS 16

static custos_blocklist_scratch_t g_sc;
static int g_init;

typedef struct seen {
    const char *ids[64];
    size_t n;
    size_t limit;
} seen_t;

static int on_hit(void *ud, const custos_blocklist_hit_t *h)
{
    seen_t *s = ud;
    CHECK(h->start <= h->end && h->end <= s->limit);
    for (size_t i = 0; i < s->n; i++)
        CHECK(strcmp(s->ids[i], h->item_id) != 0);
    if (s->n < 64)
        s->ids[s->n++] = h->item_id;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_init) {
        custos_blocklist_scratch_init(&g_sc);
        g_init = 1;
    }
    if (size > 8192)
        return 0;
    const char *p = (const char *)data;
    const char *nul = memchr(p, 0, size);
    size_t hl = nul ? (size_t)(nul - p) : size;
    const char *text = nul ? nul + 1 : "";
    size_t tl = nul ? size - hl - 1 : 0;

    custos_blocklist_item_def_t defs[MAX_ITEMS];
    char *texts[MAX_ITEMS] = {0};
    char ids[MAX_ITEMS][8];
    size_t n = 0;
    if (hl && p[0] == '{') {
        json_object *o = NULL;
        if (custos_json_parse(p, hl, 16, &o, NULL, NULL) == 0 && o) {
            custos_blstore_item_t items[CUSTOS_CS_MAX_ITEMS_PER_CALL];
            size_t cnt = 0;
            char msg[400];
            if (custos_cs_parse_items(o, items, &cnt, msg, sizeof(msg)) == 0) {
                CHECK(cnt >= 1 && cnt <= CUSTOS_CS_MAX_ITEMS_PER_CALL);
                for (size_t i = 0; i < cnt && n < MAX_ITEMS; i++) {
                    texts[n] = strdup(items[i].text);
                    snprintf(ids[n], sizeof(ids[n]), "i%zu", n);
                    defs[n] = (custos_blocklist_item_def_t){ids[n], texts[n], items[i].flags};
                    n++;
                }
            } else {
                CHECK(msg[0] != 0);
            }
            json_object_put(o);
        }
    } else {
        size_t i = 0;
        while (i < hl && n < MAX_ITEMS) {
            size_t e = i;
            while (e < hl && p[e] != '\n')
                e++;
            unsigned flags = CUSTOS_BLOCKLIST_WHOLE_WORD | CUSTOS_BLOCKLIST_NORMALIZE;
            size_t s = i;
            if (e - s >= 2 && p[s] == 'r' && p[s + 1] == ':')
                flags = CUSTOS_BLOCKLIST_REGEX, s += 2;
            else if (e - s >= 2 && p[s] == 'w' && p[s + 1] == ':')
                flags = CUSTOS_BLOCKLIST_WHOLE_WORD, s += 2;
            char err[256];
            if (custos_blocklist_item_check(p + s, e - s, flags, err, sizeof(err)) == 0) {
                texts[n] = strndup(p + s, e - s);
                snprintf(ids[n], sizeof(ids[n]), "i%zu", n);
                defs[n] = (custos_blocklist_item_def_t){ids[n], texts[n], flags};
                n++;
            }
            i = e + 1;
        }
    }
    custos_blocklist_def_t list = {"fuzz", defs, n};
    custos_blocklists_t *set = NULL;
    if (custos_blocklists_build(&list, 1, &set, NULL, 0) == 0) {
        seen_t s = {.limit = tl};
        CHECK(custos_blocklists_scan(set, NULL, 0, text, tl, &g_sc, on_hit, &s) == 0);
        seen_t st = {.limit = tl * 3 + 3}; /* stream offsets count invalid bytes as U+FFFD's 3 bytes */
        custos_blocklist_stream_t *stream = NULL;
        CHECK(custos_blocklist_stream_new(set, NULL, 0, &stream) == 0);
        size_t o = 0;
        while (o < tl) {
            size_t c = 1 + (size_t)((unsigned char)text[o] % 17);
            if (c > tl - o)
                c = tl - o;
            CHECK(custos_blocklist_stream_feed(stream, text + o, c, &g_sc, on_hit, &st) == 0);
            o += c;
        }
        CHECK(custos_blocklist_stream_close(stream, &g_sc, on_hit, &st) == 0);
        custos_blocklists_unref(set);
    }
    for (size_t i = 0; i < n; i++)
        free(texts[i]);
    return 0;
}
