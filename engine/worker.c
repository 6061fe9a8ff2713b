/* worker.c - the worker thread: ring and buffer-ring setup, the event loop, shutdown. */
#include "worker.h"

#include <errno.h>
#include <malloc.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "broadcast.h"
#include "conn.h"
#include "frame.h"
#include "listen.h"
#include "log.h"
#include "sendq.h"

/* Completions handled per peek: enough to amortize the ring's head update. */
#define CQE_BATCH 256

static int64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void update_clock(struct worker *w)
{
    w->now_ms = clock_ms(CLOCK_REALTIME);
    w->mono_ms = clock_ms(CLOCK_MONOTONIC);
}

struct io_uring_sqe *worker_sqe(struct worker *w)
{
    struct io_uring_sqe *sqe;
    while (!(sqe = io_uring_get_sqe(&w->ring)))
        io_uring_submit(&w->ring);
    return sqe;
}

void worker_buf_return(struct worker *w, unsigned bid)
{
    io_uring_buf_ring_add(w->br, worker_buf(w, bid), w->buf_size, (unsigned short)bid,
                          io_uring_buf_ring_mask(w->nbufs), (int)w->br_added++);
}

static void buf_ring_publish(struct worker *w)
{
    if (w->br_added) {
        io_uring_buf_ring_advance(w->br, (int)w->br_added);
        w->br_added = 0;
    }
}

void worker_post(struct worker *w, unsigned target, void *ptr, enum ud_kind kind)
{
    struct io_uring_sqe *sqe = worker_sqe(w);
    uint64_t ud = ud_make(ptr, kind);
    io_uring_prep_msg_ring(sqe, w->eng->workers[target]->ring_fd, 0, ud, 0);
    /* Our own completion only matters when the kernel refused: then it carries the same
     * user_data with a negative res, so the handler can free what never arrived. */
    io_uring_sqe_set_data64(sqe, ud);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

int worker_request_shutdown(struct io_uring *main_ring, struct worker *w)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(main_ring);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_msg_ring(sqe, w->ring_fd, 0, ud_make(NULL, UD_SHUTDOWN), 0);
    io_uring_sqe_set_data64(sqe, 0);
    int r = io_uring_submit(main_ring);
    return r < 0 ? r : 0;
}

struct conn *worker_conn_lookup(struct worker *w, uint32_t slot, uint64_t serial)
{
    struct conn *c = slot < w->nslots ? w->slots[slot] : NULL;
    return c && c->serial == serial && c->state != CONN_CLOSED ? c : NULL;
}

/* ---- setup ---- */

struct worker *worker_new(struct engine *eng, unsigned id, int cpu, int listen_fd)
{
    struct worker *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->eng = eng;
    w->cfg = eng->cfg;
    w->id = id;
    w->cpu = cpu;
    w->listen_fd = listen_fd;
    w->ring_fd = -1;
    /* One slot per descriptor we could ever hold: the fd limit bounds the connections. */
    struct rlimit rl;
    w->nslots = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 1u << 24 ? (unsigned)rl.rlim_cur
                                                                             : 1u << 20;
    w->slots = calloc(w->nslots, sizeof(*w->slots));
    w->free_slots = malloc(w->nslots * sizeof(*w->free_slots));
    if (!w->slots || !w->free_slots) {
        worker_free(w);
        return NULL;
    }
    /* Lowest slots first: the table's touched part stays as small as the load. */
    for (unsigned i = 0; i < w->nslots; i++)
        w->free_slots[i] = w->nslots - 1 - i;
    w->nfree = w->nslots;
    room_table_init(&w->rooms);
    return w;
}

void worker_free(struct worker *w)
{
    if (!w)
        return;
    if (w->listen_fd >= 0)
        close(w->listen_fd);
    free(w->slots);
    free(w->free_slots);
    if (w->rooms.buckets)
        room_table_free(&w->rooms);
    sendq_pool_free(w);
    free(w);
}

static int setup_ring(struct worker *w)
{
    const struct rc_config *cfg = w->cfg;
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    /* One thread submits and reaps (SINGLE_ISSUER), completions' task work runs only when we
     * ask for events (DEFER_TASKRUN), so no IPI interrupts a busy loop; a big CQ absorbs
     * bursts of cross-worker messages and multishot completions. */
    p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN |
              IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE;
    p.cq_entries = cfg->ring_entries * 8;
    int r = io_uring_queue_init_params(cfg->ring_entries, &w->ring, &p);
    if (r < 0)
        return r;
    w->ring_fd = w->ring.ring_fd;

    /* liburing 2.3 has no io_uring_setup_buf_ring: map and register the ring by hand. */
    w->nbufs = cfg->recv_buffers;
    while (w->nbufs & (w->nbufs - 1))
        w->nbufs &= w->nbufs - 1; /* the kernel wants a power of two */
    w->buf_size = cfg->recv_buffer_size;
    size_t ring_bytes = (size_t)w->nbufs * sizeof(struct io_uring_buf);
    w->br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (w->br == MAP_FAILED) {
        w->br = NULL;
        return -errno;
    }
    /* Populated up front: the buffers are a fixed per-worker cost that every connection
     * cycles through, better paid at startup than as page faults under load. */
    w->bufs = mmap(NULL, (size_t)w->nbufs * w->buf_size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (w->bufs == MAP_FAILED) {
        w->bufs = NULL;
        return -errno;
    }
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)w->br;
    reg.ring_entries = w->nbufs;
    reg.bgid = 0;
    r = io_uring_register_buf_ring(&w->ring, &reg, 0);
    if (r < 0)
        return r;
    io_uring_buf_ring_init(w->br);
    for (unsigned i = 0; i < w->nbufs; i++)
        worker_buf_return(w, i);
    buf_ring_publish(w);
    return 0;
}

static void teardown_ring(struct worker *w)
{
    if (w->ring_fd >= 0) {
        if (w->br)
            io_uring_unregister_buf_ring(&w->ring, 0);
        io_uring_queue_exit(&w->ring);
        w->ring_fd = -1;
    }
    if (w->br)
        munmap(w->br, (size_t)w->nbufs * sizeof(struct io_uring_buf));
    if (w->bufs)
        munmap(w->bufs, (size_t)w->nbufs * w->buf_size);
    w->br = NULL;
    w->bufs = NULL;
}

static void arm_tick(struct worker *w)
{
    w->tick_ts.tv_sec = 0;
    w->tick_ts.tv_nsec = WORKER_TICK_MS * 1000000LL;
    struct io_uring_sqe *sqe = worker_sqe(w);
    io_uring_prep_timeout(sqe, &w->tick_ts, 0, 0);
    io_uring_sqe_set_data64(sqe, ud_make(w, UD_TICK));
}

/* ---- shutdown ---- */

static void drain_start(struct worker *w)
{
    if (w->draining)
        return;
    w->draining = true;
    w->drain_deadline_ms = w->mono_ms + (int64_t)w->cfg->drain_timeout_s * 1000;
    listen_stop(w);
    /* Already-queued events go first: the close frame is queued behind them. */
    for (unsigned i = 0; i < w->nslots; i++) {
        struct conn *c = w->slots[i];
        if (!c || c->state == CONN_CLOSED)
            continue;
        if (c->state == CONN_HANDSHAKE)
            conn_abort(c);
        else
            conn_close_start(c, WS_CLOSE_GOING_AWAY, "server shutting down");
    }
}

static void abort_all(struct worker *w)
{
    for (unsigned i = 0; i < w->nslots; i++) {
        struct conn *c = w->slots[i];
        if (c && c->state != CONN_CLOSED)
            conn_abort(c);
    }
}

/* ---- the loop ---- */

static void on_tick(struct worker *w)
{
    w->tick = (uint64_t)(w->mono_ms - w->start_mono_ms) / WORKER_TICK_MS;
    tw_advance(&w->tw, w->tick, conn_on_timer, w);
    if (w->draining && w->mono_ms >= w->drain_deadline_ms)
        abort_all(w);
    /* A burst of connections leaves the heap full of holes where handshakes, welcome
     * messages and send queues were: once the burst is over, give those pages back, so an
     * idle connection costs its struct and memberships, not its setup's peak. */
    if (w->m.accepted - w->trim_accepted >= 256 && w->tick - w->last_accept_tick >= 5) {
        malloc_trim(0);
        w->trim_accepted = w->m.accepted;
    }
    if (!w->accept_armed && !w->draining)
        listen_arm(w); /* an accept that stopped for lack of descriptors */
    arm_tick(w);
}

static void handle_cqe(struct worker *w, struct io_uring_cqe *cqe)
{
    void *p = ud_ptr(cqe->user_data);
    switch (ud_kind(cqe->user_data)) {
    case UD_RECV: conn_on_recv(p, cqe->res, cqe->flags); break;
    case UD_SEND: sendq_on_complete(p, cqe->res); break;
    case UD_ACCEPT: listen_on_accept(w, cqe->res, cqe->flags); break;
    case UD_TICK: on_tick(w); break;
    case UD_XMSG:
        if (w->discard)
            bc_discard_xmsg(p);
        else
            bc_on_xmsg(w, p, cqe->res);
        break;
    case UD_XFRAME:
        if (w->discard)
            frame_release(p);
        else
            bc_on_xframe(w, p, cqe->res);
        break;
    case UD_SHUTDOWN: drain_start(w); break;
    case UD_STATUS: metrics_log_status(w); break;
    case UD_RELOAD: w->cfg = p; break;
    case UD_IGNORE: break;
    }
}

/* Handles every completion ready now; then gives buffers back, re-arms ended receives and
 * corks: one sendmsg per dirty connection, all submitted together by the next wait. */
static unsigned run_completions(struct worker *w)
{
    struct io_uring_cqe *cqes[CQE_BATCH];
    unsigned total = 0, n;
    update_clock(w);
    while ((n = io_uring_peek_batch_cqe(&w->ring, cqes, CQE_BATCH)) > 0) {
        for (unsigned i = 0; i < n; i++)
            handle_cqe(w, cqes[i]);
        io_uring_cq_advance(&w->ring, n);
        total += n;
        buf_ring_publish(w);
    }
    buf_ring_publish(w);
    while (w->rearm) {
        struct conn *c = w->rearm;
        w->rearm = c->rearm_next;
        c->flags &= ~CONN_REARM;
        if (c->state != CONN_CLOSED && !(c->flags & CONN_RECV_ARMED))
            conn_arm_recv(c);
        conn_put(c);
    }
    sendq_flush(w);
    return total;
}

static void loop(struct worker *w)
{
    while (!w->stop) {
        int r = io_uring_submit_and_wait(&w->ring, 1);
        if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY && r != -ETIME) {
            log_error("io_uring_submit_and_wait: %s", strerror(-r));
            break;
        }
        run_completions(w);
        if (w->draining && w->nconns == 0)
            w->stop = true;
    }
}

/* Waits (still serving cross-worker messages) until every worker reached counter. */
static void settle(struct worker *w, _Atomic unsigned *counter)
{
    atomic_fetch_add(counter, 1);
    struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 10 * 1000000LL};
    unsigned quiet = 0;
    /* Wait for the others, then for a few quiet rounds: replies to replies (a join ack
     * answered with a count) die out within a couple of hops. */
    while (atomic_load(counter) < w->eng->nworkers || quiet < 5) {
        struct io_uring_cqe *cqe;
        io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
        quiet = run_completions(w) ? 0 : quiet + 1;
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    char name[16];
    snprintf(name, sizeof(name), "w%u", w->id);
    log_set_thread_name(name);
    if (w->cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(w->cpu, &set);
        int r = pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
        if (r)
            log_warn("cannot pin to CPU %d: %s", w->cpu, strerror(r));
    }
    int err = setup_ring(w);
    struct engine *eng = w->eng;
    pthread_mutex_lock(&eng->lock);
    if (err) {
        int zero = 0;
        atomic_compare_exchange_strong(&eng->start_err, &zero, err);
    }
    atomic_fetch_add(&eng->started, 1);
    pthread_cond_broadcast(&eng->cond);
    while (!eng->go)
        pthread_cond_wait(&eng->cond, &eng->lock);
    int go = eng->go;
    pthread_mutex_unlock(&eng->lock);
    if (go < 0) {
        teardown_ring(w);
        return NULL;
    }
    update_clock(w);
    w->start_mono_ms = w->mono_ms;
    tw_init(&w->tw, 0);
    arm_tick(w);
    listen_arm(w);
    io_uring_submit(&w->ring);
    atomic_fetch_add(&eng->accepting, 1);
    loop(w);
    abort_all(w);
    while (w->nconns) { /* aborted connections finish their last completions */
        struct io_uring_cqe *cqe;
        struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 10 * 1000000LL};
        io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
        run_completions(w);
    }
    settle(w, &eng->drained);
    w->discard = true;
    settle(w, &eng->finished);
    teardown_ring(w);
    return NULL;
}

int worker_start(struct worker *w)
{
    return -pthread_create(&w->thread, NULL, worker_main, w);
}
