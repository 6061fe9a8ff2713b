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
#include "history.h"
#include "http_api.h"
#include "listen.h"
#include "log.h"
#include "presence.h"
#include "sendq.h"
#include "sys_stats.h"

/* Completions handled per peek: enough to amortize the ring's head update. */
#define CQE_BATCH 256

static int64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void update_clock(struct worker *w)
{
    w->now_ms = clock_ms(CLOCK_REALTIME);
    w->mono_ns = clock_ns(CLOCK_MONOTONIC);
    w->mono_ms = w->mono_ns / 1000000;
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

/* Frees a message or frame that will never be delivered. */
static void xdrop(uint64_t ud)
{
    if (ud_kind(ud) == UD_XMSG)
        bc_discard_xmsg(ud_ptr(ud));
    else
        frame_release(ud_ptr(ud));
}

static void post(struct worker *w, unsigned target, uint64_t ud)
{
    struct xlink_out *o = &w->xout[target];
    if (atomic_load_explicit(&w->eng->workers[target]->gone, memory_order_acquire)) {
        /* Exit: the target has torn its ring down; nothing it would do with this matters. */
        xdrop(ud);
        return;
    }
    uint32_t val = (w->id << 24) | (o->seq++ & XLINK_SEQ_MASK);
    struct io_uring_sqe *sqe = worker_sqe(w);
    io_uring_prep_msg_ring(sqe, w->eng->workers[target]->ring_fd, val, ud, 0);
    /* Our own completion only matters when the kernel refused: then it carries the same
     * user_data with a negative res, so the handler can free what never arrived. */
    io_uring_sqe_set_data64(sqe, ud);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    atomic_store_explicit(&o->posted, atomic_load_explicit(&o->posted, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

bool worker_link_open(struct worker *w, unsigned target)
{
    struct xlink_out *o = &w->xout[target];
    uint64_t posted = atomic_load_explicit(&o->posted, memory_order_relaxed);
    if (posted - o->consumed_seen < XLINK_WINDOW)
        return true;
    /* Read the target's count only when the cached one says the window is full. */
    o->consumed_seen =
        atomic_load_explicit(&w->eng->workers[target]->xin[w->id].consumed, memory_order_relaxed);
    return posted - o->consumed_seen < XLINK_WINDOW;
}

void worker_post(struct worker *w, unsigned target, void *ptr, enum ud_kind kind)
{
    post(w, target, ud_make(ptr, kind));
}

bool worker_post_try(struct worker *w, unsigned target, void *ptr, enum ud_kind kind)
{
    if (!worker_link_open(w, target))
        return false;
    post(w, target, ud_make(ptr, kind));
    return true;
}

/* ---- arrivals, in each link's order ---- */

static void xdeliver(struct worker *w, struct xlink_in *in, uint64_t ud)
{
    atomic_store_explicit(&in->consumed,
                          atomic_load_explicit(&in->consumed, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    void *p = ud_ptr(ud);
    if (ud_kind(ud) == UD_XMSG) {
        if (w->discard)
            bc_discard_xmsg(p);
        else
            bc_on_xmsg(w, p);
    } else {
        if (w->discard)
            frame_release(p);
        else
            bc_on_xframe(w, p);
    }
}

/* Hands over the held messages that are next in order. */
static void xdrain(struct worker *w, struct xlink_in *in)
{
    while (in->nheld) {
        uint64_t *slot = &in->held[in->expect % XLINK_REORDER];
        if (!*slot)
            return;
        uint64_t ud = *slot;
        *slot = 0;
        in->nheld--;
        in->expect = (in->expect + 1) & XLINK_SEQ_MASK;
        xdeliver(w, in, ud);
    }
}

/* A message from another worker arrived: handle it in its link's order. */
static void xarrive(struct worker *w, uint32_t val, uint64_t ud)
{
    unsigned from = (val >> 24) & 63;
    uint32_t seq = val & XLINK_SEQ_MASK;
    struct xlink_in *in = &w->xin[from];
    if (seq == in->expect || in->broken) {
        if (seq == in->expect)
            in->expect = (in->expect + 1) & XLINK_SEQ_MASK;
        xdeliver(w, in, ud);
        xdrain(w, in);
        return;
    }
    uint32_t ahead = (seq - in->expect) & XLINK_SEQ_MASK;
    if (!in->held)
        in->held = calloc(XLINK_REORDER, sizeof(*in->held));
    if (ahead >= XLINK_REORDER || !in->held) {
        /* Beyond what the windows allow, or no memory to wait: order cannot be kept. */
        log_error("message from worker %u out of order by %u: link handled in arrival order", from,
                  ahead);
        in->broken = true;
        xdeliver(w, in, ud);
        return;
    }
    in->held[seq % XLINK_REORDER] = ud;
    in->nheld++;
}

/* Links whose sender dropped frames or lost a message: subscribers that may have missed
 * events are closed (1013); a link with a gap is handled in arrival order from now on. */
static void xcheck_lossy(struct worker *w)
{
    if (atomic_load_explicit(&w->broken_from, memory_order_relaxed)) {
        uint64_t mask = atomic_exchange(&w->broken_from, 0);
        for (; mask; mask &= mask - 1) {
            struct xlink_in *in = &w->xin[__builtin_ctzll(mask)];
            in->broken = true;
            for (uint32_t i = 0; in->nheld && i < XLINK_REORDER; i++) {
                uint64_t *slot = &in->held[(in->expect + i) % XLINK_REORDER];
                if (*slot) {
                    uint64_t ud = *slot;
                    *slot = 0;
                    in->nheld--;
                    xdeliver(w, in, ud);
                }
            }
        }
    }
    if (atomic_load_explicit(&w->lost_from, memory_order_relaxed))
        bc_close_lost(w, atomic_exchange(&w->lost_from, 0));
}

/* Our MSG_RING failed (the target could not take the completion): messages are posted again
 * next iteration, frames are lost; either way every target treats our link as lossy. */
static void xfailed(struct worker *w, uint64_t ud, int res)
{
    if (w->discard) { /* exit's last pass: the target may be gone, nothing is owed to anyone */
        xdrop(ud);
        return;
    }
    w->m.xmsg_failed++;
    log_error("cross-worker message refused by the kernel: %s", strerror(-res));
    for (unsigned t = 0; t < w->eng->nworkers; t++) {
        if (t == w->id)
            continue;
        atomic_fetch_or(&w->eng->workers[t]->broken_from, 1ull << w->id);
        if (ud_kind(ud) == UD_XFRAME)
            atomic_fetch_or(&w->eng->workers[t]->lost_from, 1ull << w->id);
    }
    if (ud_kind(ud) == UD_XFRAME) {
        frame_release(ud_ptr(ud));
        return;
    }
    /* Posted again next iteration (a new sequence number; the target reads the link in
     * arrival order from now on). */
    struct xmsg *m = ud_ptr(ud);
    m->next = w->retry;
    w->retry = m;
}

static void xretry(struct worker *w)
{
    struct xmsg *m = w->retry;
    w->retry = NULL;
    while (m) {
        struct xmsg *next = m->next;
        worker_post(w, m->to, m, UD_XMSG);
        m = next;
    }
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
    w->xout = calloc(eng->nworkers, sizeof(*w->xout));
    /* One more link in: the cluster bus's (cluster.h), sender id nworkers. */
    w->xin = calloc(eng->nworkers + 1, sizeof(*w->xin));
    if (!w->xout || !w->xin) {
        worker_free(w);
        return NULL;
    }
    room_table_init(&w->rooms, &eng->nrooms);
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
    if (w->xin) {
        /* Messages that waited for a predecessor that never came (shutdown's last pass). */
        for (unsigned i = 0; i <= w->eng->nworkers; i++) {
            for (unsigned j = 0; w->xin[i].held && j < XLINK_REORDER; j++) {
                uint64_t ud = w->xin[i].held[j];
                if (ud && ud_kind(ud) == UD_XMSG)
                    bc_discard_xmsg(ud_ptr(ud));
                else if (ud)
                    frame_release(ud_ptr(ud));
            }
            free(w->xin[i].held);
        }
    }
    while (w->retry) {
        struct xmsg *m = w->retry;
        w->retry = m->next;
        bc_discard_xmsg(m);
    }
    history_free_waiters(w);
    http_api_free_jobs(w); /* answers whose last part was discarded at shutdown */
    presence_worker_free(w);
    free(w->xin);
    free(w->xout);
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

/* ---- shutdown ----
 *
 * Two phases, so that an acked publish reaches every subscriber before its 1001 close. First
 * each worker stops accepting and answers new requests SHUTTING_DOWN, while it still handles
 * other workers' messages (a publish forwarded before the shutdown is still sequenced,
 * delivered and acked). Once every worker has done that and no cross-worker message is in
 * flight on any link, nothing can add an event any more: each worker queues the 1001 close
 * behind everything already queued and waits for the peers, up to the drain timeout. */

static void drain_start(struct worker *w)
{
    if (w->draining)
        return;
    w->draining = true;
    history_drain(w); /* parked long polls are answered now */
    w->drain_deadline_ms = w->mono_ms + (int64_t)w->cfg->drain_timeout_s * 1000;
    w->drain_log_ms = w->mono_ms;
    listen_stop(w);
    for (unsigned i = 0; i < w->nslots; i++) {
        struct conn *c = w->slots[i];
        if (c && c->state == CONN_HANDSHAKE)
            conn_abort(c);
    }
    atomic_fetch_add(&w->eng->quiesced, 1);
}

/* True when every worker has stopped taking requests and every link is empty; otherwise says
 * what it still waits for in why (for the progress line). */
static bool links_quiet(struct worker *w, char *why, size_t cap)
{
    struct engine *e = w->eng;
    unsigned q = atomic_load(&e->quiesced);
    if (q < e->nworkers) {
        snprintf(why, cap, "%u of %u workers have stopped taking requests", q, e->nworkers);
        return false;
    }
    for (unsigned i = 0; i < e->nworkers; i++)
        for (unsigned j = 0; j < e->nworkers; j++) {
            if (i == j)
                continue;
            uint64_t posted = atomic_load(&e->workers[i]->xout[j].posted);
            uint64_t consumed = atomic_load(&e->workers[j]->xin[i].consumed);
            if (posted != consumed) {
                snprintf(why, cap, "link w%u->w%u has %llu messages in flight", i, j,
                         (unsigned long long)(posted - consumed));
                return false;
            }
        }
    return true;
}

static void drain_step(struct worker *w)
{
    char why[96] = "";
    if (!w->closing_all && links_quiet(w, why, sizeof(why))) {
        w->closing_all = true;
        /* Already-queued events go first: the close frame is queued behind them. */
        for (unsigned i = 0; i < w->nslots; i++) {
            struct conn *c = w->slots[i];
            if (c && c->state != CONN_CLOSED)
                conn_close(c, WS_CLOSE_GOING_AWAY, "server shutting down");
        }
        conn_reap(w);
    }
    if (w->mono_ms - w->drain_log_ms >= 1000 && (w->nconns || !w->closing_all)) {
        uint64_t bytes = 0;
        for (unsigned i = 0; i < w->nslots; i++)
            if (w->slots[i] && w->slots[i]->oq)
                bytes += w->slots[i]->oq->bytes;
        if (w->closing_all)
            log_info("draining: %u connections still closing, %llu bytes queued", w->nconns,
                     (unsigned long long)bytes);
        else
            log_info("draining: %u connections, %llu bytes queued; waiting for other workers' "
                     "events in flight (%s)",
                     w->nconns, (unsigned long long)bytes, why);
        w->drain_log_ms = w->mono_ms;
    }
}

static void abort_all(struct worker *w)
{
    for (unsigned i = 0; i < w->nslots; i++) {
        struct conn *c = w->slots[i];
        if (c && c->state != CONN_CLOSED)
            conn_abort(c);
    }
    conn_reap(w);
}

/* ---- the loop ---- */

static void on_tick(struct worker *w)
{
    w->tick = (uint64_t)(w->mono_ms - w->start_mono_ms) / WORKER_TICK_MS;
    tw_advance(&w->tw, w->tick, conn_on_timer, w);
    history_tick(w);
    if (w->draining && w->mono_ms >= w->drain_deadline_ms) {
        if (w->nconns && w->mono_ms - w->drain_log_ms >= 1000) {
            log_warn("drain timeout (%us): aborting %u connections", w->cfg->drain_timeout_s,
                     w->nconns);
            w->drain_log_ms = w->mono_ms;
            /* Connections that outlive their abort hold a reference they should not: name
             * them, so a stuck exit says why. */
            for (unsigned i = 0; i < w->nslots; i++) {
                struct conn *c = w->slots[i];
                if (c && c->state == CONN_CLOSED)
                    log_warn("exit: w%u-%llu still held after its abort: ops %u flags 0x%x", w->id,
                             (unsigned long long)c->serial, c->ops, c->flags);
            }
        }
        w->closing_all = true;
        abort_all(w);
    }
    /* A burst of connections leaves the heap full of holes where handshakes, welcome
     * messages and send queues were: once the burst is over, give those pages back, so an
     * idle connection costs its struct and memberships, not its setup's peak. */
    if (w->m.accepted - w->trim_accepted >= 256 && w->tick - w->last_accept_tick >= 5) {
        sendq_pool_trim(w, OUTQ_POOL_IDLE);
        frame_cache_off(); /* the blocks it kept go back too; it refills from the next frees */
        frame_cache_on();
        malloc_trim(0);
        w->trim_accepted = w->m.accepted;
    }
    if (!w->accept_armed && !w->draining)
        listen_arm(w); /* an accept that stopped for lack of descriptors */
    sys_stats_tick(w);
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
    case UD_XFRAME:
        if (cqe->res < 0)
            xfailed(w, cqe->user_data, cqe->res);
        else
            xarrive(w, (uint32_t)cqe->res, cqe->user_data);
        break;
    case UD_SHUTDOWN: drain_start(w); break;
    case UD_STATUS: metrics_log_status(w); break;
    case UD_RELOAD: w->cfg = p; break;
    case UD_IGNORE: break;
    }
    /* Lifetimes follow the loop: what this completion marked to close is closed now. */
    if (w->reap)
        conn_reap(w);
}

/* Test hook (RINGCAST_TEST_XMSG_ORDER): handles a batch's cross-worker arrivals in reverse
 * or shuffled order, as a kernel delivering MSG_RING through LIFO task work would. */
static void handle_batch_scrambled(struct worker *w, struct io_uring_cqe **cqes, unsigned n)
{
    struct io_uring_cqe *x[CQE_BATCH];
    unsigned nx = 0;
    for (unsigned i = 0; i < n; i++) {
        enum ud_kind k = ud_kind(cqes[i]->user_data);
        if ((k == UD_XMSG || k == UD_XFRAME) && cqes[i]->res >= 0)
            x[nx++] = cqes[i];
        else
            handle_cqe(w, cqes[i]);
    }
    for (unsigned i = 0; i < nx / 2; i++) {
        unsigned j = w->eng->xorder_test == 1 ? nx - 1 - i : (unsigned)rand_r(&w->rand) % nx;
        struct io_uring_cqe *t = x[i];
        x[i] = x[j];
        x[j] = t;
    }
    for (unsigned i = 0; i < nx; i++)
        handle_cqe(w, x[i]);
}

/* Handles every completion ready now; then gives buffers back, re-arms ended receives and
 * corks: one sendmsg per dirty connection, all submitted together by the next wait. */
static unsigned run_completions(struct worker *w)
{
    struct io_uring_cqe *cqes[CQE_BATCH];
    unsigned total = 0, n;
    update_clock(w);
    xcheck_lossy(w);
    while ((n = io_uring_peek_batch_cqe(&w->ring, cqes, CQE_BATCH)) > 0) {
        if (w->eng->xorder_test) {
            handle_batch_scrambled(w, cqes, n);
        } else {
            for (unsigned i = 0; i < n; i++)
                handle_cqe(w, cqes[i]);
        }
        io_uring_cq_advance(&w->ring, n);
        total += n;
        buf_ring_publish(w);
    }
    buf_ring_publish(w);
    while (w->rearm) {
        struct conn *c = w->rearm;
        w->rearm = c->rearm_next;
        c->flags &= ~CONN_REARM;
        if (c->state != CONN_CLOSED && !(c->flags & (CONN_RECV_ARMED | CONN_ABORT_REQ)))
            conn_arm_recv(c);
        conn_put(c);
    }
    if (w->retry)
        xretry(w);
    if (w->pres && !w->discard)
        presence_flush(w); /* joins and leaves before the counts that follow them */
    if (w->count_dirty && !w->discard)
        bc_flush_counts(w);
    if (w->draining && !w->discard)
        drain_step(w);
    sendq_flush(w);
    return total;
}

static void loop(struct worker *w)
{
    bool skipped = false; /* the last iteration did not enter the kernel to wait */
    while (!w->stop) {
        int r;
        if (w->draining && !w->closing_all) {
            /* Waiting for the other workers and the links: look again every millisecond. */
            struct io_uring_cqe *cqe;
            struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 1000000LL};
            r = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
        } else {
            bool timed = w->lat.len != 0;
            if (timed) {
                /* This iteration delivered publishes: submit their sends on their own and
                 * time them (metrics.h). */
                io_uring_submit(&w->ring);
                metrics_lat_flush(&w->m, &w->lat, clock_ns(CLOCK_MONOTONIC));
            }
            /* The sends issued inline have completed already: handle their completions
             * without a second system call. Not twice in a row: with DEFER_TASKRUN only an
             * enter that waits runs the deferred completions (the other connections'). */
            if (timed && !skipped && io_uring_cq_ready(&w->ring)) {
                r = 0;
                skipped = true;
            } else {
                r = io_uring_submit_and_wait(&w->ring, 1);
                skipped = false;
            }
        }
        if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY && r != -ETIME) {
            log_error("io_uring_submit_and_wait: %s", strerror(-r));
            break;
        }
        run_completions(w);
        if (w->draining && w->closing_all && w->nconns == 0)
            w->stop = true;
    }
}

/* Waits (still serving cross-worker messages) until every worker reached counter. */
static void settle(struct worker *w, _Atomic unsigned *counter)
{
    atomic_fetch_add(counter, 1);
    struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 10 * 1000000LL};
    unsigned quiet = 0, rounds = 0;
    /* Wait for the others, then for a few quiet rounds: replies to replies (a join ack
     * answered with a count) die out within a couple of hops. */
    while (atomic_load(counter) < w->eng->nworkers || quiet < 5) {
        struct io_uring_cqe *cqe;
        io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
        unsigned n = run_completions(w);
        quiet = n ? 0 : quiet + 1;
        if (++rounds % 300 == 0) /* about every 3 s: say what the exit waits for */
            log_warn("exit: %u of %u workers have finished this phase; %u completions in the "
                     "last round, %u connections left here",
                     atomic_load(counter), w->eng->nworkers, n, w->nconns);
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
    frame_cache_on();
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
        frame_cache_off();
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
    /* From now on other workers drop what they would post here (worker.c, post). */
    atomic_store_explicit(&w->gone, true, memory_order_release);
    teardown_ring(w);
    frame_cache_off();
    return NULL;
}

int worker_start(struct worker *w)
{
    return -pthread_create(&w->thread, NULL, worker_main, w);
}
