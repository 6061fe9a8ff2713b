/* edge.c - per-IP limits, Origin allow-list, and the token check at the upgrade (see edge.h). */
#include "edge.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>

#include "auth.h"
#include "config.h"
#include "conn.h"
#include "log.h"
#include "proto/http.h"
#include "proto/jwt.h"
#include "worker.h"

/* Stripes of the per-IP table, each a mutex and table_size / NSTRIPES entries. */
#define NSTRIPES 256
/* Entries an address may occupy, probed from its hash: with a seeded hash and a table a few
 * times the live addresses, a full window is rare and means the stripe really is busy. */
#define PROBE 16
/* Seconds a client refused for too many concurrent connections is asked to wait. */
#define RETRY_CONCURRENT "5"

struct edge_stats edge_stats;

struct ip_entry {
    uint8_t addr[16]; /* IPv6, or IPv4-mapped IPv6; an IPv6 address keeps its /64 only */
    uint32_t conns;   /* WebSocket connections holding this entry */
    uint32_t win_s;   /* monotonic second of the rate window */
    uint32_t win_new; /* upgrade attempts in that second */
    bool used;
};

static struct ip_entry *table;
static size_t region; /* entries per stripe */
static pthread_mutex_t locks[NSTRIPES];
static uint64_t seed[2];

int edge_init(const struct rc_config *cfg)
{
    size_t n = cfg->per_ip_table_size;
    if (n < NSTRIPES)
        n = NSTRIPES;
    region = n / NSTRIPES;
    table = calloc(region * NSTRIPES, sizeof(*table));
    if (!table) {
        fprintf(stderr, "ringcast: out of memory for a per-IP table of %zu entries\n", n);
        return -1;
    }
    for (unsigned i = 0; i < NSTRIPES; i++)
        pthread_mutex_init(&locks[i], NULL);
    if (getrandom(seed, sizeof(seed), 0) != (ssize_t)sizeof(seed)) {
        fprintf(stderr, "ringcast: getrandom failed: no seed for the per-IP table\n");
        return -1;
    }
    return 0;
}

void edge_shutdown(void)
{
    free(table);
    table = NULL;
}

void edge_log_totals(void)
{
    uint64_t a = atomic_load(&edge_stats.auth), o = atomic_load(&edge_stats.origin);
    uint64_t ic = atomic_load(&edge_stats.ip_concurrent), ir = atomic_load(&edge_stats.ip_rate);
    uint64_t tf = atomic_load(&edge_stats.table_full);
    if (a || o || ic || ir || tf)
        log_info("edge refusals: auth(401)=%llu origin(403)=%llu per-ip-concurrent(429)=%llu "
                 "per-ip-rate(429)=%llu per-ip-table-full(503)=%llu",
                 (unsigned long long)a, (unsigned long long)o, (unsigned long long)ic,
                 (unsigned long long)ir, (unsigned long long)tf);
}

/* ---- per-IP ---- */

static bool peer_key(int fd, uint8_t key[16])
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
        return false;
    memset(key, 0, 16);
    if (ss.ss_family == AF_INET) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((struct sockaddr_in *)&ss)->sin_addr, 4);
        return true;
    }
    if (ss.ss_family == AF_INET6) {
        const uint8_t *a = ((struct sockaddr_in6 *)&ss)->sin6_addr.s6_addr;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        /* An IPv4 client of a dual-stack socket is that IPv4 address; others count by /64. */
        memcpy(key, a, memcmp(a, mapped, 12) == 0 ? 16 : 8);
        return true;
    }
    return false;
}

/* A keyed mix (seeded at startup): not a MAC, but without the seed a client cannot choose
 * addresses that collide in one stripe. */
static uint64_t key_hash(const uint8_t key[16])
{
    uint64_t a, b;
    memcpy(&a, key, 8);
    memcpy(&b, key + 8, 8);
    uint64_t h = seed[0] ^ (a * 0x9e3779b97f4a7c15ull);
    h = (h ^ (h >> 29)) * 0xbf58476d1ce4e5b9ull;
    h ^= seed[1] ^ (b * 0xc2b2ae3d27d4eb4full);
    h = (h ^ (h >> 32)) * 0x94d049bb133111ebull;
    return h ^ (h >> 31);
}

static int ip_admit(struct conn *c, const struct rc_config *cfg, struct edge_refusal *r)
{
    uint8_t key[16];
    if (!peer_key(c->fd, key))
        return 0; /* the peer is gone already: its recv ends the connection */
    uint64_t h = key_hash(key);
    unsigned stripe = (unsigned)(h & (NSTRIPES - 1));
    size_t start = (size_t)(h >> 8) % region;
    uint32_t now_s = (uint32_t)(c->w->mono_ms / 1000);
    struct ip_entry *base = &table[stripe * region], *e = NULL, *spare = NULL;
    int status = 0;
    pthread_mutex_lock(&locks[stripe]);
    for (size_t i = 0; i < PROBE && i < region; i++) {
        struct ip_entry *x = &base[(start + i) % region];
        if (x->used && memcmp(x->addr, key, 16) == 0) {
            e = x;
            break;
        }
        if (!spare && (!x->used || (x->conns == 0 && x->win_s != now_s)))
            spare = x;
    }
    if (!e && !spare) {
        atomic_fetch_add_explicit(&edge_stats.table_full, 1, memory_order_relaxed);
        r->why = "too many client addresses connected: per-IP table full, retry later";
        r->hname = "Retry-After", r->hvalue = "1";
        status = 503;
        goto out;
    }
    if (!e) {
        e = spare;
        if (!e->used)
            atomic_fetch_add_explicit(&edge_stats.entries, 1, memory_order_relaxed);
        memcpy(e->addr, key, 16);
        e->used = true;
        e->conns = 0;
        e->win_new = 0;
        e->win_s = now_s;
    }
    if (e->win_s != now_s) {
        e->win_s = now_s;
        e->win_new = 0;
    }
    /* Every attempt counts, refused or not: a client that keeps hammering stays refused. */
    if (e->win_new < UINT32_MAX)
        e->win_new++;
    if (cfg->max_new_connections_per_ip_per_s &&
        e->win_new > cfg->max_new_connections_per_ip_per_s) {
        atomic_fetch_add_explicit(&edge_stats.ip_rate, 1, memory_order_relaxed);
        r->why = "too many new connections from this address per second (max-new-connections-per-"
                 "ip-per-s)";
        r->hname = "Retry-After", r->hvalue = "1";
        status = 429;
        goto out;
    }
    if (cfg->max_connections_per_ip && e->conns >= cfg->max_connections_per_ip) {
        atomic_fetch_add_explicit(&edge_stats.ip_concurrent, 1, memory_order_relaxed);
        r->why = "too many connections from this address (max-connections-per-ip)";
        r->hname = "Retry-After", r->hvalue = RETRY_CONCURRENT;
        status = 429;
        goto out;
    }
    e->conns++;
    c->ip_slot = (uint32_t)(e - table);
    c->flags |= CONN_IP_COUNTED;
out:
    pthread_mutex_unlock(&locks[stripe]);
    return status;
}

void edge_release(struct conn *c)
{
    if (!(c->flags & CONN_IP_COUNTED))
        return;
    c->flags &= ~CONN_IP_COUNTED;
    struct ip_entry *e = &table[c->ip_slot];
    unsigned stripe = (unsigned)(c->ip_slot / region);
    uint32_t now_s = (uint32_t)(c->w->mono_ms / 1000);
    pthread_mutex_lock(&locks[stripe]);
    /* The entry cannot have been reused: our count held it. */
    if (--e->conns == 0 && e->win_s != now_s) {
        e->used = false;
        atomic_fetch_sub_explicit(&edge_stats.entries, 1, memory_order_relaxed);
    }
    pthread_mutex_unlock(&locks[stripe]);
}

/* ---- Origin ---- */

struct origin_parts {
    struct span scheme, host, port; /* scheme empty when absent; port empty when absent */
};

/* Splits "[scheme://]host[:port]". */
static void origin_split(struct span s, struct origin_parts *o)
{
    memset(o, 0, sizeof(*o));
    const char *p = s.base, *end = s.base + s.len;
    for (const char *q = p; q + 2 < end; q++) {
        if (q[0] == ':' && q[1] == '/' && q[2] == '/') {
            o->scheme = (struct span){p, (size_t)(q - p)};
            p = q + 3;
            break;
        }
    }
    const char *colon = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == ':')
            colon = q; /* the last one: a bracketed IPv6 host has colons of its own */
    if (colon && memchr(colon, ']', (size_t)(end - colon)))
        colon = NULL;
    o->host = (struct span){p, (size_t)((colon ? colon : end) - p)};
    if (colon)
        o->port = (struct span){colon + 1, (size_t)(end - colon - 1)};
}

static bool span_ieq(struct span a, struct span b)
{
    return a.len == b.len && strncasecmp(a.base, b.base, a.len) == 0;
}

static bool entry_match(struct span entry, struct span origin)
{
    if (entry.len == 1 && entry.base[0] == '*')
        return true;
    struct origin_parts e, o;
    origin_split(entry, &e);
    if (!(e.host.len > 2 && e.host.base[0] == '*' && e.host.base[1] == '.'))
        return span_ieq(entry, origin); /* an exact origin (or "null") */
    origin_split(origin, &o);
    if (!o.scheme.len)
        return false; /* a browser's Origin always has a scheme */
    if ((e.scheme.len && !span_ieq(e.scheme, o.scheme)) ||
        (e.port.len && !span_ieq(e.port, o.port)))
        return false;
    /* "*.example.com": the host ends in ".example.com" with at least one label before it. */
    struct span suffix = {e.host.base + 1, e.host.len - 1};
    return o.host.len > suffix.len &&
           span_ieq(suffix, (struct span){o.host.base + o.host.len - suffix.len, suffix.len});
}

bool edge_origin_match(const char *list, struct span origin)
{
    for (const char *p = list; *p;) {
        const char *comma = strchr(p, ',');
        const char *e = comma ? comma : p + strlen(p);
        const char *s = p;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        const char *t = e;
        while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if (t > s && entry_match((struct span){s, (size_t)(t - s)}, origin))
            return true;
        p = comma ? comma + 1 : e;
    }
    return false;
}

/* ---- the upgrade ---- */

int edge_check_upgrade(struct conn *c, const struct http_request *req, struct edge_refusal *r)
{
    const struct rc_config *cfg = c->w->cfg;
    memset(r, 0, sizeof(*r));
    /* Cheapest first, and the per-IP count before anything a client can make us work for
     * (a signature check): a flood of bad tokens from one address is bounded by its rate. */
    if (cfg->max_connections_per_ip || cfg->max_new_connections_per_ip_per_s) {
        int st = ip_admit(c, cfg, r);
        if (st)
            return st;
    }
    if (cfg->allowed_origins[0] && req->origin.base &&
        !edge_origin_match(cfg->allowed_origins, req->origin)) {
        atomic_fetch_add_explicit(&edge_stats.origin, 1, memory_order_relaxed);
        r->why = "Origin not allowed (allowed-origins)";
        return 403;
    }
    if (auth_mode() == AUTH_OFF)
        return 0;
    char buf[JWT_MAX_TOKEN];
    struct span tok, proto;
    const char *why = NULL;
    int found = auth_token_find(req, buf, sizeof(buf), &tok, &proto, &why);
    if (found == 0 && auth_mode() == AUTH_OPTIONAL)
        return 0;
    if (found == 0)
        why = "a token is required (Authorization: Bearer, Sec-WebSocket-Protocol: bearer, or "
              "?token=)";
    else if (found > 0)
        why = auth_verify(tok, c->w->now_ms, &c->grant);
    if (why) {
        atomic_fetch_add_explicit(&edge_stats.auth, 1, memory_order_relaxed);
        r->why = why;
        r->hname = "WWW-Authenticate", r->hvalue = "Bearer";
        return 401;
    }
    r->protocol = proto;
    return 0;
}
