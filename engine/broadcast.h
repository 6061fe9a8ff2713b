/* broadcast.h - rooms across workers: subscribe, unsubscribe, publish, encode once, fan out.
 *
 * The home worker of a room (room_home) is the only one that sequences its events. A publish
 * anywhere becomes, on the home, one seq and one encoded frame; the home then passes a
 * reference to that frame to every worker with subscribers (IORING_OP_MSG_RING, the frame
 * pointer as the CQE's user_data) and each of them queues the same frame on its local
 * subscribers. No worker re-encodes, no subscriber gets a copy.
 *
 * Ordering: a client that got "subscribed" receives every event published after that
 * response was sent. On the home this is immediate. On another worker the first local
 * subscriber of a room makes the worker tell the home (a COUNT message asking for an ack) and
 * the "subscribed" response waits for the ack, held in the client's queue (sendq.h): the home
 * adds the worker to the room's mask before it acks, and each link's messages are handled in
 * the order they were posted (worker.h restores it whatever order the kernel delivers them
 * in), so every event sequenced after the ack reaches the worker after it. Later subscribers
 * on that worker are answered at once. With one worker all of this is direct calls.
 *
 * Reply order: a publish to a room homed elsewhere reserves its reply's place in the client's
 * queue (a held frame that the ack fills in), like a pending subscribe, so replies leave in
 * request order.
 *
 * Counts: a change in a worker's subscriber count of a remote room is not posted at once; the
 * room goes on the worker's count_dirty list and one COUNT per room leaves at the end of the
 * iteration, when the link has room (a reconnect storm costs one message per room, not per
 * client).
 *
 * Cross-worker messages are struct xmsg, allocated by the sender and freed (or sent back as
 * the reply) by the receiver.
 */
#ifndef RINGCAST_ENGINE_BROADCAST_H
#define RINGCAST_ENGINE_BROADCAST_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/span.h"

struct conn;
struct frame;
struct member;
struct room;
struct worker;

enum xmsg_type {
    XM_COUNT,      /* to the home: worker `from` now has `count` subscribers of room */
    XM_JOIN_ACK,   /* from the home: the COUNT that asked for an ack has been applied */
    XM_PUBLISH,    /* to the home: publish event/payload to room for connection (slot, serial) */
    XM_PUB_ACK,    /* from the home: the publish got seq and reached subscribers */
    XM_STATS,      /* HTTP API: fill in this worker's part of a status/metrics/rooms answer */
    XM_STATS_ACK,  /* HTTP API: the part, back to the asking worker */
    XM_RESUME,     /* to the home: member (slot, serial, token) resumes after since in epoch */
    XM_RESUME_ACK, /* from the home: recovered?, the epoch and the frames to replay */
    XM_POLL,       /* HTTP API, to the home: events after since in epoch (may wait) */
    XM_POLL_ACK,   /* HTTP API, from the home: the events for the job ctx */
    /* cluster.h: with --redis */
    XM_CL_SUB,   /* to the bus: the home wants room's events (token: generation) */
    XM_CL_UNSUB, /* to the bus: the home has no subscriber left */
    XM_CL_EVENT, /* from the bus, to the home: one event (data: room, then the bus message) */
    XM_CL_SYNC,  /* from the bus, to the home: epoch, seq and the last events (count of them) */
    XM_CL_LOST,  /* from the home: the room's history was lost, close its subscribers (1013) */
    XM_CL_DOWN,  /* from the bus, to every worker: Redis was lost (cluster_on_down) */
    /* presence.h */
    XM_PRES_RECORDS,    /* to the home: joins and leaves of members elsewhere */
    XM_PRES_EVENT,      /* from the home: a $presence frame for the opted-in members */
    XM_PRES_GATHER,     /* a presence list: this worker's members of the room */
    XM_PRES_GATHER_ACK, /* the part, back to the asking worker (job ctx) */
};

struct xmsg {
    struct xmsg *next; /* the worker's retry list */
    uint8_t type;
    uint8_t from; /* sending worker */
    uint8_t to;   /* target worker */
    bool want_ack;
    bool err;            /* the home could not do it (out of memory) */
    bool http;           /* XM_PUBLISH/XM_PUB_ACK: the reply is an HTTP API answer (ctx), not a
                          * WebSocket frame; `count` is the channel's index in it */
    void *ctx;           /* HTTP API: the asking worker's job; only that worker touches it */
    struct frame *reply; /* XM_PUBLISH: the held reply frame (a reference) and its position */
    uint64_t reply_pos;
    uint32_t count;
    uint32_t room_hash;
    uint32_t slot; /* publisher connection */
    uint64_t serial;
    uint64_t seq; /* PUB_ACK: the event's; JOIN_ACK, RESUME_ACK: the room's last, then */
    uint64_t subscribers;
    uint16_t room_len;
    uint32_t event_len, payload_len, id_len;
    /* history.h: resume and poll */
    uint64_t epoch; /* asking: the client's (0: none); answering and PUB_ACK: the room's */
    uint64_t since;
    uint64_t token;      /* XM_RESUME: the member's resume token */
    int64_t deadline_ms; /* XM_POLL: answer by then (monotonic); 0: at once */
    uint32_t nframes;    /* *_ACK: frame references after the room name (bc_xmsg_frames) */
    bool recovered;
    int64_t t0_ns; /* XM_PUBLISH: when the publish was received (metrics.h) */
    bool unavail;  /* XM_PUB_ACK: the cluster bus (Redis) could not take it: UNAVAILABLE */
    /* Aligned: gathered answers (http_stats.c) place structs after the room name. */
    _Alignas(8) char data[]; /* room (unescaped), event (escaped), payload (raw JSON), id */
};

/* What a subscribe may ask besides its channel (docs/protocol.md). */
struct bc_sub_opts {
    bool has_since, has_epoch;
    uint64_t since, epoch;
    bool presence;
};

/* Subscribes c to the room named name (unescaped, validated). Answers the client itself; with
 * since, replays the events after it before any live one (history.h). o may be NULL. */
void bc_subscribe(struct conn *c, struct span name, struct span id, const struct bc_sub_opts *o);
/* Unsubscribes c (answers "unsubscribed" whether or not it was subscribed). */
void bc_unsubscribe(struct conn *c, struct span name, struct span id);
/* Publishes: event is escaped string contents, payload raw JSON (empty for null). Answers the
 * client with the publish response, or TOO_LARGE when the event would exceed
 * max_message_bytes. */
void bc_publish(struct conn *c, struct span name, struct span event, struct span payload,
                struct span id);
/* ---- HTTP API publishes (http_api.h) ---- */

enum bc_http_res {
    BC_HTTP_DONE,       /* sequenced here: *seq, *epoch and *subscribers are the answer */
    BC_HTTP_SENT,       /* forwarded to the home: its ack calls http_api_pub_ack(ctx, idx) */
    BC_HTTP_OVERLOADED, /* the home's link is full */
    BC_HTTP_NOMEM,
    BC_HTTP_UNAVAILABLE, /* cluster mode: the bus (Redis) is down or its queue is full */
};
/* True when an event for this room (unescaped name), event (escaped) and payload fits
 * max_message_bytes, as bc_publish requires. */
bool bc_event_fits(struct worker *w, struct span name, struct span event, struct span payload);
/* Publishes one event as bc_publish does (the subscribers get the same envelope), for an HTTP
 * request: the answer goes to the HTTP job ctx (result idx) instead of a WebSocket reply. */
enum bc_http_res bc_publish_http(struct worker *w, struct span name, struct span event,
                                 struct span payload, void *ctx, uint32_t idx, uint64_t *seq,
                                 uint64_t *epoch, uint64_t *subscribers);

/* Frees r if nothing needs it any more: members, a pending join or count, remote
 * subscribers, waiting polls; a home room with history stays on the idle list (history.h). */
void bc_room_release(struct worker *w, struct room *r);
/* A message with room for the room name and nframes frame pointers. NULL when memory is
 * short. */
struct xmsg *bc_xmsg_new(struct worker *w, enum xmsg_type type, struct span room, uint32_t nframes,
                         size_t extra);
/* The frame pointers of a RESUME_ACK/POLL_ACK. */
struct frame **bc_xmsg_frames(struct xmsg *m);
/* Posts m to worker to (see post_xmsg): never refused. */
void bc_post(struct worker *w, unsigned to, struct xmsg *m);

/* cluster.h hooks. Holds reply in c's queue until m's join or resume is answered (false: c
 * is closing). */
bool bc_hold_reply(struct conn *c, struct member *m, struct frame *reply, struct span id,
                   bool since);
/* Lets m's held replies go, written with epoch and seq (the last event before m's first live
 * one), and recovered for resumes. */
void bc_release_member(struct worker *w, struct member *m, uint64_t epoch, uint64_t seq,
                       bool recovered);
/* Cluster mode, on the home: event seq of r came from the bus: encode it once, record it,
 * deliver it here and post it to the workers with subscribers. False when out of memory. */
bool bc_home_deliver(struct worker *w, struct room *r, struct span event, struct span payload,
                     int64_t unix_ms, uint64_t seq);
/* Closes (1013) r's local subscribers: the room's history was lost under them. */
void bc_room_lost(struct worker *w, struct room *r, const char *why);

/* Removes c from every room (it is closing). */
void bc_leave_all(struct conn *c);

/* A cross-worker message arrived, in its link's order (a refused MSG_RING is worker.c's). */
void bc_on_xmsg(struct worker *w, struct xmsg *m);
/* A broadcast frame arrived from its home, in its link's order. */
void bc_on_xframe(struct worker *w, struct frame *f);
/* Frees a message or frame that arrived after the workers stopped serving (shutdown). */
void bc_discard_xmsg(struct xmsg *m);
/* Posts the counts of the rooms on the worker's count_dirty list (where the links allow). */
void bc_flush_counts(struct worker *w);
/* Closes (1013) the local subscribers of every room homed on a worker in mask: that worker
 * could not post us some of their events. */
void bc_close_lost(struct worker *w, uint64_t mask);

#endif
