/* SPDX-License-Identifier: Apache-2.0
 * Active health probes (backends[].health_check): GET the probe path of every backend that has one, every
 * interval_ms, and feed the results into the shared health registry (route/health.h).
 *
 * Why one dedicated thread with its own event loop and upstream client (and not probes on the workers, nor
 * the blocking client): probes are then sent once per process, not once per worker; a blackholed backend's
 * probe can never delay a request, because nothing of it runs on a worker loop; and, unlike a blocking
 * client on a thread, all probes run concurrently, so one slow backend does not push back the others'
 * schedules. The thread reuses the same HTTP/TLS client code as requests (upstream/client.h), so a probe
 * sees the backend exactly as a request would (DNS, TLS verification, ca_file).
 *
 * Thread-safety: custos_prober_set_config may be called from any thread; start and stop from one thread. */
#ifndef CUSTOS_API_PROBE_H
#define CUSTOS_API_PROBE_H

#include "config/config.h"
#include "route/health.h"

typedef struct custos_prober custos_prober_t;

/* Starts the probe thread for cfg's backends (takes its own reference). The thread inherits the caller's
 * signal mask: start it after blocking the process signals. Returns 0 or a negative code. */
int custos_prober_start(custos_health_t *h, custos_config_t *cfg, custos_prober_t **out);
/* Replaces the probe set with cfg's (after a reload): probes in flight are abandoned, every probed backend
 * is scheduled afresh; state in the registry is kept. */
void custos_prober_set_config(custos_prober_t *p, custos_config_t *cfg);
/* Stops and joins the thread, frees everything. NULL-safe. */
void custos_prober_stop(custos_prober_t *p);

#endif
