/* SPDX-License-Identifier: Apache-2.0
 * epoll loop in the style of redis' ae.c: level-triggered fds, a binary min-heap of timers,
 * an eventfd for cross-thread posts. */
#include "core/loop.h"
#include "util/err.h"
#include "util/time.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define MAX_EVENTS 256

typedef struct post_item {
    struct post_item *next;
    custos_post_fn fn;
    void *arg;
} post_item_t;

struct custos_loop {
    int epfd;
    int evfd;
    atomic_bool stop;
    uint64_t now;
    custos_timer_t **heap;
    size_t nheap, capheap;
    pthread_mutex_t post_mu;
    post_item_t *post_head, *post_tail;
    post_item_t *defer_head, *defer_tail; /* FIFO: deferred calls run in the order queued */
    void *data;
};

static void run_deferred(custos_loop_t *l);

static void heap_swap(custos_loop_t *l, size_t a, size_t b)
{
    custos_timer_t *t = l->heap[a];
    l->heap[a] = l->heap[b];
    l->heap[b] = t;
    l->heap[a]->heap_idx = a;
    l->heap[b]->heap_idx = b;
}

static void heap_up(custos_loop_t *l, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (l->heap[p]->due_ms <= l->heap[i]->due_ms)
            break;
        heap_swap(l, p, i);
        i = p;
    }
}

static void heap_down(custos_loop_t *l, size_t i)
{
    for (;;) {
        size_t a = 2 * i + 1, b = a + 1, m = i;
        if (a < l->nheap && l->heap[a]->due_ms < l->heap[m]->due_ms)
            m = a;
        if (b < l->nheap && l->heap[b]->due_ms < l->heap[m]->due_ms)
            m = b;
        if (m == i)
            break;
        heap_swap(l, i, m);
        i = m;
    }
}

int custos_loop_new(custos_loop_t **out)
{
    custos_loop_t *l = calloc(1, sizeof(*l));
    if (!l)
        return CUSTOS_ENOMEM;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->epfd < 0 || l->evfd < 0)
        goto fail;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->evfd, &ev) < 0)
        goto fail;
    pthread_mutex_init(&l->post_mu, NULL);
    l->now = custos_now_ms();
    *out = l;
    return 0;
fail:
    if (l->epfd >= 0)
        close(l->epfd);
    if (l->evfd >= 0)
        close(l->evfd);
    free(l);
    return CUSTOS_EIO;
}

void custos_loop_free(custos_loop_t *l)
{
    if (!l)
        return;
    run_deferred(l);
    post_item_t *p = l->post_head;
    while (p) {
        post_item_t *n = p->next;
        free(p);
        p = n;
    }
    close(l->epfd);
    close(l->evfd);
    pthread_mutex_destroy(&l->post_mu);
    free(l->heap);
    free(l);
}

uint64_t custos_loop_now(custos_loop_t *l)
{
    return l->now;
}
void *custos_loop_get_data(custos_loop_t *l)
{
    return l->data;
}
void custos_loop_set_data(custos_loop_t *l, void *data)
{
    l->data = data;
}

static void wake(custos_loop_t *l)
{
    uint64_t one = 1;
    ssize_t w = write(l->evfd, &one, sizeof(one));
    (void)w;
}

void custos_loop_stop(custos_loop_t *l)
{
    atomic_store(&l->stop, true);
    wake(l);
}

int custos_loop_post(custos_loop_t *l, custos_post_fn fn, void *arg)
{
    post_item_t *it = malloc(sizeof(*it));
    if (!it)
        return CUSTOS_ENOMEM;
    it->next = NULL;
    it->fn = fn;
    it->arg = arg;
    pthread_mutex_lock(&l->post_mu);
    if (l->post_tail)
        l->post_tail->next = it;
    else
        l->post_head = it;
    l->post_tail = it;
    pthread_mutex_unlock(&l->post_mu);
    wake(l);
    return 0;
}

int custos_loop_defer(custos_loop_t *l, custos_post_fn fn, void *arg)
{
    post_item_t *it = malloc(sizeof(*it));
    if (!it)
        return CUSTOS_ENOMEM;
    it->fn = fn;
    it->arg = arg;
    it->next = NULL;
    if (l->defer_tail)
        l->defer_tail->next = it;
    else
        l->defer_head = it;
    l->defer_tail = it;
    return 0;
}

static void run_deferred(custos_loop_t *l)
{
    while (l->defer_head) {
        post_item_t *p = l->defer_head;
        l->defer_head = l->defer_tail = NULL;
        while (p) {
            post_item_t *n = p->next;
            p->fn(l, p->arg);
            free(p);
            p = n;
        }
    }
}

static void run_posts(custos_loop_t *l)
{
    uint64_t v;
    ssize_t r = read(l->evfd, &v, sizeof(v));
    (void)r;
    pthread_mutex_lock(&l->post_mu);
    post_item_t *p = l->post_head;
    l->post_head = l->post_tail = NULL;
    pthread_mutex_unlock(&l->post_mu);
    while (p) {
        post_item_t *n = p->next;
        p->fn(l, p->arg);
        free(p);
        p = n;
    }
}

void custos_io_init(custos_io_t *w, int fd, custos_io_cb cb, void *ud)
{
    w->fd = fd;
    w->events = 0;
    w->active = false;
    w->cb = cb;
    w->ud = ud;
}

int custos_io_set(custos_loop_t *l, custos_io_t *w, uint32_t events)
{
    if (events == 0) {
        custos_io_stop(l, w);
        return 0;
    }
    if (w->active && w->events == events)
        return 0;
    struct epoll_event ev = {.events = events, .data.ptr = w};
    int op = w->active ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(l->epfd, op, w->fd, &ev) < 0)
        return CUSTOS_EIO;
    w->active = true;
    w->events = events;
    return 0;
}

void custos_io_stop(custos_loop_t *l, custos_io_t *w)
{
    if (!w->active)
        return;
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, w->fd, NULL);
    w->active = false;
    w->events = 0;
}

void custos_timer_init(custos_timer_t *t, custos_timer_cb cb, void *ud)
{
    t->due_ms = 0;
    t->heap_idx = (size_t)-1;
    t->cb = cb;
    t->ud = ud;
}

int custos_timer_start(custos_loop_t *l, custos_timer_t *t, uint64_t ms)
{
    if (custos_timer_active(t))
        custos_timer_stop(l, t);
    if (l->nheap == l->capheap) {
        size_t nc = l->capheap ? l->capheap * 2 : 64;
        custos_timer_t **nh = realloc(l->heap, nc * sizeof(*nh));
        if (!nh)
            return CUSTOS_ENOMEM;
        l->heap = nh;
        l->capheap = nc;
    }
    t->due_ms = custos_now_ms() + ms;
    t->heap_idx = l->nheap;
    l->heap[l->nheap++] = t;
    heap_up(l, t->heap_idx);
    return 0;
}

void custos_timer_stop(custos_loop_t *l, custos_timer_t *t)
{
    size_t i = t->heap_idx;
    if (i == (size_t)-1)
        return;
    l->nheap--;
    if (i != l->nheap) {
        l->heap[i] = l->heap[l->nheap];
        l->heap[i]->heap_idx = i;
        heap_down(l, i);
        heap_up(l, l->heap[i]->heap_idx);
    }
    t->heap_idx = (size_t)-1;
}

static void run_timers(custos_loop_t *l)
{
    while (l->nheap > 0 && l->heap[0]->due_ms <= l->now) {
        custos_timer_t *t = l->heap[0];
        custos_timer_stop(l, t);
        t->cb(l, t->ud);
    }
}

static int loop_iterate(custos_loop_t *l, int max_timeout)
{
    struct epoll_event evs[MAX_EVENTS];
    int timeout = max_timeout;
    l->now = custos_now_ms();
    if (l->nheap > 0) {
        uint64_t due = l->heap[0]->due_ms;
        int t = due <= l->now ? 0 : (int)(due - l->now > 60000 ? 60000 : due - l->now);
        if (timeout < 0 || t < timeout)
            timeout = t;
    }
    int n = epoll_wait(l->epfd, evs, MAX_EVENTS, timeout);
    if (n < 0)
        return errno == EINTR ? 0 : CUSTOS_EIO;
    l->now = custos_now_ms();
    for (int i = 0; i < n; i++) {
        custos_io_t *w = evs[i].data.ptr;
        if (!w) {
            run_posts(l);
            continue;
        }
        /* A callback earlier in this batch may have stopped this watcher; its memory is still
         * valid because owners free through custos_loop_defer. */
        if (w->active)
            w->cb(l, evs[i].events, w->ud);
    }
    run_deferred(l);
    run_timers(l);
    run_deferred(l);
    return n;
}

int custos_loop_run_once(custos_loop_t *l, int timeout_ms)
{
    return loop_iterate(l, timeout_ms);
}

int custos_loop_run(custos_loop_t *l)
{
    while (!atomic_load(&l->stop)) {
        int rc = loop_iterate(l, -1);
        if (rc < 0)
            return rc;
    }
    atomic_store(&l->stop, false);
    return 0;
}
