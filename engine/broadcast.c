/* broadcast.c - sharded rooms, encode-once publish and cross-worker fan-out (see broadcast.h). */
#include "broadcast.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "conn.h"
#include "dispatch.h"
#include "frame.h"
#include "history.h"
#include "http_api.h"
#include "log.h"
#include "presence.h"
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
    if (!m)
        return NULL;
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

/* Frame pointers start after the room name, at an address aligned for them (data[] itself
 * is not: it follows the struct's last field). */
static size_t frames_off(size_t room_len)
{
    size_t base = offsetof(struct xmsg, data);
    return ((base + room_len + 7) & ~(size_t)7) - base;
}

struct xmsg *bc_xmsg_new(struct worker *w, enum xmsg_type type, struct span room, uint32_t nframes,
                         size_t extra)
{
    size_t off = frames_off(room.len);
    struct xmsg *m = xmsg_new(w, type, room, off - room.len + nframes * sizeof(void *) + extra);
    if (m)
        m->nframes = nframes;
    return m;
}

struct frame **bc_xmsg_frames(struct xmsg *m)
{
    return (struct frame **)(void *)(m->data + frames_off(m->room_len));
}

/* Posts m to worker to (never refused: the caller checked the window where one applies). */
static void post_xmsg(struct worker *w, unsigned to, struct xmsg *m)
{
    m->to = (uint8_t)to;
    worker_post(w, to, m, UD_XMSG);
}

void bc_post(struct worker *w, unsigned to, struct xmsg *m)
{
    post_xmsg(w, to, m);
}

/* The name as JSON string contents, for a reply when no room holds it escaped. */
static struct span escape_name(struct span name, char *buf, size_t cap)
{
    struct jw jw;
    jw_init(&jw, buf, cap);
    jw_str(&jw, name.base, name.len);
    return (struct span){buf + 1, jw.len - 2};
}

static void reply_error(struct conn *c, const char *code, const char *msg, struct span id)
{
    sendq_push(c, dispatch_reply_error(c->w, code, msg, id));
}

static void reply_oom(struct conn *c, struct span id)
{
    c->w->m.alloc_failures++;
    reply_error(c, "OVERLOADED", "server out of memory: retry later", id);
}

/* ---- room lifetime ---- */

/* Frees r if nothing needs it any more (room.h); a home room with history waits on the idle
 * list instead (history.h). */
void bc_room_release(struct worker *w, struct room *r)
{
    if (w->eng->cluster && r->is_home)
        cluster_home_check(w, r); /* may drop the history: it is Redis's, kept while subscribed */
    if (r->nlocal || r->count_dirty || r->has_waiters || r->cl_wait || r->cl_hold)
        return;
    if (!r->is_home) {
        if (r->join != ROOM_JOIN_PENDING && r->sent_count == 0)
            room_remove(&w->rooms, r);
        return;
    }
    if (r->remote)
        return;
    history_prune(w, r);
    if (!history_has(r))
        room_remove(&w->rooms, r);
    else if (!r->idle)
        room_idle_push(&w->rooms, r, w->mono_ms);
}

static void room_maybe_free(struct worker *w, struct room *r)
{
    bc_room_release(w, r);
}

/* The reply to a subscribe: the room's epoch (as far as this worker knows it), seq: the last
 * event queued to the connection before this reply (every live event after it is seq + 1,
 * seq + 2, ...: on the home r->seq, elsewhere the last event the home sent here, or the one
 * its join or resume ack names), and whether the resume it asked for worked (recovered < 0:
 * it asked none). */
static void write_subscribed(struct worker *w, struct frame *f, struct span channel_esc,
                             uint64_t epoch, uint64_t seq, int recovered, struct span id)
{
    char ep[HISTORY_EPOCH_HEX];
    history_epoch_format(epoch, ep);
    struct jw jw;
    frame_writer(f, &jw);
    env_write_response_begin(&jw, SPAN_LIT("subscribe"));
    jw_lit(&jw, "{\"status\":\"subscribed\",\"channel\":\"");
    jw_span(&jw, channel_esc);
    jw_lit(&jw, "\",\"epoch\":\"");
    jw_raw(&jw, ep, sizeof(ep));
    jw_lit(&jw, "\",\"seq\":");
    jw_u64(&jw, seq);
    if (recovered > 0)
        jw_lit(&jw, ",\"recovered\":true");
    else if (recovered == 0)
        jw_lit(&jw, ",\"recovered\":false");
    jw_lit(&jw, "}");
    env_write_end(&jw, id, w->now_ms);
    frame_finish(f, WS_OP_TEXT, jw.len);
}

static struct frame *reply_subscribed(struct worker *w, struct room *r, int recovered,
                                      struct span id)
{
    /* 512 covers the envelope, the epoch and the flags; held replies are written again in
     * the same frame once the home answers. */
    struct frame *f = frame_alloc(512 + r->esc_len + id.len, 0);
    if (f)
        write_subscribed(w, f, room_name_escaped(r), r->epoch, r->seq, recovered, id);
    return f;
}

/* Lets mb's held replies go, written again with the home's answer: epoch, the seq after which
 * mb takes live events, and for those that asked to resume, recovered. */
static void release_member(struct worker *w, struct member *mb, uint64_t epoch, uint64_t seq,
                           bool recovered)
{
    for (struct pend *p = mb->pend; p; p = p->next)
        write_subscribed(w, p->f, room_name_escaped(mb->room), epoch, seq,
                         p->since ? recovered : -1, (struct span){p->id, p->id_len});
    room_member_release(mb);
}

/* The home must hear r's new local count: once per room per iteration (bc_flush_counts). */
static void count_changed(struct worker *w, struct room *r)
{
    if (r->count_dirty)
        return;
    r->count_dirty = true;
    r->dnext = w->count_dirty;
    w->count_dirty = r;
}

void bc_flush_counts(struct worker *w)
{
    struct room *r = w->count_dirty, *wait = NULL;
    w->count_dirty = NULL;
    while (r) {
        struct room *next = r->dnext;
        unsigned home = room_home(r->hash, w->eng->nworkers);
        struct xmsg *m = NULL;
        if (r->nlocal != r->sent_count && r->join == ROOM_JOIN_DONE) {
            if (!worker_link_open(w, home) || !(m = xmsg_new(w, XM_COUNT, room_name(r), 0))) {
                r->dnext = wait; /* no room on the link (or no memory): next iteration */
                wait = r;
                r = next;
                continue;
            }
            m->count = r->nlocal;
            m->room_hash = r->hash;
            r->sent_count = r->nlocal;
            post_xmsg(w, home, m);
        }
        r->count_dirty = false;
        room_maybe_free(w, r);
        r = next;
    }
    w->count_dirty = wait;
}

/* ---- subscribe / unsubscribe ---- */

static void after_leave(struct worker *w, struct room *r);

/* Queues reply on c held until m's join (or resume) is acked. False when c refused it
 * (closing). */
static bool hold_reply(struct conn *c, struct member *m, struct frame *reply, struct span id,
                       bool since)
{
    frame_ref(reply, 1); /* the pending list's */
    uint64_t pos = sendq_push_held(c, reply);
    if (pos == UINT64_MAX) {
        frame_release(reply);
        return false;
    }
    if (!room_member_hold(m, pos, reply, id, since)) /* no memory to wait: let it go now */
        sendq_release_held(c, pos, reply);
    return true;
}

bool bc_hold_reply(struct conn *c, struct member *m, struct frame *reply, struct span id,
                   bool since)
{
    return hold_reply(c, m, reply, id, since);
}

void bc_release_member(struct worker *w, struct member *m, uint64_t epoch, uint64_t seq,
                       bool recovered)
{
    release_member(w, m, epoch, seq, recovered);
}

/* On the home: answers a new member m of r and queues the replay it asked for, all before any
 * live event can reach it (this is one call on the only thread that sequences r). */
static void subscribe_home(struct conn *c, struct room *r, struct frame *reply,
                           const struct bc_sub_opts *o, struct span id)
{
    struct worker *w = c->w;
    uint32_t first = 0, n = 0;
    uint64_t last = 0;
    int rec = -1;
    if (o->has_since) {
        bool ok = history_since(w, r, o->has_epoch, o->epoch, o->since, w->cfg->max_queue_bytes / 2,
                                &first, &n, &last);
        rec = ok && last == r->seq; /* all of it, or the client resyncs */
        if (!rec)
            n = 0;
        w->m.resumes++;
        w->m.resumes_lost += !rec;
    }
    write_subscribed(w, reply, room_name_escaped(r), r->epoch, r->seq, rec, id);
    sendq_push(c, reply);
    for (uint32_t i = 0; i < n; i++) {
        struct frame *f = history_at(r, first + i)->f;
        frame_ref(f, 1);
        sendq_push(c, f);
    }
    w->m.replayed += n;
}

void bc_subscribe(struct conn *c, struct span name, struct span id, const struct bc_sub_opts *o)
{
    static const struct bc_sub_opts none;
    if (!o)
        o = &none;
    struct worker *w = c->w;
    uint32_t hash = room_hash(name.base, name.len);
    unsigned home = room_home(hash, w->eng->nworkers);
    bool is_home = home == w->id;
    struct room *r = room_find(&w->rooms, hash, name.base, name.len);
    struct member *m = r ? room_member_of(c, r) : NULL;
    if (m) {
        /* Already in: answered as if new (idempotent), without a replay (it has been
         * receiving since it joined; a resume it asked for is "recovered":false unless it
         * rides on a resume still pending); while the join is pending, this answer too waits
         * for the ack, behind the first. */
        struct frame *reply = reply_subscribed(w, r, o->has_since ? 0 : -1, id);
        if (o->presence)
            presence_opt_in(w, m);
        if ((m->pend || m->resume) && reply)
            hold_reply(c, m, reply, id, o->has_since);
        else
            sendq_push(c, reply);
        return;
    }
    if (c->nsubs >= w->cfg->max_subscriptions) {
        char msg[96];
        snprintf(msg, sizeof(msg), "at most %u subscriptions per connection",
                 w->cfg->max_subscriptions);
        reply_error(c, "TOO_MANY_SUBSCRIPTIONS", msg, id);
        return;
    }
    /* A resume always asks the home, even when the room is joined already. */
    if (!is_home && r && o->has_since && !worker_link_open(w, home)) {
        w->m.overloaded++;
        reply_error(c, "OVERLOADED", "the room's worker is overloaded: retry later", id);
        return;
    }
    if (!r) {
        if (!history_make_room(w)) {
            char msg[96];
            snprintf(msg, sizeof(msg), "the server holds its maximum of %u rooms",
                     w->cfg->max_rooms);
            w->m.refused_rooms++;
            reply_error(c, "TOO_MANY_ROOMS", msg, id);
            return;
        }
        if (!is_home && !worker_link_open(w, home)) {
            w->m.overloaded++;
            reply_error(c, "OVERLOADED", "the room's worker is overloaded: retry later", id);
            return;
        }
        if (!(r = room_get(&w->rooms, hash, name.base, name.len, is_home, w->eng->nworkers))) {
            reply_oom(c, id);
            return;
        }
    }
    struct frame *reply = reply_subscribed(w, r, o->has_since ? 0 : -1, id);
    if (!reply || !(m = room_member_add(r, c))) {
        if (reply)
            frame_release(reply);
        reply_oom(c, id);
        room_maybe_free(w, r);
        return;
    }
    m->presence = o->presence;
    if (is_home) {
        room_idle_del(&w->rooms, r);
        if (w->eng->cluster && cluster_home_subscribe(c, r, m, reply, o, id))
            return;
        subscribe_home(c, r, reply, o, id);
        presence_join(w, m);
        return;
    }
    if (r->join == ROOM_JOIN_DONE && !o->has_since) {
        sendq_push(c, reply);
        count_changed(w, r);
        presence_join(w, m);
        return;
    }
    /* Remote home and no ack yet, or a resume: the response waits for the home (see the
     * ordering rule); a resuming member takes no live event until its replay is queued. */
    if (o->has_since)
        m->resume = ++w->resume_token;
    if (!hold_reply(c, m, reply, id, o->has_since)) {
        room_member_del(m);
        room_maybe_free(w, r);
        return;
    }
    if (r->join == ROOM_JOIN_NONE) {
        struct xmsg *x = xmsg_new(w, XM_COUNT, room_name(r), 0);
        if (!x) {
            room_member_del(m);
            room_maybe_free(w, r);
            reply_oom(c, id);
            return;
        }
        r->join = ROOM_JOIN_PENDING;
        x->count = r->nlocal;
        x->want_ack = true;
        x->room_hash = r->hash;
        r->sent_count = r->nlocal;
        post_xmsg(w, home, x);
    } else if (r->join == ROOM_JOIN_DONE) {
        count_changed(w, r);
    }
    if (o->has_since) {
        /* Posted after the join's COUNT on the same link: the home handles it after the
         * join, and every event it sequences after its answer reaches us after the answer. */
        struct xmsg *x = xmsg_new(w, XM_RESUME, room_name(r), 0);
        if (!x) {
            room_member_del(m);
            after_leave(w, r);
            reply_oom(c, id);
            return;
        }
        x->room_hash = r->hash;
        x->slot = c->slot;
        x->serial = c->serial;
        x->token = m->resume;
        x->since = o->since;
        x->epoch = o->has_epoch ? o->epoch : 0;
        post_xmsg(w, home, x);
    }
    presence_join(w, m);
}

/* After a member left r on this worker: keep the home's count right, drop an empty room. */
static void after_leave(struct worker *w, struct room *r)
{
    if (!r->is_home && r->join == ROOM_JOIN_DONE)
        count_changed(w, r); /* a pending join is reconciled on its ack */
    room_maybe_free(w, r);
}

void bc_unsubscribe(struct conn *c, struct span name, struct span id)
{
    struct worker *w = c->w;
    uint32_t hash = room_hash(name.base, name.len);
    struct room *r = room_find(&w->rooms, hash, name.base, name.len);
    struct member *m = r ? room_member_of(c, r) : NULL;
    if (m) {
        /* Queued behind a held "subscribed", which the leave releases: both answers go, in
         * request order. */
        sendq_push(
            c, dispatch_reply_channel(w, "unsubscribe", "unsubscribed", room_name_escaped(r), id));
        presence_leave(w, m);
        room_member_del(m);
        after_leave(w, r);
        return;
    }
    /* Not subscribed: the answer is the same, the name escaped here since no room holds it. */
    char esc[CHANNEL_UNESCAPE_CAP + 2];
    sendq_push(c, dispatch_reply_channel(w, "unsubscribe", "unsubscribed",
                                         escape_name(name, esc, sizeof(esc)), id));
}

void bc_leave_all(struct conn *c)
{
    while (c->subs) {
        struct room *r = c->subs->room;
        presence_leave(c->w, c->subs);
        room_member_del(c->subs);
        after_leave(c->w, r);
    }
}

/* ---- publish ---- */

/* Queues f on every local subscriber of r that is not waiting for its join ack or its
 * resume, in one walk of the member list: one atomic add takes a reference for every member
 * (nlocal counts the waiting ones too), each queue then owns one, and one atomic sub gives
 * back those of the members skipped. The caller still holds its own reference, so neither can
 * free f, and a push never closes or frees anything (a slow consumer is only marked). */
static void deliver_local(struct worker *w, struct room *r, struct frame *f)
{
    uint32_t total = r->nlocal, n = 0;
    if (!total)
        return;
    frame_ref(f, total);
    for (struct member *m = r->members; m; m = m->rnext) {
        if (m->pend || m->resume)
            continue;
        sendq_push(m->conn, f);
        n++;
    }
    if (n < total)
        frame_unref(f, total - n);
    w->m.deliveries += n;
    metrics_lat_mark(&w->lat, f->t0_ns);
}

/* A worker's link is full: its subscribers of this room miss the event, so it closes them. */
static void frame_dropped(struct worker *w, unsigned target)
{
    w->m.xframes_dropped++;
    atomic_fetch_or(&w->eng->workers[target]->lost_from, 1ull << w->id);
    if (w->mono_ms - w->xdrop_log_ms >= 1000) {
        log_error("worker %u is %u messages behind: broadcast frames dropped for it, its "
                  "subscribers of our rooms are closed with 1013",
                  target, XLINK_WINDOW);
        w->xdrop_log_ms = w->mono_ms;
    }
}

/* The home's event seq in room r: encoded once into one frame, kept in the history, handed to
 * every other worker with members (UD_XFRAME) and pushed to the members here. False when the
 * frame could not be allocated (nothing sent). */
static bool room_event(struct worker *w, struct room *r, struct span event, struct span payload,
                       int64_t unix_ms, uint64_t seq, int64_t t0_ns)
{
    bool remote = r->mask != 0;
    struct frame *f = frame_alloc(EVENT_OVERHEAD + event.len + r->esc_len + payload.len,
                                  remote ? r->name_len : 0);
    if (!f) {
        w->m.alloc_failures++;
        return false;
    }
    struct jw jw;
    frame_writer(f, &jw);
    env_write_event(&jw, event, room_name_escaped(r), payload, unix_ms, seq);
    frame_finish(f, WS_OP_TEXT, jw.len);
    f->t0_ns = t0_ns;
    f->seq = seq;
    history_record(w, r, f, seq);
    if (remote) {
        char *room_copy = (char *)f->data + f->len;
        memcpy(room_copy, r->name, r->name_len);
        f->room = (struct span){room_copy, r->name_len};
        f->room_hash = r->hash;
        for (uint64_t mask = r->mask; mask; mask &= mask - 1) {
            unsigned t = (unsigned)__builtin_ctzll(mask);
            frame_ref(f, 1);
            if (!worker_post_try(w, t, f, UD_XFRAME)) {
                frame_release(f);
                frame_dropped(w, t);
            }
        }
    }
    deliver_local(w, r, f);
    frame_release(f);
    history_wake(w, r);
    return true;
}

/* On the home: sequence, encode once, keep it in the history, fan out. Without history, a
 * room nobody is subscribed to does not exist: its event is sequence 1 (epoch 0) and reaches
 * nobody. With history, the publish creates the room (its history keeps it), unless
 * --max-rooms is reached and no idle room can go. *r_out is the room (still alive) or NULL.
 * Returns the subscriber count, or -1 when the frame could not be allocated. */
static int64_t home_publish(struct worker *w, struct span name, uint32_t hash, struct span event,
                            struct span payload, int64_t t0_ns, uint64_t *seq, uint64_t *epoch,
                            struct room **r_out)
{
    struct room *r = room_find(&w->rooms, hash, name.base, name.len);
    bool keep = w->cfg->history_size > 0;
    if (!r && keep && history_make_room(w))
        r = room_get(&w->rooms, hash, name.base, name.len, true, w->eng->nworkers);
    *r_out = r;
    *epoch = r ? r->epoch : 0;
    w->m.publishes++;
    if (!r || (r->nlocal == 0 && r->remote == 0 && !keep)) {
        *seq = r ? ++r->seq : 1;
        return 0;
    }
    if (!room_event(w, r, event, payload, w->now_ms, ++r->seq, t0_ns)) {
        r->seq--;
        return -1;
    }
    *seq = r->seq;
    *epoch = r->epoch; /* a new one if the event could not be kept */
    if (r->idle)       /* idle rooms go oldest-published first */
        room_idle_push(&w->rooms, r, w->mono_ms);
    return (int64_t)(r->nlocal + r->remote);
}

void bc_publish(struct conn *c, struct span name, struct span event, struct span payload,
                struct span id)
{
    struct worker *w = c->w;
    /* The escaped name is at most 6x the name; bound it by the real escaped length only when
     * the cheap bound is too big, so the common case escapes nothing here. */
    char esc[CHANNEL_UNESCAPE_CAP + 2];
    size_t room_esc = name.len * 6;
    if (EVENT_OVERHEAD + event.len + room_esc + payload.len > w->cfg->max_message_bytes)
        room_esc = escape_name(name, esc, sizeof(esc)).len;
    if (EVENT_OVERHEAD + event.len + room_esc + payload.len > w->cfg->max_message_bytes) {
        char msg[96];
        snprintf(msg, sizeof(msg), "the event would exceed %u bytes", w->cfg->max_message_bytes);
        reply_error(c, "TOO_LARGE", msg, id);
        return;
    }
    uint32_t hash = room_hash(name.base, name.len);
    unsigned home = room_home(hash, w->eng->nworkers);
    bool cluster = w->eng->cluster && !cluster_local_room(name);
    if (home == w->id && !cluster) {
        uint64_t seq, epoch;
        struct room *r;
        int64_t subs = home_publish(w, name, hash, event, payload, w->mono_ns, &seq, &epoch, &r);
        if (subs < 0) {
            reply_oom(c, id);
            if (r)
                room_maybe_free(w, r);
            return;
        }
        struct span ch = r ? room_name_escaped(r) : escape_name(name, esc, sizeof(esc));
        sendq_push(c, dispatch_reply_published(w, ch, seq, epoch, (uint64_t)subs, id));
        if (r)
            room_maybe_free(w, r);
        return;
    }
    if (cluster && !cluster_can_publish(w)) {
        reply_error(c, "UNAVAILABLE", "the cluster bus (Redis) is unavailable: retry later", id);
        return;
    }
    if (!cluster && !worker_link_open(w, home)) {
        w->m.overloaded++;
        reply_error(c, "OVERLOADED", "the room's worker is overloaded: retry later", id);
        return;
    }
    /* The reply's place in c's queue is taken now; the home's ack fills it in. */
    struct span ch = escape_name(name, esc, sizeof(esc));
    struct frame *reply = frame_alloc(dispatch_published_cap(ch.len, id.len), 0);
    struct xmsg *m = xmsg_new(w, XM_PUBLISH, name, event.len + payload.len + id.len);
    if (!reply || !m) {
        if (reply)
            frame_release(reply);
        free(m);
        reply_oom(c, id);
        return;
    }
    frame_ref(reply, 1); /* the message's */
    uint64_t pos = sendq_push_held(c, reply);
    if (pos == UINT64_MAX) { /* c is closing: its publish goes nowhere */
        frame_release(reply);
        free(m);
        return;
    }
    m->reply = reply;
    m->reply_pos = pos;
    m->room_hash = hash;
    m->slot = c->slot;
    m->serial = c->serial;
    m->event_len = (uint32_t)event.len;
    m->payload_len = (uint32_t)payload.len;
    m->id_len = (uint32_t)id.len;
    m->t0_ns = w->mono_ns;
    char *p = m->data + name.len;
    memcpy(p, event.base, event.len);
    if (payload.len) /* a publish without a payload has a NULL span too */
        memcpy(p + event.len, payload.base, payload.len);
    if (id.len) /* a publish without an id has a NULL span: memcpy(NULL, 0) is UB */
        memcpy(p + event.len + payload.len, id.base, id.len);
    if (cluster) {
        cluster_submit(w, m);
    } else {
        presence_flush_to(w, home); /* our members' joins before what they publish */
        post_xmsg(w, home, m);
    }
}

/* ---- cluster mode (cluster.h) ---- */

bool bc_home_deliver(struct worker *w, struct room *r, struct span event, struct span payload,
                     int64_t unix_ms, uint64_t seq)
{
    r->seq = seq; /* Redis gave it: a frame that could not be made is a gap subscribers see */
    return room_event(w, r, event, payload, unix_ms, seq, 0);
}

void bc_room_lost(struct worker *w, struct room *r, const char *why)
{
    for (struct member *m = r->members; m; m = m->rnext)
        conn_close(m->conn, WS_CLOSE_TRY_AGAIN, why);
    if (!r->is_home)
        return;
    for (uint64_t mask = r->mask; mask; mask &= mask - 1) {
        struct xmsg *x = xmsg_new(w, XM_CL_LOST, room_name(r), 0);
        if (!x) {
            w->m.alloc_failures++;
            continue;
        }
        x->room_hash = r->hash;
        post_xmsg(w, (unsigned)__builtin_ctzll(mask), x);
    }
}

/* ---- HTTP API publishes ---- */

bool bc_event_fits(struct worker *w, struct span name, struct span event, struct span payload)
{
    char esc[CHANNEL_UNESCAPE_CAP + 2];
    size_t room_esc = name.len * 6;
    if (EVENT_OVERHEAD + event.len + room_esc + payload.len > w->cfg->max_message_bytes)
        room_esc = escape_name(name, esc, sizeof(esc)).len;
    return EVENT_OVERHEAD + event.len + room_esc + payload.len <= w->cfg->max_message_bytes;
}

enum bc_http_res bc_publish_http(struct worker *w, struct span name, struct span event,
                                 struct span payload, void *ctx, uint32_t idx, uint64_t *seq,
                                 uint64_t *epoch, uint64_t *subscribers)
{
    uint32_t hash = room_hash(name.base, name.len);
    unsigned home = room_home(hash, w->eng->nworkers);
    bool cluster = w->eng->cluster && !cluster_local_room(name);
    if (cluster && !cluster_can_publish(w))
        return BC_HTTP_UNAVAILABLE;
    if (home == w->id && !cluster) {
        struct room *r;
        int64_t subs = home_publish(w, name, hash, event, payload, w->mono_ns, seq, epoch, &r);
        if (r)
            room_maybe_free(w, r);
        if (subs < 0)
            return BC_HTTP_NOMEM;
        *subscribers = (uint64_t)subs;
        return BC_HTTP_DONE;
    }
    if (!cluster && !worker_link_open(w, home)) {
        w->m.overloaded++;
        return BC_HTTP_OVERLOADED;
    }
    struct xmsg *m = xmsg_new(w, XM_PUBLISH, name, event.len + payload.len);
    if (!m) {
        w->m.alloc_failures++;
        return BC_HTTP_NOMEM;
    }
    m->http = true;
    m->ctx = ctx;
    m->count = idx;
    m->room_hash = hash;
    m->event_len = (uint32_t)event.len;
    m->payload_len = (uint32_t)payload.len;
    m->t0_ns = w->mono_ns;
    char *p = m->data + name.len;
    memcpy(p, event.base, event.len);
    if (payload.len) /* SPAN_NULL (no data) has no bytes to copy */
        memcpy(p + event.len, payload.base, payload.len);
    if (cluster)
        cluster_submit(w, m);
    else
        post_xmsg(w, home, m);
    return BC_HTTP_SENT;
}

/* ---- cross-worker messages ---- */

static void on_count(struct worker *w, struct xmsg *m)
{
    struct room *r = room_find(&w->rooms, m->room_hash, m->data, m->room_len);
    if (!r && m->count)
        r = room_get(&w->rooms, m->room_hash, m->data, m->room_len, true, w->eng->nworkers);
    if (r) {
        if (m->count)
            room_idle_del(&w->rooms, r);
        m->epoch = r->epoch;
        m->seq = r->seq; /* with the mask below: the joiner takes every event after seq */
        r->remote = r->remote - r->wcount[m->from] + m->count;
        r->wcount[m->from] = m->count;
        if (m->count)
            r->mask |= 1ull << m->from;
        else
            r->mask &= ~(1ull << m->from);
        if (w->eng->cluster && m->want_ack && cluster_home_defer(w, r, m))
            return; /* acked once the bus has synced the room */
    } else if (m->count) {
        w->m.alloc_failures++;
        m->err = true; /* the join cannot be recorded: its subscribers are told */
    }
    if (!m->want_ack) {
        free(m);
        if (r)
            room_maybe_free(w, r);
        return;
    }
    /* The mask is updated before the ack leaves: every event sequenced from now on is sent
     * to m->from, and reaches it after this ack. */
    m->type = XM_JOIN_ACK;
    unsigned to = m->from;
    m->from = (uint8_t)w->id;
    post_xmsg(w, to, m);
    if (r)
        room_maybe_free(w, r);
}

static void on_join_ack(struct worker *w, struct xmsg *m)
{
    struct room *r = room_find(&w->rooms, m->room_hash, m->data, m->room_len);
    bool err = m->err, unavail = m->unavail;
    uint64_t epoch = m->epoch, seq = m->seq;
    free(m);
    if (!r || r->join != ROOM_JOIN_PENDING)
        return;
    if (err) {
        /* The home could not take the join: its waiting subscribers are closed (1011), or told
         * UNAVAILABLE when it was the cluster bus that could not (cluster.h). */
        r->join = ROOM_JOIN_NONE;
        r->sent_count = 0;
        if (unavail) {
            cluster_join_refused(w, r);
            return;
        }
        for (struct member *mb = r->members; mb; mb = mb->rnext)
            conn_close(mb->conn, WS_CLOSE_INTERNAL, "server out of memory");
        return;
    }
    r->join = ROOM_JOIN_DONE;
    r->epoch = epoch;
    r->seq = seq; /* events after it follow the ack on this link (bc_on_xframe keeps it) */
    /* Resuming members wait for their own answer, which follows on this link. */
    for (struct member *mb = r->members; mb; mb = mb->rnext)
        if (!mb->resume)
            release_member(w, mb, epoch, seq, false);
    /* Members that came or went while the join was pending. */
    if (r->nlocal != r->sent_count)
        count_changed(w, r);
    room_maybe_free(w, r);
}

static void on_publish(struct worker *w, struct xmsg *m)
{
    struct span name = xmsg_room(m);
    const char *p = m->data + m->room_len;
    struct span event = {p, m->event_len};
    struct span payload = {p + m->event_len, m->payload_len};
    struct room *r;
    int64_t subs =
        home_publish(w, name, m->room_hash, event, payload, m->t0_ns, &m->seq, &m->epoch, &r);
    m->err = subs < 0;
    m->subscribers = subs < 0 ? 0 : (uint64_t)subs;
    m->type = XM_PUB_ACK;
    unsigned to = m->from;
    m->from = (uint8_t)w->id;
    post_xmsg(w, to, m);
    if (r)
        room_maybe_free(w, r);
}

static void on_pub_ack(struct worker *w, struct xmsg *m)
{
    if (m->http) {
        http_api_pub_ack(w, m->ctx, m->count, m->seq, m->epoch, m->subscribers,
                         m->unavail ? HTTP_PUB_UNAVAILABLE : m->err);
        free(m);
        return;
    }
    struct conn *c = worker_conn_lookup(w, m->slot, m->serial);
    if (c) {
        char esc[CHANNEL_UNESCAPE_CAP + 2];
        struct span id = {m->data + m->room_len + m->event_len + m->payload_len, m->id_len};
        if (m->unavail)
            dispatch_write_error(w, m->reply, "UNAVAILABLE",
                                 "the cluster bus (Redis) is unavailable: retry later", id);
        else if (m->err)
            dispatch_write_error(w, m->reply, "OVERLOADED", "server out of memory: retry later",
                                 id);
        else
            dispatch_write_published(w, m->reply, escape_name(xmsg_room(m), esc, sizeof(esc)),
                                     m->seq, m->epoch, m->subscribers, id);
        sendq_release_held(c, m->reply_pos, m->reply);
    }
    frame_release(m->reply);
    free(m);
}

/* On the home: a member elsewhere resumes after since in epoch. Its join (if any) came first
 * on this link, so the room knows the member's worker: every event sequenced after this
 * answer reaches that worker after it, and every event up to r->seq is in the replay. */
static void on_resume(struct worker *w, struct xmsg *m)
{
    struct room *r = room_find(&w->rooms, m->room_hash, m->data, m->room_len);
    if (w->eng->cluster && r && cluster_home_defer(w, r, m))
        return; /* answered once the bus has synced the room */
    uint32_t first = 0, n = 0;
    uint64_t last = 0;
    bool ok = history_since(w, r, m->epoch != 0, m->epoch, m->since, w->cfg->max_queue_bytes / 2,
                            &first, &n, &last) &&
              last == (r ? r->seq : 0);
    if (!ok)
        n = 0;
    w->m.resumes++;
    w->m.resumes_lost += !ok;
    struct xmsg *a = bc_xmsg_new(w, XM_RESUME_ACK, xmsg_room(m), n, 0);
    if (!a) {
        w->m.alloc_failures++;
        a = m;
        a->err = true;
        a->nframes = 0;
        m = NULL;
    } else {
        a->slot = m->slot;
        a->serial = m->serial;
        a->token = m->token;
        a->room_hash = m->room_hash;
        struct frame **fs = bc_xmsg_frames(a);
        for (uint32_t i = 0; i < n; i++) {
            fs[i] = history_at(r, first + i)->f;
            frame_ref(fs[i], 1);
        }
        w->m.replayed += n;
    }
    a->type = XM_RESUME_ACK;
    a->recovered = ok;
    a->epoch = r ? r->epoch : 0;
    a->seq = r ? r->seq : 0; /* the replay ends at it; live events follow it */
    unsigned to = m ? m->from : a->from;
    free(m);
    a->from = (uint8_t)w->id;
    post_xmsg(w, to, a);
}

/* On the member's worker: the replay goes behind the held "subscribed" (already in the
 * queue), then the member takes live events: those sequenced after the home's answer, which
 * arrive after it. */
static void on_resume_ack(struct worker *w, struct xmsg *m)
{
    struct conn *c = worker_conn_lookup(w, m->slot, m->serial);
    struct room *r = c ? room_find(&w->rooms, m->room_hash, m->data, m->room_len) : NULL;
    struct member *mb = r ? room_member_of(c, r) : NULL;
    struct frame **fs = bc_xmsg_frames(m);
    uint32_t i = 0;
    if (mb && mb->resume == m->token) {
        if (m->err) {
            conn_close(c, WS_CLOSE_INTERNAL, "server out of memory");
        } else {
            mb->resume = 0;
            r->epoch = m->epoch;
            r->seq = m->seq;
            for (; i < m->nframes; i++)
                sendq_push(c, fs[i]); /* takes over the message's reference */
            release_member(w, mb, m->epoch, m->seq, m->recovered);
        }
    }
    for (; i < m->nframes; i++)
        frame_release(fs[i]);
    free(m);
}

void bc_discard_xmsg(struct xmsg *m)
{
    if (m->type >= XM_PRES_RECORDS && m->type <= XM_PRES_GATHER_ACK) {
        presence_discard_xmsg(m);
        return;
    }
    if (m->reply)
        frame_release(m->reply);
    if (m->type == XM_RESUME_ACK || m->type == XM_POLL_ACK) {
        struct frame **fs = bc_xmsg_frames(m);
        for (uint32_t i = 0; i < m->nframes; i++)
            frame_release(fs[i]);
    }
    free(m);
}

void bc_on_xmsg(struct worker *w, struct xmsg *m)
{
    switch (m->type) {
    case XM_COUNT: on_count(w, m); break;
    case XM_JOIN_ACK: on_join_ack(w, m); break;
    case XM_PUBLISH: on_publish(w, m); break;
    case XM_PUB_ACK: on_pub_ack(w, m); break;
    case XM_STATS:
    case XM_STATS_ACK: http_api_on_xmsg(w, m); break;
    case XM_RESUME: on_resume(w, m); break;
    case XM_RESUME_ACK: on_resume_ack(w, m); break;
    case XM_POLL: history_on_poll(w, m); break;
    case XM_POLL_ACK: http_api_poll_ack(w, m); break;
    case XM_CL_EVENT:
    case XM_CL_SYNC:
    case XM_CL_LOST:
    case XM_CL_DOWN: cluster_on_xmsg(w, m); break;
    case XM_PRES_RECORDS:
    case XM_PRES_EVENT:
    case XM_PRES_GATHER:
    case XM_PRES_GATHER_ACK: presence_on_xmsg(w, m); break;
    default: bc_discard_xmsg(m); break;
    }
}

void bc_on_xframe(struct worker *w, struct frame *f)
{
    struct room *r = room_find(&w->rooms, f->room_hash, f->room.base, f->room.len);
    if (r) {
        if (!r->is_home)
            r->seq = f->seq; /* the home's links keep order: the last event sent here */
        deliver_local(w, r, f);
        room_maybe_free(w, r);
    }
    frame_release(f); /* the reference the home gave this worker */
}

void bc_close_lost(struct worker *w, uint64_t mask)
{
    unsigned closed = 0;
    for (unsigned b = 0; b < w->rooms.nbuckets; b++)
        for (struct room *r = w->rooms.buckets[b]; r; r = r->hnext) {
            if (r->is_home || !((mask >> room_home(r->hash, w->eng->nworkers)) & 1))
                continue;
            for (struct member *m = r->members; m; m = m->rnext, closed++)
                conn_close(m->conn, WS_CLOSE_TRY_AGAIN, "events lost: a worker fell behind");
        }
    log_error("events from workers 0x%llx were dropped for us: %u subscriptions closed (1013)",
              (unsigned long long)mask, closed);
}
