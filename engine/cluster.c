/* cluster.c - the bus thread: Redis connections, scripts, reconnects (see cluster.h).
 *
 * Two hiredis async connections, driven by poll(2) through a five-hook adapter: "cmd" runs
 * the scripts (pipelined: hiredis writes every queued EVALSHA in one buffer), "sub" holds the
 * node's SUBSCRIBEs. Workers' requests arrive on a list guarded by a mutex, signalled by an
 * eventfd; answers and events leave through MSG_RING on the bus's own small io_uring, as
 * sender nworkers on each worker's ordered links (worker.h).
 *
 * Liveness: a connection with replies outstanding and no reply for --redis-timeout-ms is
 * dead (a Redis that accepts and never answers); an idle cmd connection is PINGed every
 * second so that is noticed without traffic. Any failure tears both connections down (every
 * pending publish fails with UNAVAILABLE) and reconnects with a capped, jittered backoff;
 * once both are back, every room with subscribers here is subscribed and synced again, and
 * the homes compare epoch and seq with what they had (cluster_room.c).
 *
 * Bounds: publishes queued or outstanding are at most --redis-max-pending (then UNAVAILABLE at
 * once); subscribe requests are bounded by the rooms; events read from Redis wait in no queue
 * of ours: the sub connection is not read while any worker's link is more than half full, so
 * a slow node pushes back into Redis (whose client-output-buffer-limit for pubsub then drops
 * us, and the reconnect resyncs).
 */
#include "cluster.h"

#include <errno.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <liburing.h>
#include <openssl/sha.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "broadcast.h"
#include "config.h"
#include "history.h"
#include "log.h"
#include "room.h"
#include "worker.h"

struct cluster_stats cluster_stats;

/* Keys and channel of a room: "rc:m:NAME" (hash: e = epoch, s = seq), "rc:s:NAME" (stream),
 * "rc:c:NAME" (channel). Names are binary-safe arguments. */
#define KEY_META   "rc:m:"
#define KEY_STREAM "rc:s:"
#define KEY_CHAN   "rc:c:"
#define PREFIX_LEN 5

/* Publish: KEYS meta, stream; ARGV channel, unix ms, event, data, history size, a fresh
 * epoch (used when the room has none: new, or lost by Redis). Returns {epoch, seq, nodes}. */
static const char PUB_SCRIPT[] =
    "local ep = redis.call('HGET', KEYS[1], 'e')\n"
    "if not ep then ep = ARGV[6]; redis.call('DEL', KEYS[2]); redis.call('HSET', KEYS[1], 'e', "
    "ep) end\n"
    "local seq = redis.call('HINCRBY', KEYS[1], 's', 1)\n"
    "local msg = ep .. '\\n' .. seq .. '\\n' .. ARGV[2] .. '\\n' .. ARGV[3] .. '\\n' .. ARGV[4]\n"
    "if tonumber(ARGV[5]) > 0 then redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[5], '*', "
    "'m', msg) end\n"
    "local n = redis.call('PUBLISH', ARGV[1], msg)\n"
    "return {ep, seq, n}\n";
/* Sync: KEYS meta, stream; ARGV history size, a fresh epoch. Returns {epoch, seq, entries
 * newest first}. Creates the epoch when absent, so a subscriber sees the one later publishes
 * will use. */
static const char SYNC_SCRIPT[] =
    "local ep = redis.call('HGET', KEYS[1], 'e')\n"
    "if not ep then ep = ARGV[2]; redis.call('DEL', KEYS[2]); redis.call('HSET', KEYS[1], 'e', "
    "ep, 's', 0) end\n"
    "local seq = redis.call('HGET', KEYS[1], 's') or '0'\n"
    "local r = {}\n"
    "if tonumber(ARGV[1]) > 0 then r = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', "
    "ARGV[1]) end\n"
    "return {ep, seq, r}\n";

struct rconn {
    redisAsyncContext *ac;
    bool rd, wr;
    unsigned outstanding; /* replies we wait for */
    int64_t progress_ms;  /* last reply, or when outstanding went from 0 to 1 */
};

/* A room this node is subscribed to (or subscribing, or leaving) in Redis. */
struct croom {
    struct croom *next;
    uint32_t hash, gen;
    bool want;       /* the home wants its events */
    bool subscribed; /* SUBSCRIBE sent, no UNSUBSCRIBE since */
    bool confirmed;  /* ... and Redis confirmed it */
    bool leaving;    /* UNSUBSCRIBE sent, not confirmed yet */
    bool syncing;    /* sync script sent: events wait in buf */
    bool live;       /* SYNC posted: events go to the home */
    struct xmsg *buf, *buf_tail;
    unsigned nbuf;
    uint16_t len;
    char name[];
};

#define CROOM_BUCKETS 4096

static struct {
    const struct rc_config *cfg;
    struct engine *eng;
    char host[256], path[256], user[128], pass[256];
    int port, db;
    char pub_sha[41], sync_sha[41];
    pthread_t thread;
    bool running;
    int efd;
    pthread_mutex_t mu;
    struct xmsg *q_head, *q_tail;
    _Atomic bool stop;
    struct rconn cmd, sub;
    bool cmd_ready, sub_ready; /* connected and set up */
    bool reset;                /* a connection failed: tear both down in the loop */
    int64_t next_try_ms, backoff_ms, ping_ms;
    bool ping_out;
    struct io_uring ring;
    struct xlink_out *xout;
    unsigned id;
    struct croom *rooms[CROOM_BUCKETS];
    unsigned max_pending;
    int64_t timeout_ms;
} cl;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sha1_hex(const char *s, char out[41])
{
    unsigned char d[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)s, strlen(s), d);
    for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static uint64_t fresh_epoch(void)
{
    uint64_t e = 0;
    while (e == 0)
        if (getrandom(&e, sizeof(e), 0) != (ssize_t)sizeof(e))
            e = (uint64_t)unix_ms() * 0x9e3779b97f4a7c15ull;
    return e;
}

/* ---- URL ---- */

/* redis://[[user]:password@]host[:port][/db] or unix:PATH (unix://PATH). */
static int parse_url(const char *url, char *err, size_t cap)
{
    cl.port = 6379;
    cl.db = 0;
    if (strncmp(url, "unix:", 5) == 0) {
        const char *p = url + 5;
        if (strncmp(p, "//", 2) == 0)
            p += 2;
        if (!*p || strlen(p) >= sizeof(cl.path)) {
            snprintf(err, cap, "a unix: URL needs a socket path");
            return -1;
        }
        snprintf(cl.path, sizeof(cl.path), "%s", p);
        return 0;
    }
    if (strncmp(url, "redis://", 8) != 0) {
        snprintf(err, cap, "expected redis://[:password@]host[:port][/db] or unix:/path");
        return -1;
    }
    const char *p = url + 8, *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (!colon || (size_t)(colon - p) >= sizeof(cl.user) ||
            (size_t)(at - colon - 1) >= sizeof(cl.pass)) {
            snprintf(err, cap, "credentials must be [user]:password@");
            return -1;
        }
        memcpy(cl.user, p, (size_t)(colon - p));
        memcpy(cl.pass, colon + 1, (size_t)(at - colon - 1));
        p = at + 1;
    }
    const char *slash = strchr(p, '/');
    size_t hl = slash ? (size_t)(slash - p) : strlen(p);
    const char *colon = memchr(p, ':', hl);
    size_t hostl = colon ? (size_t)(colon - p) : hl;
    if (hostl == 0 || hostl >= sizeof(cl.host)) {
        snprintf(err, cap, "no host");
        return -1;
    }
    memcpy(cl.host, p, hostl);
    if (colon) {
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (end != p + hl || port < 1 || port > 65535) {
            snprintf(err, cap, "bad port");
            return -1;
        }
        cl.port = (int)port;
    }
    if (slash && slash[1]) {
        char *end;
        long db = strtol(slash + 1, &end, 10);
        if (*end || db < 0 || db > 1000000) {
            snprintf(err, cap, "bad database number");
            return -1;
        }
        cl.db = (int)db;
    }
    return 0;
}

/* ---- startup check (blocking, main thread) ---- */

static bool sync_cmd(redisContext *c, char *err, size_t cap, const char *what, int argc,
                     const char **argv)
{
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    if (!r) {
        snprintf(err, cap, "%s: %s", what, c->errstr[0] ? c->errstr : "no answer");
        return false;
    }
    bool ok = r->type != REDIS_REPLY_ERROR;
    if (!ok)
        snprintf(err, cap, "%s: %s", what, r->str);
    freeReplyObject(r);
    return ok;
}

int cluster_init(const struct rc_config *cfg)
{
    atomic_store(&cluster_stats.state, CLUSTER_OFF);
    if (!cfg->redis[0])
        return 1;
    char err[512] = "";
    cl.cfg = cfg;
    cl.timeout_ms = cfg->redis_timeout_ms;
    cl.max_pending = cfg->redis_max_pending;
    if (parse_url(cfg->redis, err, sizeof(err)) < 0) {
        fprintf(stderr, "ringcast: --redis '%s': %s\n", cfg->redis, err);
        return -1;
    }
    sha1_hex(PUB_SCRIPT, cl.pub_sha);
    sha1_hex(SYNC_SCRIPT, cl.sync_sha);
    struct timeval tv = {cl.timeout_ms / 1000, (cl.timeout_ms % 1000) * 1000};
    redisContext *c = cl.path[0] ? redisConnectUnixWithTimeout(cl.path, tv)
                                 : redisConnectWithTimeout(cl.host, cl.port, tv);
    bool ok = c && !c->err;
    if (!ok)
        snprintf(err, sizeof(err), "%s", c ? c->errstr : "out of memory");
    if (ok && redisSetTimeout(c, tv) != REDIS_OK) {
        snprintf(err, sizeof(err), "cannot set the timeout");
        ok = false;
    }
    if (ok && cl.pass[0]) {
        const char *a[] = {"AUTH", cl.user, cl.pass};
        ok = cl.user[0]
                 ? sync_cmd(c, err, sizeof(err), "AUTH", 3, a)
                 : sync_cmd(c, err, sizeof(err), "AUTH", 2, (const char *[]){"AUTH", cl.pass});
    }
    if (ok) {
        const char *a[] = {"PING"};
        ok = sync_cmd(c, err, sizeof(err), "PING", 1, a);
    }
    if (ok) {
        char db[16];
        snprintf(db, sizeof(db), "%d", cl.db);
        const char *a[] = {"SELECT", db};
        ok = sync_cmd(c, err, sizeof(err), "SELECT", 2, a);
    }
    if (c)
        redisFree(c);
    const char *where = cl.path[0] ? cl.path : cl.host;
    if (!ok) {
        if (cfg->redis_optional) {
            log_warn("cluster: Redis at %s (port %d) is unreachable (%s): --redis-optional, "
                     "running local-only: events published here reach this node only",
                     where, cl.path[0] ? 0 : cl.port, err);
            return 1;
        }
        fprintf(stderr,
                "ringcast: --redis: cannot use Redis at %s%s%d: %s (start it, fix the URL, or "
                "pass --redis-optional to run local-only)\n",
                where, cl.path[0] ? "" : ":", cl.path[0] ? 0 : cl.port, err);
        return -1;
    }
    log_info("cluster: Redis at %s%s%d db %d answers: cluster mode on", where,
             cl.path[0] ? "" : ":", cl.path[0] ? 0 : cl.port, cl.db);
    atomic_store(&cluster_stats.state, CLUSTER_DOWN);
    return 0;
}

/* ---- posting to workers ---- */

static void post(struct xmsg *m, unsigned to)
{
    struct worker *t = cl.eng->workers[to];
    if (atomic_load_explicit(&t->gone, memory_order_acquire)) {
        bc_discard_xmsg(m);
        return;
    }
    m->to = (uint8_t)to;
    struct xlink_out *o = &cl.xout[to];
    uint32_t val = (cl.id << 24) | (o->seq++ & XLINK_SEQ_MASK);
    struct io_uring_sqe *sqe = io_uring_get_sqe(&cl.ring);
    if (!sqe) {
        io_uring_submit(&cl.ring);
        sqe = io_uring_get_sqe(&cl.ring);
    }
    uint64_t ud = ud_make(m, UD_XMSG);
    io_uring_prep_msg_ring(sqe, t->ring_fd, val, ud, 0);
    io_uring_sqe_set_data64(sqe, ud);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    atomic_store_explicit(&o->posted, atomic_load_explicit(&o->posted, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* Refused MSG_RINGs (the target's CQ overflowed): posted again, the link read in arrival
 * order from now on (as worker.c does for its own). */
static void reap_ring(void)
{
    io_uring_submit(&cl.ring);
    struct io_uring_cqe *cqe;
    while (io_uring_peek_cqe(&cl.ring, &cqe) == 0) {
        struct xmsg *m = ud_ptr(cqe->user_data);
        int res = cqe->res;
        io_uring_cqe_seen(&cl.ring, cqe);
        if (res < 0) {
            log_error("cluster: message to worker %u refused by the kernel: %s", m->to,
                      strerror(-res));
            atomic_fetch_or(&cl.eng->workers[m->to]->broken_from, 1ull << cl.id);
            post(m, m->to);
            io_uring_submit(&cl.ring);
        }
    }
}

/* True when every worker has read at least half of what we may have posted it. */
static bool links_open(void)
{
    for (unsigned i = 0; i < cl.eng->nworkers; i++) {
        uint64_t posted = atomic_load_explicit(&cl.xout[i].posted, memory_order_relaxed);
        uint64_t done =
            atomic_load_explicit(&cl.eng->workers[i]->xin[cl.id].consumed, memory_order_relaxed);
        if (posted - done >= XLINK_WINDOW / 2)
            return false;
    }
    return true;
}

/* ---- publish answers ---- */

static void pub_fail(struct xmsg *m)
{
    atomic_fetch_add_explicit(&cluster_stats.publish_errors, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&cluster_stats.pending, 1, memory_order_relaxed);
    m->type = XM_PUB_ACK;
    m->err = true;
    m->unavail = true;
    post(m, m->from);
}

/* ---- adapter: hiredis asks, poll() does ---- */

static void ev_add_read(void *p)
{
    ((struct rconn *)p)->rd = true;
}
static void ev_del_read(void *p)
{
    ((struct rconn *)p)->rd = false;
}
static void ev_add_write(void *p)
{
    ((struct rconn *)p)->wr = true;
}
static void ev_del_write(void *p)
{
    ((struct rconn *)p)->wr = false;
}
/* hiredis frees the context (error, disconnect, our redisAsyncFree): forget it. */
static void ev_cleanup(void *p)
{
    struct rconn *rc = p;
    rc->ac = NULL;
    rc->rd = rc->wr = false;
    rc->outstanding = 0;
    cl.reset = true;
}

static void sent(struct rconn *rc)
{
    if (rc->outstanding++ == 0)
        rc->progress_ms = now_ms();
}

static void replied(struct rconn *rc)
{
    if (rc->outstanding)
        rc->outstanding--;
    rc->progress_ms = now_ms();
}

static bool command(struct rconn *rc, redisCallbackFn *fn, void *priv, int argc, const char **argv,
                    const size_t *lens)
{
    if (!rc->ac || redisAsyncCommandArgv(rc->ac, fn, priv, argc, argv, lens) != REDIS_OK)
        return false;
    sent(rc);
    return true;
}

/* ---- rooms ---- */

static struct croom **croom_slot(uint32_t hash, const char *name, size_t len)
{
    struct croom **pp = &cl.rooms[hash % CROOM_BUCKETS];
    while (*pp && !((*pp)->len == len && memcmp((*pp)->name, name, len) == 0))
        pp = &(*pp)->next;
    return pp;
}

static void croom_drop_buf(struct croom *r)
{
    while (r->buf) {
        struct xmsg *m = r->buf;
        r->buf = m->next;
        free(m);
    }
    r->buf_tail = NULL;
    r->nbuf = 0;
}

static void croom_free(struct croom *r)
{
    struct croom **pp = croom_slot(r->hash, r->name, r->len);
    *pp = r->next;
    croom_drop_buf(r);
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
    return command(rc, fn, priv, 2, argv, lens);
}

static void subscribe(struct croom *r)
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
    uint32_t hash, gen;
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
    x->len = r->len;
    memcpy(x->name, r->name, r->len);
    char meta[PREFIX_LEN + CHANNEL_MAX_LEN], stream[PREFIX_LEN + CHANNEL_MAX_LEN], hs[16], ep[17];
    memcpy(meta, KEY_META, PREFIX_LEN);
    memcpy(meta + PREFIX_LEN, r->name, r->len);
    memcpy(stream, KEY_STREAM, PREFIX_LEN);
    memcpy(stream + PREFIX_LEN, r->name, r->len);
    snprintf(hs, sizeof(hs), "%u", cl.cfg->history_size);
    history_epoch_format(fresh_epoch(), ep);
    ep[16] = 0;
    const char *argv[] = {"EVALSHA", cl.sync_sha, "2", meta, stream, hs, ep};
    size_t lens[] = {7, 40, 1, PREFIX_LEN + r->len, PREFIX_LEN + r->len, strlen(hs), 16};
    if (!command(&cl.cmd, on_sync_reply, x, 7, argv, lens)) {
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
    return *croom_slot(room_hash(name, len), name, len);
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
            post(m, room_home(cr->hash, cl.eng->nworkers));
            return;
        }
        if (cr->nbuf >= CLUSTER_SYNC_BUFFER) { /* sync again: the new one covers these */
            free(m);
            croom_drop_buf(cr);
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
    replied(&cl.sub);
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
            subscribe(cr);
            atomic_fetch_add_explicit(&cluster_stats.rooms, 1, memory_order_relaxed);
        } else {
            croom_free(cr);
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
        replied(&cl.cmd);
    struct croom *cr = *croom_slot(x->hash, x->name, x->len);
    if (!cr || !cr->want || cr->gen != x->gen || !cr->syncing) {
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
    post(m, home);
    /* What arrived while the script ran follows, in order; the home drops duplicates. */
    while (cr->buf) {
        struct xmsg *b = cr->buf;
        cr->buf = b->next;
        post(b, home);
    }
    cr->buf_tail = NULL;
    cr->nbuf = 0;
    cr->live = true;
    free(x);
}

static void room_request(struct xmsg *m)
{
    struct croom **pp = croom_slot(m->room_hash, m->data, m->room_len);
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
        croom_drop_buf(r);
        if (!r->subscribed)
            subscribe(r);
        else if (r->confirmed)
            start_sync(r);
    } else if (r) { /* XM_CL_UNSUB */
        r->want = false;
        r->live = r->syncing = false;
        croom_drop_buf(r);
        if (r->subscribed && cl.sub_ready) {
            if (room_cmd(&cl.sub, on_sub_reply, NULL, "UNSUBSCRIBE", r)) {
                r->subscribed = r->confirmed = false;
                r->leaving = true;
            } else {
                cl.reset = true;
            }
        } else if (!r->leaving) {
            atomic_fetch_sub_explicit(&cluster_stats.rooms, 1, memory_order_relaxed);
            croom_free(r);
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
        replied(&cl.cmd);
    uint64_t epoch, seq, n;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        !reply_u64(r->element[0], &epoch, true) || !reply_u64(r->element[1], &seq, false) ||
        !reply_u64(r->element[2], &n, false)) {
        if (r && r->type == REDIS_REPLY_ERROR)
            log_error("cluster: publish failed: %s", r->str);
        pub_fail(m);
        return;
    }
    atomic_fetch_add_explicit(&cluster_stats.publishes, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&cluster_stats.pending, 1, memory_order_relaxed);
    m->type = XM_PUB_ACK;
    m->seq = seq;
    m->epoch = epoch;
    m->subscribers = n; /* nodes that received it */
    post(m, m->from);
}

static void publish(struct xmsg *m)
{
    if (!cl.cmd_ready || !cl.sub_ready) {
        pub_fail(m);
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
    snprintf(ms, sizeof(ms), "%lld", (long long)unix_ms());
    snprintf(hs, sizeof(hs), "%u", cl.cfg->history_size);
    history_epoch_format(fresh_epoch(), ep);
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
    if (!command(&cl.cmd, on_pub_reply, m, 11, argv, lens)) {
        pub_fail(m);
        cl.reset = true;
    }
}

/* ---- connections ---- */

static void on_setup_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct rconn *rc = priv;
    redisReply *r = reply;
    (void)ac;
    if (!r)
        return;
    replied(rc);
    if (r->type == REDIS_REPLY_ERROR) {
        log_error("cluster: Redis refused the connection's setup: %s", r->str);
        cl.reset = true;
    }
}

static void on_ping_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    (void)priv;
    if (reply)
        replied(&cl.cmd);
    cl.ping_out = false;
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct rconn *rc = ac->ev.data;
    if (status != REDIS_OK) {
        log_warn("cluster: cannot connect to Redis: %s", ac->errstr);
        return; /* hiredis frees it: ev_cleanup */
    }
    (void)rc;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    if (status != REDIS_OK)
        log_warn("cluster: lost Redis: %s", ac->errstr);
    cl.reset = true;
}

static bool open_conn(struct rconn *rc)
{
    memset(rc, 0, sizeof(*rc));
    redisAsyncContext *ac =
        cl.path[0] ? redisAsyncConnectUnix(cl.path) : redisAsyncConnect(cl.host, cl.port);
    if (!ac)
        return false;
    if (ac->err) {
        log_warn("cluster: cannot connect to Redis: %s", ac->errstr);
        redisAsyncFree(ac);
        return false;
    }
    rc->ac = ac;
    ac->ev.data = rc;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    rc->wr = true; /* the connect completes when the socket is writable */
    /* Queued before the connect completes: sent first, in order. */
    if (cl.pass[0]) {
        const char *a[] = {"AUTH", cl.user, cl.pass};
        if (cl.user[0])
            command(rc, on_setup_reply, rc, 3, a, NULL);
        else
            command(rc, on_setup_reply, rc, 2, (const char *[]){"AUTH", cl.pass}, NULL);
    }
    return true;
}

static void teardown(void)
{
    bool was_up = cl.cmd_ready && cl.sub_ready;
    cl.cmd_ready = cl.sub_ready = false;
    /* Frees run the pending callbacks with no reply: publishes fail, syncs are dropped. */
    if (cl.cmd.ac)
        redisAsyncFree(cl.cmd.ac);
    if (cl.sub.ac)
        redisAsyncFree(cl.sub.ac);
    cl.cmd.ac = cl.sub.ac = NULL;
    cl.ping_out = false;
    for (unsigned b = 0; b < CROOM_BUCKETS; b++) {
        struct croom **pp = &cl.rooms[b];
        while (*pp) {
            struct croom *r = *pp;
            r->subscribed = r->confirmed = r->leaving = r->syncing = r->live = false;
            croom_drop_buf(r);
            if (!r->want) {
                *pp = r->next;
                free(r);
                atomic_fetch_sub_explicit(&cluster_stats.rooms, 1, memory_order_relaxed);
                continue;
            }
            pp = &r->next;
        }
    }
    if (was_up || atomic_load(&cluster_stats.state) == CLUSTER_UP)
        log_warn("cluster: Redis is down: publishes fail with UNAVAILABLE until it is back");
    atomic_store(&cluster_stats.state, CLUSTER_DOWN);
    /* Capped exponential backoff with +-25% jitter: nodes do not reconnect in step. */
    int64_t b = cl.backoff_ms ? cl.backoff_ms * 2 : CLUSTER_BACKOFF_MIN_MS;
    if (b > CLUSTER_BACKOFF_MAX_MS)
        b = CLUSTER_BACKOFF_MAX_MS;
    cl.backoff_ms = b;
    uint32_t rnd = 0;
    if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        rnd = (uint32_t)now_ms();
    cl.next_try_ms = now_ms() + b * 3 / 4 + (int64_t)(rnd % (uint32_t)(b / 2 + 1));
    cl.reset = false;
}

/* Both connections are set up: resubscribe and resync every room wanted here. */
static void went_up(void)
{
    cl.backoff_ms = 0;
    atomic_store(&cluster_stats.state, CLUSTER_UP);
    log_info("cluster: connected to Redis");
    for (unsigned b = 0; b < CROOM_BUCKETS; b++)
        for (struct croom *r = cl.rooms[b]; r; r = r->next)
            subscribe(r);
}

static void on_ready_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct rconn *rc = priv;
    redisReply *r = reply;
    (void)ac;
    if (!r)
        return;
    replied(rc);
    if (r->type == REDIS_REPLY_ERROR) {
        log_error("cluster: Redis refused the connection's setup: %s", r->str);
        cl.reset = true;
        return;
    }
    if (rc == &cl.cmd)
        cl.cmd_ready = true;
    else
        cl.sub_ready = true;
    if (cl.cmd_ready && cl.sub_ready)
        went_up();
}

static void connect_both(void)
{
    atomic_fetch_add_explicit(&cluster_stats.reconnects, 1, memory_order_relaxed);
    if (!open_conn(&cl.cmd) || !open_conn(&cl.sub)) {
        cl.reset = true;
        return;
    }
    char db[16];
    snprintf(db, sizeof(db), "%d", cl.db);
    command(&cl.cmd, on_setup_reply, &cl.cmd, 2, (const char *[]){"SELECT", db}, NULL);
    command(&cl.cmd, on_setup_reply, &cl.cmd, 3, (const char *[]){"SCRIPT", "LOAD", PUB_SCRIPT},
            NULL);
    command(&cl.cmd, on_setup_reply, &cl.cmd, 3, (const char *[]){"SCRIPT", "LOAD", SYNC_SCRIPT},
            NULL);
    command(&cl.cmd, on_ready_reply, &cl.cmd, 1, (const char *[]){"PING"}, NULL);
    command(&cl.sub, on_ready_reply, &cl.sub, 1, (const char *[]){"PING"}, NULL);
}

/* ---- the thread ---- */

static void take_requests(void)
{
    uint64_t v;
    if (read(cl.efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        log_error("cluster: eventfd read: %s", strerror(errno));
    pthread_mutex_lock(&cl.mu);
    struct xmsg *m = cl.q_head;
    cl.q_head = cl.q_tail = NULL;
    pthread_mutex_unlock(&cl.mu);
    while (m) {
        struct xmsg *next = m->next;
        m->next = NULL;
        if (m->type == XM_PUBLISH)
            publish(m);
        else
            room_request(m);
        m = next;
    }
}

static bool timed_out(struct rconn *rc, int64_t now)
{
    return rc->ac && rc->outstanding && now - rc->progress_ms > cl.timeout_ms;
}

static void *bus_main(void *arg)
{
    (void)arg;
    log_set_thread_name("bus");
    connect_both();
    while (!atomic_load(&cl.stop)) {
        int64_t now = now_ms();
        if (cl.reset)
            teardown();
        if (!cl.cmd.ac && !cl.sub.ac && now >= cl.next_try_ms)
            connect_both();
        if (cl.cmd_ready && !cl.ping_out && now - cl.cmd.progress_ms >= 1000 &&
            !cl.cmd.outstanding) {
            if (command(&cl.cmd, on_ping_reply, NULL, 1, (const char *[]){"PING"}, NULL))
                cl.ping_out = true;
        }
        if (timed_out(&cl.cmd, now) || timed_out(&cl.sub, now)) {
            log_warn("cluster: Redis has not answered for %lld ms: treating it as down",
                     (long long)cl.timeout_ms);
            teardown();
            continue;
        }
        struct pollfd pf[3] = {{cl.efd, POLLIN, 0}, {-1, 0, 0}, {-1, 0, 0}};
        struct rconn *rcs[3] = {NULL, &cl.cmd, &cl.sub};
        bool open = links_open();
        for (int i = 1; i < 3; i++) {
            struct rconn *rc = rcs[i];
            if (!rc->ac)
                continue;
            pf[i].fd = rc->ac->c.fd;
            pf[i].events =
                (short)((rc->rd && (rc != &cl.sub || open) ? POLLIN : 0) | (rc->wr ? POLLOUT : 0));
        }
        int n = poll(pf, 3, open ? 100 : 1);
        if (n < 0 && errno != EINTR) {
            log_error("cluster: poll: %s", strerror(errno));
            break;
        }
        for (int i = 1; i < 3 && n > 0; i++) {
            struct rconn *rc = rcs[i];
            /* A callback may free either context: look each up again. */
            if (rc->ac && (pf[i].revents & (POLLIN | POLLERR | POLLHUP)))
                redisAsyncHandleRead(rc->ac);
            if (rc->ac && (pf[i].revents & POLLOUT))
                redisAsyncHandleWrite(rc->ac);
        }
        if (n > 0 && (pf[0].revents & POLLIN))
            take_requests();
        reap_ring();
    }
    /* Stopping: what is left fails (the workers are gone or going: post drops it). */
    take_requests();
    cl.reset = true;
    teardown();
    for (unsigned b = 0; b < CROOM_BUCKETS; b++)
        while (cl.rooms[b])
            croom_free(cl.rooms[b]);
    reap_ring();
    return NULL;
}

int cluster_start(struct engine *eng)
{
    cl.eng = eng;
    cl.id = eng->nworkers;
    cl.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (cl.efd < 0)
        return -errno;
    pthread_mutex_init(&cl.mu, NULL);
    cl.xout = calloc(eng->nworkers, sizeof(*cl.xout));
    if (!cl.xout)
        return -ENOMEM;
    int r = io_uring_queue_init(256, &cl.ring, 0);
    if (r < 0)
        return r;
    r = -pthread_create(&cl.thread, NULL, bus_main, NULL);
    if (r == 0)
        cl.running = true;
    return r;
}

void cluster_stop(void)
{
    if (!cl.running)
        return;
    atomic_store(&cl.stop, true);
    uint64_t one = 1;
    if (write(cl.efd, &one, sizeof(one)) < 0)
        log_error("cluster: eventfd write: %s", strerror(errno));
    pthread_join(cl.thread, NULL);
    cl.running = false;
    io_uring_queue_exit(&cl.ring);
    close(cl.efd);
    free(cl.xout);
    pthread_mutex_destroy(&cl.mu);
    atomic_store(&cluster_stats.state, CLUSTER_OFF);
}

/* ---- worker side: handing requests over ---- */

bool cluster_can_publish(struct worker *w)
{
    if (atomic_load_explicit(&cluster_stats.state, memory_order_relaxed) != CLUSTER_UP)
        goto refuse;
    /* Checked here, counted when submitted: a publish that fails in between (out of memory)
     * holds no place; racing workers overshoot by at most one each. */
    if (atomic_load_explicit(&cluster_stats.pending, memory_order_relaxed) < cl.max_pending)
        return true;
refuse:
    (void)w;
    atomic_fetch_add_explicit(&cluster_stats.publish_errors, 1, memory_order_relaxed);
    return false;
}

void cluster_submit(struct worker *w, struct xmsg *m)
{
    m->from = (uint8_t)w->id;
    m->next = NULL;
    if (m->type == XM_PUBLISH)
        atomic_fetch_add_explicit(&cluster_stats.pending, 1, memory_order_relaxed);
    pthread_mutex_lock(&cl.mu);
    bool was_empty = !cl.q_head;
    if (cl.q_tail)
        cl.q_tail->next = m;
    else
        cl.q_head = m;
    cl.q_tail = m;
    pthread_mutex_unlock(&cl.mu);
    if (was_empty) {
        uint64_t one = 1;
        if (write(cl.efd, &one, sizeof(one)) < 0)
            log_error("cluster: eventfd write: %s", strerror(errno));
    }
}
