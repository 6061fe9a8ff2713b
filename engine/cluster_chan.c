/* cluster_chan.c - the bus thread's rooms: SUBSCRIBE/UNSUBSCRIBE, the sync script that reads
 * a room before its events go to the home, and the publish script (see cluster.h, cluster.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broadcast.h"
#include "cluster_bus.h"
#include "config.h"
#include "history.h"
#include "log.h"
#include "room.h"

_Static_assert(CLUSTER_SYNC_BUFFER <= XLINK_WINDOW / 4,
               "the events held during a sync are posted in one burst: keep them in the window");

/* ---- rooms ---- */

struct croom **bus_croom_slot(uint32_t hash, const char *name, size_t len)
{
    struct croom **pp = &cl.rooms[hash % CROOM_BUCKETS];
    while (*pp && !((*pp)->len == len && memcmp((*pp)->name, name, len) == 0))
        pp = &(*pp)->next;
    return pp;
}

void bus_croom_drop_buf(struct croom *r)
{
    while (r->buf) {
        struct xmsg *m = r->buf;
        r->buf = m->next;
        free(m);
    }
    r->buf_tail = NULL;
    r->nbuf = 0;
}

void bus_croom_free(struct croom *r)
{
    struct croom **pp = bus_croom_slot(r->hash, r->name, r->len);
    *pp = r->next;
    bus_croom_drop_buf(r);
    free(r);
}

static void on_sub_reply(redisAsyncContext *ac, void *reply, void *priv);
static void on_sync_reply(redisAsyncContext *ac, void *reply, void *priv);

static bool room_cmd(struct rconn *rc, redisCallbackFn *fn, void *priv, const char *verb,
                     const struct croom *r)
{
    char key[PREFIX_LEN + CHANNEL_MAX_LEN];
    memcpy(key, KEY_CHAN, PREFIX_LEN);
    memcpy(key + PREFIX_LEN, r->name, r->len);
    const char *argv[] = {verb, key};
    size_t lens[] = {strlen(verb), PREFIX_LEN + r->len};
    return bus_command(rc, fn, priv, 2, argv, lens);
}

void bus_subscribe(struct croom *r)
{
    if (!cl.sub_ready || r->subscribed || r->leaving)
        return;
    if (room_cmd(&cl.sub, on_sub_reply, NULL, "SUBSCRIBE", r)) {
        r->subscribed = true;
        r->confirmed = false;
    } else {
        cl.reset = true;
    }
}

/* What a sync reply needs to find its room again (the room may have gone meanwhile). */
struct sync_ctx {
    uint32_t hash, gen, sync;
    uint16_t len;
    char name[];
};

static void start_sync(struct croom *r)
{
    if (!cl.cmd_ready || r->syncing)
        return;
    struct sync_ctx *x = malloc(sizeof(*x) + r->len);
    if (!x) {
        cl.reset = true; /* everything is retried after the reconnect */
        return;
    }
    x->hash = r->hash;
    x->gen = r->gen;
    x->sync = ++r->sync; /* a sync started again (buffer full) supersedes one in flight */
    x->len = r->len;
    memcpy(x->name, r->name, r->len);
    char meta[PREFIX_LEN + CHANNEL_MAX_LEN], stream[PREFIX_LEN + CHANNEL_MAX_LEN], hs[16], ep[17];
    memcpy(meta, KEY_META, PREFIX_LEN);
    memcpy(meta + PREFIX_LEN, r->name, r->len);
    memcpy(stream, KEY_STREAM, PREFIX_LEN);
    memcpy(stream + PREFIX_LEN, r->name, r->len);
    snprintf(hs, sizeof(hs), "%u", cl.cfg->history_size);
    history_epoch_format(bus_fresh_epoch(), ep);
    ep[16] = 0;
    const char *argv[] = {"EVALSHA", cl.sync_sha, "2", meta, stream, hs, ep};
    size_t lens[] = {7, 40, 1, PREFIX_LEN + r->len, PREFIX_LEN + r->len, strlen(hs), 16};
    if (!bus_command(&cl.cmd, on_sync_reply, x, 7, argv, lens)) {
        free(x);
        cl.reset = true;
        return;
    }
    r->syncing = true;
    r->live = false;
}

static struct croom *croom_of_channel(redisReply *ch)
{
    if (!ch || ch->type != REDIS_REPLY_STRING || ch->len < PREFIX_LEN ||
        ch->len - PREFIX_LEN > CHANNEL_MAX_LEN)
        return NULL;
    const char *name = ch->str + PREFIX_LEN;
    size_t len = (size_t)ch->len - PREFIX_LEN;
    return *bus_croom_slot(room_hash(name, len), name, len);
}

/* Everything the sub connection receives: confirmations and events. */
static void on_sub_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    (void)priv;
    redisReply *r = reply;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return; /* the connection is going (NULL), or not ours */
    const char *kind = r->element[0]->str;
    struct croom *cr = croom_of_channel(r->element[1]);
    if (strcmp(kind, "message") == 0) {
        atomic_fetch_add_explicit(&cluster_stats.events_in, 1, memory_order_relaxed);
        redisReply *msg = r->element[2];
        if (!cr || !cr->want || !cr->confirmed || msg->type != REDIS_REPLY_STRING)
            return;
        struct xmsg *m = bc_xmsg_new(cl.eng->workers[0], XM_CL_EVENT,
                                     (struct span){cr->name, cr->len}, 0, (size_t)msg->len);
        if (!m) {
            cl.reset = true; /* no memory: resync everything rather than lose silently */
            return;
        }
        m->from = (uint8_t)cl.id;
        m->room_hash = cr->hash;
        m->event_len = (uint32_t)msg->len;
        memcpy(m->data + cr->len, msg->str, (size_t)msg->len);
        if (cr->live) {
            bus_post(m, room_home(cr->hash, cl.eng->nworkers));
            return;
        }
        if (cr->nbuf >= CLUSTER_SYNC_BUFFER) { /* sync again: the new one covers these */
            free(m);
            bus_croom_drop_buf(cr);
            cr->syncing = false;
            start_sync(cr);
            return;
        }
        m->next = NULL;
        if (cr->buf_tail)
            cr->buf_tail->next = m;
        else
            cr->buf = m;
        cr->buf_tail = m;
        cr->nbuf++;
        return;
    }
    bus_replied(&cl.sub);
    if (!cr)
        return;
    if (strcmp(kind, "subscribe") == 0) {
        cr->confirmed = true;
        if (cr->want)
            start_sync(cr);
    } else if (strcmp(kind, "unsubscribe") == 0) {
        cr->leaving = false;
        atomic_fetch_sub_explicit(&cluster_stats.rooms, 1, memory_order_relaxed);
        if (cr->want) {
            bus_subscribe(cr);
            atomic_fetch_add_explicit(&cluster_stats.rooms, 1, memory_order_relaxed);
        } else {
            bus_croom_free(cr);
        }
    }
}

static bool reply_u64(redisReply *r, uint64_t *out, bool hex)
{
    if (r->type == REDIS_REPLY_INTEGER) {
        *out = (uint64_t)r->integer;
        return !hex;
    }
    if (r->type != REDIS_REPLY_STRING)
        return false;
    if (hex)
        return history_epoch_parse((struct span){r->str, r->len}, out);
    *out = strtoull(r->str, NULL, 10);
    return true;
}

static void on_sync_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    struct sync_ctx *x = priv;
    redisReply *r = reply;
    if (r)
        bus_replied(&cl.cmd);
    struct croom *cr = *bus_croom_slot(x->hash, x->name, x->len);
    if (!cr || !cr->want || cr->gen != x->gen || cr->sync != x->sync || !cr->syncing) {
        free(x);
        return; /* left, or asked again since: that sync answers */
    }
    cr->syncing = false;
    uint64_t epoch, seq;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        !reply_u64(r->element[0], &epoch, true) || !reply_u64(r->element[1], &seq, false) ||
        r->element[2]->type != REDIS_REPLY_ARRAY) {
        if (r)
            log_error("cluster: sync of room '%.*s' failed: %s", (int)x->len, x->name,
                      r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        cl.reset = true;
        free(x);
        return;
    }
    /* Entries come newest first: packed oldest first, a u32 length before each. */
    redisReply *es = r->element[2];
    size_t bytes = 0;
    for (size_t i = 0; i < es->elements; i++) {
        redisReply *e = es->element[i];
        if (e->type == REDIS_REPLY_ARRAY && e->elements == 2 && e->element[1]->elements == 2)
            bytes += 4 + (size_t)e->element[1]->element[1]->len;
    }
    struct xmsg *m =
        bc_xmsg_new(cl.eng->workers[0], XM_CL_SYNC, (struct span){cr->name, cr->len}, 0, bytes);
    if (!m) {
        cl.reset = true;
        free(x);
        return;
    }
    m->from = (uint8_t)cl.id;
    m->room_hash = cr->hash;
    m->token = cr->gen;
    m->epoch = epoch;
    m->seq = seq;
    char *p = m->data + cr->len;
    for (size_t i = es->elements; i-- > 0;) {
        redisReply *e = es->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[1]->elements != 2)
            continue;
        redisReply *v = e->element[1]->element[1];
        uint32_t len = (uint32_t)v->len;
        memcpy(p, &len, 4);
        memcpy(p + 4, v->str, len);
        p += 4 + len;
        m->count++;
    }
    m->event_len = (uint32_t)bytes;
    unsigned home = room_home(cr->hash, cl.eng->nworkers);
    bus_post(m, home);
    /* What arrived while the script ran follows, in order; the home drops duplicates. */
    while (cr->buf) {
        struct xmsg *b = cr->buf;
        cr->buf = b->next;
        bus_post(b, home);
    }
    cr->buf_tail = NULL;
    cr->nbuf = 0;
    cr->live = true;
    free(x);
}

void bus_room_request(struct xmsg *m)
{
    struct croom **pp = bus_croom_slot(m->room_hash, m->data, m->room_len);
    struct croom *r = *pp;
    if (m->type == XM_CL_SUB) {
        if (!r) {
            if (!(r = calloc(1, sizeof(*r) + m->room_len))) {
                log_error("cluster: out of memory subscribing a room");
                free(m);
                return; /* its subscribers wait: the next reconnect will not know it either */
            }
            r->hash = m->room_hash;
            r->len = m->room_len;
            memcpy(r->name, m->data, m->room_len);
            *pp = r;
            atomic_fetch_add_explicit(&cluster_stats.rooms, 1, memory_order_relaxed);
        }
        r->want = true;
        r->gen = (uint32_t)m->token;
        r->live = false;
        r->syncing = false; /* a sync in flight for an older generation is ignored */
        bus_croom_drop_buf(r);
        if (!r->subscribed)
            bus_subscribe(r);
        else if (r->confirmed)
            start_sync(r);
    } else if (r) { /* XM_CL_UNSUB */
        r->want = false;
        r->live = r->syncing = false;
        bus_croom_drop_buf(r);
        if (r->subscribed && cl.sub_ready) {
            if (room_cmd(&cl.sub, on_sub_reply, NULL, "UNSUBSCRIBE", r)) {
                r->subscribed = r->confirmed = false;
                r->leaving = true;
            } else {
                cl.reset = true;
            }
        } else if (!r->leaving) {
            atomic_fetch_sub_explicit(&cluster_stats.rooms, 1, memory_order_relaxed);
            bus_croom_free(r);
        }
    }
    free(m);
}

/* ---- publishes ---- */

static void on_pub_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    struct xmsg *m = priv;
    redisReply *r = reply;
    if (r)
        bus_replied(&cl.cmd);
    uint64_t epoch, seq, n;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        !reply_u64(r->element[0], &epoch, true) || !reply_u64(r->element[1], &seq, false) ||
        !reply_u64(r->element[2], &n, false)) {
        if (r && r->type == REDIS_REPLY_ERROR)
            log_error("cluster: publish failed: %s", r->str);
        bus_pub_fail(m);
        return;
    }
    atomic_fetch_add_explicit(&cluster_stats.publishes, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&cluster_stats.pending, 1, memory_order_relaxed);
    m->type = XM_PUB_ACK;
    m->seq = seq;
    m->epoch = epoch;
    m->subscribers = n; /* nodes that received it */
    bus_post(m, m->from);
}

void bus_publish(struct xmsg *m)
{
    if (!cl.cmd_ready || !cl.sub_ready) {
        bus_pub_fail(m);
        return;
    }
    size_t nl = m->room_len;
    char meta[PREFIX_LEN + CHANNEL_MAX_LEN], stream[PREFIX_LEN + CHANNEL_MAX_LEN],
        chan[PREFIX_LEN + CHANNEL_MAX_LEN], ms[24], hs[16], ep[17];
    memcpy(meta, KEY_META, PREFIX_LEN);
    memcpy(stream, KEY_STREAM, PREFIX_LEN);
    memcpy(chan, KEY_CHAN, PREFIX_LEN);
    memcpy(meta + PREFIX_LEN, m->data, nl);
    memcpy(stream + PREFIX_LEN, m->data, nl);
    memcpy(chan + PREFIX_LEN, m->data, nl);
    snprintf(ms, sizeof(ms), "%lld", (long long)bus_unix_ms());
    snprintf(hs, sizeof(hs), "%u", cl.cfg->history_size);
    history_epoch_format(bus_fresh_epoch(), ep);
    ep[16] = 0;
    const char *p = m->data + nl;
    const char *argv[] = {"EVALSHA", cl.pub_sha,       "2", meta, stream, chan, ms,
                          p,         p + m->event_len, hs,  ep};
    size_t lens[] = {7,
                     40,
                     1,
                     PREFIX_LEN + nl,
                     PREFIX_LEN + nl,
                     PREFIX_LEN + nl,
                     strlen(ms),
                     m->event_len,
                     m->payload_len,
                     strlen(hs),
                     16};
    if (!bus_command(&cl.cmd, on_pub_reply, m, 11, argv, lens)) {
        bus_pub_fail(m);
        cl.reset = true;
    }
}
