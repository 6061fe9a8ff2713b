/* sendq.c - corked per-connection send queues (see sendq.h). */
#include "sendq.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "frame.h"
#include "log.h"
#include "worker.h"

static struct outq *oq_get(struct worker *w)
{
    struct outq *q = w->oq_pool;
    if (q) {
        w->oq_pool = q->pool_next;
        w->oq_pool_n--;
    } else {
        q = malloc(sizeof(*q));
        if (!q) {
            fprintf(stderr, "ringcast: out of memory for a send queue\n");
            abort();
        }
    }
    q->head = q->tail = q->off = q->inflight = 0;
    q->cap = OUTQ_INLINE;
    q->bytes = 0;
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

void sendq_pool_free(struct worker *w)
{
    while (w->oq_pool) {
        struct outq *q = w->oq_pool;
        w->oq_pool = q->pool_next;
        free(q);
    }
    w->oq_pool_n = 0;
}

bool sendq_empty(const struct conn *c)
{
    return !c->oq;
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
 * pointers in flight keep their frames, not their slots), grow only when it is full. */
static void make_room(struct outq *q)
{
    if (q->tail < q->cap)
        return;
    if (q->head > 0) {
        memmove(q->f, q->f + q->head, (q->tail - q->head) * sizeof(*q->f));
        q->tail -= q->head;
        q->head = 0;
        return;
    }
    uint32_t cap = q->cap * 2;
    struct frame **f = malloc(cap * sizeof(*f));
    if (!f) {
        fprintf(stderr, "ringcast: out of memory growing a send queue\n");
        abort();
    }
    memcpy(f, q->f, q->tail * sizeof(*f));
    if (q->f != q->f_inline)
        free(q->f);
    q->f = f;
    q->cap = cap;
}

static void push(struct conn *c, struct frame *f)
{
    if (!c->oq)
        c->oq = oq_get(c->w);
    struct outq *q = c->oq;
    make_room(q);
    q->f[q->tail++] = f;
    q->bytes += f->len;
    mark_dirty(c);
}

void sendq_push_force(struct conn *c, struct frame *f)
{
    if (c->state == CONN_CLOSED || (c->flags & CONN_CLOSE_SENT)) {
        frame_release(f);
        return;
    }
    push(c, f);
}

void sendq_push(struct conn *c, struct frame *f)
{
    if (c->state == CONN_CLOSED || (c->flags & CONN_CLOSE_SENT)) {
        frame_release(f);
        return;
    }
    uint64_t queued = c->oq ? c->oq->bytes : 0;
    if (queued + f->len > c->w->cfg->max_queue_bytes) {
        frame_release(f);
        char peer[64];
        conn_peer_format(c, peer, sizeof(peer));
        log_warn("slow consumer %s: %llu bytes queued (max-queue-bytes %llu), closing with 4008",
                 peer, (unsigned long long)queued, (unsigned long long)c->w->cfg->max_queue_bytes);
        c->w->m.slow_consumers++;
        sendq_discard(c);
        conn_close_start(c, CLOSE_SLOW_CONSUMER, "slow consumer");
        return;
    }
    push(c, f);
}

static void submit_send(struct conn *c)
{
    struct outq *q = c->oq;
    uint32_t n = q->tail - q->head;
    if (n > OUTQ_IOV)
        n = OUTQ_IOV;
    for (uint32_t i = 0; i < n; i++) {
        struct frame *f = q->f[q->head + i];
        q->iov[i].iov_base = f->data;
        q->iov[i].iov_len = f->len;
    }
    q->iov[0].iov_base = (uint8_t *)q->iov[0].iov_base + q->off;
    q->iov[0].iov_len -= q->off;
    memset(&q->msg, 0, sizeof(q->msg));
    q->msg.msg_iov = q->iov;
    q->msg.msg_iovlen = n;
    q->inflight = n;
    struct io_uring_sqe *sqe = worker_sqe(c->w);
    io_uring_prep_sendmsg(sqe, c->fd, &q->msg, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ud_make(c, UD_SEND));
    c->flags |= CONN_SEND_BUSY;
    c->ops++;
    c->w->m.sends++;
}

void sendq_flush(struct worker *w)
{
    /* Take the whole list first: nothing below adds to it, but keep the invariant obvious. */
    struct conn *c = w->dirty;
    w->dirty = NULL;
    while (c) {
        struct conn *next = c->dirty_next;
        c->flags &= ~CONN_DIRTY;
        if (!(c->flags & CONN_SEND_BUSY) && c->oq && c->oq->tail > c->oq->head &&
            c->state != CONN_CLOSED)
            submit_send(c);
        conn_put(c);
        c = next;
    }
}

void sendq_on_complete(struct conn *c, int res)
{
    struct outq *q = c->oq;
    c->flags &= ~CONN_SEND_BUSY;
    if (res < 0) {
        /* The peer is gone (EPIPE, ECONNRESET) or we shut the socket down: the frames in
         * flight will never go, so they are released with the rest. */
        q->inflight = 0;
        if (res != -EPIPE && res != -ECONNRESET && res != -ECANCELED)
            log_debug("send failed: %s", strerror(-res));
        conn_abort(c);
        conn_put(c);
        return;
    }
    size_t left = (size_t)res;
    q->bytes -= left;
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
    for (uint32_t i = keep; i < q->tail; i++) {
        q->bytes -= q->f[i]->len;
        frame_release(q->f[i]);
    }
    q->tail = keep;
    if (q->head == q->tail) {
        oq_put(c->w, q);
        c->oq = NULL;
    }
}
