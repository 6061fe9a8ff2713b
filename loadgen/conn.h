/* conn.h - one client connection of the load generator, as its worker sees it.
 *
 * Ownership: every lg_conn lives in run->conns and belongs to exactly one worker, the only
 * thread that touches it. Outgoing bytes are double-buffered: `out` is what the kernel may be
 * reading (one send in flight, never reallocated while it is), `pend` collects what is queued
 * meanwhile and becomes `out` when the send completes. Over TLS, `pend` is plaintext and `out`
 * the ciphertext it was encrypted into (tls_client.h).
 */
#ifndef RINGCAST_LOADGEN_CONN_H
#define RINGCAST_LOADGEN_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/http.h"
#include "proto/ws_frame.h"

#include "check.h"
#include "lg.h"

enum lg_conn_state {
    CS_IDLE = 0,
    CS_CONNECTING,
    CS_HANDSHAKE,
    CS_SUBSCRIBING,
    CS_READY,
    CS_CLOSED, /* closed after it was ready: counted as a disconnect */
    CS_FAILED, /* never became ready */
};

struct lg_buf {
    uint8_t *p;
    uint32_t len, cap;
};

struct lg_conn {
    int fd;
    uint32_t idx; /* in run->conns */
    uint8_t state;
    bool is_pub;
    bool send_busy;
    bool recv_armed;
    bool close_sent;         /* our close frame is queued or written: send no other */
    uint32_t out_off;        /* bytes of out already sent */
    struct lg_buf out, pend; /* see above */
    struct lg_buf carry;     /* handshake bytes, or the start of a frame split across reads */
    struct lg_buf frag;      /* a fragmented message being reassembled */
    struct ws_parser wp;
    uint32_t subs_pending;
    uint16_t nrooms;
    uint32_t *rooms;         /* subscriber: room indexes, nrooms of them */
    struct lg_track *tracks; /* nrooms * pubs_per_room: per (room, publisher of the room) */
    uint64_t *last_srv;      /* per room: the highest server seq seen (0: none) */
    struct lg_publisher *pub;
    uint32_t vc_last; /* its last verified message in the worker's vcache (vcache.h) */
    uint64_t t_connect;
    char key[WS_KEY_LEN + 1];
    /* --publish-via http: the publishes (k) whose answers are still to come, in request order
     * (a ring of hq_cap entries; answers come back in that order) */
    bool http;
    uint32_t hq_head, hq_len, hq_cap;
    uint64_t *hq;
    /* wss://: the TLS session (NULL on a cleartext run). pend then holds plaintext, encrypted
     * when it moves to out; out holds ciphertext. */
    struct tlsc *tls;
};

/* Queues len bytes on c (the caller's bytes are copied). Submission happens in the worker
 * loop. Returns 0 or -ENOMEM. */
int lg_conn_queue(struct lg_worker *w, struct lg_conn *c, const void *data, size_t len);
/* Queues a masked client frame (opcode, payload of len bytes). */
int lg_conn_queue_frame(struct lg_worker *w, struct lg_conn *c, uint8_t opcode, const void *payload,
                        size_t len);
/* --publish-via http: publish k's answer is the next one to come on c. 0 or -ENOMEM. */
int lg_conn_http_expect(struct lg_conn *c, uint64_t k);
/* Wakes the worker that owns ring_fd (closed loop: a publish it waits on completed). */
void lg_conn_wake(struct lg_worker *w, int ring_fd);

/* publish.c */
/* Sends what the schedule says is due at now; returns the next time it needs the worker. */
uint64_t lg_publish_tick(struct lg_worker *w, uint64_t now);
/* Closed loop: one more subscriber got publish (p, k). */
void lg_publish_delivered(struct lg_worker *w, uint64_t p, uint64_t k);
/* A publish response or error (code: the error's code, else empty) for (publisher conn c,
 * id k). */
void lg_publish_answered(struct lg_worker *w, struct lg_conn *c, uint64_t k, bool ok,
                         struct span code);
/* Sets up publisher pub's per-publish record table for the run's scenario. 0 or -ENOMEM. */
int lg_publisher_init(const struct lg_run *run, struct lg_publisher *pub);

#endif
