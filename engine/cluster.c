/* cluster.c - the bus thread: Redis connections, scripts, reconnects (see cluster.h).
 *
 * This file: startup, the connections and their liveness, the thread, the hand-off with the
 * workers; cluster_chan.c: the rooms (SUBSCRIBE, sync) and the publish script.
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
#include "cluster_bus.h"

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

struct cluster_bus cl;

int64_t bus_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t bus_unix_ms(void)
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

uint64_t bus_fresh_epoch(void)
{
    uint64_t e = 0;
    while (e == 0)
        if (getrandom(&e, sizeof(e), 0) != (ssize_t)sizeof(e))
            e = (uint64_t)bus_unix_ms() * 0x9e3779b97f4a7c15ull;
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

void bus_post(struct xmsg *m, unsigned to)
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
            bus_post(m, m->to);
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

void bus_pub_fail(struct xmsg *m)
{
    atomic_fetch_add_explicit(&cluster_stats.publish_errors, 1, memory_order_relaxed);
    atomic_fetch_sub_explicit(&cluster_stats.pending, 1, memory_order_relaxed);
    m->type = XM_PUB_ACK;
    m->err = true;
    m->unavail = true;
    bus_post(m, m->from);
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

static void bus_sent(struct rconn *rc)
{
    if (rc->outstanding++ == 0)
        rc->progress_ms = bus_now_ms();
}

void bus_replied(struct rconn *rc)
{
    if (rc->outstanding)
        rc->outstanding--;
    rc->progress_ms = bus_now_ms();
}

bool bus_command(struct rconn *rc, redisCallbackFn *fn, void *priv, int argc, const char **argv,
                 const size_t *lens)
{
    if (!rc->ac || redisAsyncCommandArgv(rc->ac, fn, priv, argc, argv, lens) != REDIS_OK)
        return false;
    bus_sent(rc);
    return true;
}

/* ---- connections ---- */

/* A setup command's reply (AUTH, SELECT, SCRIPT LOAD...): false when there is none (the
 * connection went away) or Redis refused it, which resets the bus. */
static bool setup_replied(struct rconn *rc, redisReply *r)
{
    if (!r)
        return false;
    bus_replied(rc);
    if (r->type == REDIS_REPLY_ERROR) {
        log_error("cluster: Redis refused the connection's setup: %s", r->str);
        cl.reset = true;
        return false;
    }
    return true;
}

static void on_setup_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    setup_replied(priv, reply);
}

static void on_ping_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    (void)priv;
    if (reply)
        bus_replied(&cl.cmd);
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
            bus_command(rc, on_setup_reply, rc, 3, a, NULL);
        else
            bus_command(rc, on_setup_reply, rc, 2, (const char *[]){"AUTH", cl.pass}, NULL);
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
            bus_croom_drop_buf(r);
            if (!r->want) {
                *pp = r->next;
                free(r);
                atomic_fetch_sub_explicit(&cluster_stats.rooms, 1, memory_order_relaxed);
                continue;
            }
            pp = &r->next;
        }
    }
    bool was_state_up = atomic_load(&cluster_stats.state) == CLUSTER_UP;
    if (was_up || was_state_up)
        log_warn("cluster: Redis is down: publishes fail with UNAVAILABLE until it is back");
    atomic_store(&cluster_stats.state, CLUSTER_DOWN);
    /* The homes answer what waits for a SYNC that will not come now (cluster_on_down): after
     * the SYNCs posted before, on the same ordered link. */
    if ((was_up || was_state_up) && !atomic_load(&cl.stop)) {
        for (unsigned i = 0; i < cl.eng->nworkers; i++) {
            struct xmsg *m =
                bc_xmsg_new(cl.eng->workers[0], XM_CL_DOWN, (struct span){"", 0}, 0, 0);
            if (m) {
                m->from = (uint8_t)cl.id;
                bus_post(m, i);
            } else {
                log_error("cluster: out of memory telling worker %u that Redis is down", i);
            }
        }
    }
    /* Capped exponential backoff with +-25% jitter: nodes do not reconnect in step. */
    int64_t b = cl.backoff_ms ? cl.backoff_ms * 2 : CLUSTER_BACKOFF_MIN_MS;
    if (b > CLUSTER_BACKOFF_MAX_MS)
        b = CLUSTER_BACKOFF_MAX_MS;
    cl.backoff_ms = b;
    uint32_t rnd = 0;
    if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        rnd = (uint32_t)bus_now_ms();
    cl.next_try_ms = bus_now_ms() + b * 3 / 4 + (int64_t)(rnd % (uint32_t)(b / 2 + 1));
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
            bus_subscribe(r);
}

static void on_ready_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    struct rconn *rc = priv;
    (void)ac;
    if (!setup_replied(rc, reply))
        return;
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
    bus_command(&cl.cmd, on_setup_reply, &cl.cmd, 2, (const char *[]){"SELECT", db}, NULL);
    bus_command(&cl.cmd, on_setup_reply, &cl.cmd, 3, (const char *[]){"SCRIPT", "LOAD", PUB_SCRIPT},
                NULL);
    bus_command(&cl.cmd, on_setup_reply, &cl.cmd, 3,
                (const char *[]){"SCRIPT", "LOAD", SYNC_SCRIPT}, NULL);
    bus_command(&cl.cmd, on_ready_reply, &cl.cmd, 1, (const char *[]){"PING"}, NULL);
    bus_command(&cl.sub, on_ready_reply, &cl.sub, 1, (const char *[]){"PING"}, NULL);
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
            bus_publish(m);
        else
            bus_room_request(m);
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
        int64_t now = bus_now_ms();
        if (cl.reset)
            teardown();
        if (!cl.cmd.ac && !cl.sub.ac && now >= cl.next_try_ms)
            connect_both();
        if (cl.cmd_ready && !cl.ping_out && now - cl.cmd.progress_ms >= 1000 &&
            !cl.cmd.outstanding) {
            if (bus_command(&cl.cmd, on_ping_reply, NULL, 1, (const char *[]){"PING"}, NULL))
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
            bus_croom_free(cl.rooms[b]);
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
