/* conn.h - one client connection: HTTP upgrade, WebSocket framing, close handshake, timers.
 *
 * A connection belongs to the worker that accepted it, for its whole life. Its bytes arrive in
 * the worker's provided buffers (multishot recv) and are parsed in place; only a frame or
 * request head that spans two buffers is copied, into `in`, allocated for as long as the
 * partial data lasts. A fragmented message is reassembled in `frag`, allocated only while the
 * message is open. An idle connection therefore holds no buffer at all: just this struct, its
 * memberships, and (while frames wait) its send queue.
 *
 * Lifetime: the struct is freed once it is closed and no operation refers to it any more
 * (`ops` counts the armed recv and the send in flight); other workers never hold a pointer to
 * it, they name it by (slot, serial).
 */
#ifndef RINGCAST_ENGINE_CONN_H
#define RINGCAST_ENGINE_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/span.h"
#include "proto/ws_frame.h"
#include "timer_wheel.h"

struct worker;
struct member;
struct outq;
struct frame;

enum conn_state {
    CONN_HANDSHAKE = 0, /* reading the HTTP upgrade request */
    CONN_OPEN,          /* WebSocket open */
    CONN_CLOSING,       /* our close frame is queued or sent: waiting for the peer's */
    CONN_CLOSED,        /* socket shut down: waiting for in-flight operations to finish */
};

/* flags */
#define CONN_RECV_ARMED  0x01  /* a multishot recv is armed */
#define CONN_SEND_BUSY   0x02  /* a sendmsg is in flight */
#define CONN_DIRTY       0x04  /* on the worker's dirty list */
#define CONN_PING_OUT    0x08  /* heartbeat ping sent, waiting for any traffic */
#define CONN_CLOSE_SENT  0x10  /* a close frame is queued: queue nothing after it */
#define CONN_PEER_CLOSED 0x20  /* the peer's close frame arrived */
#define CONN_REARM       0x40  /* on the worker's re-arm list */
#define CONN_COUNTED     0x80  /* holds one of eng->nconns */
#define CONN_SHUT_WR     0x100 /* our side of the TCP stream is finished */

struct growbuf {
    uint8_t *p;
    uint32_t len, cap;
};

struct conn {
    struct worker *w;
    int fd;
    uint32_t slot;
    uint64_t serial; /* unique per worker and run: the connection id is "w<worker>-<serial>" */
    uint8_t state;
    uint16_t flags;
    uint8_t ops; /* operations in flight that point at this struct */
    uint16_t nsubs;
    uint16_t rl_strikes; /* rate-limited messages in a row */
    uint32_t last_rx_tick;
    uint32_t rl_tokens_milli; /* token bucket, in thousandths of a message */
    int64_t rl_last_ms;
    struct ws_parser wp;
    struct growbuf in;   /* partial frame or request head spanning buffers */
    struct growbuf frag; /* fragmented message being reassembled */
    struct outq *oq;     /* send queue, NULL while nothing is queued (sendq.h) */
    struct conn *dirty_next;
    struct conn *rearm_next;
    struct member *subs;
    struct tw_entry timer;
};

/* Takes over an accepted socket: allocates the connection, arms its recv and the handshake
 * timeout. Closes fd itself on failure. */
void conn_accept(struct worker *w, int fd);

/* A completion of this connection's multishot recv. */
void conn_on_recv(struct conn *c, int res, unsigned cqe_flags);
/* Called by sendq.c after a send completed: finishes a close whose frame has gone out. */
void conn_on_send_done(struct conn *c);
/* Drops a hold on c (an operation finished, or a worker list let go of it); frees it when it
 * is closed and nothing holds it any more. */
void conn_put(struct conn *c);

/* Queues a close frame with code and reason after everything already queued, stops reading
 * messages, and gives the peer WORKER_CLOSE_WAIT_MS to answer. */
void conn_close_start(struct conn *c, uint16_t code, const char *reason);
/* Shuts the socket down now, dropping queued frames; the struct goes once ops reach zero. */
void conn_abort(struct conn *c);

/* Arms (or re-arms) the multishot recv. */
void conn_arm_recv(struct conn *c);

/* A timer wheel entry fired for this connection (handshake, heartbeat or close timeout). */
void conn_on_timer(struct tw_entry *e, void *arg);

/* Writes the connection id ("w0-17") into out (at least 32 bytes); returns its length. */
int conn_id_format(const struct conn *c, char *out);
/* Writes "ADDR:PORT" of the peer into out (at least 64 bytes), for log lines. */
void conn_peer_format(const struct conn *c, char *out, size_t cap);

#endif
