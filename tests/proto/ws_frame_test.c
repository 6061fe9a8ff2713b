/* ws_frame_test.c - RFC 6455 §5 framing: the §5.7 examples byte for byte, every error and its
 * close code, length encodings at their boundaries, NEED_MORE at every split, fragmentation with
 * interleaved control frames, the message limit, close payloads, and the encoders. */
#include <stdint.h>
#include <stdlib.h>

#include "unit.h"
#include "proto/ws_frame.h"

static const uint8_t KEY[4] = {0x37, 0xfa, 0x21, 0x3d};

/* Builds a frame in out: b0 as given, payload copied and masked when key is not NULL, length
 * encoded minimally. Returns the frame size. */
static size_t mk(uint8_t *out, uint8_t b0, const void *payload, size_t len, const uint8_t *key)
{
    size_t h = ws_frame_header_write(out, b0 & 0x0F, (b0 & 0x80) != 0, len, key);
    out[0] = b0; /* keeps RSV bits the encoder would never write */
    if (len)
        memcpy(out + h, payload, len);
    if (key)
        ws_mask(out + h, len, key, 0);
    return h + len;
}

/* Parses buf expecting an error; returns it (or -1 when the parse did not fail). */
static int parse_err(struct ws_parser *p, uint8_t *buf, size_t len)
{
    struct ws_frame f;
    enum ws_err e = WS_OK;
    int rc = ws_frame_parse(p, buf, len, &f, &e, NULL);
    return rc == WS_ERROR ? (int)e : -1;
}

static struct ws_parser server(void)
{
    struct ws_parser p;
    ws_parser_init(&p, WS_ROLE_SERVER, 1 << 20, true);
    return p;
}

static struct ws_parser client(void)
{
    struct ws_parser p;
    ws_parser_init(&p, WS_ROLE_CLIENT, 1 << 20, true);
    return p;
}

/* ------------------------------------------------------------------------------------------ */

static void test_rfc_examples(void)
{
    struct ws_parser p = client();
    struct ws_frame f;
    enum ws_err e;
    size_t need;

    /* A single-frame unmasked text message. */
    uint8_t a[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    CHECK_EQ(ws_frame_parse(&p, a, sizeof(a), &f, &e, &need), 7);
    CHECK_EQ(f.opcode, WS_OP_TEXT);
    CHECK(f.fin && f.msg_start && f.msg_end);
    CHECK_EQ(f.msg_opcode, WS_OP_TEXT);
    CHECK_MEM(f.payload, f.len, "Hello");
    CHECK(f.payload == a + 2);
    uint8_t out[WS_MAX_HEADER + 8];
    CHECK_EQ(ws_frame_header_write(out, WS_OP_TEXT, true, 5, NULL), 2);
    CHECK(memcmp(out, a, 2) == 0);

    /* A single-frame masked text message. */
    uint8_t b[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    uint8_t b_copy[sizeof(b)];
    memcpy(b_copy, b, sizeof(b));
    struct ws_parser s = server();
    CHECK_EQ(ws_frame_parse(&s, b, sizeof(b), &f, &e, &need), 11);
    CHECK_MEM(f.payload, f.len, "Hello");
    CHECK(f.payload == b + 6);
    size_t h = ws_frame_header_write(out, WS_OP_TEXT, true, 5, KEY);
    CHECK_EQ(h, 6);
    memcpy(out + h, "Hello", 5);
    ws_mask(out + h, 5, KEY, 0);
    CHECK(memcmp(out, b_copy, sizeof(b_copy)) == 0);

    /* A fragmented unmasked text message: "Hel" + "lo". */
    uint8_t c[] = {0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f};
    CHECK_EQ(ws_frame_parse(&p, c, sizeof(c), &f, &e, &need), 5);
    CHECK(!f.fin && f.msg_start && !f.msg_end);
    CHECK_EQ(f.opcode, WS_OP_TEXT);
    CHECK_MEM(f.payload, f.len, "Hel");
    CHECK_EQ(p.msg_opcode, WS_OP_TEXT);
    CHECK_EQ(p.msg_len, 3);
    CHECK_EQ(ws_frame_parse(&p, c + 5, 4, &f, &e, &need), 4);
    CHECK_EQ(f.opcode, WS_OP_CONT);
    CHECK_EQ(f.msg_opcode, WS_OP_TEXT);
    CHECK(f.fin && !f.msg_start && f.msg_end);
    CHECK_MEM(f.payload, f.len, "lo");
    CHECK_EQ(p.msg_opcode, 0);
    CHECK_EQ(p.msg_len, 0);
    CHECK_EQ(ws_frame_header_write(out, WS_OP_TEXT, false, 3, NULL), 2);
    CHECK(memcmp(out, c, 2) == 0);
    CHECK_EQ(ws_frame_header_write(out, WS_OP_CONT, true, 2, NULL), 2);
    CHECK(memcmp(out, c + 5, 2) == 0);

    /* Unmasked ping, and a masked pong answering it. */
    uint8_t d[] = {0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    CHECK_EQ(ws_frame_parse(&p, d, sizeof(d), &f, &e, &need), 7);
    CHECK_EQ(f.opcode, WS_OP_PING);
    CHECK_MEM(f.payload, f.len, "Hello");
    CHECK(!f.msg_start && !f.msg_end);
    uint8_t pong[] = {0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    CHECK_EQ(ws_frame_parse(&s, pong, sizeof(pong), &f, &e, &need), 11);
    CHECK_EQ(f.opcode, WS_OP_PONG);
    CHECK_MEM(f.payload, f.len, "Hello");

    /* 256 bytes of binary in one unmasked frame: 0x82 0x7E 0x0100. */
    static uint8_t big[10 + 65536];
    for (size_t i = 0; i < 256; i++)
        big[4 + i] = (uint8_t)i;
    h = ws_frame_header_write(big, WS_OP_BINARY, true, 256, NULL);
    CHECK_EQ(h, 4);
    CHECK(big[0] == 0x82 && big[1] == 0x7E && big[2] == 0x01 && big[3] == 0x00);
    CHECK_EQ(ws_frame_parse(&p, big, 4 + 256, &f, &e, &need), 260);
    CHECK_EQ(f.len, 256);
    CHECK_EQ(f.payload[255], 255);

    /* 64KiB of binary in one unmasked frame: 0x82 0x7F 0x0000000000010000. */
    h = ws_frame_header_write(big, WS_OP_BINARY, true, 65536, NULL);
    CHECK_EQ(h, 10);
    static const uint8_t want[10] = {0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00};
    CHECK(memcmp(big, want, 10) == 0);
    big[10 + 65535] = 0xAB;
    CHECK_EQ(ws_frame_parse(&p, big, sizeof(big), &f, &e, &need), 10 + 65536);
    CHECK_EQ(f.len, 65536);
    CHECK_EQ(f.payload[65535], 0xAB);
}

/* ------------------------------------------------------------------------------------------ */

static void test_err_table(void)
{
    static const struct {
        enum ws_err e;
        uint16_t code;
    } t[] = {
        {WS_OK, 1000},
        {WS_ERR_RSV, 1002},
        {WS_ERR_OPCODE, 1002},
        {WS_ERR_MASK, 1002},
        {WS_ERR_LENGTH, 1002},
        {WS_ERR_CONTROL_TOO_LONG, 1002},
        {WS_ERR_CONTROL_FRAGMENTED, 1002},
        {WS_ERR_UNEXPECTED_CONT, 1002},
        {WS_ERR_EXPECTED_CONT, 1002},
        {WS_ERR_CLOSE_PAYLOAD, 1002},
        {WS_ERR_CLOSE_CODE, 1002},
        {WS_ERR_BINARY, 1003},
        {WS_ERR_UTF8, 1007},
        {WS_ERR_TOO_BIG, 1009},
    };
    size_t n = sizeof(t) / sizeof(t[0]);
    CHECK_EQ(n, WS_ERR_TOO_BIG + 1);
    for (size_t i = 0; i < n; i++) {
        CHECK_EQ(ws_err_close_code(t[i].e), t[i].code);
        const char *s = ws_err_str(t[i].e);
        CHECK(s != NULL && s[0] != '\0');
        /* Used verbatim as a close reason: ASCII (so valid UTF-8) and at most 123 bytes. */
        CHECK(strlen(s) <= 123);
        CHECK(utf8_valid((const uint8_t *)s, strlen(s)));
        for (size_t j = 0; j < i; j++)
            CHECK(strcmp(s, ws_err_str(t[j].e)) != 0);
    }
    CHECK(ws_err_str((enum ws_err)99) != NULL);
    CHECK_EQ(ws_err_close_code((enum ws_err)99), 1002);
}

/* Each framing rule, broken once, gives its own error. */
static void test_each_error(void)
{
    uint8_t buf[300];
    struct ws_parser p;

    /* RSV1, RSV2, RSV3; detected from the first byte alone. */
    for (int bit = 0x10; bit <= 0x40; bit <<= 1) {
        p = server();
        buf[0] = (uint8_t)(0x81 | bit);
        CHECK_EQ(parse_err(&p, buf, 1), WS_ERR_RSV);
        mk(buf, (uint8_t)(0x81 | bit), "x", 1, KEY);
        CHECK_EQ(parse_err(&p, buf, 7), WS_ERR_RSV);
    }
    /* Reserved opcodes 3-7 and B-F; the defined ones pass the first-byte check. */
    for (int op = 0; op < 16; op++) {
        p = server();
        buf[0] = (uint8_t)(0x80 | op);
        int want = (op >= 3 && op <= 7) || op >= 0xB ? WS_ERR_OPCODE
                   : op == 0                         ? WS_ERR_UNEXPECTED_CONT
                                                     : -1;
        CHECK_EQ(parse_err(&p, buf, 1), want);
    }
    /* Masking by role: servers need masked frames, clients unmasked ones. */
    p = server();
    size_t n = mk(buf, 0x81, "hi", 2, NULL);
    CHECK_EQ(parse_err(&p, buf, n), WS_ERR_MASK);
    CHECK_EQ(parse_err(&p, buf, 2), WS_ERR_MASK);
    p = client();
    n = mk(buf, 0x81, "hi", 2, KEY);
    CHECK_EQ(parse_err(&p, buf, n), WS_ERR_MASK);
    p = client();
    n = mk(buf, 0x8A, "", 0, KEY);
    CHECK_EQ(parse_err(&p, buf, n), WS_ERR_MASK);

    /* Control frames: over 125 bytes (needs the 16-bit form), or without FIN. */
    static const uint8_t ctl[] = {WS_OP_CLOSE, WS_OP_PING, WS_OP_PONG};
    for (size_t i = 0; i < 3; i++) {
        uint8_t zeros[126] = {0x03, 0xE8};
        p = server();
        n = mk(buf, 0x80 | ctl[i], zeros, 126, KEY);
        CHECK_EQ(parse_err(&p, buf, n), WS_ERR_CONTROL_TOO_LONG);
        CHECK_EQ(parse_err(&p, buf, 2), WS_ERR_CONTROL_TOO_LONG);
        n = mk(buf, 0x80 | ctl[i], zeros, 125, KEY);
        CHECK_EQ(parse_err(&p, buf, n), -1);
        n = mk(buf, ctl[i], "", 0, KEY);
        CHECK_EQ(parse_err(&p, buf, n), WS_ERR_CONTROL_FRAGMENTED);
        CHECK_EQ(parse_err(&p, buf, 1), WS_ERR_CONTROL_FRAGMENTED);
    }

    /* Fragmentation sequencing. */
    p = server();
    n = mk(buf, 0x80, "x", 1, KEY);
    CHECK_EQ(parse_err(&p, buf, n), WS_ERR_UNEXPECTED_CONT);
    n = mk(buf, 0x00, "x", 1, KEY);
    CHECK_EQ(parse_err(&p, buf, n), WS_ERR_UNEXPECTED_CONT);
    for (int second = 1; second <= 2; second++) {
        p = server();
        n = mk(buf, 0x01, "x", 1, KEY);
        CHECK_EQ(parse_err(&p, buf, n), -1);
        n = mk(buf, (uint8_t)(0x80 | second), "y", 1, KEY);
        CHECK_EQ(parse_err(&p, buf, n), WS_ERR_EXPECTED_CONT);
    }

    /* Binary refused unless allowed, whether whole or as the first fragment. */
    ws_parser_init(&p, WS_ROLE_SERVER, 1000, false);
    n = mk(buf, 0x82, "\x01", 1, KEY);
    CHECK_EQ(parse_err(&p, buf, n), WS_ERR_BINARY);
    CHECK_EQ(parse_err(&p, buf, 1), WS_ERR_BINARY);
    n = mk(buf, 0x02, "\x01", 1, KEY);
    CHECK_EQ(parse_err(&p, buf, n), WS_ERR_BINARY);
    n = mk(buf, 0x81, "text is fine", 12, KEY);
    CHECK_EQ(parse_err(&p, buf, n), -1);
    ws_parser_init(&p, WS_ROLE_SERVER, 1000, true);
    n = mk(buf, 0x82, "\xFF\xFE", 2, KEY);
    CHECK_EQ(parse_err(&p, buf, n), -1); /* and binary is never UTF-8 checked */

    /* Text not UTF-8. */
    p = server();
    n = mk(buf, 0x81, "ab\xC0\xAF", 4, KEY);
    CHECK_EQ(parse_err(&p, buf, n), WS_ERR_UTF8);
    p = server();
    n = mk(buf, 0x81, "ab\xE2\x82", 4, KEY); /* ends inside a character */
    CHECK_EQ(parse_err(&p, buf, n), WS_ERR_UTF8);

    /* Left to the caller: text is passed through unchecked, whole or fragmented, but a close
     * reason is still checked here. */
    p = server();
    ws_parser_caller_checks_utf8(&p);
    n = mk(buf, 0x81, "ab\xC0\xAF", 4, KEY);
    CHECK_EQ(parse_err(&p, buf, n), -1);
    n = mk(buf, 0x01, "ab\xE2", 3, KEY);
    CHECK_EQ(parse_err(&p, buf, n), -1);
    n = mk(buf, 0x80, "\xFF", 1, KEY);
    CHECK_EQ(parse_err(&p, buf, n), -1);
    n = mk(buf, 0x88, "\x03\xE8\xFF", 3, KEY);
    CHECK_EQ(parse_err(&p, buf, n), WS_ERR_UTF8);

    /* Close payload rules. */
    p = server();
    n = mk(buf, 0x88, "\x03", 1, KEY);
    CHECK_EQ(parse_err(&p, buf, n), WS_ERR_CLOSE_PAYLOAD);
    n = mk(buf, 0x88, "\x03\xED", 2, KEY); /* 1005 may not be sent */
    CHECK_EQ(parse_err(&p, buf, n), WS_ERR_CLOSE_CODE);
    n = mk(buf, 0x88, "\x03\xE8\xFF", 3, KEY);
    CHECK_EQ(parse_err(&p, buf, n), WS_ERR_UTF8);

    /* Message too big: single frame and across fragments, tested further below. */
    ws_parser_init(&p, WS_ROLE_SERVER, 4, true);
    n = mk(buf, 0x82, "12345", 5, KEY);
    CHECK_EQ(parse_err(&p, buf, n), WS_ERR_TOO_BIG);
}

/* ------------------------------------------------------------------------------------------ */

static void test_lengths(void)
{
    static const uint64_t lens[] = {0, 1, 124, 125, 126, 127, 128, 65535, 65536, 65537, 100000};
    static uint8_t buf[14 + 100000], pay[100000];
    for (size_t i = 0; i < sizeof(pay); i++)
        pay[i] = (uint8_t)(i * 7);
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        uint64_t L = lens[i];
        size_t want_h = L <= 125 ? 2 : L <= 65535 ? 4 : 10;
        for (int masked = 0; masked <= 1; masked++) {
            const uint8_t *key = masked ? KEY : NULL;
            size_t h = ws_frame_header_write(buf, WS_OP_BINARY, true, L, key);
            CHECK_EQ(h, want_h + (masked ? 4 : 0));
            CHECK_EQ(ws_frame_header_len(L, masked), h);
            CHECK_EQ(buf[1] & 0x80, masked ? 0x80 : 0);
            CHECK_EQ(buf[1] & 0x7F, L <= 125 ? L : L <= 65535 ? 126 : 127);
            memcpy(buf + h, pay, L);
            if (masked)
                ws_mask(buf + h, L, KEY, 0);
            struct ws_parser p;
            ws_parser_init(&p, masked ? WS_ROLE_SERVER : WS_ROLE_CLIENT, 1 << 20, true);
            struct ws_frame f;
            enum ws_err e;
            CHECK_EQ(ws_frame_parse(&p, buf, h + L, &f, &e, NULL), (int)(h + L));
            CHECK_EQ(f.len, L);
            CHECK(f.payload == buf + h);
            CHECK(memcmp(f.payload, pay, L) == 0);
        }
    }

    /* Non-minimal length encodings and the 64-bit top bit. */
    struct ws_parser p = client();
    uint8_t b16[] = {0x82, 0x7E, 0x00, 0x7D}; /* 125 in the 16-bit form */
    CHECK_EQ(parse_err(&p, b16, sizeof(b16)), WS_ERR_LENGTH);
    b16[3] = 0x00; /* 0 in the 16-bit form */
    CHECK_EQ(parse_err(&p, b16, sizeof(b16)), WS_ERR_LENGTH);
    b16[3] = 0x7E; /* 126: minimal, just needs its payload */
    size_t need = 0;
    struct ws_frame f;
    enum ws_err e;
    CHECK_EQ(ws_frame_parse(&p, b16, sizeof(b16), &f, &e, &need), WS_NEED_MORE);
    CHECK_EQ(need, 4 + 126);
    uint8_t b64[10] = {0x82, 0x7F, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF}; /* 65535 in the 64-bit form */
    CHECK_EQ(parse_err(&p, b64, sizeof(b64)), WS_ERR_LENGTH);
    b64[8] = 0, b64[9] = 0x05; /* 5 in the 64-bit form */
    CHECK_EQ(parse_err(&p, b64, sizeof(b64)), WS_ERR_LENGTH);
    b64[7] = 0x01, b64[8] = 0, b64[9] = 0; /* 65536: minimal */
    CHECK_EQ(ws_frame_parse(&p, b64, sizeof(b64), &f, &e, &need), WS_NEED_MORE);
    CHECK_EQ(need, 10 + 65536);
    memset(b64 + 2, 0, 8);
    b64[2] = 0x80; /* top bit set */
    CHECK_EQ(parse_err(&p, b64, sizeof(b64)), WS_ERR_LENGTH);
    memset(b64 + 2, 0xFF, 8);
    CHECK_EQ(parse_err(&p, b64, sizeof(b64)), WS_ERR_LENGTH);
    /* Largest legal 64-bit length: refused only because it is too big. */
    b64[2] = 0x7F;
    CHECK_EQ(parse_err(&p, b64, sizeof(b64)), WS_ERR_TOO_BIG);
    /* Even with no message limit, a frame must fit the int return value. */
    ws_parser_init(&p, WS_ROLE_CLIENT, UINT64_MAX, true);
    CHECK_EQ(parse_err(&p, b64, sizeof(b64)), WS_ERR_TOO_BIG);
}

/* ------------------------------------------------------------------------------------------ */

/* For every prefix of the frame: NEED_MORE, a need that only grows and is exact once the header
 * is there, and neither the parser nor the buffer touched; then the whole frame parses. */
static void check_splits(struct ws_parser *p, uint8_t *frame, size_t n, size_t hdr)
{
    static uint8_t copy[70000];
    memcpy(copy, frame, n);
    struct ws_parser before = *p;
    size_t last_need = 0;
    for (size_t k = 0; k < n; k++) {
        /* Long frames: every split around the header and the end, a sample in between. */
        if (k > hdr + 64 && k + 64 < n && k % 997 != 0)
            continue;
        struct ws_frame f;
        enum ws_err e = WS_OK;
        size_t need = 0;
        int rc = ws_frame_parse(p, frame, k, &f, &e, &need);
        if (rc != WS_NEED_MORE) {
            CHECK_EQ(rc, WS_NEED_MORE);
            return;
        }
        CHECK(need > k);
        CHECK(need <= n);
        CHECK(need >= last_need);
        if (k >= hdr)
            CHECK_EQ(need, n);
        last_need = need;
        CHECK(memcmp(p, &before, sizeof(before)) == 0);
        CHECK(memcmp(frame, copy, n) == 0);
    }
    struct ws_frame f;
    enum ws_err e;
    CHECK_EQ(ws_frame_parse(p, frame, n, &f, &e, NULL), (int)n);
}

static void test_need_more_every_split(void)
{
    static uint8_t buf[70000];
    static const size_t lens[] = {0, 5, 125, 126, 300, 65535, 65536};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        for (int masked = 0; masked <= 1; masked++) {
            struct ws_parser p = masked ? server() : client();
            memset(buf, 'a', sizeof(buf));
            size_t h = ws_frame_header_write(buf, WS_OP_TEXT, true, lens[i], masked ? KEY : NULL);
            if (masked)
                ws_mask(buf + h, lens[i], KEY, 0);
            check_splits(&p, buf, h + lens[i], h);
        }
    }
    /* A fragment in the middle of a message, and a close frame. */
    struct ws_parser p = server();
    size_t n = mk(buf, 0x01, "\xE2\x82", 2, KEY);
    check_splits(&p, buf, n, 6);
    CHECK_EQ(p.msg_opcode, WS_OP_TEXT);
    n = mk(buf, 0x89, "ping", 4, KEY);
    check_splits(&p, buf, n, 6);
    n = mk(buf, 0x80, "\xAC", 1, KEY);
    check_splits(&p, buf, n, 6);
    CHECK_EQ(p.msg_opcode, 0);
    n = mk(buf, 0x88,
           "\x03\xE8"
           "bye",
           5, KEY);
    check_splits(&p, buf, n, 6);

    /* Several frames back to back in one buffer: each return value is where the next starts. */
    struct ws_parser c = client();
    size_t off = 0;
    off += mk(buf + off, 0x01, "one ", 4, NULL);
    off += mk(buf + off, 0x89, "", 0, NULL);
    off += mk(buf + off, 0x80, "two", 3, NULL);
    off += mk(buf + off, 0x82, "\x00\x01", 2, NULL);
    size_t pos = 0;
    int frames = 0;
    while (pos < off) {
        struct ws_frame f;
        enum ws_err e;
        int rc = ws_frame_parse(&c, buf + pos, off - pos, &f, &e, NULL);
        CHECK(rc > 0);
        if (rc <= 0)
            break;
        pos += (size_t)rc;
        frames++;
    }
    CHECK_EQ(frames, 4);
    CHECK_EQ(pos, off);
}

/* ------------------------------------------------------------------------------------------ */

static void test_interleaved_control(void)
{
    uint8_t buf[256];
    struct ws_parser p = server();
    struct ws_frame f;
    enum ws_err e;
    size_t n;

    /* Text "€uro" split inside the euro sign, with ping, pong and close between fragments. */
    n = mk(buf, 0x01, "\xE2", 1, KEY);
    CHECK_EQ(ws_frame_parse(&p, buf, n, &f, &e, NULL), (int)n);
    CHECK(f.msg_start && !f.msg_end);
    n = mk(buf, 0x89, "p1", 2, KEY);
    CHECK_EQ(ws_frame_parse(&p, buf, n, &f, &e, NULL), (int)n);
    CHECK_EQ(f.opcode, WS_OP_PING);
    CHECK_EQ(f.msg_opcode, 0);
    CHECK_EQ(p.msg_opcode, WS_OP_TEXT);
    CHECK_EQ(p.msg_len, 1);
    CHECK(p.utf8.state != 0);
    n = mk(buf, 0x00, "\x82", 1, KEY);
    CHECK_EQ(ws_frame_parse(&p, buf, n, &f, &e, NULL), (int)n);
    CHECK(!f.msg_start && !f.msg_end);
    CHECK_EQ(f.msg_opcode, WS_OP_TEXT);
    n = mk(buf, 0x8A, "", 0, KEY);
    CHECK_EQ(ws_frame_parse(&p, buf, n, &f, &e, NULL), (int)n);
    CHECK_EQ(f.opcode, WS_OP_PONG);
    n = mk(buf, 0x88, "\x03\xE8", 2, KEY);
    CHECK_EQ(ws_frame_parse(&p, buf, n, &f, &e, NULL), (int)n);
    CHECK_EQ(f.close_code, 1000);
    CHECK_EQ(p.msg_len, 2);
    n = mk(buf, 0x80, "\xACuro", 4, KEY);
    CHECK_EQ(ws_frame_parse(&p, buf, n, &f, &e, NULL), (int)n);
    CHECK(f.msg_end);
    CHECK_EQ(p.msg_opcode, 0);
    CHECK_EQ(p.utf8.state, 0);

    /* A new message right after: the UTF-8 state was reset, and a bad continuation is caught. */
    n = mk(buf, 0x01, "ok\xF0\x9F", 4, KEY);
    CHECK_EQ(ws_frame_parse(&p, buf, n, &f, &e, NULL), (int)n);
    n = mk(buf, 0x80,
           "\x98"
           "A",
           2, KEY);
    CHECK_EQ(parse_err(&p, buf, n), WS_ERR_UTF8);

    /* A message whose final fragment leaves a character unfinished. */
    p = server();
    n = mk(buf, 0x01, "ab", 2, KEY);
    CHECK_EQ(ws_frame_parse(&p, buf, n, &f, &e, NULL), (int)n);
    n = mk(buf, 0x80, "\xC3", 1, KEY);
    CHECK_EQ(parse_err(&p, buf, n), WS_ERR_UTF8);

    /* Binary fragments are not UTF-8 checked, and their state does not leak into text. */
    p = server();
    n = mk(buf, 0x02, "\xE2", 1, KEY);
    CHECK_EQ(ws_frame_parse(&p, buf, n, &f, &e, NULL), (int)n);
    CHECK_EQ(f.msg_opcode, WS_OP_BINARY);
    n = mk(buf, 0x80, "\xFF", 1, KEY);
    CHECK_EQ(ws_frame_parse(&p, buf, n, &f, &e, NULL), (int)n);
    CHECK_EQ(f.msg_opcode, WS_OP_BINARY);
    n = mk(buf, 0x81, "fine", 4, KEY);
    CHECK_EQ(ws_frame_parse(&p, buf, n, &f, &e, NULL), (int)n);

    /* Empty fragments are legal, including an empty final one. */
    p = server();
    n = mk(buf, 0x01, "", 0, KEY);
    CHECK_EQ(ws_frame_parse(&p, buf, n, &f, &e, NULL), (int)n);
    n = mk(buf, 0x00, "", 0, KEY);
    CHECK_EQ(ws_frame_parse(&p, buf, n, &f, &e, NULL), (int)n);
    n = mk(buf, 0x80, "", 0, KEY);
    CHECK_EQ(ws_frame_parse(&p, buf, n, &f, &e, NULL), (int)n);
    CHECK(f.msg_end);
    CHECK_EQ(f.len, 0);
}

/* ------------------------------------------------------------------------------------------ */

static void test_max_message(void)
{
    uint8_t buf[256];
    struct ws_parser p;
    struct ws_frame f;
    enum ws_err e;
    size_t n;

    ws_parser_init(&p, WS_ROLE_SERVER, 10, true);
    n = mk(buf, 0x81, "0123456789", 10, KEY); /* exactly the limit */
    CHECK_EQ(ws_frame_parse(&p, buf, n, &f, &e, NULL), (int)n);
    n = mk(buf, 0x81, "0123456789a", 11, KEY);
    CHECK_EQ(parse_err(&p, buf, n), WS_ERR_TOO_BIG);
    /* Refused from the header alone: two bytes are enough, no payload needed. */
    CHECK_EQ(parse_err(&p, buf, 2), WS_ERR_TOO_BIG);

    /* Across fragments: 6 + 4 fits, 6 + 5 does not, and the count survives control frames. */
    ws_parser_init(&p, WS_ROLE_SERVER, 10, true);
    n = mk(buf, 0x01, "012345", 6, KEY);
    CHECK_EQ(ws_frame_parse(&p, buf, n, &f, &e, NULL), (int)n);
    n = mk(buf, 0x89, "0123456789abcdef", 16, KEY); /* control frames do not count */
    CHECK_EQ(ws_frame_parse(&p, buf, n, &f, &e, NULL), (int)n);
    n = mk(buf, 0x80, "6789a", 5, KEY);
    CHECK_EQ(parse_err(&p, buf, 2), WS_ERR_TOO_BIG);
    CHECK_EQ(parse_err(&p, buf, n), WS_ERR_TOO_BIG);
    n = mk(buf, 0x00, "67", 2, KEY);
    CHECK_EQ(ws_frame_parse(&p, buf, n, &f, &e, NULL), (int)n);
    CHECK_EQ(p.msg_len, 8);
    n = mk(buf, 0x80, "89", 2, KEY);
    CHECK_EQ(ws_frame_parse(&p, buf, n, &f, &e, NULL), (int)n);
    /* The next message starts from zero again. */
    n = mk(buf, 0x01, "0123456789", 10, KEY);
    CHECK_EQ(ws_frame_parse(&p, buf, n, &f, &e, NULL), (int)n);
    n = mk(buf, 0x80, "", 0, KEY);
    CHECK_EQ(ws_frame_parse(&p, buf, n, &f, &e, NULL), (int)n);

    /* A 64-bit length announcing a terabyte, with only the length field received. */
    ws_parser_init(&p, WS_ROLE_SERVER, 1 << 20, true);
    uint8_t huge[10] = {0x82, 0xFF, 0, 0, 0x01, 0, 0, 0, 0, 0};
    CHECK_EQ(parse_err(&p, huge, sizeof(huge)), WS_ERR_TOO_BIG);
    /* 16-bit length over a small limit, with only its length field. */
    ws_parser_init(&p, WS_ROLE_SERVER, 200, true);
    uint8_t mid[4] = {0x81, 0xFE, 0x01, 0x00};
    CHECK_EQ(parse_err(&p, mid, sizeof(mid)), WS_ERR_TOO_BIG);
    /* ...but not before the length field is complete. */
    size_t need = 0;
    CHECK_EQ(ws_frame_parse(&p, mid, 3, &f, &e, &need), WS_NEED_MORE);
    CHECK_EQ(need, 8);
    /* A limit of zero still allows empty messages and control frames. */
    ws_parser_init(&p, WS_ROLE_SERVER, 0, true);
    n = mk(buf, 0x81, "", 0, KEY);
    CHECK_EQ(ws_frame_parse(&p, buf, n, &f, &e, NULL), (int)n);
    n = mk(buf, 0x89, "x", 1, KEY);
    CHECK_EQ(ws_frame_parse(&p, buf, n, &f, &e, NULL), (int)n);
    n = mk(buf, 0x81, "x", 1, KEY);
    CHECK_EQ(parse_err(&p, buf, n), WS_ERR_TOO_BIG);
}

/* ------------------------------------------------------------------------------------------ */

static void test_close_codes(void)
{
    for (unsigned code = 0; code <= 5000; code++) {
        bool want = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
                    (code >= 3000 && code <= 4999);
        CHECK_EQ(ws_close_code_valid((uint16_t)code), want);
        /* And the parser agrees, for every code, on a real close frame. */
        uint8_t buf[16];
        uint8_t pay[2] = {(uint8_t)(code >> 8), (uint8_t)code};
        struct ws_parser p = server();
        size_t n = mk(buf, 0x88, pay, 2, KEY);
        struct ws_frame f;
        enum ws_err e = WS_OK;
        int rc = ws_frame_parse(&p, buf, n, &f, &e, NULL);
        if (want) {
            CHECK_EQ(rc, (int)n);
            CHECK_EQ(f.close_code, code);
            CHECK_EQ(f.close_reason.len, 0);
        } else {
            CHECK_EQ(rc, WS_ERROR);
            CHECK_EQ(e, WS_ERR_CLOSE_CODE);
        }
    }
    CHECK(!ws_close_code_valid(5000));
    CHECK(!ws_close_code_valid(65535));
}

static void test_close_frames(void)
{
    uint8_t buf[200];
    struct ws_parser p = server();
    struct ws_frame f;
    enum ws_err e;

    size_t n = mk(buf, 0x88, "", 0, KEY);
    CHECK_EQ(ws_frame_parse(&p, buf, n, &f, &e, NULL), (int)n);
    CHECK_EQ(f.close_code, WS_CLOSE_NO_STATUS);
    CHECK_EQ(f.close_reason.len, 0);

    n = mk(buf, 0x88, "\x0F\xA0gone \xE2\x9C\x93", 10, KEY);
    CHECK_EQ(ws_frame_parse(&p, buf, n, &f, &e, NULL), (int)n);
    CHECK_EQ(f.close_code, 4000);
    CHECK(span_eq_lit(f.close_reason, "gone \xE2\x9C\x93"));
    CHECK(f.close_reason.base == (const char *)f.payload + 2);

    /* Reason cut inside a character. */
    n = mk(buf, 0x88, "\x03\xE8\xE2\x9C", 4, KEY);
    CHECK_EQ(parse_err(&p, buf, n), WS_ERR_UTF8);
    /* The longest legal close: code + 123 bytes of reason. */
    uint8_t pay[125];
    memset(pay, 'r', sizeof(pay));
    pay[0] = 0x03, pay[1] = 0xE9;
    n = mk(buf, 0x88, pay, 125, KEY);
    CHECK_EQ(ws_frame_parse(&p, buf, n, &f, &e, NULL), (int)n);
    CHECK_EQ(f.close_reason.len, 123);
    CHECK_EQ(f.close_code, 1001);
    /* Non-close control frames carry no close fields. */
    n = mk(buf, 0x89, "\x03\xE8", 2, KEY);
    CHECK_EQ(ws_frame_parse(&p, buf, n, &f, &e, NULL), (int)n);
    CHECK_EQ(f.close_code, 0);
}

/* ------------------------------------------------------------------------------------------ */

static void test_unmask(void)
{
    srand(7);
    uint8_t plain[300], frame[320];
    for (size_t len = 0; len <= 300; len += (len < 40 ? 1 : 37)) {
        for (size_t i = 0; i < len; i++)
            plain[i] = (uint8_t)(rand() & 0x7F);
        uint8_t key[4] = {(uint8_t)rand(), (uint8_t)rand(), (uint8_t)rand(), (uint8_t)rand()};
        struct ws_parser p = server();
        size_t n = mk(frame, 0x82, plain, len, key);
        /* Masked on the wire: some byte differs from the plaintext unless the key is zero. */
        struct ws_frame f;
        enum ws_err e;
        CHECK_EQ(ws_frame_parse(&p, frame, n, &f, &e, NULL), (int)n);
        CHECK_EQ(f.len, len);
        CHECK(memcmp(f.payload, plain, len) == 0);
    }

    /* ws_mask in pieces, at odd offsets and unaligned addresses, equals one pass. */
    uint8_t ref[100], buf[104];
    for (size_t i = 0; i < 100; i++)
        ref[i] = (uint8_t)i;
    ws_mask(ref, 100, KEY, 0);
    for (size_t i = 0; i < 100; i++)
        CHECK_EQ(ref[i], (uint8_t)i ^ KEY[i & 3]);
    for (size_t align = 0; align < 4; align++) {
        for (size_t cut = 0; cut <= 100; cut++) {
            uint8_t *d = buf + align;
            for (size_t i = 0; i < 100; i++)
                d[i] = (uint8_t)i;
            ws_mask(d, cut, KEY, 0);
            ws_mask(d + cut, 100 - cut, KEY, cut);
            CHECK(memcmp(d, ref, 100) == 0);
        }
    }
    /* The offset is taken modulo 4 (a running count from a big payload). */
    for (size_t i = 0; i < 20; i++)
        buf[i] = 0;
    ws_mask(buf, 20, KEY, 1000003);
    for (size_t i = 0; i < 20; i++)
        CHECK_EQ(buf[i], KEY[(1000003 + i) & 3]);
    ws_mask(buf, 0, KEY, 3); /* no-op */
}

static void test_encoders(void)
{
    uint8_t out[WS_MAX_HEADER + 1];
    CHECK_EQ(ws_frame_header_len(0, false), 2);
    CHECK_EQ(ws_frame_header_len(125, false), 2);
    CHECK_EQ(ws_frame_header_len(126, false), 4);
    CHECK_EQ(ws_frame_header_len(65535, false), 4);
    CHECK_EQ(ws_frame_header_len(65536, false), WS_MAX_HEADER_UNMASKED);
    CHECK_EQ(ws_frame_header_len(UINT64_MAX >> 1, true), WS_MAX_HEADER);
    CHECK_EQ(ws_frame_header_len(125, true), 6);

    /* FIN off, opcodes kept, RSV never written, the mask key after the length. */
    memset(out, 0xEE, sizeof(out));
    CHECK_EQ(ws_frame_header_write(out, WS_OP_CONT, false, 0x1234, KEY), 8);
    static const uint8_t want[8] = {0x00, 0xFE, 0x12, 0x34, 0x37, 0xfa, 0x21, 0x3d};
    CHECK(memcmp(out, want, 8) == 0);
    CHECK_EQ(out[8], 0xEE);
    CHECK_EQ(ws_frame_header_write(out, WS_OP_PONG, true, 0x0102030405ull, NULL), 10);
    static const uint8_t want64[10] = {0x8A, 0x7F, 0, 0, 0, 0x01, 0x02, 0x03, 0x04, 0x05};
    CHECK(memcmp(out, want64, 10) == 0);

    /* prepend: the header ends exactly at payload and nothing before it is touched. */
    static uint8_t area[16 + 70000];
    static const uint64_t lens[] = {0, 125, 126, 65535, 65536};
    for (size_t i = 0; i < 5; i++) {
        memset(area, 0x5A, 16);
        uint8_t *payload = area + 16;
        memset(payload, 'x', lens[i]);
        uint8_t *start = ws_frame_header_prepend(payload, WS_OP_TEXT, lens[i]);
        size_t h = ws_frame_header_len(lens[i], false);
        CHECK(start == payload - h);
        CHECK(start >= area + 16 - WS_MAX_HEADER_UNMASKED);
        for (uint8_t *q = area; q < start; q++)
            CHECK_EQ(*q, 0x5A);
        struct ws_parser p = client();
        struct ws_frame f;
        enum ws_err e;
        CHECK_EQ(ws_frame_parse(&p, start, h + lens[i], &f, &e, NULL), (int)(h + lens[i]));
        CHECK(f.fin);
        CHECK_EQ(f.opcode, WS_OP_TEXT);
        CHECK(f.payload == payload);
        CHECK_EQ(f.len, lens[i]);
    }
}

static void test_close_payload_write(void)
{
    uint8_t out[WS_MAX_CONTROL_PAYLOAD + 8];
    memset(out, 0xEE, sizeof(out));
    size_t n = ws_close_payload_write(out, 1001, "bye", 3);
    CHECK_EQ(n, 5);
    CHECK(memcmp(out,
                 "\x03\xE9"
                 "bye",
                 5) == 0);
    CHECK_EQ(out[5], 0xEE);
    CHECK_EQ(ws_close_payload_write(out, 4001, NULL, 0), 2);
    CHECK(out[0] == 0x0F && out[1] == 0xA1);
    CHECK_EQ(ws_close_payload_write(out, WS_CLOSE_NO_STATUS, "x", 1), 0);

    char reason[200];
    memset(reason, 'a', sizeof(reason));
    /* 123 bytes fit exactly; 124 are cut to 123. */
    CHECK_EQ(ws_close_payload_write(out, 1000, reason, 123), 125);
    CHECK_EQ(ws_close_payload_write(out, 1000, reason, 200), 125);
    /* A 3-byte character straddling byte 123 is dropped whole. */
    memcpy(reason + 121, "\xE2\x82\xAC", 3);
    CHECK_EQ(ws_close_payload_write(out, 1000, reason, 200), 2 + 121);
    memcpy(reason + 120, "\xE2\x82\xAC", 3);
    CHECK_EQ(ws_close_payload_write(out, 1000, reason, 200), 2 + 123);
    /* A 4-byte character ending at 124. */
    memset(reason, 'a', sizeof(reason));
    memcpy(reason + 120, "\xF0\x9F\x98\x80", 4);
    CHECK_EQ(ws_close_payload_write(out, 1000, reason, 200), 2 + 120);
    /* Invalid bytes cut the reason before them. */
    CHECK_EQ(ws_close_payload_write(out, 1000, "ok\xFFno", 5), 4);
    CHECK_EQ(ws_close_payload_write(out, 1000, "ok\xE2", 3), 4);

    /* Whatever it writes parses back as a valid close frame. */
    memset(reason, 'a', sizeof(reason));
    for (size_t i = 0; i + 2 < sizeof(reason); i += 5)
        memcpy(reason + i, "\xC3\xA9", 2);
    for (size_t len = 0; len < sizeof(reason); len += 7) {
        uint8_t frame[WS_MAX_HEADER + WS_MAX_CONTROL_PAYLOAD];
        uint8_t pay[WS_MAX_CONTROL_PAYLOAD];
        size_t pn = ws_close_payload_write(pay, 3003, reason, len);
        CHECK(pn <= WS_MAX_CONTROL_PAYLOAD);
        size_t fn = mk(frame, 0x88, pay, pn, KEY);
        struct ws_parser p = server();
        struct ws_frame f;
        enum ws_err e;
        CHECK_EQ(ws_frame_parse(&p, frame, fn, &f, &e, NULL), (int)fn);
        CHECK_EQ(f.close_code, 3003);
    }
}

int main(void)
{
    RUN(test_rfc_examples);
    RUN(test_err_table);
    RUN(test_each_error);
    RUN(test_lengths);
    RUN(test_need_more_every_split);
    RUN(test_interleaved_control);
    RUN(test_max_message);
    RUN(test_close_codes);
    RUN(test_close_frames);
    RUN(test_unmask);
    RUN(test_encoders);
    RUN(test_close_payload_write);
    return unit_report("ws_frame");
}
