/* payload_test.c - publish payloads (size, integrity check catches any changed byte) and the
 * event fast path, validated against the full parser (env_msg_parse) on the engine's own
 * encoder output and on other layouts. */
#include <stdlib.h>

#include "payload.h"
#include "proto/json.h"
#include "unit.h"

static jsmntok_t toks[ENV_MAX_TOKENS];

static void test_payload_roundtrip(void)
{
    char buf[4096];
    struct lg_payload pl = {7, 2, 9, 123456789012345ull, 123456789000000ull}, got;
    for (size_t size = 0; size < 600; size += 37) {
        size_t n = lg_payload_write(buf, sizeof(buf), &pl, size);
        CHECK(n > 0);
        if (size >= 80)
            CHECK_EQ(n, size);
        CHECK_EQ(lg_payload_check(buf, n, size, &got), LG_PAYLOAD_OK);
        CHECK(got.q == pl.q && got.p == pl.p && got.k == pl.k && got.t == pl.t && got.i == pl.i);
        CHECK(json_tokenize(buf, n, toks, ENV_MAX_TOKENS) > 0); /* valid JSON */
    }
    CHECK_EQ(lg_payload_write(buf, 50, &pl, 128), 0); /* does not fit */
    /* Tolerates whitespace a re-serializing server might add. */
    const char *spaced = "{ \"q\": 1, \"p\": 0, \"k\": 1, \"t\": 5, \"i\": 5, \"x\": \"\" }";
    CHECK(lg_payload_check(spaced, strlen(spaced), 0, &got) != LG_PAYLOAD_MALFORMED);
}

static void test_payload_truncated(void)
{
    /* A pad cut short (or lengthened) is corrupt although every byte present matches. */
    char buf[2048];
    struct lg_payload pl = {3, 0, 3, 999999999, 999999000}, got;
    size_t n = lg_payload_write(buf, sizeof(buf), &pl, 1000);
    CHECK_EQ(n, 1000);
    CHECK_EQ(lg_payload_check(buf, n, 1000, &got), LG_PAYLOAD_OK);
    char cut[2048];
    memcpy(cut, buf, 118);
    memcpy(cut + 118, "\"}", 2);
    CHECK_EQ(lg_payload_check(cut, 120, 1000, &got), LG_PAYLOAD_CORRUPT);
    CHECK_EQ(lg_payload_check(buf, n, 1001, &got), LG_PAYLOAD_CORRUPT);
}

static void test_payload_every_byte(void)
{
    /* Changing any single byte must never pass as intact. */
    char buf[256];
    struct lg_payload pl = {42, 1, 41, 999999999, 999999000}, got;
    size_t n = lg_payload_write(buf, sizeof(buf), &pl, 128);
    int passed = 0;
    for (size_t i = 0; i < n; i++) {
        char saved = buf[i];
        buf[i] = saved == '7' ? '8' : (saved == 'A' ? 'B' : '7');
        if (lg_payload_check(buf, n, 128, &got) == LG_PAYLOAD_OK)
            passed++;
        buf[i] = saved;
    }
    CHECK_EQ(passed, 0);
    CHECK_EQ(lg_payload_check("{\"a\":1}", 7, 0, &got), LG_PAYLOAD_MALFORMED);
    CHECK_EQ(lg_payload_check("", 0, 0, &got), LG_PAYLOAD_MALFORMED);
}

static void same(const struct lg_msg *a, const struct lg_msg *b)
{
    CHECK_EQ(a->kind, b->kind);
    CHECK(span_eq(a->room, b->room));
    CHECK(span_eq(a->event, b->event));
    CHECK(span_eq(a->data, b->data));
    CHECK_EQ(a->seq, b->seq);
    CHECK_EQ(a->has_seq, b->has_seq);
}

static void test_fast_path_matches_env_msg_parse(void)
{
    char payload[512], out[1024];
    struct lg_payload pl = {3, 0, 3, 1000, 900};
    size_t pn = lg_payload_write(payload, sizeof(payload), &pl, 128);
    uint64_t seqs[] = {1, 9, 10, 123456789, UINT64_MAX / 2};
    for (size_t i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
        struct jw w;
        jw_init(&w, out, sizeof(out));
        env_write_event(&w, SPAN_LIT("bench"), SPAN_LIT("room-1"), (struct span){payload, pn},
                        1795000000123ll, seqs[i]);
        CHECK(!w.overflow);
        struct lg_msg fast, slow;
        lg_msg_parse(out, w.len, toks, ENV_MAX_TOKENS, &fast);
        lg_msg_parse_slow(out, w.len, toks, ENV_MAX_TOKENS, &slow);
        CHECK(fast.fast); /* the engine's layout takes the fast path */
        CHECK(!slow.fast);
        same(&fast, &slow);
        CHECK_EQ(fast.kind, LG_MSG_EVENT);
        CHECK_EQ(fast.seq, seqs[i]);
        CHECK(span_eq_lit(fast.room, "room-1"));
    }
    /* Other layouts fall back and still parse the same. */
    const char *other[] = {
        "{\"type\": \"event\", \"event\": \"bench\", \"room\": \"r\", \"data\": {\"q\":1}, "
        "\"timestamp\": \"2026-11-22T04:35:00.123Z\", \"seq\": 5}",
        "{\"seq\":5,\"type\":\"event\",\"event\":\"bench\",\"room\":\"r\",\"data\":{}}",
        "{\"type\":\"event\",\"event\":\"bench\",\"room\":\"r\\u0041\",\"data\":{},"
        "\"timestamp\":\"2026-11-22T04:35:00.123Z\",\"seq\":5}",
        "{\"type\":\"event\",\"event\":\"bench\",\"room\":\"r\",\"data\":{},"
        "\"timestamp\":\"2026-11-22T04:35:00.123Z\",\"seq\":05}",
        "{\"type\":\"event\",\"event\":\"bench\",\"room\":\"r\",\"data\":{},"
        "\"timestamp\":\"2026-11-22T04:35:00.123Z\",\"seq\":5} ",
        "{\"type\":\"response\",\"event\":\"publish\",\"data\":{\"status\":\"published\"},"
        "\"correlation_id\":7,\"timestamp\":\"2026-11-22T04:35:00.123Z\"}",
        "{\"type\":\"pong\"}",
        "not json",
    };
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        struct lg_msg fast, slow;
        lg_msg_parse(other[i], strlen(other[i]), toks, ENV_MAX_TOKENS, &fast);
        lg_msg_parse_slow(other[i], strlen(other[i]), toks, ENV_MAX_TOKENS, &slow);
        CHECK(!fast.fast);
        same(&fast, &slow);
    }
    struct lg_msg m;
    lg_msg_parse(other[5], strlen(other[5]), toks, ENV_MAX_TOKENS, &m);
    CHECK_EQ(m.kind, LG_MSG_RESPONSE);
    CHECK_MEM(m.id.base, m.id.len, "7");
    lg_msg_parse(other[7], strlen(other[7]), toks, ENV_MAX_TOKENS, &m);
    CHECK_EQ(m.kind, LG_MSG_INVALID);
}

int main(void)
{
    RUN(test_payload_roundtrip);
    RUN(test_payload_every_byte);
    RUN(test_payload_truncated);
    RUN(test_fast_path_matches_env_msg_parse);
    return unit_report("payload");
}
