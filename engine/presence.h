/* presence.h - who is in a room: the presence list and the $presence.join/leave events.
 *
 * A room's members live on the workers that accepted their connections; only the room's home
 * sequences its events. So presence has two halves (docs/architecture.md, "Presence"):
 *
 * The list is gathered, not kept: a presence request (WebSocket, or GET
 * /api/rooms/{name}/presence) asks every worker for its local members of the room (one
 * XM_PRES_GATHER each, like /api/status), and the asking worker renders the answer when the
 * last part is in. No worker keeps a copy of another's members, so presence costs no memory
 * per member beyond the membership itself. A room with more than --presence-max members is
 * answered with its count only ("members":null, "truncated":true); each part carries at most
 * presence-max + 1 entries, so a gather holds at most nworkers x (presence-max + 1) entries.
 *
 * The events are sequenced by the home, like the room's other events: a join or leave on the
 * home is emitted at once; elsewhere it becomes a record in the worker's outbox for the home,
 * posted (XM_PRES_RECORDS, one message per home per iteration, before the subscriber counts)
 * at the end of the iteration, or at once before a publish forwarded to that home (so a
 * member's join precedes what it publishes). The home writes one frame per join or leave and
 * sends it to the workers with subscribers (XM_PRES_EVENT), which queue it on their members
 * that opted in (--presence-events 1, or "presence":true in the subscribe). Events are sent only
 * while the room has at most --presence-max members and someone opted in: a join storm in a
 * room of n opted-in members costs at most presence-max^2/2 frames, never n^2.
 *
 * Counts: each worker tells the home, with every record, how many members of the room it has
 * and how many of them opted in (absolute numbers, so a dropped record heals with the next
 * one); the home sizes the room by them, not by the subscriber counts, which may come later.
 *
 * Bounds (docs/operations.md): an outbox holds at most PRESENCE_OUTBOX_MAX bytes of records
 * (beyond, records are dropped and counted as presence_dropped); at most PRESENCE_MAX_JOBS
 * presence requests wait for other workers per worker (beyond, OVERLOADED / 503).
 */
#ifndef RINGCAST_ENGINE_PRESENCE_H
#define RINGCAST_ENGINE_PRESENCE_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/span.h"

struct conn;
struct member;
struct room;
struct worker;
struct xmsg;

/* Bytes of records a worker may hold for one home before they are posted. */
#define PRESENCE_OUTBOX_MAX (256u * 1024)
/* Presence requests waiting for other workers' parts, per worker. */
#define PRESENCE_MAX_JOBS 1024

/* A member was added to its room (subscribe answered): announce it. */
void presence_join(struct worker *w, struct member *m);
/* A member is about to be removed from its room (unsubscribe, close): announce it. */
void presence_leave(struct worker *w, struct member *m);
/* An existing member asked for presence events with a new subscribe. */
void presence_opt_in(struct worker *w, struct member *m);

/* WebSocket presence request for the room named name (unescaped, validated, permitted).
 * Answers c itself, in request order. */
void presence_request(struct conn *c, struct span name, struct span id);
/* GET /api/rooms/{name}/presence (name percent-encoded). Answers c itself. */
void presence_http(struct conn *c, struct span name_pct, bool keep_alive);

/* Posts the worker's outboxes (end of the iteration, before the counts). */
void presence_flush(struct worker *w);
/* Posts the outbox for home now (a publish to it follows). */
void presence_flush_to(struct worker *w, unsigned home);
/* XM_PRES_* messages. */
void presence_on_xmsg(struct worker *w, struct xmsg *m);
/* Frees a presence message that arrived after the workers stopped (its frame, its job). */
void presence_discard_xmsg(struct xmsg *m);
/* Bytes the worker holds for presence besides its rooms' (outboxes, waiting lists). */
uint64_t presence_bytes(const struct worker *w);
/* Bytes one room's presence state takes (room.h's pres, when not NULL). */
uint64_t presence_room_bytes(const struct worker *w);
/* Frees the worker's outboxes and waiting jobs (after every thread has stopped). */
void presence_worker_free(struct worker *w);

#endif
