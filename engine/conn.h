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
 * (`ops` counts the armed recv, the send in flight and every worker list holding it); other
 * workers never hold a pointer to it, they name it by (slot, serial).
 *
 * Lifetimes follow the loop, not the call stack: a handler that decides a connection must go
 * (protocol error, rate limit, slow consumer, heartbeat, shutdown, a failed send) only marks it
 * with conn_close or conn_abort. The worker reaps marked connections after the completion being
 * handled (conn_reap), so memberships, rooms, the fragment buffer and the connection itself
 * stay valid for every caller still on the stack. From the mark on, the connection reads no
 * more input and queues nothing more.
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
struct auth_grant;
struct tls_session;

enum conn_state {
    CONN_HANDSHAKE = 0, /* reading the HTTP upgrade request */
    CONN_OPEN,          /* WebSocket open */
    CONN_CLOSING,       /* our close frame is queued or sent: waiting for the peer's */
    CONN_CLOSED,        /* socket shut down: waiting for in-flight operations to finish */
    CONN_HTTP,          /* serving HTTP API requests, keep-alive (http_api.h) */
};

/* flags */
#define CONN_RECV_ARMED  0x01    /* a multishot recv is armed */
#define CONN_SEND_BUSY   0x02    /* a sendmsg is in flight */
#define CONN_DIRTY       0x04    /* on the worker's dirty list */
#define CONN_PING_OUT    0x08    /* heartbeat ping sent, waiting for any traffic */
#define CONN_CLOSE_SENT  0x10    /* a close frame is queued: queue nothing after it */
#define CONN_PEER_CLOSED 0x20    /* the peer's close frame arrived */
#define CONN_REARM       0x40    /* on the worker's re-arm list */
#define CONN_COUNTED     0x80    /* holds one of eng->nconns */
#define CONN_SHUT_WR     0x100   /* our side of the TCP stream is finished */
#define CONN_CLOSE_REQ   0x200   /* conn_close was called: the reaper queues the close frame */
#define CONN_ABORT_REQ   0x400   /* conn_abort was called: the reaper shuts the socket down */
#define CONN_REAP        0x800   /* on the worker's reap list */
#define CONN_SLOW        0x1000  /* slow consumer: the reaper drops the queue before closing */
#define CONN_PENDING     0x2000  /* holds one of eng->npending (upgrade not finished) */
#define CONN_HTTP_API    0x4000  /* an HTTP API connection (CONN_HTTP, or closing after it) */
#define CONN_IP_COUNTED  0x8000  /* holds a place in the per-IP table (edge.h) */
#define CONN_TLS_FAILED  0x10000 /* the TLS session failed: its input is ignored */
#define CONN_TLS_HELLO   0x20000 /* TLS: ciphertext has arrived (a handshake was begun) */

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
    uint8_t ops;         /* operations in flight and worker lists that point at this struct */
    uint16_t close_code; /* requested by conn_close, queued by the reaper */
    uint32_t flags;
    uint32_t nsubs;
    uint32_t rl_strikes;      /* rate-limited messages since the bucket was last full */
    uint32_t head_scanned;    /* request head bytes searched for its end so far */
    uint32_t http_need;       /* HTTP API: bytes of the request (head + body) being read */
    uint16_t http_jobs;       /* HTTP API: replies waiting for other workers */
    const char *close_reason; /* a string literal */
    uint32_t last_rx_tick;
    uint32_t rl_tokens_milli; /* token bucket, in thousandths of a message */
    int64_t rl_last_ms;
    struct ws_parser wp;
    struct growbuf in;   /* partial frame or request head spanning buffers */
    struct growbuf frag; /* fragmented message being reassembled */
    struct outq *oq;     /* send queue, NULL while nothing is queued (sendq.h) */
    struct conn *dirty_next;
    struct conn *rearm_next;
    struct conn *reap_next;
    struct frame *pong; /* the last pong queued (a reference), for coalescing */
    uint64_t pong_pos;  /* its queue position (sendq.h) */
    struct member *subs;
    struct tw_entry timer;
    struct auth_grant *grant; /* the token's permissions (auth.h); NULL: unrestricted */
    uint32_t ip_slot;         /* per-IP table entry while CONN_IP_COUNTED (edge.h) */
    struct tls_session *tls;  /* NULL: cleartext; otherwise every byte goes through it (tls.h) */
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

/* Marks c to close with code and reason (a string literal): input stops now; the reaper
 * leaves its rooms, queues the close frame after everything already queued (after dropping
 * the queue, for a slow consumer) and gives the peer WORKER_CLOSE_WAIT_MS to answer. An HTTP
 * API connection gets no close frame: what is queued goes out, then our FIN. */
void conn_close(struct conn *c, uint16_t code, const char *reason);
/* Marks c to be shut down at once, dropping queued frames; the reaper does it and the struct
 * goes once ops reach zero. */
void conn_abort(struct conn *c);
/* Carries out the closes and aborts marked since the last call (the worker calls it after
 * each completion and each timer pass). */
void conn_reap(struct worker *w);

/* Arms (or re-arms) the multishot recv. */
void conn_arm_recv(struct conn *c);

/* A timer wheel entry fired for this connection (handshake, heartbeat or close timeout). */
void conn_on_timer(struct tw_entry *e, void *arg);

/* True when buf (a request head from its first byte) holds the blank line that ends it (CRLF
 * or bare LF endings, as proto/http accepts). Searches only bytes not searched before
 * (c->head_scanned), so a head that arrives a byte at a time costs linear time. */
bool conn_head_complete(struct conn *c, const uint8_t *buf, size_t len);

/* Writes the connection id ("w0-17") into out (at least 32 bytes); returns its length. */
int conn_id_format(const struct conn *c, char *out);
/* Writes "ADDR:PORT" of the peer into out (at least 64 bytes), for log lines. */
void conn_peer_format(const struct conn *c, char *out, size_t cap);

#endif
