/* vcache.h - the verified-message cache: how one worker checks the same broadcast at a thousand
 * recipients without parsing it a thousand times.
 *
 * A server that encodes a broadcast once sends byte-identical messages to every subscriber of
 * the room. The first recipient on a worker parses the message in full (envelope, room, payload
 * numbers, padding); when everything checks out, the exact bytes and what they parsed to are
 * kept here. Every later recipient compares its own bytes with the kept copy in full (memcmp):
 * equal bytes parse to the same result, so nothing is assumed and nothing is skipped: a single
 * changed byte at one recipient misses the cache and goes through the full parser, which
 * reports it. Per-recipient checks (room joined, duplicate, order, latency) always run.
 *
 * Finding the candidate to compare with is cheap in the common case: subscribers of a room get
 * the room's messages in the same order, so each slot remembers which message followed it at
 * the recipient that verified it, and each connection remembers its last verified message:
 * the candidate is the one that followed it. Otherwise a hash of a sample of the message's
 * bytes picks a set of LG_VCACHE_WAYS slots. Either way the candidate only narrows the search;
 * the memcmp decides. A new message replaces the set's oldest. The sets hold many more
 * messages than are usually in flight at once (a closed loop's window, an open loop's publishes
 * not yet delivered everywhere), so a broadcast stays cached until its last recipient on this
 * worker has it. Memory is bounded: LG_VCACHE_SETS * LG_VCACHE_WAYS slots of at most
 * LG_VCACHE_MAX_MSG bytes each, allocated as messages arrive. Longer messages are never kept.
 */
#ifndef RINGCAST_LOADGEN_VCACHE_H
#define RINGCAST_LOADGEN_VCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "payload.h"

#define LG_VCACHE_SETS    1024 /* a power of two */
#define LG_VCACHE_WAYS    4
#define LG_VCACHE_MAX_MSG 16384

/* What a verified delivery parsed to: everything per-recipient checking needs. */
struct lg_verified {
    struct lg_payload pl;
    uint64_t seq;
    bool has_seq;
    uint32_t room; /* index in run->rooms */
};

/* A connection's last verified message (a slot index), or none. */
#define LG_VCACHE_NONE UINT32_MAX

struct lg_vslot {
    uint64_t hash;
    uint64_t stamp; /* when it was filled: the oldest of a set is replaced */
    uint32_t len;   /* 0: empty */
    uint32_t cap;
    uint32_t next; /* the slot whose message came next where this one was verified */
    uint8_t *bytes;
    struct lg_verified v;
};

struct lg_vcache {
    struct lg_vslot *slots; /* LG_VCACHE_SETS * LG_VCACHE_WAYS, a set's ways side by side */
    uint64_t tick;
    uint64_t hits, predicted, misses; /* predicted: hits found through a slot's next */
};

/* 0 or -ENOMEM. */
int lg_vcache_init(struct lg_vcache *vc);
void lg_vcache_free(struct lg_vcache *vc);

/* The verified result for exactly these bytes, or NULL. *last is the connection's last
 * verified message (LG_VCACHE_NONE at first); on a hit it becomes this one. */
const struct lg_verified *lg_vcache_find(struct lg_vcache *vc, const uint8_t *msg, size_t len,
                                         uint32_t *last);

/* Keeps msg (already verified: parsed in full with no fault found) and its result, replacing
 * the oldest message of its set, notes it as what followed *last, and makes it *last. Does
 * nothing for messages over LG_VCACHE_MAX_MSG bytes or when memory cannot be had (the cache is
 * only ever a shortcut). */
void lg_vcache_put(struct lg_vcache *vc, const uint8_t *msg, size_t len,
                   const struct lg_verified *v, uint32_t *last);

#endif
