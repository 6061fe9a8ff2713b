/* series.c - per-second figures over a run (series.h). */
#include "series.h"

#include <stdlib.h>

struct lg_series *lg_series_new(uint64_t total_ns)
{
    uint64_t secs = total_ns / 1000000000u + 2;
    uint64_t width = (secs + LG_SERIES_MAX - 1) / LG_SERIES_MAX;
    uint64_t n = (secs + width - 1) / width;
    if (n > LG_SERIES_MAX)
        n = LG_SERIES_MAX;
    struct lg_series *s = calloc(1, sizeof(*s) + n * sizeof(s->b[0]));
    if (!s)
        return NULL;
    s->width_ns = width * 1000000000u;
    s->n = (unsigned)n;
    s->cached_now = UINT64_MAX;
    return s;
}

void lg_series_merge(struct lg_series *dst, const struct lg_series *src)
{
    for (unsigned i = 0; i < dst->n && i < src->n; i++) {
        dst->b[i].deliveries += src->b[i].deliveries;
        dst->b[i].reconnects += src->b[i].reconnects;
        for (unsigned k = 0; k < LG_SERIES_LAT; k++)
            dst->b[i].lat[k] += src->b[i].lat[k];
    }
}

double lg_series_pct(const struct lg_series_bucket *b, double p)
{
    uint64_t total = 0;
    for (unsigned k = 0; k < LG_SERIES_LAT; k++)
        total += b->lat[k];
    if (!total)
        return -1;
    /* nearest rank, as hist.c */
    uint64_t rank = (uint64_t)((p / 100.0) * (double)total + 0.999999);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned k = 0; k < LG_SERIES_LAT; k++) {
        seen += b->lat[k];
        if (seen >= rank) {
            if (k == 0)
                return 500.0;
            unsigned e = (k >> LG_SERIES_SUBBITS) + LG_SERIES_LOWBITS;
            unsigned m = k & ((1u << LG_SERIES_SUBBITS) - 1);
            double lo =
                (double)(UINT64_C(1) << e) * (1.0 + (double)m / (double)(1u << LG_SERIES_SUBBITS));
            double w = (double)(UINT64_C(1) << e) / (double)(1u << LG_SERIES_SUBBITS);
            return lo + w / 2;
        }
    }
    return -1;
}

unsigned lg_series_used(const struct lg_series *s)
{
    unsigned n = s->n;
    while (n > 1 && !s->b[n - 1].deliveries && !s->b[n - 1].reconnects)
        n--;
    return n;
}
