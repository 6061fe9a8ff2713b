/* fuzz_envelope.c - json_tokenize, env_request_parse and env_msg_parse over arbitrary bytes.
 *
 * Beyond "no crash", every accepted input is checked for what the engine relies on: tokens lie
 * inside the input in document order and agree with jsmn's layout; every span the parsers return
 * lies inside the input; a payload span is valid JSON on its own; and the broadcast event built
 * from a parsed publish (payload embedded verbatim) is valid JSON that parses back to the same
 * payload. Any violation aborts with a message.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/channel.h"
#include "proto/envelope.h"
#include "proto/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static jsmntok_t toks[ENV_MAX_TOKENS];
static jsmntok_t toks2[ENV_MAX_TOKENS];

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_envelope: invariant broken: %s (line %d)\n", #cond, __LINE__);   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void require_inside(const char *in, size_t len, struct span s)
{
    if (s.base == NULL) {
        REQUIRE(s.len == 0);
        return;
    }
    REQUIRE(s.base >= in && s.len <= len && (size_t)(s.base - in) <= len - s.len);
}

/* Structural checks on a successful json_tokenize result. */
static void check_tokens(const char *in, size_t len, const jsmntok_t *t, int n)
{
    for (int i = 0; i < n; i++) {
        REQUIRE(t[i].start >= 0 && t[i].end >= t[i].start && (size_t)t[i].end <= len);
        REQUIRE(t[i].parent >= -1 && t[i].parent < i);
        REQUIRE(i == 0 || t[i].start > t[i - 1].start);
        REQUIRE((i == 0) == (t[i].parent == -1));
        switch (t[i].type) {
        case JSMN_STRING:
            REQUIRE(t[i].start >= 1 && in[t[i].start - 1] == '"' && in[t[i].end] == '"');
            REQUIRE(t[i].size <= 1);
            break;
        case JSMN_PRIMITIVE: REQUIRE(t[i].end > t[i].start && t[i].size == 0); break;
        case JSMN_OBJECT:
        case JSMN_ARRAY:
            REQUIRE(in[t[i].start] == (t[i].type == JSMN_OBJECT ? '{' : '['));
            REQUIRE(in[t[i].end - 1] == (t[i].type == JSMN_OBJECT ? '}' : ']'));
            break;
        default: REQUIRE(!"bad token type");
        }
    }
    REQUIRE(json_skip(t, n, 0) == n);

    /* jsmn agrees on every valid document it can take (it calls a bare top-level number
     * incomplete, and stops at NUL, which no valid document holds). */
    if (t[0].type == JSMN_OBJECT || t[0].type == JSMN_ARRAY || t[0].type == JSMN_STRING) {
        jsmn_parser p;
        jsmn_init(&p);
        int m = jsmn_parse(&p, in, len, toks2, ENV_MAX_TOKENS);
        REQUIRE(m == n);
        for (int i = 0; i < n; i++) {
            REQUIRE(toks2[i].type == t[i].type && toks2[i].start == t[i].start);
            REQUIRE(toks2[i].end == t[i].end && toks2[i].size == t[i].size);
            REQUIRE(toks2[i].parent == t[i].parent);
        }
    }

    /* Every string unescapes into no more bytes than it has, or is refused. */
    static char out[65536];
    for (int i = 0; i < n; i++) {
        if (t[i].type != JSMN_STRING)
            continue;
        size_t sl = (size_t)(t[i].end - t[i].start);
        int u = json_unescape(in + t[i].start, sl, out, sizeof(out));
        REQUIRE(u >= -1 && (u == -1 || (size_t)u <= sl));
    }
}

static void check_valid_json(const char *s, size_t len)
{
    int n = json_tokenize(s, len, toks2, ENV_MAX_TOKENS);
    REQUIRE(n > 0);
}

static void check_request(const char *in, size_t len)
{
    struct env_request r;
    enum env_err e = env_request_parse(in, len, toks, ENV_MAX_TOKENS, &r);
    REQUIRE(e >= ENV_OK && e <= ENV_ERR_SEQ);
    if (e != ENV_OK)
        return;
    REQUIRE(r.type <= ENV_UNSUBSCRIBE);
    require_inside(in, len, r.event);
    require_inside(in, len, r.id);
    require_inside(in, len, r.data);
    require_inside(in, len, r.channel);
    require_inside(in, len, r.pub_event);
    require_inside(in, len, r.payload);
    if (r.id.len)
        check_valid_json(r.id.base, r.id.len);
    if (r.data.len)
        check_valid_json(r.data.base, r.data.len);
    if (r.type == ENV_SUBSCRIBE || r.type == ENV_UNSUBSCRIBE)
        REQUIRE(r.channel.base != NULL);
    REQUIRE(r.channel_escaped ==
            (r.channel.base != NULL && memchr(r.channel.base, '\\', r.channel.len) != NULL));

    if (r.channel.base) {
        char name[CHANNEL_MAX_LEN];
        int n = json_unescape(r.channel.base, r.channel.len, name, sizeof(name));
        if (n >= 0)
            (void)channel_validate(name, (size_t)n);
    }

    if (!r.payload.base)
        return;
    check_valid_json(r.payload.base, r.payload.len);

    /* The broadcast the engine would build: payload embedded verbatim. */
    size_t cap = r.payload.len + r.pub_event.len + r.channel.len + 256;
    char *buf = malloc(cap);
    REQUIRE(buf != NULL);
    struct jw w;
    jw_init(&w, buf, cap);
    struct span ev = r.pub_event.base ? r.pub_event : SPAN_LIT("e");
    env_write_event(&w, ev, r.channel, r.payload, 1795322100123LL, 42);
    REQUIRE(!w.overflow);
    struct env_msg m;
    REQUIRE(env_msg_parse(buf, w.len, toks2, ENV_MAX_TOKENS, &m) == ENV_OK);
    REQUIRE(span_eq(m.data, r.payload));
    REQUIRE(span_eq(m.event, ev));
    REQUIRE(m.has_seq && m.seq == 42);
    if (r.channel.base)
        REQUIRE(span_eq(m.room, r.channel));
    free(buf);
}

static void check_msg(const char *in, size_t len)
{
    struct env_msg m;
    enum env_err e = env_msg_parse(in, len, toks, ENV_MAX_TOKENS, &m);
    REQUIRE(e >= ENV_OK && e <= ENV_ERR_SEQ);
    if (e != ENV_OK)
        return;
    require_inside(in, len, m.type);
    require_inside(in, len, m.event);
    require_inside(in, len, m.room);
    require_inside(in, len, m.data);
    require_inside(in, len, m.id);
    require_inside(in, len, m.code);
    REQUIRE(m.has_seq || m.seq == 0);
}

/* jw_str must turn any bytes into one JSON string that unescapes back to them. */
static void check_writer(const char *in, size_t len)
{
    if (len > 4096)
        return;
    static char buf[6 * 4096 + 2], back[4096];
    struct jw w;
    jw_init(&w, buf, sizeof(buf));
    jw_str(&w, in, len);
    REQUIRE(!w.overflow);
    jsmntok_t t[1];
    REQUIRE(json_tokenize(buf, w.len, t, 1) == 1);
    REQUIRE(t[0].type == JSMN_STRING && t[0].start == 1 && (size_t)t[0].end == w.len - 1);
    int n = json_unescape(buf + 1, w.len - 2, back, sizeof(back));
    REQUIRE(n >= 0 && (size_t)n == len && memcmp(back, in, len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;

    int n = json_tokenize(in, size, toks, ENV_MAX_TOKENS);
    REQUIRE(n > 0 || n == -JSON_ERR_SYNTAX || n == -JSON_ERR_TRUNCATED || n == -JSON_ERR_TOO_MANY ||
            n == -JSON_ERR_TRAILING);
    if (n > 0)
        check_tokens(in, size, toks, n);

    /* A small token array must fail cleanly, never write past its end. */
    jsmntok_t few[3];
    int k = json_tokenize(in, size, few, 3);
    if (n > 3)
        REQUIRE(k == -JSON_ERR_TOO_MANY);
    else if (n > 0)
        REQUIRE(k == n);
    else
        REQUIRE(k == n || k == -JSON_ERR_TOO_MANY);

    check_request(in, size);
    check_msg(in, size);
    check_writer(in, size);
    return 0;
}
