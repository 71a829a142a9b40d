/* SPDX-License-Identifier: Apache-2.0
 * Loaded safety models shared by workers (safety.h). */
#include "safety/safety.h"

#include "safety/grounded.h"
#include "safety/pii_ner.h"
#include "safety/shields.h"

#include "util/err.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct custos_safety {
    custos_model_t *harm;
    custos_model_t *shields; /* may be NULL */
    custos_pii_t *pii;
    custos_model_t *pii_ner;           /* may be NULL */
    custos_grounded_model_t *grounded; /* may be NULL */
};

const char *custos_safety_default_model(const char *name, char *buf, size_t cap)
{
    const char *dir = getenv("CUSTOS_MODEL_DIR");
    if (dir && *dir) {
        snprintf(buf, cap, "%s/%s", dir, name);
        return buf;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = 0;
            snprintf(buf, cap, "%s/../models/%s", exe, name);
            if (access(buf, R_OK) == 0)
                return buf;
            snprintf(buf, cap, "%s/models/%s", exe, name);
            if (access(buf, R_OK) == 0)
                return buf;
        }
    }
    snprintf(buf, cap, "models/%s", name);
    return buf;
}

int custos_safety_new(const custos_safety_opts_t *opts, custos_safety_t **out, char *err, size_t errlen)
{
    *out = NULL;
    char path[PATH_MAX];
    const char *p =
        opts && opts->harm_model ? opts->harm_model : custos_safety_default_model("harm.model", path, sizeof(path));
    custos_safety_t *s = calloc(1, sizeof(*s));
    if (!s)
        return CUSTOS_ENOMEM;
    int rc = custos_model_open(p, &s->harm, err, errlen);
    if (rc < 0)
        goto fail;
    if ((rc = custos_harm_model_check(s->harm)) < 0) {
        snprintf(err, errlen, "%s: not a harm model (heads must be hate, sexual, violence, self_harm)", p);
        goto fail;
    }
    if (opts && opts->shields_model)
        p = opts->shields_model;
    else if (access((p = custos_safety_default_model("shields.model", path, sizeof(path))), R_OK) != 0)
        p = NULL; /* optional when not asked for explicitly */
    if (p && (rc = custos_model_open(p, &s->shields, err, errlen)) < 0)
        goto fail;
    if (p && (rc = custos_shields_model_check(s->shields)) < 0) {
        snprintf(err, errlen, "%s: not a shields model (heads must be jailbreak, indirect_attack)", p);
        goto fail;
    }
    if (opts && opts->pii_ner_model)
        p = opts->pii_ner_model;
    else if (access((p = custos_safety_default_model("pii_ner.model", path, sizeof(path))), R_OK) != 0)
        p = NULL; /* optional when not asked for explicitly */
    if (p && (rc = custos_model_open(p, &s->pii_ner, err, errlen)) < 0)
        goto fail;
    if (p && (rc = custos_pii_ner_check(s->pii_ner)) < 0) {
        snprintf(err, errlen, "%s: not a PII tagger model (heads must be O, PERSON, STREET_ADDRESS, ...)", p);
        goto fail;
    }
    if (opts && opts->grounded_model)
        p = opts->grounded_model;
    else if (access((p = custos_safety_default_model("grounded.model", path, sizeof(path))), R_OK) != 0)
        p = NULL; /* optional when not asked for explicitly: text:detectGroundedness then answers 503 */
    if (p && (rc = custos_grounded_model_open(p, &s->grounded, err, errlen)) < 0)
        goto fail;
    custos_pii_opts_t po = {.mrn_format = opts ? opts->pii_mrn_format : NULL, .ner = s->pii_ner};
    if ((rc = custos_pii_new(&po, &s->pii, err, errlen)) < 0)
        goto fail;
    *out = s;
    return 0;
fail:
    custos_safety_free(s);
    return rc;
}

void custos_safety_free(custos_safety_t *s)
{
    if (!s)
        return;
    custos_model_free(s->harm);
    custos_model_free(s->shields);
    custos_pii_free(s->pii);
    custos_model_free(s->pii_ner);
    custos_grounded_model_free(s->grounded);
    free(s);
}

const custos_harm_model_t *custos_safety_harm(const custos_safety_t *s)
{
    return s->harm;
}

const custos_model_t *custos_safety_shields(const custos_safety_t *s)
{
    return s->shields;
}

const custos_pii_t *custos_safety_pii(const custos_safety_t *s)
{
    return s->pii;
}

const custos_grounded_model_t *custos_safety_grounded(const custos_safety_t *s)
{
    return s->grounded;
}
