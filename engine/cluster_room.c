/* cluster_room.c - the worker side of the cluster bus (cluster.h): a room's home on this node
 * follows the room in Redis.
 *
 * States of a home room (r->cl_state):
 *   0  not on the bus: no subscriber on this node, no history kept here (Redis keeps it).
 *   1  subscribing: the bus was asked to SUBSCRIBE and read the room (generation r->cl_gen);
 *      subscribes, join acks and resumes wait on r->cl_wait; events from the bus are dropped
 *      (the SYNC that follows covers them: the bus subscribes before it reads the room, and
 *      holds the events that arrive meanwhile until the SYNC is posted).
 *   2  synced: r->epoch and r->seq are Redis's, r->hist holds the stream's last events; each
 *      event from the bus is encoded once and delivered as in single-node mode.
 * The last subscriber leaving (node-wide: local and on other workers) unsubscribes and drops
 * the history; the room is then freed as usual.
 *
 * An epoch that changes under a synced room (Redis lost the room: restarted without
 * persistence, evicted it) or a gap that cannot be filled from the stream closes the room's
 * subscribers on this node with 1013: they resubscribe with since/epoch and are told
 * "recovered":false, the signal that history was lost.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broadcast.h"
#include "cluster.h"
#include "conn.h"
#include "dispatch.h"
#include "frame.h"
#include "history.h"
#include "log.h"
#include "proto/envelope.h"
#include "proto/ws_frame.h"
#include "room.h"
#include "sendq.h"
#include "worker.h"

enum { CL_NONE = 0, CL_SUBSCRIBING = 1, CL_SYNCED = 2 };

/* A bus message: "EPOCH\nSEQ\nUNIX_MS\nEVENT\nDATA" (EVENT is JSON string contents, so it has
 * no raw newline; DATA is the raw JSON value, possibly empty). */
static bool parse_event(const char *p, size_t n, uint64_t *epoch, uint64_t *seq, int64_t *ms,
                        struct span *event, struct span *payload)
{
    const char *end = p + n, *f[4];
    size_t len[4];
    for (int i = 0; i < 4; i++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            return false;
        f[i] = p;
        len[i] = (size_t)(nl - p);
        p = nl + 1;
    }
    if (!history_epoch_parse((struct span){f[0], len[0]}, epoch))
        return false;
    char num[24];
    if (len[1] == 0 || len[1] >= sizeof(num) || len[2] >= sizeof(num))
        return false;
    memcpy(num, f[1], len[1]);
    num[len[1]] = 0;
    *seq = strtoull(num, NULL, 10);
    memcpy(num, f[2], len[2]);
    num[len[2]] = 0;
    *ms = strtoll(num, NULL, 10);
    *event = (struct span){f[3], len[3]};
    *payload = (struct span){p, (size_t)(end - p)};
    return *seq > 0;
}

/* ---- subscribing ---- */

static void ask_bus(struct worker *w, struct room *r, enum xmsg_type type)
{
    struct xmsg *m = bc_xmsg_new(w, type, room_name(r), 0, 0);
    if (!m) {
        /* Nothing to do but try again on the next change: the subscribers wait (SUB) or the
         * node stays subscribed a while longer (UNSUB, harmless: events are dropped). */
        w->m.alloc_failures++;
        log_error("cluster: out of memory asking the bus to %s a room",
                  type == XM_CL_SUB ? "subscribe" : "unsubscribe");
        return;
    }
    m->room_hash = r->hash;
    m->token = r->cl_gen;
    cluster_submit(w, m);
}

static uint32_t gen_counter(struct worker *w)
{
    static _Thread_local uint32_t gen;
    (void)w;
    return ++gen;
}

/* Asks the bus for the room: SUBSCRIBE, then a SYNC. */
static void want(struct worker *w, struct room *r)
{
    if (r->cl_state != CL_NONE)
        return;
    r->cl_state = CL_SUBSCRIBING;
    r->cl_gen = gen_counter(w);
    ask_bus(w, r, XM_CL_SUB);
}

void cluster_home_check(struct worker *w, struct room *r)
{
    if (cluster_local_room(room_name(r)))
        return;
    if (r->nlocal || r->remote || r->cl_wait || r->has_waiters || r->cl_hold) {
        want(w, r); /* subscribers, or polls (waiting for the sync, or parked) */
        return;
    }
    if (r->cl_state == CL_NONE)
        return;
    /* Nobody left here: leave the channel; the history is Redis's and would go stale. */
    ask_bus(w, r, XM_CL_UNSUB);
    r->cl_state = CL_NONE;
    cluster_room_free(r);
    history_free(r->hist);
    r->hist = NULL;
    room_idle_del(&w->rooms, r);
}

/* r->cl_wait is kept newest first (a push is O(1)); whoever takes the list reverses it, so
 * waiters are answered in arrival order (a connection's replies stay in request order). */
static void wait_push(struct room *r, struct xmsg *m)
{
    m->next = r->cl_wait;
    r->cl_wait = m;
}

static struct xmsg *wait_take(struct room *r)
{
    struct xmsg *m = r->cl_wait, *in_order = NULL;
    r->cl_wait = NULL;
    while (m) {
        struct xmsg *next = m->next;
        m->next = in_order;
        in_order = m;
        m = next;
    }
    return in_order;
}

static bool bus_up(void)
{
    return atomic_load_explicit(&cluster_stats.state, memory_order_relaxed) == CLUSTER_UP;
}

static const char UNAVAILABLE_MSG[] = "the cluster bus (Redis) is unavailable: retry later";

bool cluster_home_subscribe(struct conn *c, struct room *r, struct member *m, struct frame *reply,
                            const struct bc_sub_opts *o, struct span id)
{
    struct worker *w = c->w;
    if (cluster_local_room(room_name(r)) || r->cl_state == CL_SYNCED)
        return false;
    if (!bus_up() && !r->cl_wait) {
        /* Nothing to follow the room with: say so rather than leave the client waiting. (If
         * others already wait for the room, this one waits with them.) */
        frame_release(reply);
        room_member_del(m);
        sendq_push(c, dispatch_reply_error(w, "UNAVAILABLE", UNAVAILABLE_MSG, id));
        bc_room_release(w, r);
        return true;
    }
    struct xmsg *x = bc_xmsg_new(w, XM_RESUME, room_name(r), 0, 0);
    m->resume = ++w->resume_token; /* no live event before its answer */
    if (!x) {
        frame_release(reply);
        w->m.alloc_failures++;
        conn_close(c, WS_CLOSE_INTERNAL, "server out of memory");
    }
    if (!x || !bc_hold_reply(c, m, reply, id, o->has_since)) { /* no memory, or c is closing */
        free(x);
        room_member_del(m);
        bc_room_release(w, r);
        return true;
    }
    x->room_hash = r->hash;
    x->slot = c->slot;
    x->serial = c->serial;
    x->token = m->resume;
    x->want_ack = o->has_since; /* local: "asked to resume" */
    x->since = o->since;
    x->epoch = o->has_epoch ? o->epoch : 0;
    wait_push(r, x);
    want(w, r);
    return true;
}

/* A join (XM_COUNT) from another worker, undone and refused while the bus is down: its
 * subscribers get UNAVAILABLE. */
static void refuse_join(struct worker *w, struct room *r, struct xmsg *m)
{
    r->remote -= r->wcount[m->from];
    r->wcount[m->from] = 0;
    r->mask &= ~(1ull << m->from);
    m->err = m->unavail = true;
    m->type = XM_JOIN_ACK;
    unsigned to = m->from;
    m->from = (uint8_t)w->id;
    bc_post(w, to, m);
}

bool cluster_home_defer(struct worker *w, struct room *r, struct xmsg *m)
{
    if (cluster_local_room(room_name(r)) || r->cl_state == CL_SYNCED)
        return false;
    if (!bus_up() && !r->cl_wait) {
        if (m->type != XM_COUNT)
            return false; /* a resume whose join is refused below: its answer finds nobody */
        refuse_join(w, r, m);
        bc_room_release(w, r);
        return true;
    }
    wait_push(r, m);
    want(w, r);
    return true;
}

bool cluster_home_poll(struct worker *w, struct xmsg *m)
{
    struct span name = {m->data, m->room_len};
    if (cluster_local_room(name))
        return false;
    struct room *r = room_find(&w->rooms, m->room_hash, name.base, name.len);
    if (r && r->cl_state == CL_SYNCED)
        return false;
    if (!bus_up() && !(r && r->cl_wait))
        return false; /* answered from what this node has: nothing, "recovered":false */
    if (!r && !(history_make_room(w) && (r = room_get(&w->rooms, m->room_hash, name.base, name.len,
                                                      true, w->eng->nworkers))))
        return false; /* at max-rooms, or no memory: answered as a room this node lacks */
    room_idle_del(&w->rooms, r);
    wait_push(r, m);
    want(w, r);
    return true;
}

void cluster_room_free(struct room *r)
{
    while (r->cl_wait) {
        struct xmsg *m = r->cl_wait;
        r->cl_wait = m->next;
        bc_discard_xmsg(m);
    }
}

/* A subscribe on this worker that waited for the SYNC: the same answer subscribe_home gives. */
static void local_answer(struct worker *w, struct room *r, struct xmsg *x)
{
    struct conn *c = worker_conn_lookup(w, x->slot, x->serial);
    struct member *mb = c ? room_member_of(c, r) : NULL;
    if (!mb || mb->resume != x->token) {
        free(x);
        return;
    }
    uint32_t first = 0, n = 0;
    uint64_t last = 0;
    bool rec = false;
    if (x->want_ack) {
        bool ok = history_since(w, r, x->epoch != 0, x->epoch, x->since,
                                w->cfg->max_queue_bytes / 2, &first, &n, &last);
        rec = ok && last == r->seq;
        if (!rec)
            n = 0;
        w->m.resumes++;
        w->m.resumes_lost += !rec;
    }
    mb->resume = 0;
    /* The replay goes behind the held "subscribed" (already queued), like a remote resume. */
    for (uint32_t i = 0; i < n; i++) {
        struct frame *f = history_at(r, first + i)->f;
        frame_ref(f, 1);
        sendq_push(c, f);
    }
    w->m.replayed += n;
    bc_release_member(w, mb, r->epoch, r->seq, rec);
    free(x);
}

/* The room is synced: what waited is answered, in arrival order. */
static void run_waiting(struct worker *w, struct room *r)
{
    struct xmsg *m = wait_take(r);
    while (m) {
        struct xmsg *next = m->next;
        m->next = NULL;
        if (m->type == XM_COUNT) {
            /* Its count is applied already: only the ack was waiting. */
            m->type = XM_JOIN_ACK;
            m->epoch = r->epoch;
            m->seq = r->seq;
            unsigned to = m->from;
            m->from = (uint8_t)w->id;
            bc_post(w, to, m);
        } else if (m->type == XM_RESUME && m->from == w->id) {
            local_answer(w, r, m);
        } else {
            bc_on_xmsg(w, m); /* a resume from another worker, a poll: the room is synced */
        }
        m = next;
    }
}

/* The bus went down while r waited for its SYNC: a local subscribe that waited is answered
 * UNAVAILABLE, like one that comes while the bus is down, and leaves. */
static void local_refuse(struct worker *w, struct room *r, struct xmsg *x)
{
    struct conn *c = worker_conn_lookup(w, x->slot, x->serial);
    struct member *mb = c ? room_member_of(c, r) : NULL;
    if (mb && mb->resume == x->token) {
        for (struct pend *p = mb->pend; p; p = p->next)
            dispatch_write_error(w, p->f, "UNAVAILABLE", UNAVAILABLE_MSG,
                                 (struct span){p->id, p->id_len});
        room_member_del(mb); /* sends the rewritten replies */
    }
    free(x);
}

/* r (home, subscribing) will get no SYNC from this bus connection: what waits for it is
 * answered as when the bus is down, and the room leaves the bus, so that the next subscribe
 * (after Redis is back) asks for a fresh sync. Resumes from other workers and polls go on
 * *later (answered after the walk: they may release rooms). May free r. */
static void fail_waiting(struct worker *w, struct room *r, struct xmsg ***later)
{
    struct xmsg *m = wait_take(r);
    ask_bus(w, r, XM_CL_UNSUB); /* its sync, if one is still coming, is not wanted */
    r->cl_state = CL_NONE;
    while (m) {
        struct xmsg *next = m->next;
        m->next = NULL;
        if (m->type == XM_COUNT) {
            refuse_join(w, r, m);
        } else if (m->type == XM_RESUME && m->from == w->id) {
            local_refuse(w, r, m);
        } else {
            **later = m;
            *later = &m->next;
        }
        m = next;
    }
    bc_room_release(w, r);
}

void cluster_on_down(struct worker *w)
{
    struct xmsg *later = NULL, **tail = &later;
    for (unsigned b = 0; b < w->rooms.nbuckets; b++) {
        struct room *next;
        for (struct room *r = w->rooms.buckets[b]; r; r = next) {
            next = r->hnext; /* fail_waiting frees r at most */
            if (r->is_home && r->cl_state == CL_SUBSCRIBING)
                fail_waiting(w, r, &tail);
        }
    }
    while (later) {
        struct xmsg *m = later;
        later = m->next;
        m->next = NULL;
        bc_on_xmsg(w, m); /* the room is not subscribing now: answered as while the bus is down */
    }
}

void cluster_join_refused(struct worker *w, struct room *r)
{
    struct member *next;
    for (struct member *mb = r->members; mb; mb = next) {
        next = mb->rnext;
        for (struct pend *p = mb->pend; p; p = p->next)
            dispatch_write_error(w, p->f, "UNAVAILABLE", UNAVAILABLE_MSG,
                                 (struct span){p->id, p->id_len});
        room_member_del(mb); /* sends the rewritten replies */
    }
    bc_room_release(w, r);
}

/* ---- from the bus ---- */

/* History lost under the room: its subscribers here resubscribe (and learn it). */
static void lost(struct worker *w, struct room *r, uint64_t epoch, uint64_t seq)
{
    log_warn("cluster: room '%.*s' lost its history in Redis (epoch %016llx seq %llu -> %016llx "
             "seq %llu): closing its %u+%llu subscribers here (1013)",
             (int)r->name_len, r->name, (unsigned long long)r->epoch, (unsigned long long)r->seq,
             (unsigned long long)epoch, (unsigned long long)seq, r->nlocal,
             (unsigned long long)r->remote);
    atomic_fetch_add_explicit(&cluster_stats.resyncs_lost, 1, memory_order_relaxed);
    bc_room_lost(w, r, "room history lost (cluster bus): resubscribe");
    history_free(r->hist);
    r->hist = NULL;
    r->epoch = epoch;
    r->seq = seq;
}

static void on_event(struct worker *w, struct xmsg *m)
{
    struct room *r = room_find(&w->rooms, m->room_hash, m->data, m->room_len);
    uint64_t epoch, seq;
    int64_t ms;
    struct span event, payload;
    if (!r || !r->is_home || r->cl_state != CL_SYNCED) {
        free(m); /* not ours (any more), or its SYNC will cover it */
        return;
    }
    if (!parse_event(m->data + m->room_len, m->event_len, &epoch, &seq, &ms, &event, &payload)) {
        log_error("cluster: malformed event on room '%.*s' ignored", (int)r->name_len, r->name);
        free(m);
        return;
    }
    if (epoch != r->epoch || seq > r->seq + 1) {
        /* A new epoch (Redis lost the room) or a gap: nobody here can be told what was lost
         * but by closing them; the event itself starts the new stretch of history. */
        lost(w, r, epoch, seq - 1);
    }
    if (seq == r->seq + 1)
        bc_home_deliver(w, r, event, payload, ms, seq);
    /* seq <= r->seq: delivered already (a SYNC's entry): once only. */
    free(m);
    bc_room_release(w, r);
}

/* SYNC: epoch, seq and up to history-size last events, oldest first, each a u32 length and the
 * bus message, after the room name. */
static void on_sync(struct worker *w, struct xmsg *m)
{
    struct room *r = room_find(&w->rooms, m->room_hash, m->data, m->room_len);
    if (!r || !r->is_home || r->cl_state == CL_NONE || r->cl_gen != (uint32_t)m->token) {
        free(m); /* asked by a generation that has left since */
        return;
    }
    const char *base = m->data + m->room_len, *end = base + m->event_len;
    bool rebuild = r->cl_state == CL_SUBSCRIBING, first = rebuild;
    if (first) {
        history_free(r->hist);
        r->hist = NULL;
        r->epoch = m->epoch;
        r->seq = m->seq;
    } else if (m->epoch != r->epoch || m->seq < r->seq) {
        lost(w, r, m->epoch, m->seq);
        rebuild = true;
    } else if (m->seq > r->seq) {
        /* A resync after a reconnect: the events this node missed, if the stream still has
         * them all (its oldest entry is at most the next one we need). */
        uint64_t oldest = 0, ep;
        int64_t ms;
        struct span ev, pl;
        uint32_t len;
        if (m->count && base + 4 <= end) {
            memcpy(&len, base, 4);
            if (len <= (size_t)(end - base - 4) &&
                !parse_event(base + 4, len, &ep, &oldest, &ms, &ev, &pl))
                oldest = 0;
        }
        if (!oldest || oldest > r->seq + 1) {
            lost(w, r, m->epoch, m->seq);
            rebuild = true;
        }
    }
    const char *p = base;
    for (uint32_t i = 0; i < m->count && p + 4 <= end; i++) {
        uint32_t len;
        memcpy(&len, p, 4);
        p += 4;
        uint64_t ep, seq;
        int64_t ms;
        struct span event, payload;
        if (len > (size_t)(end - p))
            break;
        if (parse_event(p, len, &ep, &seq, &ms, &event, &payload) && ep == r->epoch) {
            if (rebuild) {
                /* The history, encoded once like a live event, delivered to nobody. */
                struct frame *f = frame_alloc(256 + event.len + r->esc_len + payload.len, 0);
                if (f) {
                    struct jw jw;
                    frame_writer(f, &jw);
                    env_write_event(&jw, event, room_name_escaped(r), payload, ms, seq);
                    frame_finish(f, WS_OP_TEXT, jw.len);
                    history_record(w, r, f, seq);
                    frame_release(f);
                }
            } else if (seq == r->seq + 1) {
                bc_home_deliver(w, r, event, payload, ms, seq);
            }
        }
        p += len;
    }
    r->seq = m->seq;
    atomic_fetch_add_explicit(&cluster_stats.syncs, 1, memory_order_relaxed);
    free(m);
    if (first) {
        r->cl_state = CL_SYNCED;
        r->cl_hold = true; /* answering a poll may release r: not before the last answer */
        run_waiting(w, r);
        r->cl_hold = false;
    }
    bc_room_release(w, r);
}

void cluster_on_xmsg(struct worker *w, struct xmsg *m)
{
    switch (m->type) {
    case XM_CL_EVENT: on_event(w, m); break;
    case XM_CL_SYNC: on_sync(w, m); break;
    case XM_CL_DOWN:
        free(m);
        cluster_on_down(w);
        break;
    case XM_CL_LOST: {
        struct room *r = room_find(&w->rooms, m->room_hash, m->data, m->room_len);
        if (r && !r->is_home)
            bc_room_lost(w, r, "room history lost (cluster bus): resubscribe");
        free(m);
        break;
    }
    default: bc_discard_xmsg(m); break;
    }
}
