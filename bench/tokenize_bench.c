/* SPDX-License-Identifier: Apache-2.0
 * Token counting throughput (src/tokenize): MB/s and tokens/s on one thread for English prose, C code and
 * Chinese text, with o200k_base and cl100k_base. Built and run by bench/tokenize.
 * Usage: tokenize_bench RANKS_DIR CODE_FILE [SECONDS_PER_ROW] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tokenize/tokenize.h"

/* CPU time of this thread: the figure is one core's throughput even on a busy machine (waiting for the
 * CPU is not counted; caches shared with other work still are). */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Builds about `target` bytes by repeating `unit` with a counter in between (so not every piece repeats). */
static char *repeat(const char *unit, size_t target, size_t *len)
{
    size_t ul = strlen(unit), cap = target + ul + 32, n = 0;
    char *b = malloc(cap);
    if (!b)
        exit(1);
    for (unsigned i = 0; n + ul + 16 < cap && n < target; i++) {
        n += (size_t)snprintf(b + n, cap - n, "%u ", i);
        memcpy(b + n, unit, ul);
        n += ul;
    }
    *len = n;
    return b;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    if (!b || fread(b, 1, (size_t)sz, f) != (size_t)sz) {
        fclose(f);
        free(b);
        return NULL;
    }
    fclose(f);
    *len = (size_t)sz;
    return b;
}

static const char PROSE[] =
    "The clinic's new scheduling system went live on Monday. Nurses said it was faster than the old one, although "
    "several doctors complained that they couldn't find the referral form. \"We'll fix that by Friday,\" said the "
    "project lead, who asked patients to bring their insurance cards and arrive fifteen minutes early. Meanwhile, "
    "the hospital's board approved a budget of $2.4 million for 2025, including 12 new beds and a renovated lab.\n\n";
static const char CJK[] =
    "人工智能网关位于应用程序和语言模型之间，负责身份验证、内容安全、配额和审计。医院希望所有数据留在本地，"
    "因此每个请求都必须在规定的区域内处理。今天的天气很好，我们去公园散步吧！\n";

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: tokenize_bench RANKS_DIR CODE_FILE [SECONDS]\n");
        return 2;
    }
    double secs = argc > 3 ? atof(argv[3]) : 1.0;
    custos_tok_t *tok[CUSTOS_TOK_NKINDS];
    for (int k = 0; k < CUSTOS_TOK_NKINDS; k++)
        if (custos_tok_load(argv[1], (custos_tok_kind_t)k, &tok[k]) != 0) {
            fprintf(stderr, "cannot load %s from %s\n", custos_tok_kind_name((custos_tok_kind_t)k), argv[1]);
            return 1;
        }
    struct {
        const char *name;
        char *text;
        size_t len;
    } in[3];
    in[0].name = "English prose";
    in[0].text = repeat(PROSE, 4u << 20, &in[0].len);
    in[1].name = "C code (src/)";
    in[1].text = slurp(argv[2], &in[1].len);
    in[2].name = "Chinese";
    in[2].text = repeat(CJK, 4u << 20, &in[2].len);
    if (!in[1].text) {
        fprintf(stderr, "cannot read %s\n", argv[2]);
        return 1;
    }
    printf("| input | bytes | encoding | tokens | MB/s | M tokens/s |\n|---|---|---|---|---|---|\n");
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < CUSTOS_TOK_NKINDS; k++) {
            int64_t ntok = custos_tok_count(tok[k], in[i].text, in[i].len);
            unsigned reps = 0;
            double t0 = now_s(), t1;
            do {
                if (custos_tok_count(tok[k], in[i].text, in[i].len) != ntok)
                    return 1;
                reps++;
                t1 = now_s();
            } while (t1 - t0 < secs);
            double dt = (t1 - t0) / reps;
            printf("| %s | %zu | %s | %lld | %.1f | %.2f |\n", in[i].name, in[i].len,
                   custos_tok_kind_name((custos_tok_kind_t)k), (long long)ntok, (double)in[i].len / dt / 1e6,
                   (double)ntok / dt / 1e6);
        }
    for (int i = 0; i < 3; i++)
        free(in[i].text);
    for (int k = 0; k < CUSTOS_TOK_NKINDS; k++)
        custos_tok_free(tok[k]);
    return 0;
}
