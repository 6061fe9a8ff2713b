/* hist.c - log-linear histogram: see hist.h for the error bound and why it holds. */
#include "hist.h"

#include <math.h>
#include <string.h>

void hist_init(struct hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

/* Values below 2*HIST_SUB map to themselves. Above, the top HIST_SUB_BITS+1 bits of v select
 * the bucket: exponent e = msb - HIST_SUB_BITS, mantissa m = v >> e in [HIST_SUB, 2*HIST_SUB). */
unsigned hist_index(uint64_t v)
{
    if (v > HIST_MAX_NS)
        v = HIST_MAX_NS;
    if (v < 2 * HIST_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned e = msb - HIST_SUB_BITS;
    unsigned m = (unsigned)(v >> e);
    return 2 * HIST_SUB + (e - 1) * HIST_SUB + (m - HIST_SUB);
}

void hist_bucket_range(unsigned idx, uint64_t *lo, uint64_t *hi)
{
    if (idx < 2 * HIST_SUB) {
        *lo = *hi = idx;
        return;
    }
    unsigned e = (idx - 2 * HIST_SUB) / HIST_SUB + 1;
    uint64_t m = HIST_SUB + (idx - 2 * HIST_SUB) % HIST_SUB;
    *lo = m << e;
    *hi = ((m + 1) << e) - 1;
}

void hist_record(struct hist *h, uint64_t v)
{
    if (v > HIST_MAX_NS) {
        h->clamped++;
        v = HIST_MAX_NS;
    }
    h->buckets[hist_index(v)]++;
    h->count++;
    h->sum += (double)v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

void hist_merge(struct hist *dst, const struct hist *src)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
    dst->count += src->count;
    dst->clamped += src->clamped;
    dst->sum += src->sum;
    if (src->count && src->min < dst->min)
        dst->min = src->min;
    if (src->count && src->max > dst->max)
        dst->max = src->max;
}

static uint64_t percentile(const struct hist *h, double p, bool upper)
{
    if (h->count == 0)
        return 0;
    if (p <= 0)
        return h->min;
    if (p >= 100)
        return h->max;
    /* Nearest rank: the ceil(p/100 * n)-th smallest value. The small epsilon keeps p=99 of
     * n=100 at rank 99 despite binary rounding of 0.99 * 100. */
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)h->count - 1e-9);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t lo, hi;
            hist_bucket_range(i, &lo, &hi);
            uint64_t mid = upper ? hi : lo + (hi - lo) / 2;
            if (mid < h->min)
                mid = h->min;
            if (mid > h->max)
                mid = h->max;
            return mid;
        }
    }
    return h->max;
}

uint64_t hist_percentile(const struct hist *h, double p)
{
    return percentile(h, p, false);
}

uint64_t hist_percentile_upper(const struct hist *h, double p)
{
    return percentile(h, p, true);
}

double hist_mean(const struct hist *h)
{
    return h->count ? h->sum / (double)h->count : 0.0;
}
