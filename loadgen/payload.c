/* payload.c - publish payloads, their integrity check, and the per-event fast path. */
#include "payload.h"

#include <string.h>

#include "proto/json.h"

/* 64 characters that need no JSON escaping: six bits of the stream pick one. */
static const char pad_alphabet[64] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= UINT64_C(0xff51afd7ed558ccd);
    x ^= x >> 33;
    x *= UINT64_C(0xc4ceb9fe1a85ec53);
    x ^= x >> 33;
    return x;
}

static uint64_t pad_seed(const struct lg_payload *pl)
{
    return mix64(pl->q ^ mix64(pl->p + (pl->k << 20)) ^ mix64(pl->t) ^
                 (pl->i * 0x9E3779B97F4A7C15));
}

/* The pad stream: a 64-bit LCG, ten 6-bit characters per step from its high bits. */
static void pad_fill(char *out, size_t n, uint64_t seed)
{
    uint64_t x = seed;
    while (n) {
        x = x * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
        uint64_t y = x;
        for (int j = 0; j < 10 && n; j++, n--) {
            *out++ = pad_alphabet[y >> 58];
            y <<= 6;
        }
    }
}

static bool pad_matches(const char *s, size_t n, uint64_t seed)
{
    uint64_t x = seed;
    while (n) {
        x = x * UINT64_C(6364136223846793005) + UINT64_C(1442695040888963407);
        uint64_t y = x;
        for (int j = 0; j < 10 && n; j++, n--) {
            if (*s++ != pad_alphabet[y >> 58])
                return false;
            y <<= 6;
        }
    }
    return true;
}

static char *put_u64(char *p, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

size_t lg_payload_write(char *out, size_t cap, const struct lg_payload *pl, size_t size)
{
    char head[LG_PAYLOAD_MAX_FIXED];
    char *p = head;
    memcpy(p, "{\"q\":", 5);
    p = put_u64(p + 5, pl->q);
    memcpy(p, ",\"p\":", 5);
    p = put_u64(p + 5, pl->p);
    memcpy(p, ",\"k\":", 5);
    p = put_u64(p + 5, pl->k);
    memcpy(p, ",\"t\":", 5);
    p = put_u64(p + 5, pl->t);
    memcpy(p, ",\"i\":", 5);
    p = put_u64(p + 5, pl->i);
    memcpy(p, ",\"x\":\"", 6);
    p += 6;
    size_t fixed = (size_t)(p - head) + 2; /* closing quote and brace */
    size_t pad = lg_payload_pad_len(pl, size);
    if (fixed + pad > cap)
        return 0;
    memcpy(out, head, (size_t)(p - head));
    char *o = out + (p - head);
    pad_fill(o, pad, pad_seed(pl));
    o += pad;
    *o++ = '"';
    *o++ = '}';
    return (size_t)(o - out);
}

/* ---- checking ---- */

struct cursor {
    const char *p, *end;
};

static void skip_ws(struct cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static bool expect(struct cursor *c, char ch)
{
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

/* Reads "name": then an unsigned integer. */
static bool field_u64(struct cursor *c, char name, uint64_t *v)
{
    skip_ws(c);
    if (c->end - c->p < 4 || c->p[0] != '"' || c->p[1] != name || c->p[2] != '"')
        return false;
    c->p += 3;
    if (!expect(c, ':'))
        return false;
    skip_ws(c);
    uint64_t x = 0;
    const char *start = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        if (x > (UINT64_MAX - 9) / 10)
            return false;
        x = x * 10 + (uint64_t)(*c->p++ - '0');
    }
    if (c->p == start)
        return false;
    *v = x;
    return true;
}

static size_t digits(uint64_t v)
{
    size_t n = 1;
    while (v >= 10)
        v /= 10, n++;
    return n;
}

size_t lg_payload_pad_len(const struct lg_payload *pl, size_t size)
{
    /* The compact layout's fixed part: 31 bytes of keys and punctuation before the pad, the
     * closing quote and brace, and the five numbers. */
    size_t fixed =
        33 + digits(pl->q) + digits(pl->p) + digits(pl->k) + digits(pl->t) + digits(pl->i);
    return size > fixed ? size - fixed : 0;
}

enum lg_payload_res lg_payload_check(const char *s, size_t len, size_t size, struct lg_payload *pl)
{
    struct cursor c = {s, s + len};
    if (!expect(&c, '{') || !field_u64(&c, 'q', &pl->q) || !expect(&c, ',') ||
        !field_u64(&c, 'p', &pl->p) || !expect(&c, ',') || !field_u64(&c, 'k', &pl->k) ||
        !expect(&c, ',') || !field_u64(&c, 't', &pl->t) || !expect(&c, ',') ||
        !field_u64(&c, 'i', &pl->i) || !expect(&c, ','))
        return LG_PAYLOAD_MALFORMED;
    skip_ws(&c);
    if (c.end - c.p < 4 || memcmp(c.p, "\"x\"", 3) != 0)
        return LG_PAYLOAD_CORRUPT;
    c.p += 3;
    if (!expect(&c, ':') || !expect(&c, '"'))
        return LG_PAYLOAD_CORRUPT;
    const char *pad = c.p;
    const char *q = memchr(pad, '"', (size_t)(c.end - pad));
    if (!q)
        return LG_PAYLOAD_CORRUPT;
    c.p = q + 1;
    if (!expect(&c, '}'))
        return LG_PAYLOAD_CORRUPT;
    skip_ws(&c);
    if (c.p != c.end)
        return LG_PAYLOAD_CORRUPT;
    /* The pad's length is what this tool generated for --size: a cut (or lengthened) pad is
     * corrupt even when every byte present matches the stream. */
    if ((size_t)(q - pad) != lg_payload_pad_len(pl, size))
        return LG_PAYLOAD_CORRUPT;
    return pad_matches(pad, (size_t)(q - pad), pad_seed(pl)) ? LG_PAYLOAD_OK : LG_PAYLOAD_CORRUPT;
}

/* ---- server messages ---- */

void lg_msg_parse_slow(const char *json, size_t len, jsmntok_t *toks, unsigned ntoks,
                       struct lg_msg *m)
{
    struct env_msg em;
    memset(m, 0, sizeof(*m));
    if (env_msg_parse(json, len, toks, ntoks, &em) != ENV_OK) {
        m->kind = LG_MSG_INVALID;
        return;
    }
    if (span_eq_lit(em.type, "event"))
        m->kind = LG_MSG_EVENT;
    else if (span_eq_lit(em.type, "response"))
        m->kind = LG_MSG_RESPONSE;
    else if (span_eq_lit(em.type, "error"))
        m->kind = LG_MSG_ERROR;
    else
        m->kind = LG_MSG_OTHER;
    m->event = em.event;
    m->room = em.room;
    m->data = em.data;
    m->id = em.id;
    m->code = em.code;
    m->seq = em.seq;
    m->has_seq = em.has_seq;
}

/* Finds the end of the JSON value starting at p (our own payload, or any object without
 * strings holding braces would do; strings are skipped properly). Returns NULL if unbalanced. */
static const char *value_end(const char *p, const char *end)
{
    int depth = 0;
    bool in_str = false;
    for (; p < end; p++) {
        char ch = *p;
        if (in_str) {
            if (ch == '\\')
                p++;
            else if (ch == '"')
                in_str = false;
            continue;
        }
        if (ch == '"')
            in_str = true;
        else if (ch == '{' || ch == '[')
            depth++;
        else if (ch == '}' || ch == ']') {
            if (--depth == 0)
                return p + 1;
            if (depth < 0)
                return NULL;
        }
    }
    return NULL;
}

#define PFX(c, lit)                                                                                \
    ((size_t)((c).end - (c).p) >= sizeof(lit) - 1 && memcmp((c).p, lit, sizeof(lit) - 1) == 0)

/* ringcast's layout: {"type":"event","event":E,"room":R,"data":D,"timestamp":"T","seq":N}.
 * Accepted only when every byte matches that shape and no string holds an escape; anything
 * else goes to the full parser, so the fast path can only be faster, never more lenient. */
static bool parse_fast(const char *json, size_t len, struct lg_msg *m)
{
    struct cursor c = {json, json + len};
    if (!PFX(c, "{\"type\":\"event\",\"event\":\""))
        return false;
    c.p += 25;
    const char *ev = c.p;
    const char *q = memchr(ev, '"', (size_t)(c.end - ev));
    if (!q || memchr(ev, '\\', (size_t)(q - ev)))
        return false;
    m->event = (struct span){ev, (size_t)(q - ev)};
    c.p = q + 1;
    if (!PFX(c, ",\"room\":\""))
        return false;
    c.p += 9;
    const char *room = c.p;
    q = memchr(room, '"', (size_t)(c.end - room));
    if (!q || q == room || memchr(room, '\\', (size_t)(q - room)))
        return false;
    m->room = (struct span){room, (size_t)(q - room)};
    c.p = q + 1;
    if (!PFX(c, ",\"data\":{"))
        return false;
    c.p += 8;
    const char *dend = value_end(c.p, c.end);
    if (!dend)
        return false;
    m->data = (struct span){c.p, (size_t)(dend - c.p)};
    c.p = dend;
    if (!PFX(c, ",\"timestamp\":\""))
        return false;
    c.p += 14;
    if (c.end - c.p < JSON_TIMESTAMP_LEN + 8 || c.p[JSON_TIMESTAMP_LEN] != '"')
        return false;
    c.p += JSON_TIMESTAMP_LEN + 1;
    if (!PFX(c, ",\"seq\":"))
        return false;
    c.p += 7;
    uint64_t seq = 0;
    const char *digits = c.p;
    while (c.p < c.end && *c.p >= '0' && *c.p <= '9') {
        if (seq > (UINT64_MAX - 9) / 10)
            return false;
        seq = seq * 10 + (uint64_t)(*c.p++ - '0');
    }
    if (c.p == digits || (c.p - digits > 1 && *digits == '0'))
        return false;
    if (c.end - c.p != 1 || *c.p != '}')
        return false;
    m->kind = LG_MSG_EVENT;
    m->seq = seq;
    m->has_seq = true;
    m->id = SPAN_NULL;
    m->code = SPAN_NULL;
    m->fast = true;
    return true;
}

void lg_msg_parse(const char *json, size_t len, jsmntok_t *toks, unsigned ntoks, struct lg_msg *m)
{
    if (parse_fast(json, len, m))
        return;
    lg_msg_parse_slow(json, len, toks, ntoks, m);
}
