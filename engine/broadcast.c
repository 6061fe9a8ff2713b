/* broadcast.c - sharded rooms, encode-once publish and cross-worker fan-out (see broadcast.h). */
#include "broadcast.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "dispatch.h"
#include "frame.h"
#include "log.h"
#include "proto/envelope.h"
#include "proto/ws_frame.h"
#include "room.h"
#include "sendq.h"
#include "worker.h"

/* Bytes of an event envelope besides event name, room and payload: the keys, a timestamp and
 * a 20-digit seq. Used to size the frame exactly enough and to enforce TOO_LARGE up front. */
#define EVENT_OVERHEAD 120

static struct xmsg *xmsg_new(struct worker *w, enum xmsg_type type, struct span room, size_t extra)
{
    struct xmsg *m = malloc(sizeof(*m) + room.len + extra);
    if (!m) {
        fprintf(stderr, "ringcast: out of memory for a cross-worker message\n");
        abort();
    }
    memset(m, 0, sizeof(*m));
    m->type = (uint8_t)type;
    m->from = (uint8_t)w->id;
    m->room_len = (uint16_t)room.len;
    memcpy(m->data, room.base, room.len);
    return m;
}

static struct span xmsg_room(const struct xmsg *m)
{
    return (struct span){m->data, m->room_len};
}

/* Tells the home how many subscribers of r this worker has now. */
static void send_count(struct worker *w, struct room *r, bool want_ack)
{
    struct xmsg *m = xmsg_new(w, XM_COUNT, room_name(r), 0);
    m->count = r->nlocal;
    m->want_ack = want_ack;
    m->room_hash = r->hash;
    r->sent_count = r->nlocal;
    worker_post(w, room_home(r->hash, w->eng->nworkers), m, UD_XMSG);
}

/* ---- subscribe / unsubscribe ---- */

void bc_subscribe(struct conn *c, struct span name, struct span id)
{
    struct worker *w = c->w;
    uint32_t hash = room_hash(name.base, name.len);
    bool is_home = room_home(hash, w->eng->nworkers) == w->id;
    struct room *r = room_find(&w->rooms, hash, name.base, name.len);
    if (r && room_member_of(c, r)) {
        /* Already in: answer as if new (idempotent), but if the join is still pending the
         * answer is on its way. */
        if (r->join != ROOM_JOIN_PENDING)
            sendq_push(
                c, dispatch_reply_channel(w, "subscribe", "subscribed", room_name_escaped(r), id));
        return;
    }
    if (c->nsubs >= w->cfg->max_subscriptions) {
        char msg[96];
        snprintf(msg, sizeof(msg), "at most %u subscriptions per connection",
                 w->cfg->max_subscriptions);
        sendq_push(c, dispatch_reply_error(w, "TOO_MANY_SUBSCRIPTIONS", msg, id));
        return;
    }
    if (!r)
        r = room_get(&w->rooms, hash, name.base, name.len, is_home, w->eng->nworkers);
    struct frame *reply =
        dispatch_reply_channel(w, "subscribe", "subscribed", room_name_escaped(r), id);
    if (is_home || r->join == ROOM_JOIN_DONE) {
        room_member_add(r, c, NULL);
        sendq_push(c, reply);
        if (!is_home)
            send_count(w, r, false);
        return;
    }
    /* Remote home and no ack yet: the response waits for it (see the ordering rule). */
    room_member_add(r, c, reply);
    if (r->join == ROOM_JOIN_NONE) {
        r->join = ROOM_JOIN_PENDING;
        send_count(w, r, true);
    }
}

/* After a member left r on this worker: keep the home's count right, drop an empty room. */
static void after_leave(struct worker *w, struct room *r)
{
    if (r->is_home || r->join != ROOM_JOIN_DONE)
        return; /* home rooms live on; a pending join is reconciled on its ack */
    send_count(w, r, false);
    if (r->nlocal == 0 && !r->delivering)
        room_remove(&w->rooms, r);
}

void bc_unsubscribe(struct conn *c, struct span name, struct span id)
{
    struct worker *w = c->w;
    uint32_t hash = room_hash(name.base, name.len);
    struct room *r = room_find(&w->rooms, hash, name.base, name.len);
    struct member *m = r ? room_member_of(c, r) : NULL;
    if (m) {
        sendq_push(
            c, dispatch_reply_channel(w, "unsubscribe", "unsubscribed", room_name_escaped(r), id));
        room_member_del(m);
        after_leave(w, r);
        return;
    }
    /* Not subscribed: the answer is the same, the name escaped here since no room holds it. */
    char esc[CHANNEL_UNESCAPE_CAP + 2];
    struct jw jw;
    jw_init(&jw, esc, sizeof(esc));
    jw_str(&jw, name.base, name.len);
    sendq_push(c, dispatch_reply_channel(w, "unsubscribe", "unsubscribed",
                                         (struct span){esc + 1, jw.len - 2}, id));
}

void bc_leave_all(struct conn *c)
{
    while (c->subs) {
        struct room *r = c->subs->room;
        room_member_del(c->subs);
        after_leave(c->w, r);
    }
}

/* ---- publish ---- */

/* Queues f on every local subscriber of r that is not waiting for its join ack. One atomic
 * add covers them all; each queue then owns one reference. */
static void deliver_local(struct worker *w, struct room *r, struct frame *f)
{
    uint32_t n = 0;
    for (struct member *m = r->members; m; m = m->rnext)
        n += !m->reply;
    if (!n)
        return;
    frame_ref(f, n);
    /* A push can close its connection as a slow consumer, which leaves this room: step past
     * the member first, and keep the room alive until the walk is over. */
    r->delivering = true;
    struct member *next;
    for (struct member *m = r->members; m; m = next) {
        next = m->rnext;
        if (!m->reply)
            sendq_push(m->conn, f);
    }
    r->delivering = false;
    w->m.deliveries += n;
    if (!r->is_home && r->join == ROOM_JOIN_DONE && r->nlocal == 0)
        room_remove(&w->rooms, r);
}

/* On the home: sequence, encode once, fan out. Returns the subscriber count. */
static uint64_t home_publish(struct worker *w, struct span name, uint32_t hash, struct span event,
                             struct span payload, uint64_t *seq)
{
    struct room *r = room_get(&w->rooms, hash, name.base, name.len, true, w->eng->nworkers);
    *seq = ++r->seq;
    bool remote = r->mask != 0;
    struct frame *f =
        frame_alloc(EVENT_OVERHEAD + event.len + r->esc_len + payload.len, remote ? name.len : 0);
    struct jw jw;
    frame_writer(f, &jw);
    env_write_event(&jw, event, room_name_escaped(r), payload, w->now_ms, *seq);
    frame_finish(f, WS_OP_TEXT, jw.len);
    w->m.publishes++;
    if (remote) {
        char *room_copy = (char *)f->data + f->len;
        memcpy(room_copy, name.base, name.len);
        f->room = (struct span){room_copy, name.len};
        f->room_hash = hash;
        for (uint64_t mask = r->mask; mask; mask &= mask - 1) {
            frame_ref(f, 1);
            worker_post(w, (unsigned)__builtin_ctzll(mask), f, UD_XFRAME);
        }
    }
    deliver_local(w, r, f);
    frame_release(f);
    return r->nlocal + r->remote;
}

void bc_publish(struct conn *c, struct span name, struct span event, struct span payload,
                struct span id)
{
    struct worker *w = c->w;
    /* The escaped name is at most 6x the name; bound it by the real escaped length only when
     * the cheap bound is too big, so the common case escapes nothing here. */
    size_t room_esc = name.len * 6;
    if (EVENT_OVERHEAD + event.len + room_esc + payload.len > w->cfg->max_message_bytes) {
        char esc[CHANNEL_UNESCAPE_CAP + 2];
        struct jw jw;
        jw_init(&jw, esc, sizeof(esc));
        jw_str(&jw, name.base, name.len);
        room_esc = jw.len - 2;
    }
    if (EVENT_OVERHEAD + event.len + room_esc + payload.len > w->cfg->max_message_bytes) {
        char msg[96];
        snprintf(msg, sizeof(msg), "the event would exceed %u bytes", w->cfg->max_message_bytes);
        sendq_push(c, dispatch_reply_error(w, "TOO_LARGE", msg, id));
        return;
    }
    uint32_t hash = room_hash(name.base, name.len);
    unsigned home = room_home(hash, w->eng->nworkers);
    if (home == w->id) {
        uint64_t seq;
        uint64_t subs = home_publish(w, name, hash, event, payload, &seq);
        struct room *r = room_find(&w->rooms, hash, name.base, name.len);
        sendq_push(c, dispatch_reply_published(w, room_name_escaped(r), seq, subs, id));
        return;
    }
    struct xmsg *m = xmsg_new(w, XM_PUBLISH, name, event.len + payload.len + id.len);
    m->room_hash = hash;
    m->slot = c->slot;
    m->serial = c->serial;
    m->event_len = (uint32_t)event.len;
    m->payload_len = (uint32_t)payload.len;
    m->id_len = (uint32_t)id.len;
    char *p = m->data + name.len;
    memcpy(p, event.base, event.len);
    memcpy(p + event.len, payload.base, payload.len);
    memcpy(p + event.len + payload.len, id.base, id.len);
    worker_post(w, home, m, UD_XMSG);
}

/* ---- cross-worker messages ---- */

static void on_count(struct worker *w, struct xmsg *m)
{
    struct room *r =
        room_get(&w->rooms, m->room_hash, m->data, m->room_len, true, w->eng->nworkers);
    r->remote = r->remote - r->wcount[m->from] + m->count;
    r->wcount[m->from] = m->count;
    if (m->count)
        r->mask |= 1ull << m->from;
    else
        r->mask &= ~(1ull << m->from);
    if (!m->want_ack) {
        free(m);
        return;
    }
    /* The mask is updated before the ack leaves: every event sequenced from now on is sent
     * to m->from, and reaches it after this ack. */
    m->type = XM_JOIN_ACK;
    unsigned to = m->from;
    m->from = (uint8_t)w->id;
    worker_post(w, to, m, UD_XMSG);
}

static void on_join_ack(struct worker *w, struct xmsg *m)
{
    struct room *r = room_find(&w->rooms, m->room_hash, m->data, m->room_len);
    free(m);
    if (!r || r->join != ROOM_JOIN_PENDING)
        return;
    r->join = ROOM_JOIN_DONE;
    for (struct member *mb = r->members; mb; mb = mb->rnext) {
        if (mb->reply) {
            struct frame *reply = mb->reply;
            mb->reply = NULL;
            sendq_push(mb->conn, reply);
        }
    }
    /* Members that came or went while the join was pending. */
    if (r->nlocal != r->sent_count)
        send_count(w, r, false);
    if (r->nlocal == 0 && !r->delivering)
        room_remove(&w->rooms, r);
}

static void on_publish(struct worker *w, struct xmsg *m)
{
    struct span name = xmsg_room(m);
    const char *p = m->data + m->room_len;
    struct span event = {p, m->event_len};
    struct span payload = {p + m->event_len, m->payload_len};
    m->subscribers = home_publish(w, name, m->room_hash, event, payload, &m->seq);
    m->type = XM_PUB_ACK;
    unsigned to = m->from;
    m->from = (uint8_t)w->id;
    worker_post(w, to, m, UD_XMSG);
}

static void on_pub_ack(struct worker *w, struct xmsg *m)
{
    struct conn *c = worker_conn_lookup(w, m->slot, m->serial);
    if (c) {
        char esc[CHANNEL_UNESCAPE_CAP + 2];
        struct jw jw;
        jw_init(&jw, esc, sizeof(esc));
        jw_str(&jw, m->data, m->room_len);
        const char *id = m->data + m->room_len + m->event_len + m->payload_len;
        sendq_push(c, dispatch_reply_published(w, (struct span){esc + 1, jw.len - 2}, m->seq,
                                               m->subscribers, (struct span){id, m->id_len}));
    }
    free(m);
}

void bc_discard_xmsg(struct xmsg *m)
{
    free(m);
}

void bc_on_xmsg(struct worker *w, struct xmsg *m, int res)
{
    if (res < 0) {
        /* Our MSG_RING failed (the target's completion queue overflowed): the message is
         * lost. Counted and logged; the CQ is sized so this does not happen in practice. */
        w->m.xmsg_failed++;
        log_error("cross-worker message type %u lost: %s", m->type, strerror(-res));
        free(m);
        return;
    }
    switch (m->type) {
    case XM_COUNT: on_count(w, m); break;
    case XM_JOIN_ACK: on_join_ack(w, m); break;
    case XM_PUBLISH: on_publish(w, m); break;
    case XM_PUB_ACK: on_pub_ack(w, m); break;
    default: free(m); break;
    }
}

void bc_on_xframe(struct worker *w, struct frame *f, int res)
{
    if (res < 0) {
        w->m.xmsg_failed++;
        log_error("broadcast frame to a worker lost: %s", strerror(-res));
        frame_release(f);
        return;
    }
    struct room *r = room_find(&w->rooms, f->room_hash, f->room.base, f->room.len);
    if (r)
        deliver_local(w, r, f);
    frame_release(f); /* the reference the home gave this worker */
}
