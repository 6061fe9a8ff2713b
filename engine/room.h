/* room.h - a worker's room table: its local subscribers, and the rooms it is home for.
 *
 * Rooms are sharded: room_home() picks one worker per room name (FNV-1a mod workers). The
 * home owns the room's seq and knows which workers have local subscribers (a 64-bit mask and
 * a count per worker, so a publish can say how many subscribers it reached). Every worker,
 * home or not, keeps its own local index: name -> room -> intrusive list of memberships, so
 * a publish walks exactly the local subscribers and a leave is O(1).
 *
 * One struct room serves both roles on a worker. A home room lives for the whole run, so seq
 * never restarts; a room homed elsewhere lives while it has local subscribers (or a join is
 * waiting for the home's answer).
 *
 * A membership is the pair (connection, room): it sits on the room's list (doubly linked, for
 * O(1) removal) and on the connection's list (so a disconnect leaves every room).
 */
#ifndef RINGCAST_ENGINE_ROOM_H
#define RINGCAST_ENGINE_ROOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/channel.h"
#include "proto/span.h"

/* Scratch for an unescaped channel name: unescaping never makes a name longer, and an escaped
 * name longer than this cannot unescape to CHANNEL_MAX_LEN bytes or fewer. */
#define CHANNEL_UNESCAPE_CAP (6 * CHANNEL_MAX_LEN)

struct conn;
struct frame;

struct member {
    struct member *rnext, *rprev; /* the room's list */
    struct member *cnext;         /* the connection's list */
    struct conn *conn;
    struct room *room;
    /* Non-NULL while the join waits for the home worker's ack: the "subscribed" response,
     * sent on the ack. A pending member receives no events (owned reference). */
    struct frame *reply;
};

enum room_join {
    ROOM_JOIN_NONE = 0, /* home room, or no join asked */
    ROOM_JOIN_PENDING,  /* first local subscriber: waiting for the home's ack */
    ROOM_JOIN_DONE,     /* the home delivers this room's events here */
};

struct room {
    struct room *hnext; /* hash chain */
    uint32_t hash;
    uint16_t name_len; /* unescaped name */
    uint16_t esc_len;  /* the name as JSON string contents (escaped) */
    /* local side */
    struct member *members;
    uint32_t nlocal;     /* members, pending ones included */
    uint32_t sent_count; /* remote home: the count the home last heard from us */
    uint8_t join;        /* enum room_join */
    bool is_home;
    bool delivering; /* a publish is walking members: a leave must not free the room */
    /* home side */
    uint64_t seq;
    uint64_t mask;    /* workers (other than the home) with subscribers */
    uint64_t remote;  /* subscribers on other workers */
    uint32_t *wcount; /* per-worker counts, nworkers entries; NULL with one worker */
    char name[];      /* name_len bytes, then esc_len bytes */
};

static inline struct span room_name(const struct room *r)
{
    return (struct span){r->name, r->name_len};
}
static inline struct span room_name_escaped(const struct room *r)
{
    return (struct span){r->name + r->name_len, r->esc_len};
}

struct room_table {
    struct room **buckets;
    unsigned nbuckets; /* a power of two */
    unsigned count;
};

/* FNV-1a over the unescaped name. */
uint32_t room_hash(const char *name, size_t len);
/* The home worker of a room. */
static inline unsigned room_home(uint32_t hash, unsigned nworkers)
{
    return hash % nworkers;
}

void room_table_init(struct room_table *t);
/* Frees every room; their member lists must already be empty. */
void room_table_free(struct room_table *t);
/* The room named name, or NULL. */
struct room *room_find(struct room_table *t, uint32_t hash, const char *name, size_t len);
/* The room named name, created empty if absent (is_home says which side it is). */
struct room *room_get(struct room_table *t, uint32_t hash, const char *name, size_t len,
                      bool is_home, unsigned nworkers);
/* Unlinks and frees r (no members left). */
void room_remove(struct room_table *t, struct room *r);

/* Adds c to r (on both lists). reply, when not NULL, marks it pending (reference passes to
 * the membership). Returns the membership. */
struct member *room_member_add(struct room *r, struct conn *c, struct frame *reply);
/* Removes a membership from both lists and frees it (dropping a pending reply). */
void room_member_del(struct member *m);
/* c's membership of r, or NULL. */
struct member *room_member_of(struct conn *c, struct room *r);

#endif
