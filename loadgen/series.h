/* series.h - per-second figures over a run, for the HTML report's time series: deliveries,
 * live-latency p50/p99 and reconnects per bucket.
 *
 * Bounded whatever the run: at most LG_SERIES_MAX buckets; a run longer than that many seconds
 * gets wider buckets (the width is fixed before the run from warmup + duration + drain). Each
 * bucket keeps a coarse latency histogram (8 sub-buckets per power of two from 1 us: at most
 * 12.5 % wide, enough to draw p50/p99 per second; the run's percentiles come from hist.h).
 * One series per worker thread, merged by adding counts. Recording is a compare, a shift and
 * two increments: the bucket index is cached per receive completion (`now`).
 */
#ifndef RINGCAST_LOADGEN_SERIES_H
#define RINGCAST_LOADGEN_SERIES_H

#include <stdint.h>

#define LG_SERIES_MAX     600
#define LG_SERIES_SUBBITS 3
#define LG_SERIES_LOWBITS 10                        /* values below 2^10 ns (1 us) share bucket 0 */
#define LG_SERIES_LAT     (27 << LG_SERIES_SUBBITS) /* up to 2^37 ns (137 s) */

struct lg_series_bucket {
    uint32_t deliveries, reconnects;
    uint32_t lat[LG_SERIES_LAT];
};

struct lg_series {
    uint64_t width_ns; /* bucket width: 1 s unless the run is longer than LG_SERIES_MAX s */
    unsigned n;        /* buckets allocated */
    uint64_t cached_now;
    unsigned cached_idx;
    struct lg_series_bucket b[];
};

/* A series for a run of total_ns (warmup + duration + drain, plus slack); NULL on ENOMEM. */
struct lg_series *lg_series_new(uint64_t total_ns);
/* The bucket of time now (t0: the run's first publish), clamped to the last. */
static inline unsigned lg_series_idx(struct lg_series *s, uint64_t t0, uint64_t now)
{
    if (now == s->cached_now)
        return s->cached_idx;
    uint64_t i = now > t0 ? (now - t0) / s->width_ns : 0;
    s->cached_now = now;
    s->cached_idx = i < s->n ? (unsigned)i : s->n - 1;
    return s->cached_idx;
}

static inline unsigned lg_series_lat_idx(uint64_t v)
{
    if (v < (UINT64_C(1) << LG_SERIES_LOWBITS))
        return 0;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned i = ((msb - LG_SERIES_LOWBITS) << LG_SERIES_SUBBITS) +
                 (unsigned)((v >> (msb - LG_SERIES_SUBBITS)) & ((1u << LG_SERIES_SUBBITS) - 1));
    return i < LG_SERIES_LAT ? i : LG_SERIES_LAT - 1;
}

/* One delivery at now; lat_ns is its live latency, or UINT64_MAX when it has none to record
 * (replayed, corrupt, or from before the measured period's publishes). */
static inline void lg_series_delivery(struct lg_series *s, uint64_t t0, uint64_t now,
                                      uint64_t lat_ns)
{
    struct lg_series_bucket *b = &s->b[lg_series_idx(s, t0, now)];
    b->deliveries++;
    if (lat_ns != UINT64_MAX)
        b->lat[lg_series_lat_idx(lat_ns)]++;
}

/* Adds src's counts to dst (same width and size). */
void lg_series_merge(struct lg_series *dst, const struct lg_series *src);
/* Buckets up to the last one with anything in it (at least 1). */
unsigned lg_series_used(const struct lg_series *s);
/* Percentile p of bucket b's latencies in ns (the sub-bucket's midpoint); -1 without samples. */
double lg_series_pct(const struct lg_series_bucket *b, double p);

#endif
