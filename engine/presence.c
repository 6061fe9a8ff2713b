/* presence.c - presence lists (gathered) and join/leave events (sequenced by the home); see
 * presence.h. */
#include "presence.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "broadcast.h"
#include "conn.h"
#include "dispatch.h"
#include "frame.h"
#include "http_api.h"
#include "log.h"
#include "proto/channel.h"
#include "proto/envelope.h"
#include "proto/http.h"
#include "proto/ws_frame.h"
#include "room.h"
#include "sendq.h"
#include "worker.h"

#define JSON_TYPE "application/json"

enum { REC_JOIN = 1, REC_LEAVE = 2, REC_OPT = 3 };

/* A record's fixed part; the room name and the user follow it. */
struct rec {
    uint8_t kind;
    uint8_t user_len;
    uint16_t room_len;
    uint32_t room_hash;
    uint32_t nopt;   /* the sender's opted-in members of the room, after this change */
    uint32_t nlocal; /* the sender's members of the room, after this change */
    uint32_t pad;
    uint64_t serial;
};

/* The room's presence state: on every worker the local members that opted in; on the home
 * also each other worker's numbers of members and opted-in members, as their records say
 * (independent of the subscriber counts, which may reach the home later). Allocated on first
 * use: one per room with opted-in members or members elsewhere. */
struct presence_room {
    uint32_t nopt;
    uint32_t total;   /* home: opted-in members on all workers */
    uint64_t nremote; /* home: members on other workers */
    uint32_t w[];     /* home: [2i] worker i's members, [2i+1] its opted-in ones */
};

struct outbox {
    char *buf;
    uint32_t len, cap, nrec;
};

struct pres_entry {
    uint64_t serial;
    uint8_t worker, user_len;
    char user[128];
};

/* A presence request waiting for other workers' parts. Owned by the asking worker. */
struct pres_job {
    struct pres_job *next, *prev;
    bool http, keep_alive, err, exists;
    unsigned waiting;
    uint32_t slot;
    uint64_t serial;
    struct frame *held; /* our reference to the held placeholder */
    uint64_t pos;
    uint64_t count;
    uint32_t n, cap; /* entries kept: at most presence-max + 1 */
    struct pres_entry *e;
    uint16_t name_len, id_len;
    char name[CHANNEL_MAX_LEN];
    char id[]; /* the request's correlation id (escaped, as it came) */
};

struct presence_state {
    struct outbox *out; /* per home worker */
    struct pres_job *jobs;
    unsigned njobs;
};

static struct presence_state *state(struct worker *w)
{
    if (!w->pres) {
        struct presence_state *s = calloc(1, sizeof(*s));
        if (!s)
            return NULL;
        if (!(s->out = calloc(w->eng->nworkers, sizeof(*s->out)))) {
            free(s);
            return NULL;
        }
        w->pres = s;
    }
    return w->pres;
}

static struct presence_room *proom(struct worker *w, struct room *r)
{
    if (!r->pres)
        r->pres = calloc(1, sizeof(*r->pres) + 2 * w->eng->nworkers * sizeof(uint32_t));
    return r->pres;
}

static bool opted(const struct worker *w, const struct member *m)
{
    return m->presence || w->cfg->presence_events;
}

static struct span user_of(const struct conn *c)
{
    return c->grant ? auth_grant_sub(c->grant) : (struct span){NULL, 0};
}

/* ---- events, on the home ---- */

/* Queues f on r's local members that opted in and take live events (skip: one leaving). */
static void deliver(struct worker *w, struct room *r, struct frame *f, const struct member *skip)
{
    for (struct member *m = r->members; m; m = m->rnext)
        if (m != skip && !m->pend && !m->resume && opted(w, m)) {
            frame_ref(f, 1);
            sendq_push(m->conn, f);
            w->m.presence_events++;
        }
}

/* The home announces a join or leave of member (worker, serial, user) of r, to the members that
 * opted in, while r has at most presence-max members. size: r's members after the change. */
static void emit(struct worker *w, struct room *r, int kind, unsigned worker, uint64_t serial,
                 struct span user, uint64_t size, const struct member *skip)
{
    uint32_t total = r->pres ? r->pres->total : 0;
    if (size > w->cfg->presence_max || (!w->cfg->presence_events && total == 0))
        return;
    if (!r->nlocal && !r->mask)
        return;
    char data[CHANNEL_MAX_LEN * 6 + 128 * 6 + 128];
    struct jw jw;
    jw_init(&jw, data, sizeof(data));
    jw_lit(&jw, "{\"channel\":\"");
    jw_span(&jw, room_name_escaped(r));
    char id[40];
    int n = snprintf(id, sizeof(id), "w%u-%llu", worker, (unsigned long long)serial);
    jw_lit(&jw, "\",\"connection_id\":");
    jw_str(&jw, id, (size_t)n);
    if (user.len) {
        jw_lit(&jw, ",\"user\":");
        jw_str(&jw, user.base, user.len);
    }
    jw_lit(&jw, "}");
    struct frame *f = frame_alloc(jw.len + r->esc_len + 160, 0);
    if (!f) {
        w->m.alloc_failures++;
        w->m.presence_dropped++;
        return;
    }
    struct jw fw;
    frame_writer(f, &fw);
    env_write_event(&fw,
                    kind == REC_JOIN ? SPAN_LIT("$presence.join") : SPAN_LIT("$presence.leave"),
                    room_name_escaped(r), (struct span){data, jw.len}, w->now_ms, 0);
    frame_finish(f, WS_OP_TEXT, fw.len);
    for (uint64_t mask = r->mask; mask; mask &= mask - 1) {
        unsigned t = (unsigned)__builtin_ctzll(mask);
        struct xmsg *x = NULL;
        if (!worker_link_open(w, t) || !(x = bc_xmsg_new(w, XM_PRES_EVENT, room_name(r), 1, 0))) {
            w->m.presence_dropped++;
            continue;
        }
        x->room_hash = r->hash;
        frame_ref(f, 1);
        bc_xmsg_frames(x)[0] = f;
        bc_post(w, t, x);
    }
    deliver(w, r, f, skip);
    frame_release(f);
}

static void set_remote(struct worker *w, struct room *r, unsigned worker, uint32_t n, uint32_t nopt)
{
    if (!r->pres && !nopt && !n)
        return;
    struct presence_room *p = proom(w, r);
    if (!p) {
        w->m.alloc_failures++;
        return;
    }
    p->nremote = p->nremote - p->w[2 * worker] + n;
    p->w[2 * worker] = n;
    p->total = p->total - p->w[2 * worker + 1] + nopt;
    p->w[2 * worker + 1] = nopt;
}

/* ---- records, elsewhere ---- */

static void record(struct worker *w, struct room *r, int kind, uint64_t serial, struct span user,
                   uint32_t nlocal)
{
    unsigned home = room_home(r->hash, w->eng->nworkers);
    struct presence_state *s = state(w);
    if (!s) {
        w->m.alloc_failures++;
        w->m.presence_dropped++;
        return;
    }
    struct outbox *o = &s->out[home];
    size_t need = sizeof(struct rec) + r->name_len + user.len;
    if (o->len + need > PRESENCE_OUTBOX_MAX) {
        w->m.presence_dropped++;
        return;
    }
    if (o->len + need > o->cap) {
        uint32_t cap = o->cap ? o->cap : 1024;
        while (cap < o->len + need)
            cap *= 2;
        char *nb = realloc(o->buf, cap);
        if (!nb) {
            w->m.alloc_failures++;
            w->m.presence_dropped++;
            return;
        }
        o->buf = nb;
        o->cap = cap;
    }
    struct rec h = {.kind = (uint8_t)kind,
                    .user_len = (uint8_t)user.len,
                    .room_len = r->name_len,
                    .room_hash = r->hash,
                    .nopt = r->pres ? r->pres->nopt : 0,
                    .nlocal = nlocal,
                    .serial = serial};
    char *p = o->buf + o->len;
    memcpy(p, &h, sizeof(h));
    memcpy(p + sizeof(h), r->name, r->name_len);
    if (user.len)
        memcpy(p + sizeof(h) + r->name_len, user.base, user.len);
    o->len += (uint32_t)need;
    o->nrec++;
}

static void change(struct worker *w, struct member *m, int kind, int dopt)
{
    struct room *r = m->room;
    if (dopt) {
        struct presence_room *p = proom(w, r);
        if (!p) {
            w->m.alloc_failures++;
        } else {
            p->nopt = (uint32_t)((int64_t)p->nopt + dopt);
            if (r->is_home)
                p->total = (uint32_t)((int64_t)p->total + dopt);
        }
    }
    /* A leaving member is still on the room's list. */
    uint32_t nlocal = r->nlocal - (kind == REC_LEAVE);
    if (!r->is_home) {
        record(w, r, kind, m->conn->serial, user_of(m->conn), nlocal);
        return;
    }
    if (kind == REC_OPT)
        return;
    uint64_t size = nlocal + (r->pres ? r->pres->nremote : 0);
    emit(w, r, kind, w->id, m->conn->serial, user_of(m->conn), size, kind == REC_LEAVE ? m : NULL);
}

void presence_join(struct worker *w, struct member *m)
{
    change(w, m, REC_JOIN, m->presence ? 1 : 0);
}

void presence_leave(struct worker *w, struct member *m)
{
    change(w, m, REC_LEAVE, m->presence ? -1 : 0);
}

void presence_opt_in(struct worker *w, struct member *m)
{
    if (m->presence)
        return;
    m->presence = true;
    change(w, m, REC_OPT, 1);
}

void presence_flush_to(struct worker *w, unsigned home)
{
    struct presence_state *s = w->pres;
    struct outbox *o = s ? &s->out[home] : NULL;
    if (!o || !o->nrec || !worker_link_open(w, home))
        return; /* waits: the records keep their order behind nothing else */
    struct xmsg *x = bc_xmsg_new(w, XM_PRES_RECORDS, (struct span){"", 0}, 0, o->len);
    if (!x) {
        w->m.alloc_failures++;
        return;
    }
    memcpy(bc_xmsg_frames(x), o->buf, o->len);
    x->count = o->nrec;
    x->payload_len = o->len;
    o->len = o->nrec = 0;
    if (o->cap > 64 * 1024) { /* a storm's buffer is not kept */
        free(o->buf);
        o->buf = NULL;
        o->cap = 0;
    }
    bc_post(w, home, x);
}

void presence_flush(struct worker *w)
{
    if (!w->pres)
        return;
    for (unsigned t = 0; t < w->eng->nworkers; t++)
        if (t != w->id)
            presence_flush_to(w, t);
}

static void on_records(struct worker *w, struct xmsg *x)
{
    const char *p = (const char *)bc_xmsg_frames(x), *end = p + x->payload_len;
    for (uint32_t i = 0; i < x->count && p + sizeof(struct rec) <= end; i++) {
        struct rec h;
        memcpy(&h, p, sizeof(h));
        const char *name = p + sizeof(h);
        struct span user = {name + h.room_len, h.user_len};
        p = user.base + user.len;
        struct room *r = room_find(&w->rooms, h.room_hash, name, h.room_len);
        if (!r || !r->is_home)
            continue;
        set_remote(w, r, x->from, h.nlocal, h.nopt);
        if (h.kind == REC_OPT)
            continue;
        uint64_t size = r->nlocal + (r->pres ? r->pres->nremote : 0);
        emit(w, r, h.kind, x->from, h.serial, user, size, NULL);
    }
    free(x);
}

static void on_event(struct worker *w, struct xmsg *x)
{
    struct frame *f = bc_xmsg_frames(x)[0];
    struct room *r = room_find(&w->rooms, x->room_hash, x->data, x->room_len);
    if (r)
        deliver(w, r, f, NULL);
    frame_release(f);
    free(x);
}

/* ---- the list: gathered from every worker ---- */

static void job_unlink(struct worker *w, struct pres_job *j)
{
    struct presence_state *s = w->pres;
    if (j->prev)
        j->prev->next = j->next;
    else
        s->jobs = j->next;
    if (j->next)
        j->next->prev = j->prev;
    s->njobs--;
}

static void job_free(struct pres_job *j)
{
    if (j->held)
        frame_release(j->held);
    free(j->e);
    free(j);
}

static void job_add(struct worker *w, struct pres_job *j, unsigned worker, uint64_t serial,
                    struct span user)
{
    if (j->count > w->cfg->presence_max)
        return;
    if (j->n == j->cap) {
        uint32_t cap = j->cap ? 2 * j->cap : 16;
        struct pres_entry *ne = realloc(j->e, cap * sizeof(*ne));
        if (!ne) {
            j->err = true;
            return;
        }
        j->e = ne;
        j->cap = cap;
    }
    struct pres_entry *e = &j->e[j->n++];
    e->serial = serial;
    e->worker = (uint8_t)worker;
    e->user_len = (uint8_t)(user.len < sizeof(e->user) ? user.len : sizeof(e->user));
    if (e->user_len)
        memcpy(e->user, user.base, e->user_len);
}

/* This worker's members of the room named in j (local side, home or not). */
static void part_local(struct worker *w, struct pres_job *j)
{
    struct room *r = room_find(&w->rooms, room_hash(j->name, j->name_len), j->name, j->name_len);
    if (!r)
        return;
    j->exists = true;
    j->count += r->nlocal;
    if (j->count > w->cfg->presence_max)
        return;
    for (struct member *m = r->members; m; m = m->rnext)
        job_add(w, j, w->id, m->conn->serial, user_of(m->conn));
}

static int entry_cmp(const void *a, const void *b)
{
    const struct pres_entry *x = a, *y = b;
    if (x->worker != y->worker)
        return x->worker < y->worker ? -1 : 1;
    return (x->serial > y->serial) - (x->serial < y->serial);
}

/* The data object (WebSocket) or body (HTTP) of j's answer, into a malloc'd buffer. */
static char *render(struct worker *w, struct pres_job *j, size_t *len)
{
    bool trunc = j->count > w->cfg->presence_max;
    size_t cap = 256 + 6 * (size_t)j->name_len + (trunc ? 0 : (size_t)j->n * (64 + 6 * 128));
    char *buf = malloc(cap);
    if (!buf)
        return NULL;
    struct jw jw;
    jw_init(&jw, buf, cap);
    jw_lit(&jw, "{\"channel\":");
    jw_str(&jw, j->name, j->name_len);
    jw_lit(&jw, ",\"count\":");
    jw_u64(&jw, j->count);
    if (trunc) {
        jw_lit(&jw, ",\"members\":null,\"truncated\":true}");
    } else {
        if (j->n > 1)
            qsort(j->e, j->n, sizeof(*j->e), entry_cmp);
        jw_lit(&jw, ",\"members\":[");
        for (uint32_t i = 0; i < j->n; i++) {
            char id[40];
            int n = snprintf(id, sizeof(id), "w%u-%llu", j->e[i].worker,
                             (unsigned long long)j->e[i].serial);
            if (i)
                jw_lit(&jw, ",");
            jw_lit(&jw, "{\"connection_id\":");
            jw_str(&jw, id, (size_t)n);
            if (j->e[i].user_len) {
                jw_lit(&jw, ",\"user\":");
                jw_str(&jw, j->e[i].user, j->e[i].user_len);
            }
            jw_lit(&jw, "}");
        }
        jw_lit(&jw, "],\"truncated\":false}");
    }
    *len = jw.len;
    return buf;
}

static void finish(struct worker *w, struct pres_job *j)
{
    job_unlink(w, j);
    struct conn *c = worker_conn_lookup(w, j->slot, j->serial);
    if (!c) {
        job_free(j);
        return;
    }
    size_t len = 0;
    char *body = j->err ? NULL : render(w, j, &len);
    struct frame *f = NULL;
    if (j->http) {
        c->http_jobs--;
        if (!body) {
            static const char oom[] =
                "{\"error\":{\"code\":\"OVERLOADED\",\"message\":\"server out of memory\"}}\n";
            f = http_api_response(503, NULL, NULL, JSON_TYPE, oom, sizeof(oom) - 1, j->keep_alive);
        } else if (!j->exists) {
            static const char nf[] =
                "{\"error\":{\"code\":\"NOT_FOUND\",\"message\":\"no such room\"}}\n";
            f = http_api_response(404, NULL, NULL, JSON_TYPE, nf, sizeof(nf) - 1, j->keep_alive);
        } else {
            body[len++] = '\n';
            f = http_api_response(200, NULL, NULL, JSON_TYPE, body, len, j->keep_alive);
        }
    } else {
        struct span id = {j->id, j->id_len};
        if (!body) {
            f = dispatch_reply_error(w, "OVERLOADED", "server out of memory: retry later", id);
        } else if ((f = frame_alloc(len + 256 + id.len, 0))) {
            struct jw jw;
            frame_writer(f, &jw);
            env_write_response_begin(&jw, SPAN_LIT("presence"));
            jw_raw(&jw, body, len);
            env_write_end(&jw, id, w->now_ms);
            frame_finish(f, WS_OP_TEXT, jw.len);
        }
    }
    free(body);
    if (!f) {
        w->m.alloc_failures++;
        conn_abort(c);
    } else if (!sendq_release_held_as(c, j->pos, j->held, f)) {
        frame_release(f);
    }
    job_free(j);
}

/* Starts a gather for c; answers the refusals itself. */
static void gather(struct conn *c, struct span name, struct span id, bool http, bool keep_alive)
{
    struct worker *w = c->w;
    struct presence_state *s = state(w);
    w->m.presence_requests++;
    const char *busy = NULL;
    if (!s)
        busy = "server out of memory: retry later";
    else if (s->njobs >= PRESENCE_MAX_JOBS)
        busy = "too many presence requests waiting: retry later";
    for (unsigned t = 0; !busy && t < w->eng->nworkers; t++)
        if (t != w->id && !worker_link_open(w, t))
            busy = "a worker is overloaded: retry later";
    struct pres_job *j = busy ? NULL : calloc(1, sizeof(*j) + id.len);
    struct frame *held = j ? frame_alloc(0, 0) : NULL;
    if (!held) {
        free(j);
        w->m.overloaded++;
        if (!busy)
            busy = "server out of memory: retry later";
        if (http)
            http_api_error(c, 503, "OVERLOADED", busy, keep_alive);
        else
            sendq_push(c, dispatch_reply_error(w, "OVERLOADED", busy, id));
        return;
    }
    frame_ref(held, 1); /* the job's */
    uint64_t pos = sendq_push_held(c, held);
    if (pos == UINT64_MAX) { /* closing: nobody to answer */
        frame_release(held);
        free(j);
        return;
    }
    j->http = http;
    j->keep_alive = keep_alive;
    j->slot = c->slot;
    j->serial = c->serial;
    j->held = held;
    j->pos = pos;
    j->name_len = (uint16_t)name.len;
    memcpy(j->name, name.base, name.len);
    j->id_len = (uint16_t)id.len;
    if (id.len)
        memcpy(j->id, id.base, id.len);
    j->next = s->jobs;
    if (s->jobs)
        s->jobs->prev = j;
    s->jobs = j;
    s->njobs++;
    if (http)
        c->http_jobs++;
    part_local(w, j);
    j->waiting = 1; /* ours, until every request is posted */
    for (unsigned t = 0; t < w->eng->nworkers; t++) {
        if (t == w->id)
            continue;
        struct xmsg *x = bc_xmsg_new(w, XM_PRES_GATHER, name, 0, 0);
        if (!x) {
            w->m.alloc_failures++;
            j->err = true;
            continue;
        }
        x->ctx = j;
        x->room_hash = room_hash(name.base, name.len);
        j->waiting++;
        bc_post(w, t, x);
    }
    if (--j->waiting == 0)
        finish(w, j);
}

void presence_request(struct conn *c, struct span name, struct span id)
{
    gather(c, name, id, false, false);
}

void presence_http(struct conn *c, struct span name_pct, bool keep_alive)
{
    char name[CHANNEL_MAX_LEN + 1];
    int n = http_pct_decode(name_pct, name, sizeof(name) - 1, false);
    if (n < 0 || channel_validate(name, (size_t)n) != CHANNEL_OK) {
        http_api_error(c, 404, "NOT_FOUND", "no such room", keep_alive);
        return;
    }
    gather(c, (struct span){name, (size_t)n}, SPAN_NULL, true, keep_alive);
}

/* Another worker's part: up to presence-max + 1 of our members of the room, and their count. */
static void on_gather(struct worker *w, struct xmsg *x)
{
    struct room *r = room_find(&w->rooms, x->room_hash, x->data, x->room_len);
    uint32_t n = 0;
    size_t bytes = 0;
    bool list = r && r->nlocal <= w->cfg->presence_max;
    if (list)
        for (struct member *m = r->members; m; m = m->rnext, n++)
            bytes += 9 + user_of(m->conn).len;
    struct xmsg *a =
        bc_xmsg_new(w, XM_PRES_GATHER_ACK, (struct span){x->data, x->room_len}, 0, bytes);
    unsigned to = x->from;
    if (!a) {
        w->m.alloc_failures++;
        a = x; /* goes back as the answer, marked */
        a->err = true;
        a->count = 0;
    } else {
        a->ctx = x->ctx;
        char *p = (char *)bc_xmsg_frames(a);
        if (list)
            for (struct member *m = r->members; m; m = m->rnext) {
                struct span u = user_of(m->conn);
                memcpy(p, &m->conn->serial, 8);
                p[8] = (char)u.len;
                if (u.len)
                    memcpy(p + 9, u.base, u.len);
                p += 9 + u.len;
            }
        a->count = list ? n : 0;
        free(x);
    }
    a->type = XM_PRES_GATHER_ACK;
    a->recovered = r != NULL; /* the room exists here */
    a->subscribers = r ? r->nlocal : 0;
    a->from = (uint8_t)w->id;
    bc_post(w, to, a);
}

static void on_gather_ack(struct worker *w, struct xmsg *x)
{
    struct pres_job *j = x->ctx;
    if (x->err) {
        j->err = true;
    } else {
        j->exists |= x->recovered;
        j->count += x->subscribers;
        const char *p = (const char *)bc_xmsg_frames(x);
        for (uint32_t i = 0; i < x->count && j->count <= w->cfg->presence_max; i++) {
            uint64_t serial;
            memcpy(&serial, p, 8);
            struct span u = {p + 9, (uint8_t)p[8]};
            job_add(w, j, x->from, serial, u);
            p += 9 + u.len;
        }
    }
    free(x);
    if (--j->waiting == 0)
        finish(w, j);
}

void presence_on_xmsg(struct worker *w, struct xmsg *m)
{
    switch (m->type) {
    case XM_PRES_RECORDS: on_records(w, m); break;
    case XM_PRES_EVENT: on_event(w, m); break;
    case XM_PRES_GATHER: on_gather(w, m); break;
    case XM_PRES_GATHER_ACK: on_gather_ack(w, m); break;
    default: presence_discard_xmsg(m); break;
    }
}

void presence_discard_xmsg(struct xmsg *m)
{
    if (m->type == XM_PRES_EVENT && m->nframes)
        frame_release(bc_xmsg_frames(m)[0]);
    free(m); /* a gather's job is freed with its worker (presence_worker_free) */
}

uint64_t presence_bytes(const struct worker *w)
{
    const struct presence_state *s = w->pres;
    if (!s)
        return 0;
    uint64_t n = sizeof(*s) + w->eng->nworkers * sizeof(*s->out);
    for (unsigned t = 0; t < w->eng->nworkers; t++)
        n += s->out[t].cap;
    for (const struct pres_job *j = s->jobs; j; j = j->next)
        n += sizeof(*j) + j->id_len + (uint64_t)j->cap * sizeof(*j->e);
    return n;
}

uint64_t presence_room_bytes(const struct worker *w)
{
    return sizeof(struct presence_room) + 2 * w->eng->nworkers * sizeof(uint32_t);
}

void presence_worker_free(struct worker *w)
{
    struct presence_state *s = w->pres;
    if (!s)
        return;
    for (unsigned t = 0; t < w->eng->nworkers; t++)
        free(s->out[t].buf);
    free(s->out);
    while (s->jobs) {
        struct pres_job *j = s->jobs;
        s->jobs = j->next;
        job_free(j);
    }
    free(s);
    w->pres = NULL;
}
