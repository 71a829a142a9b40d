/* SPDX-License-Identifier: Apache-2.0
 * The cascade's decisions (guard.h): pure functions, shared by the inference path and `custos eval`. */
#include "guard/guard.h"

custos_cascade_step_t custos_cascade_step(const custos_rai_guard_t *rg, float score)
{
    if (!rg || rg->mode == CUSTOS_CASCADE_IN_PROCESS || !rg->guard)
        return CUSTOS_CASCADE_STEP_LOCAL;
    if (rg->mode == CUSTOS_CASCADE_GUARD)
        return CUSTOS_CASCADE_STEP_ASK;
    if (score < rg->band_lo)
        return CUSTOS_CASCADE_STEP_ALLOW;
    if (score > rg->band_hi)
        return CUSTOS_CASCADE_STEP_BLOCK;
    return CUSTOS_CASCADE_STEP_ASK;
}

bool custos_cascade_guard_blocks(const custos_guard_verdict_t *v, int k, int threshold)
{
    if (k < 0 || k >= 4 || v->err != CUSTOS_GUARD_OK)
        return false;
    if (v->severity[k] >= 0)
        return v->severity[k] >= threshold;
    return v->flagged[k];
}

size_t custos_cascade_count_in_band(const float *scores, size_t n, float lo, float hi)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += scores[i] >= lo && scores[i] <= hi;
    return c;
}
