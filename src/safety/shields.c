/* SPDX-License-Identifier: Apache-2.0
 * Prompt-shield scoring (shields.h): model score of the text and of its decoded segments, combined with structural
 * hidden-text and exfiltration signals by taking the maximum. */
#include "safety/shields.h"

#include "safety/decode.h"
#include "safety/harm.h"
#include "util/err.h"

#include <stdlib.h>
#include <string.h>

static const char *const head_names[CUSTOS_SHIELD_NHEADS] = {"jailbreak", "indirect_attack"};

const char *custos_shield_name(int head)
{
    return head >= 0 && head < CUSTOS_SHIELD_NHEADS ? head_names[head] : NULL;
}

int custos_shields_model_check(const custos_model_t *m)
{
    return custos_model_check_heads(m, head_names, CUSTOS_SHIELD_NHEADS);
}

float custos_shield_threshold(const custos_model_t *m, int head)
{
    return m->h->heads[head].bands[0];
}

int custos_shields_raw(const custos_model_t *m, int head, const char *text, size_t len, float *score,
                       custos_safety_scratch_t *scratch)
{
    *score = 0;
    float logit[CUSTOS_MODEL_MAX_HEADS];
    int rc = custos_model_text_logits(m, text, len, logit, scratch);
    if (rc <= 0)
        return rc;
    *score = custos_harm_calibrate(m, head, logit[head]);
    return 0;
}

#define SHIELD_WIN 512  /* document window (bytes) */
#define SHIELD_STEP 384 /* window step (bytes) */

static float maxf(float a, float b)
{
    return a > b ? a : b;
}

int custos_shields_score(const custos_model_t *m, int head, const char *text, size_t len, custos_shield_result_t *out,
                         custos_safety_scratch_t *scratch)
{
    memset(out, 0, sizeof(*out));
    if (head < 0 || head >= CUSTOS_SHIELD_NHEADS || head >= (int)m->h->n_heads)
        return CUSTOS_EINVAL;
    if (len > scratch->max_input)
        return CUSTOS_ETOOBIG;
    float s = 0;
    int rc = custos_shields_raw(m, head, text, len, &s, scratch);
    if (rc < 0)
        return rc;
    /* documents: an injected instruction is diluted in a long text, so windows are scored as well */
    if (head == CUSTOS_SHIELD_INDIRECT && len > SHIELD_WIN + SHIELD_WIN / 4) {
        for (size_t off = 0; off < len && rc == 0; off += SHIELD_STEP) {
            size_t st = off;
            while (st < len && ((unsigned char)text[st] & 0xC0) == 0x80)
                st++;
            size_t wl = len - st < SHIELD_WIN ? len - st : SHIELD_WIN;
            float ws = 0;
            rc = custos_shields_raw(m, head, text + st, wl, &ws, scratch);
            s = maxf(s, ws);
            if (st + wl >= len)
                break;
        }
        if (rc < 0)
            return rc;
    }
    /* decoding pre-pass: only allocate when something that could be encoded is present */
    size_t cap = len * 2 + 64 < CUSTOS_SHIELD_MAX_DECODED ? len * 2 + 64 : CUSTOS_SHIELD_MAX_DECODED;
    char stackbuf[2048], *buf = cap <= sizeof(stackbuf) ? stackbuf : malloc(cap);
    if (!buf)
        return CUSTOS_ENOMEM;
    size_t dn = custos_decode_segments(text, len, buf, cap, &out->decoded);
    if (dn > 0) {
        float ds = 0;
        rc = custos_shields_raw(m, head, buf, dn, &ds, scratch);
        s = maxf(s, ds);
    }
    if (buf != stackbuf)
        free(buf);
    if (rc < 0)
        return rc;
    float thr = custos_shield_threshold(m, head);
    custos_decode_signals_t sig;
    custos_decode_signals(text, len, &sig);
    if (sig.tag_chars >= 8)
        out->signals |= CUSTOS_SHIELD_SIG_TAGS;
    if (sig.zw_run_max >= 8)
        out->signals |= CUSTOS_SHIELD_SIG_ZW;
    if (head == CUSTOS_SHIELD_INDIRECT) {
        if (sig.exfil_links)
            out->signals |= CUSTOS_SHIELD_SIG_EXFIL;
        if (sig.hidden_html)
            out->signals |= CUSTOS_SHIELD_SIG_HIDDEN;
    }
    /* hidden text or an exfiltration image is an attack by itself; a zero-width run alone is only suspicious */
    if (out->signals & (CUSTOS_SHIELD_SIG_TAGS | CUSTOS_SHIELD_SIG_EXFIL))
        s = maxf(s, maxf(0.95f, thr));
    else if (out->signals & (CUSTOS_SHIELD_SIG_ZW | CUSTOS_SHIELD_SIG_HIDDEN))
        s = maxf(s, maxf(0.6f, thr));
    out->score = s;
    out->detected = s >= thr;
    return 0;
}
