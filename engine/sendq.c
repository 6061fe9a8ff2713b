/* sendq.c - corked per-connection send queues (see sendq.h). */
#include "sendq.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "connlog.h"
#include "frame.h"
#include "log.h"
#include "proto/ws_frame.h"
#include "tls.h"
#include "worker.h"

/* malloc's per-allocation overhead on glibc (a size word, 16-byte granularity). */
#define MALLOC_OVERHEAD 16
#define HELD            1ul

static inline bool is_held(const struct frame *e)
{
    return (uintptr_t)e & HELD;
}
static inline struct frame *entry_frame(struct frame *e)
{
    return (struct frame *)((uintptr_t)e & ~HELD);
}

uint64_t sendq_frame_cost(const struct frame *f)
{
    return frame_block_size(f) + MALLOC_OVERHEAD + sizeof(struct frame *);
}

/* NULL when memory is short: the caller refuses the frame as it would at the cap. */
static struct outq *oq_get(struct worker *w)
{
    struct outq *q = w->oq_pool;
    if (q) {
        w->oq_pool = q->pool_next;
        w->oq_pool_n--;
    } else {
        q = malloc(sizeof(*q));
        if (!q)
            return NULL;
    }
    q->head = q->tail = q->off = q->inflight = 0;
    q->cap = OUTQ_INLINE;
    q->bytes = q->mem = q->popped = 0;
    q->f = q->f_inline;
    return q;
}

static void oq_put(struct worker *w, struct outq *q)
{
    if (q->f != q->f_inline)
        free(q->f);
    if (w->oq_pool_n >= OUTQ_POOL_MAX) {
        free(q);
        return;
    }
    q->pool_next = w->oq_pool;
    w->oq_pool = q;
    w->oq_pool_n++;
}

void sendq_pool_trim(struct worker *w, unsigned keep)
{
    while (w->oq_pool && w->oq_pool_n > keep) {
        struct outq *q = w->oq_pool;
        w->oq_pool = q->pool_next;
        w->oq_pool_n--;
        free(q);
    }
}

void sendq_pool_free(struct worker *w)
{
    sendq_pool_trim(w, 0);
}

bool sendq_empty(const struct conn *c)
{
    return !c->oq && !(c->tls && tls_out_pending(c->tls));
}

static void mark_dirty(struct conn *c)
{
    if (c->flags & CONN_DIRTY)
        return;
    c->flags |= CONN_DIRTY;
    c->ops++; /* the dirty list holds c until the flush */
    c->dirty_next = c->w->dirty;
    c->w->dirty = c;
}

/* Room for one more pointer at the tail: slide the live window down first (cheap, the
 * pointers in flight keep their frames, not their slots), grow only when it is full. False
 * when memory is short. */
static bool make_room(struct outq *q)
{
    if (q->tail < q->cap)
        return true;
    if (q->head > 0) {
        memmove(q->f, q->f + q->head, (q->tail - q->head) * sizeof(*q->f));
        q->tail -= q->head;
        q->head = 0;
        return true;
    }
    uint32_t cap = q->cap * 2;
    struct frame **f = malloc(cap * sizeof(*f));
    if (!f)
        return false;
    memcpy(f, q->f, q->tail * sizeof(*f));
    if (q->f != q->f_inline)
        free(q->f);
    q->f = f;
    q->cap = cap;
    return true;
}

static bool refusing(const struct conn *c)
{
    return c->state == CONN_CLOSED || (c->flags & (CONN_CLOSE_SENT | CONN_CLOSE_REQ));
}

/* Marks c as a slow consumer: the reaper drops its queue and closes it with 4008. */
static void slow_consumer(struct conn *c, const struct frame *f, const char *why)
{
    if (!(c->flags & CONN_CLOSE_REQ)) {
        const struct outq *q = c->oq;
        connlog(c, LOG_LVL_WARN,
                "slow consumer: %s: %llu bytes unsent in %u frames holding %llu bytes of memory, "
                "and a %u-byte frame (%llu with its overhead) would pass max-queue-bytes %llu; "
                "closing with 4008",
                why, (unsigned long long)(q ? q->bytes : 0), q ? q->tail - q->head : 0,
                (unsigned long long)(q ? q->mem : 0), f->len,
                (unsigned long long)sendq_frame_cost(f),
                (unsigned long long)c->w->cfg->max_queue_bytes);
        c->w->m.slow_consumers++;
    }
    c->flags |= CONN_SLOW;
    conn_close(c, CLOSE_SLOW_CONSUMER, "slow consumer");
}

/* Appends entry e (f, maybe tagged held). The charge is checked by the caller. */
static bool push(struct conn *c, struct frame *e)
{
    struct frame *f = entry_frame(e);
    if (!c->oq && !(c->oq = oq_get(c->w)))
        return false;
    struct outq *q = c->oq;
    if (!make_room(q))
        return false;
    q->f[q->tail++] = e;
    q->mem += sendq_frame_cost(f);
    if (!is_held(e)) { /* a held frame's wire bytes count from its release */
        q->bytes += f->len;
        mark_dirty(c);
    }
    return true;
}

static bool push_checked(struct conn *c, struct frame *e, bool force)
{
    struct frame *f = entry_frame(e);
    if (!f) { /* the frame's allocation failed: this connection pays, with 1011 */
        c->w->m.alloc_failures++;
        if (!refusing(c)) {
            log_error("out of memory building a frame for a connection: closing it with 1011");
            conn_close(c, WS_CLOSE_INTERNAL, "server out of memory");
        }
        return false;
    }
    if (refusing(c)) {
        frame_release(f);
        return false;
    }
    uint64_t mem = c->oq ? c->oq->mem : 0;
    /* Ciphertext not yet sent is charged like the frames it came from; the session's buffers
     * themselves (at most three batches) are a fixed per-connection cost, not charged, or a TLS
     * client that keeps up would be refused frames whenever the cap is near a batch. */
    if (c->tls)
        mem += tls_out_pending(c->tls);
    if (!force && mem + sendq_frame_cost(f) > c->w->cfg->max_queue_bytes) {
        slow_consumer(c, f, "queue over its cap");
        frame_release(f);
        return false;
    }
    if (!push(c, e)) {
        /* Out of memory: this connection pays for it, the process lives on. */
        c->w->m.alloc_failures++;
        slow_consumer(c, f, "no memory to queue a frame");
        frame_release(f);
        return false;
    }
    return true;
}

bool sendq_push_force(struct conn *c, struct frame *f)
{
    return push_checked(c, f, true);
}

bool sendq_push(struct conn *c, struct frame *f)
{
    return push_checked(c, f, false);
}

uint64_t sendq_next_pos(const struct conn *c)
{
    const struct outq *q = c->oq;
    return q ? q->popped + (q->tail - q->head) : 0;
}

uint64_t sendq_push_held(struct conn *c, struct frame *f)
{
    uint64_t pos = sendq_next_pos(c);
    if (!push_checked(c, (struct frame *)((uintptr_t)f | HELD), false))
        return UINT64_MAX;
    return pos;
}

/* The index of entry pos in q, or -1 when it is no longer queued. */
static int64_t entry_index(const struct outq *q, uint64_t pos)
{
    if (!q || pos < q->popped || pos - q->popped >= q->tail - q->head)
        return -1;
    return (int64_t)(q->head + (pos - q->popped));
}

void sendq_release_held(struct conn *c, uint64_t pos, struct frame *f)
{
    struct outq *q = c->oq;
    int64_t i = entry_index(q, pos);
    if (i < 0 || q->f[i] != (struct frame *)((uintptr_t)f | HELD))
        return;
    q->f[i] = f;
    /* The frame was charged when it was reserved; its wire length is known only now. */
    q->bytes += f->len;
    mark_dirty(c);
}

bool sendq_release_held_as(struct conn *c, uint64_t pos, struct frame *held, struct frame *f)
{
    struct outq *q = c->oq;
    int64_t i = entry_index(q, pos);
    if (i < 0 || q->f[i] != (struct frame *)((uintptr_t)held | HELD))
        return false;
    q->f[i] = f;
    q->mem = q->mem - sendq_frame_cost(held) + sendq_frame_cost(f);
    q->bytes += f->len;
    frame_release(held);
    mark_dirty(c);
    return true;
}

bool sendq_replace(struct conn *c, uint64_t pos, struct frame *old, struct frame *f)
{
    struct outq *q = c->oq;
    int64_t i = entry_index(q, pos);
    if (i < 0 || q->f[i] != old || (uint32_t)i < q->head + q->inflight ||
        ((uint32_t)i == q->head && q->off))
        return false;
    q->f[i] = f;
    q->bytes = q->bytes - old->len + f->len;
    q->mem = q->mem - sendq_frame_cost(old) + sendq_frame_cost(f);
    frame_release(old);
    return true;
}

/* TLS: encrypts the entries before the first held one, up to TLS_SEND_BATCH plaintext bytes,
 * releasing each frame once the session has it (q->off: bytes of f[head] already encrypted),
 * then sends the session's ciphertext (handshake output too) from its buffer. */
static bool submit_send_tls(struct conn *c)
{
    struct tls_session *t = c->tls;
    struct outq *q = c->oq;
    if (q && tls_established(t) && tls_out_pending(t) < TLS_SEND_BATCH) {
        size_t budget = TLS_SEND_BATCH;
        bool ok = tls_write_begin(t, q->bytes < budget ? q->bytes : budget);
        while (ok && budget && q->head < q->tail && !is_held(q->f[q->head])) {
            struct frame *f = q->f[q->head];
            size_t n = f->len - q->off;
            if (n > budget)
                n = budget;
            if (!(ok = tls_write(t, f->data + q->off, n)))
                break;
            budget -= n;
            q->bytes -= n;
            q->off += (uint32_t)n;
            if (q->off < f->len)
                break;
            q->off = 0;
            q->head++;
            q->popped++;
            q->mem -= sendq_frame_cost(f);
            frame_release(f);
        }
        if (!tls_write_end(t) || !ok) {
            connlog(c, LOG_LVL_INFO, "TLS: cannot encrypt: %s", tls_error(t));
            conn_abort(c);
            return false;
        }
        if (q->head == q->tail) {
            oq_put(c->w, q);
            c->oq = NULL;
        }
    }
    size_t len;
    const uint8_t *p = tls_out_take(t, &len);
    if (!p) {
        if (tls_out_pending(t)) { /* no memory for the ciphertext: this connection pays */
            c->w->m.alloc_failures++;
            conn_abort(c);
        }
        return false;
    }
    struct io_uring_sqe *sqe = worker_sqe(c->w);
    io_uring_prep_send(sqe, c->fd, p, len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ud_make(c, UD_SEND));
    c->flags |= CONN_SEND_BUSY;
    c->ops++;
    c->w->m.sends++;
    return true;
}

/* Sends the entries before the first held one (at most OUTQ_IOV); false if there are none. */
static bool submit_send(struct conn *c)
{
    if (c->tls)
        return submit_send_tls(c);
    struct outq *q = c->oq;
    uint32_t n = 0;
    while (n < OUTQ_IOV && q->head + n < q->tail && !is_held(q->f[q->head + n])) {
        struct frame *f = q->f[q->head + n];
        q->iov[n].iov_base = f->data;
        q->iov[n].iov_len = f->len;
        n++;
    }
    if (!n)
        return false;
    q->iov[0].iov_base = (uint8_t *)q->iov[0].iov_base + q->off;
    q->iov[0].iov_len -= q->off;
    q->inflight = n;
    struct io_uring_sqe *sqe = worker_sqe(c->w);
    if (n == 1) {
        /* One frame (a small room's event, a lone reply): a plain send, as cheap as the
         * floor's; the kernel then copies and checks no msghdr and no iovec. */
        io_uring_prep_send(sqe, c->fd, q->iov[0].iov_base, q->iov[0].iov_len, MSG_NOSIGNAL);
    } else {
        memset(&q->msg, 0, sizeof(q->msg));
        q->msg.msg_iov = q->iov;
        q->msg.msg_iovlen = n;
        io_uring_prep_sendmsg(sqe, c->fd, &q->msg, MSG_NOSIGNAL);
    }
    io_uring_sqe_set_data64(sqe, ud_make(c, UD_SEND));
    c->flags |= CONN_SEND_BUSY;
    c->ops++;
    c->w->m.sends++;
    return true;
}

void sendq_flush(struct worker *w)
{
    /* Take the whole list first: nothing below adds to it, but keep the invariant obvious. */
    struct conn *c = w->dirty;
    w->dirty = NULL;
    while (c) {
        struct conn *next = c->dirty_next;
        c->flags &= ~CONN_DIRTY;
        if (!(c->flags & CONN_SEND_BUSY) && (c->oq || c->tls) && c->state != CONN_CLOSED)
            submit_send(c);
        conn_put(c);
        c = next;
    }
}

void sendq_kick(struct conn *c)
{
    if (c->state != CONN_CLOSED)
        mark_dirty(c);
}

void sendq_on_complete(struct conn *c, int res)
{
    struct outq *q = c->oq;
    c->flags &= ~CONN_SEND_BUSY;
    if (res < 0) {
        /* The peer is gone (EPIPE, ECONNRESET) or we shut the socket down: the frames in
         * flight will never go, so they are released with the rest. */
        if (q)
            q->inflight = 0;
        if (res != -EPIPE && res != -ECONNRESET && res != -ECANCELED)
            log_debug("send failed: %s", strerror(-res));
        conn_abort(c);
        conn_put(c);
        return;
    }
    if (c->tls) { /* the bytes were ciphertext: the frames left the queue when encrypted */
        tls_out_sent(c->tls, (size_t)res);
        c->w->m.bytes_out += (size_t)res;
        if (c->state != CONN_CLOSED && (tls_out_pending(c->tls) || c->oq))
            mark_dirty(c);
        else
            tls_out_idle(c->tls); /* idle: no ciphertext buffer kept */
        conn_on_send_done(c);
        conn_put(c);
        return;
    }
    size_t left = (size_t)res;
    q->bytes -= left;
    c->w->m.bytes_out += left;
    while (left > 0 && q->head < q->tail) {
        struct frame *f = q->f[q->head];
        size_t rest = f->len - q->off;
        if (left < rest) {
            q->off += (uint32_t)left;
            break;
        }
        left -= rest;
        q->off = 0;
        q->head++;
        q->popped++;
        q->mem -= sendq_frame_cost(f);
        frame_release(f);
    }
    q->inflight = 0;
    if (q->head == q->tail) {
        oq_put(c->w, q);
        c->oq = NULL;
    } else if (c->state != CONN_CLOSED) {
        mark_dirty(c);
    }
    conn_on_send_done(c);
    conn_put(c);
}

void sendq_discard(struct conn *c)
{
    struct outq *q = c->oq;
    if (!q)
        return;
    uint32_t keep = q->head + q->inflight;
    if (q->off && keep == q->head)
        keep++; /* a frame partly sent: the peer has its first bytes, it must get the rest */
    for (uint32_t i = keep; i < q->tail; i++) {
        struct frame *f = entry_frame(q->f[i]);
        if (!is_held(q->f[i]))
            q->bytes -= f->len;
        q->mem -= sendq_frame_cost(f);
        frame_release(f);
    }
    q->tail = keep;
    if (q->head == q->tail) {
        oq_put(c->w, q);
        c->oq = NULL;
    }
}
