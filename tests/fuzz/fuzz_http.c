/* fuzz_http.c - libFuzzer target for proto/http.c.
 *
 * The input is parsed as a request head and as a response head; every span must lie inside the
 * bytes the head used, and the results must be consistent across prefixes of the input and
 * across head limits (the parser is stateless, so a prefix can only say "need more" or fail
 * the same way). Whatever parses is pushed through the handshake: the check, the router, the
 * 101 writer, and the 101 parsed back by the client side must agree on the accept key. The
 * writers are also fed slices of the input and their output parsed back. Any disagreement
 * aborts with a message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/http.h"

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "fuzz_http: " __VA_ARGS__);                                                \
        fputc('\n', stderr);                                                                       \
        abort();                                                                                   \
    } while (0)

/* Heads are at most this long here: keeps the quadratic prefix checks fast. */
#define FUZZ_MAX_HEAD 2048

static void span_inside(struct span s, const char *lo, const char *hi, const char *what)
{
    if (!s.base) {
        if (s.len)
            FAIL("%s: NULL span with length %zu", what, s.len);
        return;
    }
    if (s.base < lo || s.base > hi || s.len > (size_t)(hi - s.base))
        FAIL("%s: span outside the head", what);
}

/* Checks one request parse result against the rules of the contract. */
static void check_request(const char *buf, size_t len, size_t max, int r,
                          const struct http_request *req)
{
    if (r == HTTP_NEED_MORE) {
        if (len >= max)
            FAIL("need-more at %zu bytes with max_head %zu", len, max);
        return;
    }
    if (r == HTTP_ERROR) {
        if (req->status != 400 && req->status != 431)
            FAIL("error status %d", req->status);
        if (req->status == 431 && len < max)
            FAIL("431 with %zu bytes under max_head %zu", len, max);
        return;
    }
    if (r <= 0 || (size_t)r > len || (size_t)r > max)
        FAIL("request consumed %d of %zu (max %zu)", r, len, max);
    const char *end = buf + r;
    span_inside(req->method, buf, end, "method");
    span_inside(req->target, buf, end, "target");
    span_inside(req->path, buf, end, "path");
    span_inside(req->query, buf, end, "query");
    span_inside(req->host, buf, end, "host");
    span_inside(req->origin, buf, end, "origin");
    span_inside(req->ws_key, buf, end, "ws_key");
    span_inside(req->ws_version, buf, end, "ws_version");
    span_inside(req->ws_protocol, buf, end, "ws_protocol");
    span_inside(req->authorization, buf, end, "authorization");
    span_inside(req->api_key, buf, end, "api_key");
    span_inside(req->content_type, buf, end, "content_type");
    if (req->method.len == 0 || req->target.len == 0)
        FAIL("empty method or target");
    if (req->path.base != req->target.base || req->path.len > req->target.len)
        FAIL("path is not a prefix of target");
    if (req->query.len && req->query.base != req->path.base + req->path.len + 1)
        FAIL("query does not follow path and '?'");
    if (req->minor_version != 0 && req->minor_version != 1)
        FAIL("minor version %d", req->minor_version);
    if (req->minor_version == 1 && !req->host.base)
        FAIL("HTTP/1.1 without Host accepted");
    if (req->chunked && req->content_length >= 0)
        FAIL("chunked with Content-Length accepted");
    if (req->num_headers > (unsigned)r / 2)
        FAIL("%u headers in %d bytes", req->num_headers, r);
    /* Values are trimmed: no OWS at either end. */
    const struct span *vals[] = {&req->host,        &req->origin,      &req->ws_key,
                                 &req->ws_version,  &req->ws_protocol, &req->authorization,
                                 &req->content_type};
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        const struct span *v = vals[i];
        if (v->len && (v->base[0] == ' ' || v->base[0] == '\t' || v->base[v->len - 1] == ' ' ||
                       v->base[v->len - 1] == '\t'))
            FAIL("untrimmed value");
        for (size_t j = 0; j < v->len; j++)
            if (v->base[j] == '\r' || v->base[j] == '\n' || v->base[j] == '\0')
                FAIL("CR, LF or NUL inside a value");
    }
}

/* Parses an exact-size copy of buf[0..len) so ASan sees any read past len. */
static int parse_copy(const char *buf, size_t len, size_t max, struct http_request *req)
{
    char *b = malloc(len ? len : 1);
    if (!b)
        abort();
    if (len)
        memcpy(b, buf, len);
    int r = http_request_parse(b, len, max, req);
    check_request(b, len, max, r, req);
    free(b);
    return r;
}

static void check_prefixes(const char *buf, size_t len, int full, int full_status)
{
    struct http_request req;
    size_t step = len <= 300 ? 1 : len / 61 + 1;
    for (size_t k = 0; k < len; k += step) {
        int r = parse_copy(buf, k, FUZZ_MAX_HEAD, &req);
        if (full > 0 && (size_t)full > k && r != HTTP_NEED_MORE)
            FAIL("prefix %zu of a %d-byte head: %d", k, full, r);
        if (full > 0 && (size_t)full <= k && r != full)
            FAIL("prefix %zu holding a %d-byte head: %d", k, full, r);
        if (full == HTTP_NEED_MORE && r != HTTP_NEED_MORE)
            FAIL("prefix %zu: %d where the whole input needs more", k, r);
        if (full == HTTP_ERROR && full_status == 400 && r != HTTP_NEED_MORE &&
            !(r == HTTP_ERROR && req.status == 400))
            FAIL("prefix %zu: %d/%d where the whole input is a 400", k, r, req.status);
    }
}

/* The server side of a handshake, then the client side reading the server's answer. */
static void check_handshake(const struct http_request *req)
{
    static char out[FUZZ_MAX_HEAD + 512];
    struct span sid = SPAN_LIT("x");
    int route = http_route_ws(req->path, &sid);
    if (route != 0 && route != 404)
        FAIL("route returned %d", route);
    if (sid.len &&
        (sid.base < req->path.base || sid.base + sid.len > req->path.base + req->path.len))
        FAIL("session id outside the path");
    if (route != 0 && sid.len)
        FAIL("session id set on 404");

    int st = http_upgrade_check(req);
    if (st != 0 && st != 400 && st != 405 && st != 426)
        FAIL("upgrade check %d", st);
    if (st != 0 && st != 405 && !span_eq_lit(req->method, "GET"))
        FAIL("non-GET got %d, not 405", st);
    if (st != 0)
        return;
    if (req->ws_key.len != WS_KEY_LEN || !span_eq_lit(req->ws_version, "13") ||
        !req->conn_upgrade || !req->upgrade_websocket)
        FAIL("upgrade accepted without its headers");

    size_t n = http_write_101(out, sizeof(out), req->ws_key, req->ws_protocol);
    if (n == 0)
        FAIL("101 did not fit");
    struct http_response res;
    int r = http_response_parse(out, n, sizeof(out), &res);
    if (r != (int)n || res.status != 101 || !res.conn_upgrade || !res.upgrade_websocket)
        FAIL("our 101 did not parse back: %d status %d", r, res.status);
    if (!ws_accept_matches(req->ws_key, res.ws_accept))
        FAIL("accept key does not match");
    if (!span_eq(res.ws_protocol, req->ws_protocol) && req->ws_protocol.len)
        FAIL("protocol not echoed");
}

static void check_response(const char *buf, size_t len)
{
    struct http_response res;
    int r = http_response_parse(buf, len, FUZZ_MAX_HEAD, &res);
    if (r == HTTP_NEED_MORE) {
        if (len >= FUZZ_MAX_HEAD)
            FAIL("response need-more past max");
        return;
    }
    if (r == HTTP_ERROR) {
        if (res.status != 400 && res.status != 431)
            FAIL("response error status %d", res.status);
        return;
    }
    if (r <= 0 || (size_t)r > len)
        FAIL("response consumed %d of %zu", r, len);
    if (res.status < 100 || res.status > 999)
        FAIL("response status %d", res.status);
    span_inside(res.reason, buf, buf + r, "reason");
    span_inside(res.ws_accept, buf, buf + r, "ws_accept");
    span_inside(res.ws_protocol, buf, buf + r, "res ws_protocol");
}

/* Writers fed slices of the input: their output must parse back to what went in. */
static void check_writers(const char *buf, size_t len)
{
    static char out[4 * FUZZ_MAX_HEAD];
    static char body[FUZZ_MAX_HEAD + 1];
    if (len < 4)
        return;
    int status = 100 + (((unsigned char)buf[0] << 8 | (unsigned char)buf[1]) % 900);
    size_t blen = len - 2 < FUZZ_MAX_HEAD ? len - 2 : FUZZ_MAX_HEAD;
    memcpy(body, buf + 2, blen);
    body[blen] = '\0';
    size_t cap = (unsigned char)buf[2] % 2 ? sizeof(out) : (unsigned char)buf[3];

    size_t n = http_write_error(out, cap, status, body);
    struct http_response res;
    if (n > cap)
        FAIL("error writer overran cap");
    if (n) {
        int r = http_response_parse(out, n, sizeof(out), &res);
        if (r <= 0 || res.status != status || res.content_length != (int64_t)(n - (size_t)r))
            FAIL("error response did not parse back: %d status %d", r, res.status);
        if (memcmp(out + r, body, strlen(body)) != 0)
            FAIL("error body differs");
    }

    n = http_write_response(out, cap, status, body, buf + 2, blen, buf[2] & 1);
    if (n > cap)
        FAIL("response writer overran cap");
    if (n) {
        int r = http_response_parse(out, n, sizeof(out), &res);
        if (r <= 0 || res.status != status)
            FAIL("response did not parse back: %d", r);
    }

    /* host | path | key, split at the first two '|' bytes. */
    const char *a = memchr(buf, '|', len);
    const char *b = a ? memchr(a + 1, '|', len - (size_t)(a + 1 - buf)) : NULL;
    if (!b)
        return;
    struct span host = {buf, (size_t)(a - buf)};
    struct span path = {a + 1, (size_t)(b - a - 1)};
    struct span key = {b + 1, len - (size_t)(b + 1 - buf)};
    n = http_write_upgrade_request(out, cap, host, path, key);
    if (n > cap)
        FAIL("upgrade request writer overran cap");
    if (n) {
        struct http_request req;
        int r = http_request_parse(out, n, sizeof(out), &req);
        if (r != (int)n || !span_eq(req.host, host) || !span_eq(req.ws_key, key))
            FAIL("our upgrade request did not parse back: %d", r);
        if (path.len && !span_eq(req.target, path))
            FAIL("target differs");
    }
}

/* The HTTP API's view of a request: query lookups and percent-decoding stay inside their
 * inputs and outputs, and the head writer's output parses back. */
static void check_api(const struct http_request *req)
{
    static const char *keys[] = {"prefix", "cursor", "limit"};
    char out[256];
    for (size_t i = 0; i < 3; i++) {
        struct span v;
        if (http_query_get(req->query, keys[i], &v)) {
            span_inside(v, req->query.base, req->query.base + req->query.len, "query value");
            int n = http_pct_decode(v, out, sizeof(out), true);
            if (n > (int)sizeof(out) || (n >= 0 && (size_t)n > v.len))
                FAIL("pct_decode returned %d for %zu bytes", n, v.len);
            for (int j = 0; j < n; j++)
                if (!out[j])
                    FAIL("pct_decode let a NUL through");
        }
    }
    int n = http_pct_decode(req->path, out, sizeof(out), false);
    if (n >= 0 && (size_t)n > req->path.len)
        FAIL("path decoded longer than itself");
    static char head[512];
    size_t hn =
        http_write_head(head, sizeof(head), 200, "application/json",
                        (size_t)req->content_length > 0 ? 7 : 0, !req->conn_close, "Allow", "GET");
    struct http_response res;
    if (!hn || http_response_parse(head, hn, sizeof(head), &res) != (int)hn || res.status != 200)
        FAIL("API head did not parse back");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    struct http_request req;

    int r = http_request_parse(buf, size, FUZZ_MAX_HEAD, &req);
    check_request(buf, size, FUZZ_MAX_HEAD, r, &req);
    int status = r == HTTP_ERROR ? req.status : 0;
    if (r > 0) {
        check_handshake(&req);
        check_api(&req);
    }
    check_prefixes(buf, size, r, status);

    /* A smaller limit: a head that fits is unchanged, one that does not is a 431. */
    if (size > 0) {
        size_t max = (unsigned char)buf[0] * 4u;
        struct http_request small;
        int r2 = parse_copy(buf, size, max, &small);
        if (r > 0 && (size_t)r <= max && r2 != r)
            FAIL("head of %d changed under max_head %zu: %d", r, max, r2);
        if (r > 0 && (size_t)r > max && !(r2 == HTTP_ERROR && small.status == 431))
            FAIL("head of %d over max_head %zu: %d", r, max, r2);
    }

    check_response(buf, size);
    check_writers(buf, size);
    return 0;
}
