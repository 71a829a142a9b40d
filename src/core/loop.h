/* SPDX-License-Identifier: Apache-2.0
 * Event loop: one per worker thread, over epoll (level-triggered), with a timer heap and a
 * thread-safe post queue woken through an eventfd.
 * Thread-safety: everything except custos_loop_post() and custos_loop_stop() must be called
 * on the loop's own thread. Watchers and timers are owned by the caller (usually embedded in
 * a connection struct) and must be stopped before their memory is freed. */
#ifndef CUSTOS_CORE_LOOP_H
#define CUSTOS_CORE_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/epoll.h>

typedef struct custos_loop custos_loop_t;

/* events: EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP as reported by epoll */
typedef void (*custos_io_cb)(custos_loop_t *loop, uint32_t events, void *ud);
typedef struct custos_io {
    int fd;
    uint32_t events; /* current interest */
    bool active;
    custos_io_cb cb;
    void *ud;
} custos_io_t;

typedef void (*custos_timer_cb)(custos_loop_t *loop, void *ud);
typedef struct custos_timer {
    uint64_t due_ms; /* monotonic ms */
    size_t heap_idx; /* SIZE_MAX when not armed */
    custos_timer_cb cb;
    void *ud;
} custos_timer_t;

typedef void (*custos_post_fn)(custos_loop_t *loop, void *arg);

int custos_loop_new(custos_loop_t **out);
void custos_loop_free(custos_loop_t *loop);

/* Runs until custos_loop_stop(). Returns 0, or a negative code if epoll itself failed. */
int custos_loop_run(custos_loop_t *loop);
/* Runs one iteration: waits up to timeout_ms (-1 = no limit) for events, dispatches them, runs due
 * timers and deferred calls. Returns the number of fd events handled, or a negative code. For tests. */
int custos_loop_run_once(custos_loop_t *loop, int timeout_ms);
/* Thread-safe: asks the loop to return from custos_loop_run after the current iteration. */
void custos_loop_stop(custos_loop_t *loop);
/* Thread-safe: runs fn(loop, arg) on the loop thread soon. Returns 0 or CUSTOS_ENOMEM. */
int custos_loop_post(custos_loop_t *loop, custos_post_fn fn, void *arg);
/* Loop thread only: runs fn(loop, arg) after the current batch of events, before the next wait,
 * in the order queued (FIFO); calls queued while running deferred calls run in the same pass.
 * Use it to free objects whose watchers may still be referenced by pending events. */
int custos_loop_defer(custos_loop_t *loop, custos_post_fn fn, void *arg);
/* Cached monotonic time in ms, refreshed once per iteration. */
uint64_t custos_loop_now(custos_loop_t *loop);
void *custos_loop_get_data(custos_loop_t *loop);
void custos_loop_set_data(custos_loop_t *loop, void *data);

void custos_io_init(custos_io_t *w, int fd, custos_io_cb cb, void *ud);
/* Sets the interest set; adds, modifies or (events == 0) removes the fd from epoll. */
int custos_io_set(custos_loop_t *loop, custos_io_t *w, uint32_t events);
void custos_io_stop(custos_loop_t *loop, custos_io_t *w);

void custos_timer_init(custos_timer_t *t, custos_timer_cb cb, void *ud);
/* (Re)arms the timer to fire once after ms milliseconds. */
int custos_timer_start(custos_loop_t *loop, custos_timer_t *t, uint64_t ms);
void custos_timer_stop(custos_loop_t *loop, custos_timer_t *t);
static inline bool custos_timer_active(const custos_timer_t *t)
{
    return t->heap_idx != (size_t)-1;
}

#endif
