/* SPDX-License-Identifier: Apache-2.0
 * Shared set-up of the content-filter fuzzers (fuzz_contentfilter.c, fuzz_cf_stream_diff.c): a configuration with a
 * default-mode policy (deployment "d": PII placeholders in, redaction out, small windows, groundedness annotated)
 * and an asynchronous_filter policy (deployment "a", groundedness blocking), the shipped models (CUSTOS_MODEL_DIR or
 * the default search path) and one worker. */
#ifndef CUSTOS_FUZZ_CF_FIXTURE_H
#define CUSTOS_FUZZ_CF_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>

#include "api/contentfilter.h"
#include "safety/safety.h"

static const char CF_FIXTURE_CONFIG[] =
    "listeners: [{address: '127.0.0.1:1'}]\n"
    "identity: {api_keys: [{name: k, sha256: '0000000000000000000000000000000000000000000000000000000000000000'}]}\n"
    "backends: [{name: b, provider: openai, url: 'http://127.0.0.1:2'}]\n"
    "deployments:\n"
    "  - {name: d, backends: [b], rai_policy: p}\n"
    "  - {name: a, backends: [b], rai_policy: q}\n"
    "rai_policies:\n"
    "  - name: p\n"
    "    prompt_shields: {jailbreak: annotate}\n"
    "    pii: {prompt: placeholder, completion: redact}\n"
    "    streaming: {window_min_chars: 8, window_max_chars: 64, context_chars: 16}\n"
    "    groundedness: {enabled: true}\n"
    "  - name: q\n"
    "    mode: asynchronous_filter\n"
    "    prompt_shields: {jailbreak: annotate}\n"
    "    pii: {completion: annotate}\n"
    "    streaming: {window_min_chars: 8, window_max_chars: 64}\n"
    "    groundedness: {enabled: true, action: block}\n";

static custos_config_t *cfg;
static custos_gateway_t gw;
static custos_worker_t worker;

/* Loads the configuration and the models into the globals above; aborts (naming the fuzzer) when it cannot. */
static void cf_fixture_init(const char *name)
{
    char err[512];
    if (custos_config_load_string("fuzz", CF_FIXTURE_CONFIG, sizeof(CF_FIXTURE_CONFIG) - 1, &cfg, err, sizeof(err)) <
            0 ||
        custos_safety_new(NULL, &gw.safety, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s: %s\n", name, err);
        abort();
    }
    worker.gw = &gw;
    worker.cfg = cfg;
    custos_safety_scratch_init(&worker.scratch, 1u << 20);
}

#endif
