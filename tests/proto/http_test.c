/* http_test.c - unit tests for proto/http.c: request heads, the upgrade checks, routing, the
 * accept key, the writers and the client side. Each rule gets a case that breaks it. */
#include "unit.h"
#include "proto/http.h"

#include <stdlib.h>

/* A Chrome-style upgrade request: the shape the server sees most. */
static const char BROWSER_REQ[] = "GET /ws/room-1?token=abc HTTP/1.1\r\n"
                                  "Host: example.com:8080\r\n"
                                  "Connection: Upgrade\r\n"
                                  "Pragma: no-cache\r\n"
                                  "Cache-Control: no-cache\r\n"
                                  "User-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n"
                                  "Upgrade: websocket\r\n"
                                  "Origin: https://example.com\r\n"
                                  "Sec-WebSocket-Version: 13\r\n"
                                  "Accept-Encoding: gzip, deflate, br\r\n"
                                  "Accept-Language: en-US,en;q=0.9\r\n"
                                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                  "Sec-WebSocket-Protocol: chat, superchat\r\n"
                                  "\r\n";

/* Parses a NUL-terminated head with the default limit. */
static int parse(const char *s, struct http_request *req)
{
    return http_request_parse(s, strlen(s), HTTP_MAX_HEAD_DEFAULT, req);
}

/* Parses s and returns the error status (0 when it parsed). */
static int parse_status(const char *s)
{
    struct http_request req;
    int r = parse(s, &req);
    if (r == HTTP_ERROR)
        return req.status;
    return r > 0 ? 0 : r;
}

/* Parses "GET / HTTP/1.1\r\nHost: h\r\n" + extra + "\r\n" and returns the error status. */
static int hdr_status(const char *extra)
{
    char buf[1024];
    snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: h\r\n%s\r\n", extra);
    return parse_status(buf);
}

/* Parses a minimal upgrade request with the given extra headers and runs the upgrade check;
 * -1 when the head did not parse. */
static int upgrade_status(const char *method_line, const char *headers)
{
    char buf[1024];
    struct http_request req;
    snprintf(buf, sizeof(buf), "%s\r\nHost: h\r\n%s\r\n", method_line, headers);
    if (parse(buf, &req) <= 0)
        return -1;
    return http_upgrade_check(&req);
}

#define GOOD_UPGRADE                                                                               \
    "Upgrade: websocket\r\nConnection: Upgrade\r\n"                                                \
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"

/* ---- request parsing ------------------------------------------------------------------ */

static void test_browser_request(void)
{
    struct http_request req;
    size_t n = strlen(BROWSER_REQ);
    CHECK_EQ(parse(BROWSER_REQ, &req), n);
    CHECK_MEM(req.method.base, req.method.len, "GET");
    CHECK_MEM(req.target.base, req.target.len, "/ws/room-1?token=abc");
    CHECK_MEM(req.path.base, req.path.len, "/ws/room-1");
    CHECK_MEM(req.query.base, req.query.len, "token=abc");
    CHECK_EQ(req.minor_version, 1);
    CHECK_MEM(req.host.base, req.host.len, "example.com:8080");
    CHECK_MEM(req.origin.base, req.origin.len, "https://example.com");
    CHECK_MEM(req.ws_key.base, req.ws_key.len, "dGhlIHNhbXBsZSBub25jZQ==");
    CHECK_MEM(req.ws_version.base, req.ws_version.len, "13");
    CHECK_MEM(req.ws_protocol.base, req.ws_protocol.len, "chat, superchat");
    CHECK_EQ(req.authorization.base == NULL, 1);
    CHECK_EQ(req.content_length, -1);
    CHECK(req.conn_upgrade);
    CHECK(!req.conn_close);
    CHECK(req.upgrade_websocket);
    CHECK(!req.chunked);
    CHECK_EQ(req.num_headers, 12);
    CHECK_EQ(http_upgrade_check(&req), 0);
    /* Spans point into the caller's buffer, not into a copy. */
    CHECK(req.host.base > BROWSER_REQ && req.host.base < BROWSER_REQ + n);
}

static void test_query_absent_and_empty(void)
{
    struct http_request req;
    CHECK(parse("GET /ws HTTP/1.1\r\nHost: h\r\n\r\n", &req) > 0);
    CHECK_MEM(req.path.base, req.path.len, "/ws");
    CHECK_EQ(req.query.len, 0);
    CHECK(parse("GET /ws? HTTP/1.1\r\nHost: h\r\n\r\n", &req) > 0);
    CHECK_MEM(req.path.base, req.path.len, "/ws");
    CHECK_EQ(req.query.len, 0);
    /* Only the first '?' splits: the query may hold more. */
    CHECK(parse("GET /a?b?c HTTP/1.1\r\nHost: h\r\n\r\n", &req) > 0);
    CHECK_MEM(req.path.base, req.path.len, "/a");
    CHECK_MEM(req.query.base, req.query.len, "b?c");
}

/* The head ends at the blank line; what follows (a pipelined request, early frames) is the
 * caller's. */
static void test_trailing_bytes_not_consumed(void)
{
    const char *s = "GET / HTTP/1.1\r\nHost: h\r\n\r\n\x81\x85garbage";
    struct http_request req;
    CHECK_EQ(http_request_parse(s, strlen(s), 8192, &req), 27);
}

/* Every proper prefix of a valid head needs more; the whole head parses; an exact-size heap
 * copy lets ASan see any read past the end. */
static void check_every_split(const char *s)
{
    size_t n = strlen(s);
    struct http_request req;
    for (size_t i = 0; i < n; i++) {
        char *b = malloc(i ? i : 1);
        memcpy(b, s, i);
        int r = http_request_parse(b, i, HTTP_MAX_HEAD_DEFAULT, &req);
        if (r != HTTP_NEED_MORE) {
            fprintf(stderr, "  split at %zu of %zu: got %d\n", i, n, r);
            CHECK_EQ(r, HTTP_NEED_MORE);
        }
        free(b);
    }
    char *b = malloc(n);
    memcpy(b, s, n);
    CHECK_EQ(http_request_parse(b, n, HTTP_MAX_HEAD_DEFAULT, &req), n);
    CHECK_EQ(http_upgrade_check(&req), 0);
    free(b);
}

static void test_byte_by_byte(void)
{
    check_every_split(BROWSER_REQ);
    check_every_split("GET /ws HTTP/1.1\nHost: h\n" GOOD_UPGRADE "\n");
    check_every_split("\r\nGET / HTTP/1.1\r\nhost:h\r\n" GOOD_UPGRADE "\r\n");
}

static void test_line_endings(void)
{
    struct http_request req;
    /* Bare LF is accepted everywhere, also mixed with CRLF. */
    CHECK_EQ(parse("GET / HTTP/1.1\nHost: h\n\n", &req), 24);
    CHECK_MEM(req.host.base, req.host.len, "h");
    CHECK_EQ(parse("GET / HTTP/1.1\r\nHost: h\n\r\n", &req), 26);
    /* A CR not followed by LF is refused wherever it appears. */
    CHECK_EQ(parse_status("GET / HTTP/1.1\rHost: h\r\n\r\n"), 400);
    CHECK_EQ(parse_status("GET / HTTP/1.1\r\nHost: h\rX: y\r\n\r\n"), 400);
    CHECK_EQ(parse_status("GET / HTTP/1.1\r\nHost: h\r\n\r\r\n"), 400);
    CHECK_EQ(parse_status("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n"), 400);
    /* ...but a CR at the very end may still be followed by LF. */
    CHECK_EQ(parse_status("GET / HTTP/1.1\r\nHost: h\r\n\r"), HTTP_NEED_MORE);
}

static void test_leading_empty_lines(void)
{
    struct http_request req;
    /* RFC 9112 §2.2: stray CRLFs before a request line are ignored (and consumed). */
    CHECK_EQ(parse("\r\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", &req), 30);
    CHECK_MEM(req.method.base, req.method.len, "GET");
    CHECK_EQ(parse_status("\r\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
}

static void test_header_name_case(void)
{
    struct http_request req;
    const char *s = "GET / HTTP/1.1\r\nHOST: h\r\nconnection: UPGRADE\r\nuPgRaDe: WebSocket\r\n"
                    "SEC-WEBSOCKET-KEY: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n"
                    "ORIGIN: o\r\nAuthorization: Bearer x\r\ncontent-TYPE: text/plain\r\n\r\n";
    CHECK(parse(s, &req) > 0);
    CHECK_MEM(req.host.base, req.host.len, "h");
    CHECK_MEM(req.ws_key.base, req.ws_key.len, "dGhlIHNhbXBsZSBub25jZQ==");
    CHECK_MEM(req.origin.base, req.origin.len, "o");
    CHECK_MEM(req.authorization.base, req.authorization.len, "Bearer x");
    CHECK_MEM(req.content_type.base, req.content_type.len, "text/plain");
    CHECK(req.conn_upgrade);
    CHECK(req.upgrade_websocket);
    CHECK_EQ(http_upgrade_check(&req), 0);
    /* A longer or shorter name is a different header. */
    CHECK(parse("GET / HTTP/1.1\r\nHost: h\r\nHosts: x\r\nX-Host: y\r\n\r\n", &req) > 0);
    CHECK_MEM(req.host.base, req.host.len, "h");
}

static void test_token_lists(void)
{
    struct http_request req;
#define LIST_CASE(hdrs, cu, cc, uw)                                                                \
    do {                                                                                           \
        CHECK(parse("GET / HTTP/1.1\r\nHost: h\r\n" hdrs "\r\n", &req) > 0);                       \
        CHECK_EQ(req.conn_upgrade, cu);                                                            \
        CHECK_EQ(req.conn_close, cc);                                                              \
        CHECK_EQ(req.upgrade_websocket, uw);                                                       \
    } while (0)
    LIST_CASE("Connection: keep-alive, Upgrade\r\n", 1, 0, 0);
    LIST_CASE("Connection: keep-alive,upgrade\r\n", 1, 0, 0);
    LIST_CASE("Connection: , ,\tUPGRADE\t,\r\n", 1, 0, 0);
    LIST_CASE("Connection: close\r\n", 0, 1, 0);
    LIST_CASE("Connection: Close, Upgrade\r\n", 1, 1, 0);
    LIST_CASE("Connection: keep-alive\r\nConnection: Upgrade\r\n", 1, 0, 0);
    LIST_CASE("Connection: upgraded, xupgrade, upgrade-x\r\n", 0, 0, 0);
    LIST_CASE("Connection: up grade\r\n", 0, 0, 0);
    LIST_CASE("Upgrade: h2c, WebSocket\r\n", 0, 0, 1);
    LIST_CASE("Upgrade: h2c\r\nUpgrade: websocket\r\n", 0, 0, 1);
    LIST_CASE("Upgrade: websocket/13\r\n", 0, 0, 0);
    LIST_CASE("Upgrade: websockets\r\n", 0, 0, 0);
    LIST_CASE("Upgrade:\r\n", 0, 0, 0);
    /* Tokens in other headers do not count. */
    LIST_CASE("X-Connection: upgrade\r\nX-Upgrade: websocket\r\n", 0, 0, 0);
#undef LIST_CASE
}

static void test_value_trimming(void)
{
    struct http_request req;
    CHECK(parse("GET / HTTP/1.1\r\nHost: \t example.com \t \r\nOrigin:o\r\nX: \r\n\r\n", &req) > 0);
    CHECK_MEM(req.host.base, req.host.len, "example.com");
    CHECK_MEM(req.origin.base, req.origin.len, "o");
    CHECK_EQ(req.num_headers, 3);
    /* Inner whitespace and obs-text stay. */
    CHECK(parse("GET / HTTP/1.1\r\nHost: a  b\xc3\xa9\r\n\r\n", &req) > 0);
    CHECK_MEM(req.host.base, req.host.len, "a  b\xc3\xa9");
    /* An empty value is present (Host may be empty, RFC 9110 §7.2). */
    CHECK(parse("GET / HTTP/1.1\r\nHost:\r\n\r\n", &req) > 0);
    CHECK(req.host.base != NULL);
    CHECK_EQ(req.host.len, 0);
}

static void test_request_line_errors(void)
{
    CHECK_EQ(parse_status(" GET / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    CHECK_EQ(parse_status("GET  / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    CHECK_EQ(parse_status("GET /  HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    CHECK_EQ(parse_status("GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    CHECK_EQ(parse_status("G(T / HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    CHECK_EQ(parse_status("GET HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    CHECK_EQ(parse_status("GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    CHECK_EQ(parse_status("GET /\x7f HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    CHECK_EQ(parse_status("GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n"), 400);
    CHECK_EQ(parse_status("GET / HTTP/1.2\r\nHost: h\r\n\r\n"), 400);
    CHECK_EQ(parse_status("GET / HTTP/2.0\r\nHost: h\r\n\r\n"), 400);
    CHECK_EQ(parse_status("GET / http/1.1\r\nHost: h\r\n\r\n"), 400);
    CHECK_EQ(parse_status("GET / HTTP/1.1 \r\nHost: h\r\n\r\n"), 400);
    CHECK_EQ(parse_status("GET / HTTP/1.11\r\nHost: h\r\n\r\n"), 400);
    CHECK_EQ(parse_status("GET /\r\nHost: h\r\n\r\n"), 400);
    CHECK_EQ(parse_status("GET / HTTP/1.0\r\n\r\n"), 0);
    CHECK_EQ(parse_status("get / HTTP/1.1\r\nHost: h\r\n\r\n"), 0); /* 405 is the check's */
    /* Refused as soon as the bad byte arrives, not once the head is complete. */
    CHECK_EQ(parse_status("GE\x01"), 400);
    CHECK_EQ(parse_status("GET / HTTQ"), 400);
    CHECK_EQ(parse_status("GET / HTTP/1.1\r\nHo st"), 400);
}

static void test_header_errors(void)
{
    CHECK_EQ(hdr_status("X: y\r\n"), 0);
    CHECK_EQ(hdr_status("X : y\r\n"), 400);       /* whitespace before colon */
    CHECK_EQ(hdr_status("X\t: y\r\n"), 400);      /* whitespace before colon */
    CHECK_EQ(hdr_status("X: y\r\n z\r\n"), 400);  /* obs-fold */
    CHECK_EQ(hdr_status("X: y\r\n\tz\r\n"), 400); /* obs-fold */
    CHECK_EQ(hdr_status(": y\r\n"), 400);         /* empty name */
    CHECK_EQ(hdr_status("X(y): z\r\n"), 400);     /* non-token name */
    CHECK_EQ(hdr_status("Xy\r\n"), 400);          /* no colon */
    CHECK_EQ(hdr_status("X: a\x01z\r\n"), 400);
    CHECK_EQ(hdr_status("X: a\x7fz\r\n"), 400);
    CHECK_EQ(hdr_status("X: a\x1bz\r\n"), 400);
    CHECK_EQ(hdr_status("X: \xff\x80\r\n"), 0); /* obs-text is allowed */
    /* Whitespace between the request line and the first header. */
    CHECK_EQ(parse_status("GET / HTTP/1.1\r\n Host: h\r\n\r\n"), 400);
    /* NUL inside a value or name (a literal with a length, so the NUL is inside). */
    static const char nul_val[] = "GET / HTTP/1.1\r\nHost: h\r\nX: a\0b\r\n\r\n";
    static const char nul_name[] = "GET / HTTP/1.1\r\nHost: h\r\nX\0: ab\r\n\r\n";
    struct http_request req;
    CHECK_EQ(http_request_parse(nul_val, sizeof(nul_val) - 1, 8192, &req), HTTP_ERROR);
    CHECK_EQ(req.status, 400);
    CHECK_EQ(http_request_parse(nul_name, sizeof(nul_name) - 1, 8192, &req), HTTP_ERROR);
    CHECK_EQ(req.status, 400);
}

static void test_duplicates(void)
{
    CHECK_EQ(hdr_status("Host: h\r\n"), 400);
    CHECK_EQ(hdr_status("host: other\r\n"), 400);
    CHECK_EQ(hdr_status("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"),
             400);
    CHECK_EQ(hdr_status("Origin: a\r\nOrigin: a\r\n"), 400);
    CHECK_EQ(hdr_status("Sec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13\r\n"), 400);
    CHECK_EQ(hdr_status("Authorization: a\r\nAuthorization: b\r\n"), 400);
    /* Repeats of list headers and unknown headers are fine. */
    CHECK_EQ(hdr_status("Accept: a\r\nAccept: b\r\nConnection: a\r\nConnection: b\r\n"), 0);
    /* Sec-WebSocket-Protocol may repeat: the first one is reported. */
    struct http_request req;
    CHECK(parse("GET / HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Protocol: a\r\n"
                "Sec-WebSocket-Protocol: b\r\n\r\n",
                &req) > 0);
    CHECK_MEM(req.ws_protocol.base, req.ws_protocol.len, "a");
}

static void test_missing_host(void)
{
    CHECK_EQ(parse_status("GET / HTTP/1.1\r\n\r\n"), 400);
    CHECK_EQ(parse_status("GET / HTTP/1.1\r\nX-Host: h\r\n\r\n"), 400);
    CHECK_EQ(parse_status("GET / HTTP/1.0\r\n\r\n"), 0);
}

static void test_content_length(void)
{
    struct http_request req;
    CHECK(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 42\r\n\r\n", &req) > 0);
    CHECK_EQ(req.content_length, 42);
    CHECK(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n", &req) > 0);
    CHECK_EQ(req.content_length, 0);
    CHECK(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9223372036854775807\r\n\r\n", &req) >
          0);
    CHECK_EQ(req.content_length, INT64_MAX);
    CHECK(parse("POST / HTTP/1.1\r\nHost: h\r\ncontent-length: 007\r\n"
                "Content-Length:  7 \r\n\r\n",
                &req) > 0);
    CHECK_EQ(req.content_length, 7);
    CHECK_EQ(hdr_status("Content-Length: 9223372036854775808\r\n"), 400);
    CHECK_EQ(hdr_status("Content-Length: 99999999999999999999\r\n"), 400);
    CHECK_EQ(hdr_status("Content-Length: -1\r\n"), 400);
    CHECK_EQ(hdr_status("Content-Length: +1\r\n"), 400);
    CHECK_EQ(hdr_status("Content-Length: 1 2\r\n"), 400);
    CHECK_EQ(hdr_status("Content-Length: 5, 5\r\n"), 400);
    CHECK_EQ(hdr_status("Content-Length: 0x10\r\n"), 400);
    CHECK_EQ(hdr_status("Content-Length:\r\n"), 400);
    CHECK_EQ(hdr_status("Content-Length: 5\r\nContent-Length: 6\r\n"), 400);
}

static void test_transfer_encoding(void)
{
    struct http_request req;
    CHECK(parse("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", &req) > 0);
    CHECK(req.chunked);
    CHECK_EQ(req.content_length, -1);
    CHECK(parse("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n", &req) >
          0);
    CHECK(req.chunked);
    CHECK(parse("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n"
                "Transfer-Encoding: chunked\r\n\r\n",
                &req) > 0);
    CHECK(req.chunked);
    /* Framing that cannot be trusted: both lengths, chunked not last or twice, HTTP/1.0. */
    CHECK_EQ(hdr_status("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"), 400);
    CHECK_EQ(hdr_status("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"), 400);
    CHECK_EQ(hdr_status("Transfer-Encoding: gzip\r\n"), 400);
    CHECK_EQ(hdr_status("Transfer-Encoding: chunked, gzip\r\n"), 400);
    CHECK_EQ(hdr_status("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"), 400);
    CHECK_EQ(hdr_status("Transfer-Encoding:\r\n"), 400);
    CHECK_EQ(parse_status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
}

static void test_max_head(void)
{
    const char *s = "GET / HTTP/1.1\r\nHost: h\r\n\r\n"; /* 27 bytes */
    size_t n = strlen(s);
    struct http_request req;
    CHECK_EQ(http_request_parse(s, n, n, &req), n);
    CHECK_EQ(http_request_parse(s, n, n - 1, &req), HTTP_ERROR);
    CHECK_EQ(req.status, 431);
    /* Incomplete and already at the limit: no point waiting for more. */
    CHECK_EQ(http_request_parse(s, 20, 20, &req), HTTP_ERROR);
    CHECK_EQ(req.status, 431);
    CHECK_EQ(http_request_parse(s, 19, 20, &req), HTTP_NEED_MORE);
    /* A malformation inside the limit is still a 400. */
    CHECK_EQ(http_request_parse("GET / HTTP/1.1\r\nX : y\r\n", 23, 20, &req), HTTP_ERROR);
    CHECK_EQ(req.status, 400);
    /* A large but legal head with the default limit. */
    static char big[HTTP_MAX_HEAD_DEFAULT + 64];
    size_t len = (size_t)snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: h\r\nX: ");
    memset(big + len, 'a', HTTP_MAX_HEAD_DEFAULT - len - 4);
    memcpy(big + HTTP_MAX_HEAD_DEFAULT - 4, "\r\n\r\n", 4);
    CHECK_EQ(http_request_parse(big, HTTP_MAX_HEAD_DEFAULT, HTTP_MAX_HEAD_DEFAULT, &req),
             HTTP_MAX_HEAD_DEFAULT);
    /* One more byte of value makes it a 431, complete or not. */
    memset(big + len, 'a', HTTP_MAX_HEAD_DEFAULT - len - 3);
    memcpy(big + HTTP_MAX_HEAD_DEFAULT - 3, "\r\n\r\n", 4);
    CHECK_EQ(http_request_parse(big, HTTP_MAX_HEAD_DEFAULT + 1, HTTP_MAX_HEAD_DEFAULT, &req),
             HTTP_ERROR);
    CHECK_EQ(req.status, 431);
    CHECK_EQ(http_request_parse(big, HTTP_MAX_HEAD_DEFAULT, HTTP_MAX_HEAD_DEFAULT, &req),
             HTTP_ERROR);
    CHECK_EQ(req.status, 431);
    CHECK_EQ(http_request_parse(big, HTTP_MAX_HEAD_DEFAULT - 1, HTTP_MAX_HEAD_DEFAULT, &req),
             HTTP_NEED_MORE);
}

/* ---- upgrade check -------------------------------------------------------------------- */

static void test_upgrade_check(void)
{
    CHECK_EQ(upgrade_status("GET / HTTP/1.1", GOOD_UPGRADE), 0);
    /* Method first: a POST with nothing else right is still 405. */
    CHECK_EQ(upgrade_status("POST / HTTP/1.1", GOOD_UPGRADE), 405);
    CHECK_EQ(upgrade_status("POST / HTTP/1.1", ""), 405);
    CHECK_EQ(upgrade_status("get / HTTP/1.1", GOOD_UPGRADE), 405);
    CHECK_EQ(upgrade_status("GETS / HTTP/1.1", GOOD_UPGRADE), 405);
    CHECK_EQ(upgrade_status("GET / HTTP/1.0", GOOD_UPGRADE), 400);
    CHECK_EQ(upgrade_status("GET / HTTP/1.1", "Connection: Upgrade\r\n"
                                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                              "Sec-WebSocket-Version: 13\r\n"),
             400);
    CHECK_EQ(upgrade_status("GET / HTTP/1.1", "Upgrade: h2c\r\nConnection: Upgrade\r\n"
                                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                              "Sec-WebSocket-Version: 13\r\n"),
             400);
    CHECK_EQ(upgrade_status("GET / HTTP/1.1", "Upgrade: websocket\r\nConnection: keep-alive\r\n"
                                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                              "Sec-WebSocket-Version: 13\r\n"),
             400);
    /* 400 outranks 426: a missing key with a bad version is a 400. */
    CHECK_EQ(upgrade_status("GET / HTTP/1.1", "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                              "Sec-WebSocket-Version: 8\r\n"),
             400);
}

static int key_status(const char *key)
{
    char hdrs[512];
    snprintf(hdrs, sizeof(hdrs),
             "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
             "Sec-WebSocket-Version: 13\r\n",
             key);
    return upgrade_status("GET / HTTP/1.1", hdrs);
}

static void test_ws_key(void)
{
    CHECK_EQ(key_status("dGhlIHNhbXBsZSBub25jZQ=="), 0);
    CHECK_EQ(key_status("AAAAAAAAAAAAAAAAAAAAAA=="), 0);
    CHECK_EQ(key_status("+/+/+/+/+/+/+/+/+/+/+w=="), 0);
    CHECK_EQ(key_status("x3JJHMbDL1EzLkh9GBhXDw=="), 0); /* RFC 6455 §1.3 client example */
    CHECK_EQ(key_status(""), 400);
    CHECK_EQ(key_status("dGhlIHNhbXBsZSBub25jZQ="), 400);   /* 23 */
    CHECK_EQ(key_status("dGhlIHNhbXBsZSBub25jZQ==="), 400); /* 25 */
    CHECK_EQ(key_status("dGhlIHNhbXBsZSBub25jZQQ="), 400);  /* 17 bytes' worth */
    CHECK_EQ(key_status("dGhlIHNhbXBsZSBub25jZQQQ"), 400);  /* 18 bytes, no padding */
    CHECK_EQ(key_status("dGhlIHNhbXBsZSBub25jZ*=="), 400);  /* alphabet */
    CHECK_EQ(key_status("dGhlIHNhbXBsZSBub25jZ-=="), 400);  /* base64url is not base64 */
    CHECK_EQ(key_status("dGhlIHNhbXB=ZSBub25jZQ=="), 400);  /* '=' inside */
    CHECK_EQ(key_status("dGhlIHNhbXBsZSBub25jZ Q=="), 400); /* 25 with a space */
}

static int version_status(const char *v)
{
    char hdrs[512];
    snprintf(hdrs, sizeof(hdrs),
             "Upgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n%s",
             v);
    return upgrade_status("GET / HTTP/1.1", hdrs);
}

static void test_ws_version(void)
{
    CHECK_EQ(version_status("Sec-WebSocket-Version: 13\r\n"), 0);
    CHECK_EQ(version_status("Sec-WebSocket-Version:   13  \r\n"), 0);
    CHECK_EQ(version_status("Sec-WebSocket-Version: 8\r\n"), 426);
    CHECK_EQ(version_status("Sec-WebSocket-Version: 013\r\n"), 426);
    CHECK_EQ(version_status("Sec-WebSocket-Version: 13, 8\r\n"), 426);
    CHECK_EQ(version_status("Sec-WebSocket-Version: 14\r\n"), 426);
    CHECK_EQ(version_status("Sec-WebSocket-Version:\r\n"), 426);
    CHECK_EQ(version_status(""), 426); /* missing: 426 tells the client what we speak */
}

/* ---- routing -------------------------------------------------------------------------- */

static void test_route(void)
{
    struct span sid = SPAN_LIT("stale");
    CHECK_EQ(http_route_ws(SPAN_LIT("/"), &sid), 0);
    CHECK_EQ(sid.len, 0);
    sid = SPAN_LIT("stale");
    CHECK_EQ(http_route_ws(SPAN_LIT("/ws"), &sid), 0);
    CHECK_EQ(sid.len, 0);
    CHECK_EQ(http_route_ws(SPAN_LIT("/ws/abc-DEF_0.9~z"), &sid), 0);
    CHECK_MEM(sid.base, sid.len, "abc-DEF_0.9~z");
    CHECK_EQ(http_route_ws(SPAN_LIT("/ws/x"), NULL), 0);

    char p[4 + 130] = "/ws/";
    memset(p + 4, 'a', 129);
    CHECK_EQ(http_route_ws((struct span){p, 4 + 128}, &sid), 0);
    CHECK_EQ(sid.len, 128);
    CHECK_EQ(http_route_ws((struct span){p, 4 + 129}, &sid), 404);
    CHECK_EQ(sid.len, 0);

    const char *bad[] = {"",        "/ws/",    "/ws//",   "/ws/a/",       "/ws/a/b",    "/wss",
                         "/ws/a b", "/ws/%41", "/ws/a?b", "/WS",          "//",         "/x",
                         "ws",      "/ws/a+b", "/ws/a@b", "/ws/\xc3\xa9", "/index.html"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sid = SPAN_LIT("stale");
        int r = http_route_ws(span_from_cstr(bad[i]), &sid);
        if (r != 404)
            fprintf(stderr, "  route \"%s\" -> %d\n", bad[i], r);
        CHECK_EQ(r, 404);
        CHECK_EQ(sid.len, 0);
    }
    /* The router sees the path: a query is split off by the parser first. */
    struct http_request req;
    CHECK(parse("GET /ws/s1?x=/y HTTP/1.1\r\nHost: h\r\n\r\n", &req) > 0);
    CHECK_EQ(http_route_ws(req.path, &sid), 0);
    CHECK_MEM(sid.base, sid.len, "s1");
}

/* ---- accept key ----------------------------------------------------------------------- */

static void test_accept(void)
{
    char out[WS_ACCEPT_LEN + 1];
    memset(out, 'X', sizeof(out));
    ws_accept_compute(SPAN_LIT("dGhlIHNhbXBsZSBub25jZQ=="), out);
    CHECK_MEM(out, strlen(out), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    CHECK(ws_accept_matches(SPAN_LIT("dGhlIHNhbXBsZSBub25jZQ=="),
                            SPAN_LIT("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")));
    /* RFC 6455 §1.3's second example. */
    CHECK(ws_accept_matches(SPAN_LIT("x3JJHMbDL1EzLkh9GBhXDw=="),
                            SPAN_LIT("HSmrc0sMlYUkAGmm5OPpG2HaGWk=")));
    CHECK(!ws_accept_matches(SPAN_LIT("dGhlIHNhbXBsZSBub25jZQ=="),
                             SPAN_LIT("s3pPLMBiTxaQ9kYGzzhZRbK+xOp=")));
    CHECK(!ws_accept_matches(SPAN_LIT("dGhlIHNhbXBsZSBub25jZQ=="),
                             SPAN_LIT("s3pPLMBiTxaQ9kYGzzhZRbK+xOo")));
    CHECK(!ws_accept_matches(SPAN_LIT("dGhlIHNhbXBsZSBub25jZQ=="),
                             SPAN_LIT("s3pPLMBiTxaQ9kYGzzhZRbK+xOo==")));
    CHECK(!ws_accept_matches(SPAN_LIT("x3JJHMbDL1EzLkh9GBhXDw=="),
                             SPAN_LIT("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")));
    /* Keys too long to hash on the stack give an empty answer that matches nothing. */
    static char huge[300];
    memset(huge, 'A', sizeof(huge));
    ws_accept_compute((struct span){huge, sizeof(huge)}, out);
    CHECK_EQ(out[0], '\0');
    CHECK(!ws_accept_matches((struct span){huge, sizeof(huge)},
                             SPAN_LIT("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")));
}

/* ---- writers -------------------------------------------------------------------------- */

/* Every cap below the full length gives 0 and leaves nothing past cap touched. */
static void check_caps(size_t full, size_t (*write)(char *, size_t, const void *), const void *arg)
{
    char buf[1024];
    for (size_t cap = 0; cap < full; cap++) {
        memset(buf, '#', sizeof(buf));
        size_t n = write(buf, cap, arg);
        if (n != 0)
            fprintf(stderr, "  cap %zu of %zu: wrote %zu\n", cap, full, n);
        CHECK_EQ(n, 0);
        CHECK_EQ(buf[cap], '#');
    }
    CHECK_EQ(write(buf, full, arg), full);
}

static size_t w101(char *b, size_t cap, const void *arg)
{
    return http_write_101(b, cap, SPAN_LIT("dGhlIHNhbXBsZSBub25jZQ=="),
                          span_from_cstr((const char *)arg));
}

static void test_write_101(void)
{
    char buf[512];
    size_t n = http_write_101(buf, sizeof(buf), SPAN_LIT("dGhlIHNhbXBsZSBub25jZQ=="), SPAN_NULL);
    CHECK_MEM(buf, n,
              "HTTP/1.1 101 Switching Protocols\r\n"
              "Upgrade: websocket\r\n"
              "Connection: Upgrade\r\n"
              "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
              "\r\n");
    check_caps(n, w101, "");
    n = http_write_101(buf, sizeof(buf), SPAN_LIT("dGhlIHNhbXBsZSBub25jZQ=="), SPAN_LIT("chat"));
    CHECK_MEM(buf, n,
              "HTTP/1.1 101 Switching Protocols\r\n"
              "Upgrade: websocket\r\n"
              "Connection: Upgrade\r\n"
              "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
              "Sec-WebSocket-Protocol: chat\r\n"
              "\r\n");
    check_caps(n, w101, "chat");
    /* A protocol that would split the head is refused (header injection). */
    CHECK_EQ(http_write_101(buf, sizeof(buf), SPAN_LIT("dGhlIHNhbXBsZSBub25jZQ=="),
                            SPAN_LIT("chat\r\nX-Evil: 1")),
             0);
    CHECK_EQ(
        http_write_101(buf, sizeof(buf), SPAN_LIT("dGhlIHNhbXBsZSBub25jZQ=="), SPAN_LIT("a\nb")),
        0);
}

/* Writes an error, parses it back as a client would, and checks the body. */
static void check_error(int status, const char *body, const char *want_reason,
                        const char *want_body)
{
    char buf[1024];
    struct http_response res;
    size_t n = http_write_error(buf, sizeof(buf), status, body);
    CHECK(n > 0);
    int h = http_response_parse(buf, n, sizeof(buf), &res);
    CHECK(h > 0);
    if (h <= 0)
        return;
    CHECK_EQ(res.status, status);
    CHECK_MEM(res.reason.base, res.reason.len, want_reason);
    CHECK_EQ(res.content_length, (int64_t)(n - (size_t)h));
    CHECK_MEM(buf + h, n - (size_t)h, want_body);
    buf[h] = '\0';
    CHECK(strstr(buf, "\r\nConnection: close\r\n") != NULL);
    CHECK(strstr(buf, "\r\nContent-Type: text/plain; charset=utf-8\r\n") != NULL);
    CHECK_EQ(strstr(buf, "\r\nSec-WebSocket-Version: 13\r\n") != NULL, status == 426);
    CHECK_EQ(strstr(buf, "\r\nAllow: GET\r\n") != NULL, status == 405);
}

static size_t werr(char *b, size_t cap, const void *arg)
{
    return http_write_error(b, cap, 426, (const char *)arg);
}

static void test_write_error(void)
{
    check_error(400, NULL, "Bad Request", "Bad Request\n");
    check_error(403, NULL, "Forbidden", "Forbidden\n");
    check_error(404, NULL, "Not Found", "Not Found\n");
    check_error(405, NULL, "Method Not Allowed", "Method Not Allowed\n");
    check_error(408, NULL, "Request Timeout", "Request Timeout\n");
    check_error(413, NULL, "Content Too Large", "Content Too Large\n");
    check_error(426, NULL, "Upgrade Required", "Upgrade Required\n");
    check_error(429, NULL, "Too Many Requests", "Too Many Requests\n");
    check_error(431, NULL, "Request Header Fields Too Large", "Request Header Fields Too Large\n");
    check_error(500, NULL, "Internal Server Error", "Internal Server Error\n");
    check_error(503, NULL, "Service Unavailable", "Service Unavailable\n");
    check_error(400, "bad key\n", "Bad Request", "bad key\n");
    check_error(400, "", "Bad Request", "");
    check_error(599, NULL, "Unknown", "Unknown\n");

    char buf[256];
    size_t n = http_write_error(buf, sizeof(buf), 404, NULL);
    CHECK_MEM(buf, n,
              "HTTP/1.1 404 Not Found\r\n"
              "Content-Type: text/plain; charset=utf-8\r\n"
              "Content-Length: 10\r\n"
              "Connection: close\r\n"
              "\r\n"
              "Not Found\n");
    n = http_write_error(buf, sizeof(buf), 426, NULL);
    check_caps(n, werr, NULL);
    check_caps(http_write_error(buf, sizeof(buf), 426, "x"), werr, "x");
    CHECK_EQ(http_write_error(buf, sizeof(buf), 99, NULL), 0);
    CHECK_EQ(http_write_error(buf, sizeof(buf), 1000, NULL), 0);
}

static size_t wresp(char *b, size_t cap, const void *arg)
{
    (void)arg;
    return http_write_response(b, cap, 200, "application/json", "{}", 2, true);
}

static void test_write_response(void)
{
    char buf[256];
    size_t n = http_write_response(buf, sizeof(buf), 200, "application/json", "{}", 2, true);
    CHECK_MEM(buf, n,
              "HTTP/1.1 200 OK\r\n"
              "Content-Type: application/json\r\n"
              "Content-Length: 2\r\n"
              "Connection: keep-alive\r\n"
              "\r\n"
              "{}");
    check_caps(n, wresp, NULL);
    n = http_write_response(buf, sizeof(buf), 503, "text/plain", "busy", 4, false);
    CHECK_MEM(buf, n,
              "HTTP/1.1 503 Service Unavailable\r\n"
              "Content-Type: text/plain\r\n"
              "Content-Length: 4\r\n"
              "Connection: close\r\n"
              "\r\n"
              "busy");
    /* No content type, empty body. */
    n = http_write_response(buf, sizeof(buf), 200, NULL, NULL, 0, true);
    CHECK_MEM(buf, n, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n");
    /* 204 carries neither Content-Length nor a body. */
    n = http_write_response(buf, sizeof(buf), 204, "text/plain", "x", 1, false);
    CHECK_MEM(buf, n, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
    /* A content type that would split the head is refused. */
    CHECK_EQ(http_write_response(buf, sizeof(buf), 200, "a\r\nb: c", "x", 1, false), 0);
    CHECK_EQ(http_write_response(buf, sizeof(buf), 42, "text/plain", "x", 1, false), 0);
}

static void test_status_reason(void)
{
    CHECK_MEM(http_status_reason(101), strlen(http_status_reason(101)), "Switching Protocols");
    CHECK_MEM(http_status_reason(200), 2, "OK");
    CHECK_MEM(http_status_reason(418), 7, "Unknown");
    CHECK_MEM(http_status_reason(-1), 7, "Unknown");
}

/* ---- client side ---------------------------------------------------------------------- */

static void test_response_parse(void)
{
    char buf[512];
    struct http_response res;
    size_t n =
        http_write_101(buf, sizeof(buf), SPAN_LIT("dGhlIHNhbXBsZSBub25jZQ=="), SPAN_LIT("chat"));
    for (size_t i = 0; i < n; i++) {
        char *b = malloc(i ? i : 1);
        memcpy(b, buf, i);
        int r = http_response_parse(b, i, 8192, &res);
        if (r != HTTP_NEED_MORE)
            fprintf(stderr, "  split at %zu: %d\n", i, r);
        CHECK_EQ(r, HTTP_NEED_MORE);
        free(b);
    }
    CHECK_EQ(http_response_parse(buf, n, 8192, &res), n);
    CHECK_EQ(res.status, 101);
    CHECK_EQ(res.minor_version, 1);
    CHECK_MEM(res.reason.base, res.reason.len, "Switching Protocols");
    CHECK_MEM(res.ws_accept.base, res.ws_accept.len, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    CHECK_MEM(res.ws_protocol.base, res.ws_protocol.len, "chat");
    CHECK(res.conn_upgrade);
    CHECK(res.upgrade_websocket);
    CHECK_EQ(res.content_length, -1);
    CHECK(ws_accept_matches(SPAN_LIT("dGhlIHNhbXBsZSBub25jZQ=="), res.ws_accept));

    const char *s = "HTTP/1.0 200\r\nconnection: keep-alive, UPGRADE\r\nupgrade: WebSocket\r\n"
                    "content-length: 12\r\n\r\nhello";
    CHECK_EQ(http_response_parse(s, strlen(s), 8192, &res), strlen(s) - 5);
    CHECK_EQ(res.status, 200);
    CHECK_EQ(res.minor_version, 0);
    CHECK_EQ(res.reason.len, 0);
    CHECK_EQ(res.content_length, 12);
    CHECK(res.conn_upgrade);
    CHECK(res.upgrade_websocket);
    s = "HTTP/1.1 404 \nX: y\n\n";
    CHECK_EQ(http_response_parse(s, strlen(s), 8192, &res), strlen(s));
    CHECK_EQ(res.status, 404);

#define RES_BAD(str, st)                                                                           \
    do {                                                                                           \
        CHECK_EQ(http_response_parse(str, strlen(str), 8192, &res), HTTP_ERROR);                   \
        CHECK_EQ(res.status, st);                                                                  \
    } while (0)
    RES_BAD("HTTP/1.1 20 OK\r\n\r\n", 400);
    RES_BAD("HTTP/1.1 2000 OK\r\n\r\n", 400);
    RES_BAD("HTTP/1.1 abc OK\r\n\r\n", 400);
    RES_BAD("HTTP/1.1 099 OK\r\n\r\n", 400);
    RES_BAD("HTTP/1.1  200 OK\r\n\r\n", 400);
    RES_BAD("HTTP/2 200 OK\r\n\r\n", 400);
    RES_BAD("HTTP/1.1 200 O\x01K\r\n\r\n", 400);
    RES_BAD("HTTP/1.1 200 OK\r\nX : y\r\n\r\n", 400);
    RES_BAD("HTTP/1.1 200 OK\r\nX: y\r\n z\r\n\r\n", 400);
    RES_BAD("HTTP/1.1 200 OK\rX: y\r\n\r\n", 400);
    RES_BAD("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", 400);
    RES_BAD("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400);
    RES_BAD("HTTP/1.1 101 S\r\nSec-WebSocket-Accept: a\r\nSec-WebSocket-Accept: a\r\n\r\n", 400);
    RES_BAD("HTTP/1.1 101 S\r\nSec-WebSocket-Protocol: a\r\nSec-WebSocket-Protocol: b\r\n\r\n",
            400);
#undef RES_BAD
    CHECK_EQ(http_response_parse("HTTP/1.1 200 OK\r\n\r\n", 19, 18, &res), HTTP_ERROR);
    CHECK_EQ(res.status, 431);
    CHECK_EQ(http_response_parse("HTTP/1.1 200 OK\r\n\r\n", 18, 18, &res), HTTP_ERROR);
    CHECK_EQ(res.status, 431);
    CHECK_EQ(http_response_parse("HTTP/1.1 200 OK\r\n\r\n", 19, 19, &res), 19);
}

struct upreq {
    struct span host, path, key;
};

static size_t wup(char *b, size_t cap, const void *arg)
{
    const struct upreq *u = arg;
    return http_write_upgrade_request(b, cap, u->host, u->path, u->key);
}

static void test_write_upgrade_request(void)
{
    char buf[512];
    struct upreq u = {SPAN_LIT("127.0.0.1:9000"), SPAN_LIT("/ws/s1"),
                      SPAN_LIT("dGhlIHNhbXBsZSBub25jZQ==")};
    size_t n = wup(buf, sizeof(buf), &u);
    CHECK_MEM(buf, n,
              "GET /ws/s1 HTTP/1.1\r\n"
              "Host: 127.0.0.1:9000\r\n"
              "Upgrade: websocket\r\n"
              "Connection: Upgrade\r\n"
              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              "Sec-WebSocket-Version: 13\r\n"
              "\r\n");
    check_caps(n, wup, &u);
    /* What the client writes, the server accepts and routes. */
    struct http_request req;
    struct span sid;
    CHECK_EQ(http_request_parse(buf, n, 8192, &req), n);
    CHECK_EQ(http_upgrade_check(&req), 0);
    CHECK_EQ(http_route_ws(req.path, &sid), 0);
    CHECK_MEM(sid.base, sid.len, "s1");
    /* Empty path means "/". */
    n = http_write_upgrade_request(buf, sizeof(buf), SPAN_LIT("h"), SPAN_NULL,
                                   SPAN_LIT("dGhlIHNhbXBsZSBub25jZQ=="));
    CHECK(n > 4 && memcmp(buf, "GET / HTTP/1.1\r\n", 16) == 0);
    /* Refused: a key of the wrong length, and anything that would split the head. */
    CHECK_EQ(http_write_upgrade_request(buf, sizeof(buf), SPAN_LIT("h"), SPAN_LIT("/"),
                                        SPAN_LIT("short")),
             0);
    CHECK_EQ(http_write_upgrade_request(buf, sizeof(buf), SPAN_LIT("h\r\nX: y"), SPAN_LIT("/"),
                                        SPAN_LIT("dGhlIHNhbXBsZSBub25jZQ==")),
             0);
    CHECK_EQ(http_write_upgrade_request(buf, sizeof(buf), SPAN_LIT("h"), SPAN_LIT("/a b"),
                                        SPAN_LIT("dGhlIHNhbXBsZSBub25jZQ==")),
             0);
}

/* Every refusal says which rule the request broke. */
#define CHECK_REASON(got, want) CHECK((got) != NULL && strcmp((got), (want)) == 0)

static void test_error_reasons(void)
{
    struct http_request req;
    CHECK_EQ(parse("GET /ws HTTP/1.1\r\n\r\n", &req), HTTP_ERROR);
    CHECK_REASON(req.reason, "HTTP/1.1 request without a Host header");
    CHECK_EQ(parse("GET /ws HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", &req), HTTP_ERROR);
    CHECK_REASON(req.reason, "repeated Host header");
    CHECK_EQ(parse("GET /ws HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", &req), HTTP_ERROR);
    CHECK(strstr(req.reason, "Content-Length") != NULL);
    CHECK_EQ(parse("GET /ws HTTP/3.0\r\nHost: a\r\n\r\n", &req), HTTP_ERROR);
    CHECK(strstr(req.reason, "HTTP/1.0 or HTTP/1.1") != NULL);
    CHECK_EQ(parse("GET /ws HTTP/1.1\r\nHost : a\r\n\r\n", &req), HTTP_ERROR);
    CHECK(strstr(req.reason, "header line") != NULL);
    CHECK_EQ(parse("G(T /ws HTTP/1.1\r\n\r\n", &req), HTTP_ERROR);
    CHECK(strstr(req.reason, "method") != NULL);
    CHECK_EQ(parse("GET /ws HTTP/1.1\r\nHost: a\r\n\r\n", &req),
             (int)strlen("GET /ws HTTP/1.1\r\nHost: a\r\n\r\n"));
    CHECK_EQ(http_upgrade_check(&req), 400);
    CHECK_REASON(http_upgrade_reason(&req),
                 "not a WebSocket upgrade: the Upgrade header must list websocket");
    const char *ok =
        "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    CHECK(parse(ok, &req) > 0);
    CHECK(http_upgrade_reason(&req) == NULL);
    const char *v8 =
        "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n";
    CHECK(parse(v8, &req) > 0);
    CHECK_EQ(http_upgrade_check(&req), 426);
    CHECK(strstr(http_upgrade_reason(&req), "13") != NULL);
}

int main(void)
{
    RUN(test_browser_request);
    RUN(test_query_absent_and_empty);
    RUN(test_trailing_bytes_not_consumed);
    RUN(test_byte_by_byte);
    RUN(test_line_endings);
    RUN(test_leading_empty_lines);
    RUN(test_header_name_case);
    RUN(test_token_lists);
    RUN(test_value_trimming);
    RUN(test_request_line_errors);
    RUN(test_header_errors);
    RUN(test_duplicates);
    RUN(test_missing_host);
    RUN(test_content_length);
    RUN(test_transfer_encoding);
    RUN(test_max_head);
    RUN(test_upgrade_check);
    RUN(test_ws_key);
    RUN(test_ws_version);
    RUN(test_route);
    RUN(test_accept);
    RUN(test_write_101);
    RUN(test_write_error);
    RUN(test_write_response);
    RUN(test_status_reason);
    RUN(test_response_parse);
    RUN(test_write_upgrade_request);
    RUN(test_error_reasons);
    return unit_report("http");
}
