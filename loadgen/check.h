/* check.h - per-recipient accounting: for one (subscriber, room) pair, which room sequences
 * arrived, in what order, and how often.
 *
 * Memory is bounded for any run length: a circular bitmap of the last LG_TRACK_WINDOW room
 * sequences at or below the highest one seen. A delivery older than that window cannot be told
 * from a duplicate and is counted as `late` (and not as delivered, so it also shows up as lost).
 * Loss itself is not counted here: the run's loss is expected deliveries minus unique ones,
 * taken after the drain period.
 */
#ifndef RINGCAST_LOADGEN_CHECK_H
#define RINGCAST_LOADGEN_CHECK_H

#include <stdbool.h>
#include <stdint.h>

/* Room sequences remembered per (subscriber, room): 1024 bits, 128 bytes. At 100 publishes/s
 * into one room that tolerates 10 s of reordering before a delivery counts as late. */
#define LG_TRACK_WINDOW 1024

struct lg_track {
    uint64_t hi;       /* highest room sequence (payload q) seen; 0 = none */
    uint64_t last_srv; /* highest server seq seen */
    uint64_t bits[LG_TRACK_WINDOW / 64];
};

enum lg_track_res {
    LG_TRACK_NEW = 0,   /* first time, in order */
    LG_TRACK_REORDERED, /* first time, but out of order */
    LG_TRACK_DUPLICATE, /* seen before */
    LG_TRACK_LATE,      /* older than the window: cannot be checked */
};

void lg_track_init(struct lg_track *t);

/* Records a delivery of room sequence q (>= 1) with the server's seq (when has_seq).
 * check_q_order: the room has one publisher, so q itself must also increase. A duplicate is
 * only a duplicate: it is not also counted as reordered. */
enum lg_track_res lg_track_update(struct lg_track *t, uint64_t q, uint64_t srv_seq, bool has_seq,
                                  bool check_q_order);

#endif
