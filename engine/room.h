/* room.h - a worker's room table: its local subscribers, and the rooms it is home for.
 *
 * Rooms are sharded: room_home() picks one worker per room name (a keyed hash mod workers). The
 * home owns the room's seq and knows which workers have local subscribers (a 64-bit mask and
 * a count per worker, so a publish can say how many subscribers it reached). Every worker,
 * home or not, keeps its own local index: name -> room -> intrusive list of memberships, so
 * a publish walks exactly the local subscribers and a leave is O(1).
 *
 * One struct room serves both roles on a worker. A room lives while anything needs it: local
 * subscribers, a join waiting for the home's answer, a count the home has yet to hear, or (on
 * the home) subscribers on other workers, kept events or waiting polls (history.h). Otherwise it
 * is freed, so a room's seq starts again at 1 (under a new epoch) when its name is used again;
 * the count of rooms is bounded by max_rooms (checked when a subscribe, or a publish that keeps
 * history, would create one; rooms kept only by history give way first).
 *
 * The hash is SipHash-1-3 under a key drawn at startup (as Redis keys its dict): names cannot
 * be chosen to fill one bucket or one worker.
 *
 * A membership is the pair (connection, room): it sits on the room's list (doubly linked, for
 * O(1) removal) and on the connection's list (so a disconnect leaves every room).
 */
#ifndef RINGCAST_ENGINE_ROOM_H
#define RINGCAST_ENGINE_ROOM_H

#include <stdatomic.h>
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
struct history;
struct presence_room;
struct xmsg;

/* A "subscribed" reply held in its connection's queue until the home acks the join. */
struct pend {
    struct pend *next;
    uint64_t pos;    /* the held entry's queue position (sendq.h) */
    struct frame *f; /* a reference of our own */
    bool since;      /* the subscribe asked to resume: its answer says "recovered" */
    uint32_t id_len; /* the request's id, to write the answer again once the epoch is known */
    char id[];
};

struct member {
    struct member *rnext, *rprev; /* the room's list */
    struct member *cnext;         /* the connection's list */
    struct conn *conn;
    struct room *room;
    /* Non-NULL while the join waits for the home worker's ack: the replies to release on the
     * ack, in request order (a client may subscribe again before it). A pending member
     * receives no events. */
    struct pend *pend;
    /* Non-zero while the member waits for its resume (history.h): the token the home's
     * RESUME_ACK must carry. A resuming member receives no live events, and a join ack does
     * not release it: the resume ack queues the replay, then releases its replies. */
    uint64_t resume;
    bool presence; /* asked for $presence.join/leave events of this room */
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
    bool count_dirty;   /* on the worker's count_dirty list: the home has an old count */
    struct room *dnext; /* the count_dirty list */
    /* home side */
    uint64_t seq;
    uint64_t mask;    /* workers (other than the home) with subscribers */
    uint64_t remote;  /* subscribers on other workers */
    uint32_t *wcount; /* per-worker counts, nworkers entries; NULL with one worker */
    /* Home: seq at this worker's last "$sys" stats event (sys_stats.h: top rooms by rate). */
    uint64_t stats_seq;
    /* presence.h: opted-in members (and on the home, each worker's); NULL until needed */
    struct presence_room *pres;
    /* Delivery guarantees (history.h). On the home: the room's epoch (random at creation,
     * never 0), its last events and the long polls waiting for the next one. Elsewhere: the
     * home's epoch as its join ack said (stable while we have subscribers: they keep the home's
     * room alive). */
    uint64_t epoch;
    struct history *hist;       /* home: the last history-size events, NULL until the first */
    struct xmsg *waiters;       /* home: parked long polls (XM_POLL), answered by the next event */
    struct room *wnext;         /* the worker's list of rooms with waiters */
    struct room *inext, *iprev; /* the table's idle list: home rooms kept only by history */
    int64_t idle_ms;            /* when it went on the idle list (or last published to there) */
    bool idle;
    bool has_waiters; /* on the worker's waiter-room list */
    /* cluster.h, on the home: 0 not on the bus, 1 subscribing (events wait for the SYNC), 2
     * synced; the generation of the SUB asked last; requests waiting for the SYNC, newest first. */
    uint8_t cl_state;
    bool cl_hold; /* the SYNC's waiters are being answered: r stays, and stays followed */
    uint32_t cl_gen;
    struct xmsg *cl_wait;
    char name[]; /* name_len bytes, then esc_len bytes */
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
    _Atomic unsigned *total; /* rooms of all workers' tables (the max_rooms gate) */
    /* Home rooms with no subscriber that live for their history, oldest first: the first to
     * go under --max-rooms pressure or when --history-ttl has passed (history.h). */
    struct room *idle_head, *idle_tail;
};

/* Draws the process's hash key; once, before any worker starts. */
void room_hash_init(void);
/* SipHash-1-3 of the unescaped name under the process key (low 32 bits). */
uint32_t room_hash(const char *name, size_t len);
/* The home worker of a room. */
static inline unsigned room_home(uint32_t hash, unsigned nworkers)
{
    return hash % nworkers;
}

void room_table_init(struct room_table *t, _Atomic unsigned *total);
/* Frees every room; their member lists must already be empty. */
void room_table_free(struct room_table *t);
/* The room named name, or NULL. */
struct room *room_find(struct room_table *t, uint32_t hash, const char *name, size_t len);
/* The room named name, created empty if absent (is_home says which side it is). NULL when
 * memory is short. */
struct room *room_get(struct room_table *t, uint32_t hash, const char *name, size_t len,
                      bool is_home, unsigned nworkers);
/* Unlinks and frees r (no members left), with its history. */
void room_remove(struct room_table *t, struct room *r);
/* Puts r at the tail of the idle list (or moves it there), stamped now_ms. */
void room_idle_push(struct room_table *t, struct room *r, int64_t now_ms);
/* Takes r off the idle list, if it is on it. */
void room_idle_del(struct room_table *t, struct room *r);

/* Adds c to r (on both lists). Returns the membership, or NULL when memory is short. */
struct member *room_member_add(struct room *r, struct conn *c);
/* Appends a held reply (position pos, one reference of f passing in, the request's id and
 * whether it asked to resume) to m's pending list. False when memory is short (the reference
 * is dropped). */
bool room_member_hold(struct member *m, uint64_t pos, struct frame *f, struct span id, bool since);
/* Releases m's held replies into its connection's queue, in order: m is no longer pending. */
void room_member_release(struct member *m);
/* Removes a membership from both lists and frees it (releasing held replies: the
 * unsubscribe or close that removes it comes after them). */
void room_member_del(struct member *m);
/* c's membership of r, or NULL. */
struct member *room_member_of(struct conn *c, struct room *r);

#endif
