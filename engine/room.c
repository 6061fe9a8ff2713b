/* room.c - the per-worker room table and membership lists (see room.h). */
#include "room.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "cluster.h"
#include "conn.h"
#include "frame.h"
#include "history.h"
#include "proto/json.h"
#include "sendq.h"
#include "sys_stats.h"
#include "worker.h"

/* Initial buckets: most workers see a handful of rooms; the table doubles as it fills. */
#define ROOM_TABLE_INITIAL 64

/* ---- SipHash-1-3 (Aumasson and Bernstein), 64-bit, over the process key ---- */

static uint64_t sip_k0, sip_k1;

void room_hash_init(void)
{
    uint64_t k[2] = {0, 0};
    if (getrandom(k, sizeof(k), 0) != (ssize_t)sizeof(k)) {
        /* No entropy source: a key from the clock and the pid still differs per process. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        k[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
        k[1] = (uint64_t)ts.tv_sec * 0xc2b2ae3d27d4eb4full ^ k[0];
    }
    sip_k0 = k[0];
    sip_k1 = k[1];
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = ROTL(v1, 13);                                                                         \
        v1 ^= v0;                                                                                  \
        v0 = ROTL(v0, 32);                                                                         \
        v2 += v3;                                                                                  \
        v3 = ROTL(v3, 16);                                                                         \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = ROTL(v3, 21);                                                                         \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = ROTL(v1, 17);                                                                         \
        v1 ^= v2;                                                                                  \
        v2 = ROTL(v2, 32);                                                                         \
    } while (0)

uint32_t room_hash(const char *name, size_t len)
{
    uint64_t v0 = 0x736f6d6570736575ull ^ sip_k0, v1 = 0x646f72616e646f6dull ^ sip_k1;
    uint64_t v2 = 0x6c7967656e657261ull ^ sip_k0, v3 = 0x7465646279746573ull ^ sip_k1;
    const uint8_t *p = (const uint8_t *)name;
    size_t full = len & ~(size_t)7;
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m;
        memcpy(&m, p + i, 8); /* little-endian hosts: io_uring is Linux on x86-64/arm64 */
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)len << 56;
    for (size_t i = 0; i < (len & 7); i++)
        b |= (uint64_t)p[full + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    uint64_t h = v0 ^ v1 ^ v2 ^ v3;
    return (uint32_t)(h ^ (h >> 32));
}

void room_table_init(struct room_table *t, _Atomic unsigned *total)
{
    t->nbuckets = ROOM_TABLE_INITIAL;
    t->buckets = calloc(t->nbuckets, sizeof(*t->buckets));
    if (!t->buckets) {
        fprintf(stderr, "ringcast: out of memory for a room table at startup\n");
        abort();
    }
    t->count = 0;
    t->total = total;
    t->idle_head = t->idle_tail = NULL;
}

static void room_free(struct room_table *t, struct room *r)
{
    atomic_fetch_sub_explicit(t->total, 1, memory_order_relaxed);
    history_free(r->hist);
    cluster_room_free(r);
    free(r->pres); /* presence.h: plain counts, one allocation */
    free(r->wcount);
    free(r);
}

void room_table_free(struct room_table *t)
{
    for (unsigned i = 0; i < t->nbuckets; i++) {
        struct room *r = t->buckets[i];
        while (r) {
            struct room *next = r->hnext;
            room_free(t, r);
            r = next;
        }
    }
    free(t->buckets);
    t->buckets = NULL;
    t->count = 0;
}

struct room *room_find(struct room_table *t, uint32_t hash, const char *name, size_t len)
{
    for (struct room *r = t->buckets[hash & (t->nbuckets - 1)]; r; r = r->hnext)
        if (r->hash == hash && r->name_len == len && memcmp(r->name, name, len) == 0)
            return r;
    return NULL;
}

/* Doubles the buckets; without memory the table stays as it is (longer chains). */
static void grow(struct room_table *t)
{
    unsigned n = t->nbuckets * 2;
    struct room **b = calloc(n, sizeof(*b));
    if (!b)
        return;
    for (unsigned i = 0; i < t->nbuckets; i++) {
        struct room *r = t->buckets[i];
        while (r) {
            struct room *next = r->hnext;
            r->hnext = b[r->hash & (n - 1)];
            b[r->hash & (n - 1)] = r;
            r = next;
        }
    }
    free(t->buckets);
    t->buckets = b;
    t->nbuckets = n;
}

struct room *room_get(struct room_table *t, uint32_t hash, const char *name, size_t len,
                      bool is_home, unsigned nworkers)
{
    struct room *r = room_find(t, hash, name, len);
    if (r)
        return r;
    /* The escaped form is computed once here, so every event and response of the room
     * copies it instead of escaping the name again. */
    char esc[CHANNEL_MAX_LEN * 6 + 2];
    struct jw jw;
    jw_init(&jw, esc, sizeof(esc));
    jw_str(&jw, name, len);
    size_t esc_len = jw.len - 2; /* without the quotes */
    r = calloc(1, sizeof(*r) + len + esc_len);
    if (!r)
        return NULL;
    if (is_home && nworkers > 1 && !(r->wcount = calloc(nworkers, sizeof(*r->wcount)))) {
        free(r);
        return NULL;
    }
    r->hash = hash;
    r->name_len = (uint16_t)len;
    r->esc_len = (uint16_t)esc_len;
    memcpy(r->name, name, len);
    memcpy(r->name + len, esc + 1, esc_len);
    r->is_home = is_home;
    r->epoch = is_home ? history_epoch_new() : 0;
    atomic_fetch_add_explicit(t->total, 1, memory_order_relaxed);
    if (t->count >= t->nbuckets)
        grow(t);
    unsigned b = hash & (t->nbuckets - 1);
    r->hnext = t->buckets[b];
    t->buckets[b] = r;
    t->count++;
    return r;
}

void room_idle_del(struct room_table *t, struct room *r)
{
    if (!r->idle)
        return;
    if (r->iprev)
        r->iprev->inext = r->inext;
    else
        t->idle_head = r->inext;
    if (r->inext)
        r->inext->iprev = r->iprev;
    else
        t->idle_tail = r->iprev;
    r->inext = r->iprev = NULL;
    r->idle = false;
}

void room_idle_push(struct room_table *t, struct room *r, int64_t now_ms)
{
    room_idle_del(t, r);
    r->idle = true;
    r->idle_ms = now_ms;
    r->inext = NULL;
    r->iprev = t->idle_tail;
    if (t->idle_tail)
        t->idle_tail->inext = r;
    else
        t->idle_head = r;
    t->idle_tail = r;
}

void room_remove(struct room_table *t, struct room *r)
{
    room_idle_del(t, r);
    struct room **pp = &t->buckets[r->hash & (t->nbuckets - 1)];
    while (*pp != r)
        pp = &(*pp)->hnext;
    *pp = r->hnext;
    t->count--;
    room_free(t, r);
}

struct member *room_member_add(struct room *r, struct conn *c)
{
    struct member *m = malloc(sizeof(*m));
    if (!m)
        return NULL;
    m->conn = c;
    m->room = r;
    m->pend = NULL;
    m->resume = 0;
    m->presence = false;
    m->rprev = NULL;
    m->rnext = r->members;
    if (r->members)
        r->members->rprev = m;
    r->members = m;
    r->nlocal++;
    if (sys_room_is_stats(room_name(r)))
        atomic_fetch_add_explicit(&c->w->eng->sys_subs, 1, memory_order_relaxed);
    m->cnext = c->subs;
    c->subs = m;
    c->nsubs++;
    return m;
}

bool room_member_hold(struct member *m, uint64_t pos, struct frame *f, struct span id, bool since)
{
    struct pend *p = malloc(sizeof(*p) + id.len);
    if (!p) {
        frame_release(f);
        return false;
    }
    p->next = NULL;
    p->pos = pos;
    p->f = f;
    p->since = since;
    p->id_len = (uint32_t)id.len;
    if (id.len)
        memcpy(p->id, id.base, id.len);
    struct pend **pp = &m->pend;
    while (*pp)
        pp = &(*pp)->next;
    *pp = p;
    return true;
}

void room_member_release(struct member *m)
{
    while (m->pend) {
        struct pend *p = m->pend;
        m->pend = p->next;
        sendq_release_held(m->conn, p->pos, p->f);
        frame_release(p->f);
        free(p);
    }
}

void room_member_del(struct member *m)
{
    struct room *r = m->room;
    struct conn *c = m->conn;
    room_member_release(m);
    if (m->rprev)
        m->rprev->rnext = m->rnext;
    else
        r->members = m->rnext;
    if (m->rnext)
        m->rnext->rprev = m->rprev;
    r->nlocal--;
    if (sys_room_is_stats(room_name(r)))
        atomic_fetch_sub_explicit(&c->w->eng->sys_subs, 1, memory_order_relaxed);
    /* The connection's list is short (max_subscriptions) and only walked here and on
     * unsubscribe, so a singly linked list keeps the membership small. */
    struct member **pp = &c->subs;
    while (*pp != m)
        pp = &(*pp)->cnext;
    *pp = m->cnext;
    c->nsubs--;
    free(m);
}

struct member *room_member_of(struct conn *c, struct room *r)
{
    for (struct member *m = c->subs; m; m = m->cnext)
        if (m->room == r)
            return m;
    return NULL;
}
