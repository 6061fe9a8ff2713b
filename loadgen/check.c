/* check.c - per-(subscriber, room) duplicate/order/late tracking over a circular bitmap. */
#include "check.h"

#include <string.h>

void lg_track_init(struct lg_track *t)
{
    memset(t, 0, sizeof(*t));
}

static inline bool bit_test_set(uint64_t *bits, uint64_t q)
{
    unsigned i = (unsigned)(q % LG_TRACK_WINDOW);
    uint64_t m = UINT64_C(1) << (i % 64);
    bool was = bits[i / 64] & m;
    bits[i / 64] |= m;
    return was;
}

static inline void bit_clear(uint64_t *bits, uint64_t q)
{
    unsigned i = (unsigned)(q % LG_TRACK_WINDOW);
    bits[i / 64] &= ~(UINT64_C(1) << (i % 64));
}

enum lg_track_res lg_track_update(struct lg_track *t, uint64_t q, uint64_t srv_seq, bool has_seq,
                                  bool check_q_order)
{
    bool q_reordered = false;
    if (q > t->hi) {
        /* The slots of hi+1..q-1 are reused for those sequences: clear what they held from a
         * window ago (all of it when the jump is a whole window or more). */
        if (q - t->hi >= LG_TRACK_WINDOW)
            memset(t->bits, 0, sizeof(t->bits));
        else
            for (uint64_t s = t->hi + 1; s < q; s++)
                bit_clear(t->bits, s);
        bit_clear(t->bits, q);
        t->hi = q;
    } else {
        if (t->hi - q >= LG_TRACK_WINDOW)
            return LG_TRACK_LATE;
        q_reordered = check_q_order;
    }
    if (bit_test_set(t->bits, q))
        return LG_TRACK_DUPLICATE;
    bool srv_reordered = false;
    if (has_seq) {
        if (srv_seq <= t->last_srv)
            srv_reordered = true;
        else
            t->last_srv = srv_seq;
    }
    return (q_reordered || srv_reordered) ? LG_TRACK_REORDERED : LG_TRACK_NEW;
}
