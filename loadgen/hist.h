/* hist.h - a log-linear latency histogram (the HdrHistogram idea, cut down to what the load
 * generator needs).
 *
 * Values are nanoseconds. Below 256 ns every value has its own bucket; above, each power of two
 * is split into 128 equal buckets, so a bucket is never wider than 1/128 of its lower bound and
 * the midpoint we report is within 0.4 % of any value in it: well inside the 1 % promised from
 * 1 us to 60 s. Values above HIST_MAX_NS are clamped (and counted in `clamped`).
 *
 * One histogram per worker thread, merged at the end by adding counts: percentiles are never
 * averaged. A histogram is a fixed ~40 KiB block; recording is a few shifts and an increment.
 */
#ifndef RINGCAST_LOADGEN_HIST_H
#define RINGCAST_LOADGEN_HIST_H

#include <stdbool.h>
#include <stdint.h>

/* Sub-buckets per power of two: 128 gives <= 0.78 % bucket width, <= 0.39 % midpoint error. */
#define HIST_SUB_BITS 7
#define HIST_SUB      (1u << HIST_SUB_BITS)
/* Powers of two above the linear range: up to 2^43 ns (about 2.4 hours). */
#define HIST_EXPS    36
#define HIST_BUCKETS (2 * HIST_SUB + HIST_EXPS * HIST_SUB)
#define HIST_MAX_NS  ((UINT64_C(1) << (HIST_EXPS + HIST_SUB_BITS + 1)) - 1)

struct hist {
    uint64_t count;
    uint64_t clamped; /* values above HIST_MAX_NS, recorded as HIST_MAX_NS */
    uint64_t min, max;
    double sum; /* for the mean; a double holds 2^53 ns sums exactly enough */
    uint64_t buckets[HIST_BUCKETS];
};

void hist_init(struct hist *h);
/* Records one value (ns). */
void hist_record(struct hist *h, uint64_t v);
/* Adds every count of src into dst. */
void hist_merge(struct hist *dst, const struct hist *src);
/* The value at percentile p (0..100, nearest-rank: the smallest value with at least p % of the
 * values at or below it), as the midpoint of its bucket clamped to [min, max]. 0 when empty. */
uint64_t hist_percentile(const struct hist *h, double p);
/* The same rank's bucket upper edge, clamped to max: never below the true value (gates use it,
 * so a limit is never passed by the up-to-0.39 % rounding of the midpoint). 0 when empty. */
uint64_t hist_percentile_upper(const struct hist *h, double p);
/* Mean of the recorded values (exact, from the sum). 0 when empty. */
double hist_mean(const struct hist *h);

/* Bucket index of v, and the [lo, hi] range of values a bucket holds (for plots and tests). */
unsigned hist_index(uint64_t v);
void hist_bucket_range(unsigned idx, uint64_t *lo, uint64_t *hi);

#endif
