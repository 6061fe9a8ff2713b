/* vcache.c - the verified-message cache (see vcache.h for why it never hides a fault). */
#include "vcache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int lg_vcache_init(struct lg_vcache *vc)
{
    memset(vc, 0, sizeof(*vc));
    vc->slots = calloc(LG_VCACHE_SETS * LG_VCACHE_WAYS, sizeof(*vc->slots));
    if (!vc->slots)
        return -ENOMEM;
    for (unsigned i = 0; i < LG_VCACHE_SETS * LG_VCACHE_WAYS; i++)
        vc->slots[i].next = LG_VCACHE_NONE;
    return 0;
}

void lg_vcache_free(struct lg_vcache *vc)
{
    if (vc->slots)
        for (unsigned i = 0; i < LG_VCACHE_SETS * LG_VCACHE_WAYS; i++)
            free(vc->slots[i].bytes);
    free(vc->slots);
    vc->slots = NULL;
}

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

/* A hash of msg's length and of four 8-byte words spread over it (the last one included): a
 * payload's sequence numbers, send time and padding make every publish differ in them. It only
 * picks a set; the memcmp decides. */
static uint64_t vcache_hash(const uint8_t *msg, size_t len)
{
    uint64_t h = len * UINT64_C(0x2545F4914F6CDD1D);
    if (len < 16) {
        for (size_t i = 0; i < len; i++)
            h = (h ^ msg[i]) * UINT64_C(0x9E3779B97F4A7C15);
    } else {
        /* Four independent products, so the multiplies overlap. */
        size_t q = (len - 8) / 4;
        h ^= load64(msg + len - 8) * UINT64_C(0x9E3779B97F4A7C15);
        h ^= load64(msg + 2 * q) * UINT64_C(0xC2B2AE3D27D4EB4F);
        h ^= load64(msg + q) * UINT64_C(0x165667B19E3779F9);
        h ^= load64(msg + 3 * q) * UINT64_C(0xD6E8FEB86659FD93);
    }
    h ^= h >> 32;
    h *= UINT64_C(0x94D049BB133111EB);
    return h ^ (h >> 29);
}

static inline uint32_t set_of(uint64_t hash)
{
    return (uint32_t)((hash >> 20) & (LG_VCACHE_SETS - 1)) * LG_VCACHE_WAYS;
}

static inline bool holds(const struct lg_vslot *s, const uint8_t *msg, size_t len)
{
    return s->len == len && len && memcmp(s->bytes, msg, len) == 0;
}

const struct lg_verified *lg_vcache_find(struct lg_vcache *vc, const uint8_t *msg, size_t len,
                                         uint32_t *last)
{
    if (*last != LG_VCACHE_NONE) {
        uint32_t n = vc->slots[*last].next;
        if (n != LG_VCACHE_NONE && holds(&vc->slots[n], msg, len)) {
            vc->hits++;
            vc->predicted++;
            *last = n;
            return &vc->slots[n].v;
        }
    }
    uint64_t hash = vcache_hash(msg, len);
    uint32_t set = set_of(hash);
    for (uint32_t i = set; i < set + LG_VCACHE_WAYS; i++) {
        struct lg_vslot *s = &vc->slots[i];
        if (s->hash == hash && holds(s, msg, len)) {
            vc->hits++;
            *last = i;
            return &s->v;
        }
    }
    vc->misses++;
    return NULL;
}

void lg_vcache_put(struct lg_vcache *vc, const uint8_t *msg, size_t len,
                   const struct lg_verified *v, uint32_t *last)
{
    if (len == 0 || len > LG_VCACHE_MAX_MSG)
        return;
    uint64_t hash = vcache_hash(msg, len);
    uint32_t set = set_of(hash), idx = set;
    for (uint32_t i = set + 1; i < set + LG_VCACHE_WAYS && vc->slots[idx].len; i++)
        if (!vc->slots[i].len || vc->slots[i].stamp < vc->slots[idx].stamp)
            idx = i;
    struct lg_vslot *s = &vc->slots[idx];
    if (s->cap < len) {
        uint32_t cap = s->cap ? s->cap : 256;
        while (cap < len)
            cap *= 2;
        uint8_t *p = realloc(s->bytes, cap);
        if (!p) {
            s->len = 0; /* forget the slot rather than keep a stale copy */
            return;
        }
        s->bytes = p;
        s->cap = cap;
    }
    memcpy(s->bytes, msg, len);
    s->len = (uint32_t)len;
    s->hash = hash;
    s->stamp = ++vc->tick;
    s->next = LG_VCACHE_NONE;
    s->v = *v;
    if (*last != LG_VCACHE_NONE)
        vc->slots[*last].next = idx;
    *last = idx;
}
