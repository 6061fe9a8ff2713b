/* history.h - delivery guarantees: a room's last events, its epoch, resume and long polls.
 *
 * The home worker of a room (room.h) sequences its events, so it is where history lives: a
 * ring of the last history-size events, each the pre-encoded broadcast frame itself (one
 * reference per entry, frame.h), never a copy, so a replayed event is the same bytes a live
 * subscriber got. With --history-ttl, entries older than the TTL are dropped when the ring is
 * read or written, and an idle room (below) is freed once the TTL has passed.
 *
 * Epoch: every home room draws a random 64-bit epoch (never 0) when it is created. A room's
 * history is contiguous within one epoch: whenever it is lost (the room freed, evicted under
 * --max-rooms pressure, a restart, an event that could not be recorded) the room starts over
 * under a new epoch. So (epoch, seq) names a point in a room's stream, and "since SEQ in epoch
 * E" is recoverable exactly when the room still has epoch E and its ring still holds seq+1.
 * Epoch 0 names "no history": a room that does not exist, and "from the start" when a client
 * passes since 0 without an epoch.
 *
 * Lifetime: a home room nobody is subscribed to stays while its history holds events, on the
 * table's idle list (oldest first). A subscribe or publish that would pass --max-rooms frees
 * this worker's oldest idle room first; with --history-ttl the tick frees idle rooms whose TTL
 * has passed. Worst case memory: history-size events of max-message-bytes in each of
 * max-rooms rooms (docs/operations.md).
 *
 * Long polls (GET /api/poll): an XM_POLL reaches the home; when nothing is newer than since it
 * may wait there, parked on the room (at most HISTORY_POLL_MAX_WAITING per worker; beyond, it
 * is answered at once), until the next event, its deadline (the tick), or the drain.
 */
#ifndef RINGCAST_ENGINE_HISTORY_H
#define RINGCAST_ENGINE_HISTORY_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/span.h"
#include "room.h"

struct frame;
struct room;
struct worker;
struct xmsg;

/* Long polls parked per (home) worker: each holds an xmsg and keeps its room alive. */
#define HISTORY_POLL_MAX_WAITING 1024
/* Longest wait a poll may ask for, in seconds (also kept below --http-idle-timeout-s). */
#define HISTORY_POLL_MAX_WAIT_S 30
/* Hex digits of an epoch as clients see it (a JSON string: 64 bits do not fit a double). */
#define HISTORY_EPOCH_HEX 16

struct hist_entry {
    struct frame *f; /* one reference, the ring's */
    uint64_t seq;
    int64_t mono_ms; /* when it was published (TTL) */
};

struct history {
    uint32_t head, len, cap; /* entries e[head .. head+len) mod cap; cap grows to history-size */
    struct hist_entry e[];
};

/* A fresh random epoch (never 0), for a room being created on its home. */
uint64_t history_epoch_new(void);
/* Writes the epoch as 16 lowercase hex digits (no NUL). */
void history_epoch_format(uint64_t epoch, char out[HISTORY_EPOCH_HEX]);
/* Parses 1-16 hex digits; false when s is not that. */
bool history_epoch_parse(struct span s, uint64_t *out);

/* Records event seq of home room r (f: its frame; the ring takes its own reference). Drops the
 * oldest entry beyond history-size, and the expired ones. When it cannot be recorded (memory),
 * the history is lost: it is emptied and r gets a new epoch. Nothing with history-size 0. */
void history_record(struct worker *w, struct room *r, struct frame *f, uint64_t seq);
/* Drops r's entries older than --history-ttl. */
void history_prune(struct worker *w, struct room *r);
/* Releases every frame and frees h (NULL is fine). */
void history_free(struct history *h);
/* True when r keeps events. */
static inline bool history_has(const struct room *r);

/* Where a client that saw everything up to since (in epoch) resumes in home room r (NULL: no
 * room): *first is the index (0 = oldest) of the first entry to replay, *n how many, capped so
 * their queue cost stays under max_bytes (then *last is the seq of the last one). Returns
 * whether nothing is lost (the "recovered" answer); when false *n is 0 and the client must
 * resync. has_epoch false, or epoch 0, with since 0 means "from the start". */
bool history_since(struct worker *w, struct room *r, bool has_epoch, uint64_t epoch, uint64_t since,
                   uint64_t max_bytes, uint32_t *first, uint32_t *n, uint64_t *last);
/* The i-th kept entry of r (0 = oldest). */
struct hist_entry *history_at(struct room *r, uint32_t i);

/* Frees this worker's oldest idle room when the room count is at --max-rooms, so a new room
 * can be created. True when there is room for one more. */
bool history_make_room(struct worker *w);
/* Once per tick: frees idle rooms whose TTL has passed, answers long polls whose wait is up. */
void history_tick(struct worker *w);

/* ---- long polls ---- */

/* An XM_POLL on the room's home (posted, or called directly when the asker is the home). */
void history_on_poll(struct worker *w, struct xmsg *m);
/* A new event in home room r: answers its parked polls. */
void history_wake(struct worker *w, struct room *r);
/* Shutdown started: answers every parked poll now. */
void history_drain(struct worker *w);
/* Frees parked polls without answering (the workers have stopped). */
void history_free_waiters(struct worker *w);

static inline bool history_has(const struct room *r)
{
    return r->hist && r->hist->len;
}

#endif
