/* envelope_test.c - client request parsing (every form, every field's wrong types, truncation,
 * payloads of every JSON type kept byte-exact), server message parsing, and the encoders. */
#include "unit.h"
#include "proto/envelope.h"

#include <stdlib.h>

#define TS 1795322100123LL /* 2026-11-22T04:35:00.123Z */

static jsmntok_t toks[ENV_MAX_TOKENS];

static enum env_err req_parse(const char *s, struct env_request *r)
{
    return env_request_parse(s, strlen(s), toks, ENV_MAX_TOKENS, r);
}

static enum env_err msg_parse(const char *s, struct env_msg *m)
{
    return env_msg_parse(s, strlen(s), toks, ENV_MAX_TOKENS, m);
}

#define CHECK_SPAN(sp, want) CHECK_MEM((sp).base, (sp).len, want)

/* ------------------------------------------------------------------------------------------ */
/* Requests                                                                                   */
/* ------------------------------------------------------------------------------------------ */

static void test_publish_request(void)
{
    struct env_request r;
    const char *s = "{\"type\":\"request\",\"event\":\"publish\",\"data\":{\"channel\":\"room-1\","
                    "\"event\":\"bench\",\"payload\":{\"x\":1}},\"id\":\"r1\"}";
    CHECK_EQ(req_parse(s, &r), ENV_OK);
    CHECK_EQ(r.type, ENV_REQUEST);
    CHECK_SPAN(r.event, "publish");
    CHECK_SPAN(r.id, "\"r1\"");
    CHECK_SPAN(r.data, "{\"channel\":\"room-1\",\"event\":\"bench\",\"payload\":{\"x\":1}}");
    CHECK_SPAN(r.channel, "room-1");
    CHECK(!r.channel_escaped);
    CHECK_SPAN(r.pub_event, "bench");
    CHECK_SPAN(r.payload, "{\"x\":1}");
    /* Spans point into the input, nothing copied. */
    CHECK(r.payload.base > s && r.payload.base + r.payload.len < s + strlen(s));
}

static void test_short_forms(void)
{
    struct env_request r;
    CHECK_EQ(req_parse("{\"type\":\"ping\"}", &r), ENV_OK);
    CHECK_EQ(r.type, ENV_PING);
    CHECK(r.id.len == 0);
    CHECK(r.channel.base == NULL);
    CHECK(r.payload.base == NULL);
    CHECK(r.pub_event.base == NULL);

    CHECK_EQ(req_parse("{\"type\":\"subscribe\",\"channel\":\"workflow:42\"}", &r), ENV_OK);
    CHECK_EQ(r.type, ENV_SUBSCRIBE);
    CHECK_SPAN(r.channel, "workflow:42");
    CHECK(r.id.len == 0);

    CHECK_EQ(req_parse("{\"channel\":\"global\",\"type\":\"unsubscribe\"}", &r), ENV_OK);
    CHECK_EQ(r.type, ENV_UNSUBSCRIBE);
    CHECK_SPAN(r.channel, "global");

    /* The short forms read the top-level channel, not data.channel. */
    CHECK_EQ(req_parse("{\"type\":\"subscribe\",\"data\":{\"channel\":\"x\"}}", &r),
             ENV_ERR_CHANNEL);
    CHECK_EQ(req_parse("{\"type\":\"subscribe\"}", &r), ENV_ERR_CHANNEL);
    CHECK_EQ(req_parse("{\"type\":\"unsubscribe\",\"channel\":5}", &r), ENV_ERR_CHANNEL);
    CHECK_EQ(req_parse("{\"type\":\"subscribe\",\"channel\":null}", &r), ENV_ERR_CHANNEL);
    CHECK_EQ(req_parse("{\"type\":\"subscribe\",\"channel\":[\"a\"]}", &r), ENV_ERR_CHANNEL);
    /* An empty name is a string: channel_validate rejects it, with INVALID_CHANNEL. */
    CHECK_EQ(req_parse("{\"type\":\"subscribe\",\"channel\":\"\"}", &r), ENV_OK);
    CHECK(r.channel.base != NULL && r.channel.len == 0);
}

static void test_request_forms(void)
{
    struct env_request r;
    CHECK_EQ(req_parse("{\"type\":\"request\",\"event\":\"subscribe\",\"data\":{\"channel\":"
                       "\"test:run-7\"},\"id\":1}",
                       &r),
             ENV_OK);
    CHECK_SPAN(r.event, "subscribe");
    CHECK_SPAN(r.channel, "test:run-7");
    CHECK_SPAN(r.id, "1");
    CHECK(r.payload.base == NULL);

    /* data is optional; event is not checked against a list (the engine answers that). */
    CHECK_EQ(req_parse("{\"type\":\"request\",\"event\":\"no.such\",\"id\":\"x\"}", &r), ENV_OK);
    CHECK_SPAN(r.event, "no.such");
    CHECK(r.data.base == NULL && r.data.len == 0);
    CHECK(r.channel.base == NULL);

    /* Non-string channel/event inside data are absent, not a message error. */
    CHECK_EQ(req_parse("{\"type\":\"request\",\"event\":\"publish\",\"data\":{\"channel\":7,"
                       "\"event\":{}}}",
                       &r),
             ENV_OK);
    CHECK(r.channel.base == NULL);
    CHECK(r.pub_event.base == NULL);
    CHECK(!r.channel_escaped);
}

static void test_wrong_types(void)
{
    static const struct {
        const char *in;
        enum env_err want;
    } cases[] = {
        {"{}", ENV_ERR_TYPE},
        {"{\"type\":5}", ENV_ERR_TYPE},
        {"{\"type\":null}", ENV_ERR_TYPE},
        {"{\"type\":[\"ping\"]}", ENV_ERR_TYPE},
        {"{\"type\":\"Request\"}", ENV_ERR_TYPE},
        {"{\"type\":\"pong\"}", ENV_ERR_TYPE},
        {"{\"type\":\"event\"}", ENV_ERR_TYPE},
        {"{\"type\":\"pin\"}", ENV_ERR_TYPE},
        {"{\"type\":\"pingg\"}", ENV_ERR_TYPE},
        {"{\"type\":\"\"}", ENV_ERR_TYPE},
        {"{\"typ\\u0065\":\"ping\"}", ENV_ERR_TYPE}, /* keys are compared raw */
        {"{\"Type\":\"ping\"}", ENV_ERR_TYPE},
        {"{\"data\":{\"type\":\"ping\"}}", ENV_ERR_TYPE}, /* nested keys are not top-level */
        {"{\"type\":\"request\"}", ENV_ERR_EVENT},
        {"{\"type\":\"request\",\"event\":5}", ENV_ERR_EVENT},
        {"{\"type\":\"request\",\"event\":null}", ENV_ERR_EVENT},
        {"{\"type\":\"request\",\"event\":{}}", ENV_ERR_EVENT},
        {"{\"type\":\"request\",\"event\":\"e\",\"data\":[]}", ENV_ERR_DATA},
        {"{\"type\":\"request\",\"event\":\"e\",\"data\":\"x\"}", ENV_ERR_DATA},
        {"{\"type\":\"request\",\"event\":\"e\",\"data\":null}", ENV_ERR_DATA},
        {"{\"type\":\"request\",\"event\":\"e\",\"data\":1}", ENV_ERR_DATA},
        {"{\"type\":\"request\",\"event\":\"e\",\"id\":{}}", ENV_ERR_ID},
        {"{\"type\":\"request\",\"event\":\"e\",\"id\":[1]}", ENV_ERR_ID},
        {"{\"type\":\"request\",\"event\":\"e\",\"id\":true}", ENV_ERR_ID},
        {"{\"type\":\"request\",\"event\":\"e\",\"id\":null}", ENV_ERR_ID},
        {"{\"type\":\"request\",\"event\":\"e\",\"correlation_id\":{}}", ENV_ERR_ID},
        {"[]", ENV_ERR_NOT_OBJECT},
        {"\"ping\"", ENV_ERR_NOT_OBJECT},
        {"42", ENV_ERR_NOT_OBJECT},
        {"null", ENV_ERR_NOT_OBJECT},
        {"", ENV_ERR_JSON},
        {"ping", ENV_ERR_JSON},
        {"{\"type\":\"ping\",}", ENV_ERR_JSON},
        {"{\"type\":\"ping\"} {}", ENV_ERR_JSON},
        {"{\"type\":\"ping\"", ENV_ERR_JSON},
        {"{\"type\":\"pi\x01ng\"}", ENV_ERR_JSON},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct env_request r;
        enum env_err e = req_parse(cases[i].in, &r);
        CHECK_EQ(e, cases[i].want);
        if (e != cases[i].want)
            fprintf(stderr, "  input: %s\n", cases[i].in);
    }
}

static void test_ids(void)
{
    struct env_request r;
    CHECK_EQ(req_parse("{\"type\":\"request\",\"event\":\"e\",\"id\":\"a\\\"b\"}", &r), ENV_OK);
    CHECK_SPAN(r.id, "\"a\\\"b\"");
    CHECK_EQ(req_parse("{\"type\":\"request\",\"event\":\"e\",\"id\":42}", &r), ENV_OK);
    CHECK_SPAN(r.id, "42");
    CHECK_EQ(req_parse("{\"type\":\"request\",\"event\":\"e\",\"id\":-1.5e3}", &r), ENV_OK);
    CHECK_SPAN(r.id, "-1.5e3");
    CHECK_EQ(req_parse("{\"type\":\"request\",\"event\":\"e\",\"id\":\"\"}", &r), ENV_OK);
    CHECK_SPAN(r.id, "\"\"");
    CHECK_EQ(req_parse("{\"type\":\"request\",\"event\":\"e\",\"correlation_id\":\"c\"}", &r),
             ENV_OK);
    CHECK_SPAN(r.id, "\"c\"");
    /* Both: "id" wins, wherever it is. */
    CHECK_EQ(req_parse("{\"id\":1,\"type\":\"request\",\"event\":\"e\",\"correlation_id\":2}", &r),
             ENV_OK);
    CHECK_SPAN(r.id, "1");
    /* ...and a bad correlation_id beside a good id does not matter. */
    CHECK_EQ(req_parse("{\"type\":\"request\",\"event\":\"e\",\"correlation_id\":{},\"id\":3}", &r),
             ENV_OK);
    CHECK_SPAN(r.id, "3");
    /* The short forms have no id: whatever they carry is ignored, never echoed. */
    CHECK_EQ(req_parse("{\"type\":\"ping\",\"id\":\"p\"}", &r), ENV_OK);
    CHECK(r.id.base == NULL && r.id.len == 0);
    CHECK_EQ(req_parse("{\"type\":\"ping\",\"id\":false}", &r), ENV_OK);
    CHECK(r.id.len == 0);
    CHECK_EQ(req_parse("{\"type\":\"subscribe\",\"channel\":\"c\",\"correlation_id\":7}", &r),
             ENV_OK);
    CHECK(r.id.len == 0);
}

static void test_payload_types(void)
{
    static const char *payloads[] = {
        "\"hi \\\"there\\\"\"",
        "\"\"",
        "{\"a\":[1,{\"b\":null}],\"c\":\"\\u00e9\"}",
        "{ \"a\" : [ 1 , 2 ] }",
        "[]",
        "[1,\"two\",[3]]",
        "0",
        "-1.5e+3",
        "true",
        "false",
        "null",
        "{}",
    };
    for (size_t i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
        char s[512];
        snprintf(s, sizeof(s),
                 "{\"type\":\"request\",\"event\":\"publish\",\"id\":9,\"data\":{\"payload\": "
                 "%s ,\"channel\":\"c\"}}",
                 payloads[i]);
        struct env_request r;
        CHECK_EQ(req_parse(s, &r), ENV_OK);
        CHECK_SPAN(r.payload, payloads[i]);
        CHECK_SPAN(r.channel, "c");
    }
}

static void test_escapes_and_whitespace(void)
{
    struct env_request r;
    const char *s = " {\n\t\"type\" :\r\n \"request\" , \"event\" : \"pub\\u006cish\" ,\n"
                    "  \"data\" : { \"channel\" : \"room\\u002d1\" , \"payload\" : \"\\n\" } ,"
                    " \"id\" : \"\\\\\" } \n";
    CHECK_EQ(req_parse(s, &r), ENV_OK);
    CHECK_SPAN(r.event, "pub\\u006cish"); /* still escaped, as the header says */
    CHECK_SPAN(r.channel, "room\\u002d1");
    CHECK(r.channel_escaped);
    CHECK_SPAN(r.payload, "\"\\n\"");
    CHECK_SPAN(r.id, "\"\\\\\"");
    char name[64];
    int n = json_unescape(r.channel.base, r.channel.len, name, sizeof(name));
    CHECK_MEM(name, n, "room-1");

    CHECK_EQ(req_parse("{\"type\":\"subscribe\",\"channel\":\"a\\/b\"}", &r), ENV_OK);
    CHECK(r.channel_escaped);
    CHECK_EQ(req_parse("{\"type\":\"subscribe\",\"channel\":\"a/b\"}", &r), ENV_OK);
    CHECK(!r.channel_escaped);
}

static void test_unknown_and_duplicate_keys(void)
{
    struct env_request r;
    CHECK_EQ(req_parse("{\"x\":{\"type\":\"request\",\"id\":{}},\"type\":\"subscribe\",\"v\":[{"
                       "\"channel\":1}],\"channel\":\"c\",\"extra\":null}",
                       &r),
             ENV_OK);
    CHECK_EQ(r.type, ENV_SUBSCRIBE);
    CHECK_SPAN(r.channel, "c");
    CHECK(r.id.len == 0);
    /* Last duplicate wins, at the top level and inside data. */
    CHECK_EQ(req_parse("{\"type\":\"ping\",\"type\":\"subscribe\",\"channel\":\"a\",\"channel\":"
                       "\"b\"}",
                       &r),
             ENV_OK);
    CHECK_EQ(r.type, ENV_SUBSCRIBE);
    CHECK_SPAN(r.channel, "b");
    CHECK_EQ(req_parse("{\"type\":\"request\",\"event\":\"publish\",\"data\":{\"payload\":1,"
                       "\"payload\":[2]}}",
                       &r),
             ENV_OK);
    CHECK_SPAN(r.payload, "[2]");
}

static void test_truncated_requests(void)
{
    const char *s =
        "{\"type\":\"request\",\"event\":\"publish\",\"data\":{\"channel\":\"r\\u00e9\","
        "\"event\":\"e\",\"payload\":{\"k\":[1,-2.5,true,null,\"s\"]}},\"id\":\"abc\"}";
    size_t len = strlen(s);
    struct env_request r;
    CHECK_EQ(env_request_parse(s, len, toks, ENV_MAX_TOKENS, &r), ENV_OK);
    for (size_t cut = 0; cut < len; cut++) {
        char *p = malloc(cut ? cut : 1); /* exact size: ASan sees a read past the end */
        memcpy(p, s, cut);
        enum env_err e = env_request_parse(p, cut, toks, ENV_MAX_TOKENS, &r);
        CHECK_EQ(e, ENV_ERR_JSON);
        e = (enum env_err)env_msg_parse(p, cut, toks, ENV_MAX_TOKENS, &(struct env_msg){0});
        CHECK_EQ(e, ENV_ERR_JSON);
        free(p);
    }
}

static void test_too_complex(void)
{
    struct env_request r;
    const char *s = "{\"type\":\"request\",\"event\":\"publish\",\"data\":{\"payload\":[1,2,3,4]}}";
    CHECK_EQ(env_request_parse(s, strlen(s), toks, 12, &r), ENV_ERR_TOO_COMPLEX);
    CHECK_EQ(env_request_parse(s, strlen(s), toks, 13, &r), ENV_OK);
    /* A deep payload within budget parses. */
    char deep[2100];
    size_t n = 0;
    n += (size_t)sprintf(deep, "{\"type\":\"request\",\"event\":\"e\",\"data\":{\"payload\":");
    for (int i = 0; i < 500; i++)
        deep[n++] = '[';
    for (int i = 0; i < 500; i++)
        deep[n++] = ']';
    n += (size_t)sprintf(deep + n, "}}");
    CHECK_EQ(env_request_parse(deep, n, toks, ENV_MAX_TOKENS, &r), ENV_OK);
    CHECK_EQ(r.payload.len, 1000);
    CHECK_EQ(env_request_parse(deep, n, toks, 500, &r), ENV_ERR_TOO_COMPLEX);
}

static void test_err_str(void)
{
    for (int e = ENV_OK; e <= ENV_ERR_SEQ; e++) {
        const char *s = env_err_str((enum env_err)e);
        CHECK(s != NULL && strlen(s) > 0);
        for (int f = ENV_OK; f < e; f++)
            CHECK(strcmp(s, env_err_str((enum env_err)f)) != 0);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Server messages                                                                            */
/* ------------------------------------------------------------------------------------------ */

static void test_msg_parse(void)
{
    struct env_msg m;
    CHECK_EQ(
        msg_parse("{\"type\":\"event\",\"event\":\"bench\",\"room\":\"room-1\",\"data\":{\"x\":"
                  "1},\"timestamp\":\"2026-11-22T04:35:00.123Z\",\"seq\":7}",
                  &m),
        ENV_OK);
    CHECK_SPAN(m.type, "event");
    CHECK_SPAN(m.event, "bench");
    CHECK_SPAN(m.room, "room-1");
    CHECK_SPAN(m.data, "{\"x\":1}");
    CHECK(m.has_seq);
    CHECK_EQ(m.seq, 7);
    CHECK(m.id.len == 0);
    CHECK(m.code.base == NULL);

    CHECK_EQ(msg_parse("{\"type\":\"response\",\"event\":\"publish\",\"data\":{\"status\":"
                       "\"published\",\"channel\":\"c\",\"seq\":3,\"subscribers\":2},"
                       "\"correlation_id\":\"r1\",\"timestamp\":\"x\"}",
                       &m),
             ENV_OK);
    CHECK_SPAN(m.type, "response");
    CHECK_SPAN(m.id, "\"r1\"");
    CHECK(!m.has_seq); /* data.seq is not the envelope's seq */
    CHECK(m.room.base == NULL);

    CHECK_EQ(
        msg_parse("{\"type\":\"error\",\"event\":\"error\",\"data\":{\"code\":\"RATE_LIMITED\","
                  "\"message\":\"slow down\"},\"correlation_id\":5,\"timestamp\":\"t\"}",
                  &m),
        ENV_OK);
    CHECK_SPAN(m.code, "RATE_LIMITED");
    CHECK_SPAN(m.id, "5");

    CHECK_EQ(msg_parse("{\"type\":\"pong\"}", &m), ENV_OK);
    CHECK_SPAN(m.type, "pong");
    CHECK(m.event.len == 0);
    CHECK(m.data.len == 0);

    /* An event whose data is a string that looks like an error: no code outside errors. */
    CHECK_EQ(msg_parse("{\"type\":\"event\",\"event\":\"e\",\"data\":{\"code\":\"X\"},\"seq\":"
                       "18446744073709551615}",
                       &m),
             ENV_OK);
    CHECK(m.code.base == NULL);
    CHECK(m.seq == UINT64_MAX);
    CHECK_EQ(msg_parse("{\"type\":\"event\",\"data\":\"s\",\"seq\":0}", &m), ENV_OK);
    CHECK_SPAN(m.data, "\"s\"");
    CHECK(m.has_seq && m.seq == 0);

    static const struct {
        const char *in;
        enum env_err want;
    } bad[] = {
        {"{\"event\":\"e\"}", ENV_ERR_TYPE},
        {"{\"type\":1}", ENV_ERR_TYPE},
        {"{\"type\":\"event\",\"event\":1}", ENV_ERR_EVENT},
        {"{\"type\":\"event\",\"room\":1}", ENV_ERR_CHANNEL},
        {"{\"type\":\"event\",\"correlation_id\":[]}", ENV_ERR_ID},
        {"{\"type\":\"event\",\"seq\":-1}", ENV_ERR_SEQ},
        {"{\"type\":\"event\",\"seq\":1.0}", ENV_ERR_SEQ},
        {"{\"type\":\"event\",\"seq\":\"1\"}", ENV_ERR_SEQ},
        {"{\"type\":\"event\",\"seq\":18446744073709551616}", ENV_ERR_SEQ},
        {"[1]", ENV_ERR_NOT_OBJECT},
        {"{\"type\":\"event\"", ENV_ERR_JSON},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        enum env_err e = msg_parse(bad[i].in, &m);
        CHECK_EQ(e, bad[i].want);
        if (e != bad[i].want)
            fprintf(stderr, "  input: %s\n", bad[i].in);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Encoders                                                                                   */
/* ------------------------------------------------------------------------------------------ */

static void test_write_event(void)
{
    char buf[512];
    struct jw w;
    jw_init(&w, buf, sizeof(buf));
    env_write_event(&w, SPAN_LIT("bench"), SPAN_LIT("room-1"), SPAN_LIT("{\"x\":1}"), TS, 7);
    CHECK(!w.overflow);
    CHECK_MEM(buf, w.len,
              "{\"type\":\"event\",\"event\":\"bench\",\"room\":\"room-1\",\"data\":{\"x\":1},"
              "\"timestamp\":\"2026-11-22T04:35:00.123Z\",\"seq\":7}");

    /* No room, no seq: both omitted (session.created). */
    jw_init(&w, buf, sizeof(buf));
    env_write_event(&w, SPAN_LIT("session.created"), SPAN_NULL,
                    SPAN_LIT("{\"connection_id\":\"c1\"}"), 0, 0);
    CHECK_MEM(buf, w.len,
              "{\"type\":\"event\",\"event\":\"session.created\",\"data\":{\"connection_id\":"
              "\"c1\"},\"timestamp\":\"1970-01-01T00:00:00.000Z\"}");

    /* Empty data is null; an empty (non-NULL) room is kept. */
    jw_init(&w, buf, sizeof(buf));
    env_write_event(&w, SPAN_LIT("e"), (struct span){"", 0}, SPAN_NULL, 0, UINT64_MAX);
    CHECK_MEM(buf, w.len,
              "{\"type\":\"event\",\"event\":\"e\",\"room\":\"\",\"data\":null,\"timestamp\":"
              "\"1970-01-01T00:00:00.000Z\",\"seq\":18446744073709551615}");

    /* Every prefix capacity overflows; the full length fits. */
    jw_init(&w, buf, sizeof(buf));
    env_write_event(&w, SPAN_LIT("bench"), SPAN_LIT("room-1"), SPAN_LIT("[1]"), TS, 7);
    size_t full = w.len;
    for (size_t cap = 0; cap < full; cap++) {
        jw_init(&w, buf, cap);
        env_write_event(&w, SPAN_LIT("bench"), SPAN_LIT("room-1"), SPAN_LIT("[1]"), TS, 7);
        CHECK(w.overflow);
        CHECK(w.len <= cap);
    }
    jw_init(&w, buf, full);
    env_write_event(&w, SPAN_LIT("bench"), SPAN_LIT("room-1"), SPAN_LIT("[1]"), TS, 7);
    CHECK(!w.overflow);
}

static void test_write_response(void)
{
    char buf[512];
    struct jw w;
    jw_init(&w, buf, sizeof(buf));
    env_write_response_begin(&w, SPAN_LIT("subscribe"));
    jw_lit(&w, "{\"status\":\"subscribed\",\"channel\":");
    jw_str(&w, "room-1", 6);
    jw_lit(&w, "}");
    env_write_end(&w, SPAN_LIT("\"r1\""), TS);
    CHECK(!w.overflow);
    CHECK_MEM(buf, w.len,
              "{\"type\":\"response\",\"event\":\"subscribe\",\"data\":{\"status\":\"subscribed\","
              "\"channel\":\"room-1\"},\"correlation_id\":\"r1\",\"timestamp\":\"2026-11-22T04:"
              "35:00.123Z\"}");

    /* Short forms are answered without correlation_id. */
    jw_init(&w, buf, sizeof(buf));
    env_write_response_begin(&w, SPAN_LIT("pong"));
    jw_lit(&w, "{}");
    env_write_end(&w, SPAN_NULL, TS);
    CHECK_MEM(buf, w.len,
              "{\"type\":\"response\",\"event\":\"pong\",\"data\":{},\"timestamp\":\"2026-11-22T04:"
              "35:00.123Z\"}");
    jw_init(&w, buf, sizeof(buf));
    env_write_end(&w, SPAN_LIT("42"), 0);
    CHECK_MEM(buf, w.len, ",\"correlation_id\":42,\"timestamp\":\"1970-01-01T00:00:00.000Z\"}");
}

static void test_write_error(void)
{
    char buf[512];
    struct jw w;
    jw_init(&w, buf, sizeof(buf));
    env_write_error(&w, "INVALID_CHANNEL", "channel must be 1-255 bytes", SPAN_LIT("\"r1\""), TS);
    CHECK(!w.overflow);
    CHECK_MEM(buf, w.len,
              "{\"type\":\"error\",\"event\":\"error\",\"data\":{\"code\":\"INVALID_CHANNEL\","
              "\"message\":\"channel must be 1-255 bytes\"},\"correlation_id\":\"r1\","
              "\"timestamp\":\"2026-11-22T04:35:00.123Z\"}");

    jw_init(&w, buf, sizeof(buf));
    env_write_error(&w, "INVALID_MESSAGE", "bad \"x\"\n\\", SPAN_NULL, 0);
    CHECK_MEM(buf, w.len,
              "{\"type\":\"error\",\"event\":\"error\",\"data\":{\"code\":\"INVALID_MESSAGE\","
              "\"message\":\"bad \\\"x\\\"\\n\\\\\"},\"timestamp\":\"1970-01-01T00:00:00.000Z\"}");

    /* What we write, we can read back. */
    struct env_msg m;
    CHECK_EQ(env_msg_parse(buf, w.len, toks, ENV_MAX_TOKENS, &m), ENV_OK);
    CHECK_SPAN(m.type, "error");
    CHECK_SPAN(m.code, "INVALID_MESSAGE");
}

static void test_event_roundtrip(void)
{
    /* A parsed publish becomes an event embedding the payload verbatim, which parses back. */
    const char *s = "{\"type\":\"request\",\"event\":\"publish\",\"data\":{\"channel\":\"r\\\"1\","
                    "\"event\":\"ev\\n\",\"payload\":[\"\\u2028\",{\"a\":-0.0}]},\"id\":3}";
    struct env_request r;
    CHECK_EQ(req_parse(s, &r), ENV_OK);
    char buf[512];
    struct jw w;
    jw_init(&w, buf, sizeof(buf));
    env_write_event(&w, r.pub_event, r.channel, r.payload, TS, 12);
    CHECK(!w.overflow);
    struct env_msg m;
    CHECK_EQ(env_msg_parse(buf, w.len, toks, ENV_MAX_TOKENS, &m), ENV_OK);
    CHECK_SPAN(m.type, "event");
    CHECK_SPAN(m.event, "ev\\n");
    CHECK_SPAN(m.room, "r\\\"1");
    CHECK_SPAN(m.data, "[\"\\u2028\",{\"a\":-0.0}]");
    CHECK(m.has_seq && m.seq == 12);
}

/* An error found after a usable id still reports the id (protocol.md §4). */
static void test_id_kept_on_error(void)
{
    struct env_request r;
    CHECK_EQ(req_parse("{\"type\":\"request\",\"event\":\"x\",\"data\":[],\"id\":\"a\"}", &r),
             ENV_ERR_DATA);
    CHECK_SPAN(r.id, "\"a\"");
    CHECK_EQ(req_parse("{\"type\":\"request\",\"data\":\"x\",\"id\":7}", &r), ENV_ERR_EVENT);
    CHECK_SPAN(r.id, "7");
    CHECK_EQ(req_parse("{\"type\":\"request\",\"event\":5,\"correlation_id\":\"c\"}", &r),
             ENV_ERR_EVENT);
    CHECK_SPAN(r.id, "\"c\"");
    CHECK_EQ(req_parse("{\"type\":\"request\",\"event\":\"x\",\"id\":{}}", &r), ENV_ERR_ID);
    CHECK(r.id.len == 0);
}

static void test_pub_event_not_string(void)
{
    struct env_request r;
    CHECK_EQ(req_parse("{\"type\":\"request\",\"event\":\"publish\",\"data\":{\"channel\":\"c\","
                       "\"event\":5}}",
                       &r),
             ENV_OK);
    CHECK(r.pub_event_bad);
    CHECK(r.pub_event.base == NULL);
    CHECK_EQ(
        req_parse("{\"type\":\"request\",\"event\":\"publish\",\"data\":{\"event\":\"e\"}}", &r),
        ENV_OK);
    CHECK(!r.pub_event_bad);
    CHECK_EQ(req_parse("{\"type\":\"request\",\"event\":\"publish\",\"data\":{}}", &r), ENV_OK);
    CHECK(!r.pub_event_bad);
}

/* env_max_tokens(len) tokens are enough for the densest JSON of len bytes. */
static void test_max_tokens_bound(void)
{
    static char buf[8192];
    static jsmntok_t big[8192];
    for (size_t n = 1; n < 2000; n++) {
        /* [0,0,...,0] with n zeros: 2n+1 bytes, n+1 tokens */
        size_t len = 0;
        buf[len++] = '[';
        for (size_t i = 0; i < n; i++) {
            if (i)
                buf[len++] = ',';
            buf[len++] = '0';
        }
        buf[len++] = ']';
        size_t need = env_max_tokens(len);
        CHECK(json_tokenize(buf, len, big, (unsigned)need) == (int)n + 1);
    }
    CHECK(json_tokenize("[[[[]]]]", 8, big, (unsigned)env_max_tokens(8)) == 4);
    CHECK(json_tokenize("0", 1, big, (unsigned)env_max_tokens(1)) == 1);
}

int main(void)
{
    RUN(test_publish_request);
    RUN(test_short_forms);
    RUN(test_request_forms);
    RUN(test_wrong_types);
    RUN(test_ids);
    RUN(test_payload_types);
    RUN(test_escapes_and_whitespace);
    RUN(test_unknown_and_duplicate_keys);
    RUN(test_truncated_requests);
    RUN(test_too_complex);
    RUN(test_id_kept_on_error);
    RUN(test_pub_event_not_string);
    RUN(test_max_tokens_bound);
    RUN(test_err_str);
    RUN(test_msg_parse);
    RUN(test_write_event);
    RUN(test_write_response);
    RUN(test_write_error);
    RUN(test_event_roundtrip);
    return unit_report("envelope");
}
