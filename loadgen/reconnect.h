/* reconnect.h - --reconnect-every: subscribers that drop their connection at random times (a
 * TCP RST or a clean WebSocket close), reconnect after a jittered backoff and resume each room
 * with {"since": the last server seq seen, "epoch": the epoch it was seen in}.
 *
 * The per-recipient checks (check.h) and the per-publish accounting span reconnects: a
 * subscriber keeps its tracks and its room's subscriber count while it is away, so an event
 * published meanwhile is expected of it and counts as delivered only if the resume's replay
 * brings it; a second copy is a duplicate; a "recovered":false answer is an unrecoverable
 * resume and the events it skipped are lost. Deliveries of events published before the
 * resuming subscribe went out came in the replay: they are counted as `replayed` and their
 * latency goes into a histogram of its own, never into the live one.
 *
 * Threads: all of it runs on the worker that owns the connection.
 */
#ifndef RINGCAST_LOADGEN_RECONNECT_H
#define RINGCAST_LOADGEN_RECONNECT_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/json.h"

#include "lg.h"

struct lg_conn;
struct lg_msg;

/* One subscriber's reconnect state (allocated only with --reconnect-every). */
struct lg_rconn {
    uint64_t due;     /* live: when to drop (0: not scheduled yet); away: when to reconnect */
    uint64_t t_resub; /* when the resuming subscribes went out: older publishes are replayed */
    bool away;        /* dropped, waiting for its backoff */
    bool resuming;    /* this connection is a reconnect: it resumes, counts no new subscriber */
    uint64_t *epoch;  /* per room of the connection: the epoch of its last subscribe answer */
    bool *has_epoch;
};

/* Sets up worker w's reconnect timers and its subscribers' state. 0 or -ENOMEM. */
int lg_reconnect_init(struct lg_worker *w);
void lg_reconnect_free(struct lg_worker *w);
/* Drops and reconnects what is due at now; lowers *deadline to the next time it needs the
 * worker. */
void lg_reconnect_tick(struct lg_worker *w, uint64_t now, uint64_t *deadline);
/* Appends ,"since":N,"epoch":"E" for room slot i of a resuming subscribe. */
void lg_reconnect_sub_fields(struct lg_worker *w, struct lg_conn *c, unsigned i, struct jw *jw,
                             uint64_t now);
/* A subscribe answer for room slot i (recovered, epoch). */
void lg_reconnect_subscribed(struct lg_worker *w, struct lg_conn *c, unsigned i,
                             const struct lg_msg *m);
/* A resumed connection is ready again (every room answered). */
void lg_reconnect_ready(struct lg_worker *w, struct lg_conn *c, uint64_t now);
/* A publish answer (data.seq) of publish k from publisher connection c. */
void lg_reconnect_published(struct lg_worker *w, struct lg_conn *c, uint64_t k,
                            const struct lg_msg *m);

/* conn.c: ends c on purpose (rst: SO_LINGER 0, else a close frame 1000 then FIN), not counted
 * as a disconnect. */
void lg_conn_drop(struct lg_worker *w, struct lg_conn *c, bool rst);
/* conn.c: true once no operation of c's last socket is in flight, so a new one may start. */
bool lg_conn_quiet(const struct lg_conn *c);
/* conn.c: starts a new connection for c (state and buffers reset). */
void lg_conn_restart(struct lg_worker *w, struct lg_conn *c, uint64_t now);

#endif
