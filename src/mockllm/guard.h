/* SPDX-License-Identifier: Apache-2.0
 * custos-mockllm as a guard model (docs/guard-models.md, tests of src/guard): Llama Guard 3 behind an
 * OpenAI-compatible server (POST /llamaguard/v1/completions | /llamaguard/v1/chat/completions), Azure AI Content Safety
 * (POST /azcs/contentsafety/text:analyze | text:shieldPrompt) and custos's http-classifier contract (POST /classify).
 * Verdicts follow markers in the request body: guard-unsafe-hate | -violence | -other, guard-attack, guard-garbage
 * (an unreadable 200), guard-error (500), guard-hang (answers after 30 s); anything else is safe. Every answer
 * waits --guard-delay-ms first. GET /mock/guard-stats -> {"calls":N}. */
#ifndef CUSTOS_MOCKLLM_GUARD_H
#define CUSTOS_MOCKLLM_GUARD_H

#include "core/loop.h"
#include "net/http_server.h"

#include <stdbool.h>
#include <stdint.h>

/* Answers req when its path is a guard route (true), else returns false. delay_ms: added before answering. */
bool custos_mock_guard_handle(custos_http_req_t *req, custos_loop_t *loop, uint32_t delay_ms);

#endif
