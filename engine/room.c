/* room.c - the per-worker room table and membership lists (see room.h). */
#include "room.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "frame.h"
#include "proto/json.h"

/* Initial buckets: most workers see a handful of rooms; the table doubles as it fills. */
#define ROOM_TABLE_INITIAL 64

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p) {
        fprintf(stderr, "ringcast: out of memory in the room table\n");
        abort();
    }
    return p;
}

uint32_t room_hash(const char *name, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)name[i];
        h *= 16777619u;
    }
    return h;
}

void room_table_init(struct room_table *t)
{
    t->nbuckets = ROOM_TABLE_INITIAL;
    t->buckets = xcalloc(t->nbuckets, sizeof(*t->buckets));
    t->count = 0;
}

static void room_free(struct room *r)
{
    free(r->wcount);
    free(r);
}

void room_table_free(struct room_table *t)
{
    for (unsigned i = 0; i < t->nbuckets; i++) {
        struct room *r = t->buckets[i];
        while (r) {
            struct room *next = r->hnext;
            room_free(r);
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

static void grow(struct room_table *t)
{
    unsigned n = t->nbuckets * 2;
    struct room **b = xcalloc(n, sizeof(*b));
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
    r = xcalloc(1, sizeof(*r) + len + esc_len);
    r->hash = hash;
    r->name_len = (uint16_t)len;
    r->esc_len = (uint16_t)esc_len;
    memcpy(r->name, name, len);
    memcpy(r->name + len, esc + 1, esc_len);
    r->is_home = is_home;
    if (is_home && nworkers > 1)
        r->wcount = xcalloc(nworkers, sizeof(*r->wcount));
    if (t->count >= t->nbuckets)
        grow(t);
    unsigned b = hash & (t->nbuckets - 1);
    r->hnext = t->buckets[b];
    t->buckets[b] = r;
    t->count++;
    return r;
}

void room_remove(struct room_table *t, struct room *r)
{
    struct room **pp = &t->buckets[r->hash & (t->nbuckets - 1)];
    while (*pp != r)
        pp = &(*pp)->hnext;
    *pp = r->hnext;
    t->count--;
    room_free(r);
}

struct member *room_member_add(struct room *r, struct conn *c, struct frame *reply)
{
    struct member *m = malloc(sizeof(*m));
    if (!m) {
        fprintf(stderr, "ringcast: out of memory adding a subscriber\n");
        abort();
    }
    m->conn = c;
    m->room = r;
    m->reply = reply;
    m->rprev = NULL;
    m->rnext = r->members;
    if (r->members)
        r->members->rprev = m;
    r->members = m;
    r->nlocal++;
    m->cnext = c->subs;
    c->subs = m;
    c->nsubs++;
    return m;
}

void room_member_del(struct member *m)
{
    struct room *r = m->room;
    struct conn *c = m->conn;
    if (m->rprev)
        m->rprev->rnext = m->rnext;
    else
        r->members = m->rnext;
    if (m->rnext)
        m->rnext->rprev = m->rprev;
    r->nlocal--;
    /* The connection's list is short (max_subscriptions) and only walked here and on
     * unsubscribe, so a singly linked list keeps the membership small. */
    struct member **pp = &c->subs;
    while (*pp != m)
        pp = &(*pp)->cnext;
    *pp = m->cnext;
    c->nsubs--;
    if (m->reply)
        frame_release(m->reply);
    free(m);
}

struct member *room_member_of(struct conn *c, struct room *r)
{
    for (struct member *m = c->subs; m; m = m->cnext)
        if (m->room == r)
            return m;
    return NULL;
}
