/* bench_http.c - micro-benchmark for the HTTP head parser and the WebSocket handshake.
 *
 * Measures, each for a fixed wall-clock time:
 *   parse      http_request_parse over a typical browser upgrade request (about 500 bytes,
 *              12 headers), the cost every new connection pays before anything else;
 *   handshake  what the server does per upgrade: parse, http_upgrade_check, http_route_ws and
 *              http_write_101 (SHA-1 + base64 of the accept key included);
 *   response   http_response_parse over the 101 plus ws_accept_matches, the client's side;
 *   split      the request arriving in two reads (headers cut mid-way): the stateless parser
 *              re-reads from byte 0, so this shows what a partial read costs.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/http.h"

static volatile uint64_t sink; /* keeps results observable so nothing is optimized away */

/* Modelled on the upgrade request Chrome 120 sends: 12 headers, about 500 bytes. */
static const char REQ[] =
    "GET /ws/room-42?token=eyJhbGciOiJIUzI1NiJ9.abc HTTP/1.1\r\n"
    "Host: chat.example.com\r\n"
    "Connection: Upgrade\r\n"
    "Pragma: no-cache\r\n"
    "Cache-Control: no-cache\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36\r\n"
    "Upgrade: websocket\r\n"
    "Origin: https://chat.example.com\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Accept-Language: en-US,en;q=0.9\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    "\r\n";
#define REQ_LEN (sizeof(REQ) - 1)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: bench_http [--seconds S] [--json] [--help]\n"
            "  Parses a typical browser WebSocket upgrade request (%zu bytes, 12 headers),\n"
            "  runs the whole server-side handshake, parses the 101 as a client, and parses\n"
            "  the request delivered in two reads; each for S seconds (default 1).\n"
            "  --json prints one JSON object instead of the human-readable lines.\n",
            (size_t)REQ_LEN);
}

static void die(const char *what, int r)
{
    fprintf(stderr, "bench_http: %s failed (%d)\n", what, r);
    exit(1);
}

/* Runs fn in batches of 256 until `seconds` have passed; returns calls per second. */
static double timed(double seconds, void (*fn)(void), uint64_t *calls)
{
    uint64_t n = 0;
    double t0 = now(), t1;
    do {
        for (int i = 0; i < 256; i++)
            fn();
        n += 256;
    } while ((t1 = now()) - t0 < seconds);
    *calls = n;
    return (double)n / (t1 - t0);
}

static void run_parse(void)
{
    struct http_request req;
    int r = http_request_parse(REQ, REQ_LEN, HTTP_MAX_HEAD_DEFAULT, &req);
    if (r != (int)REQ_LEN)
        die("parse", r);
    sink += req.num_headers;
}

static void run_handshake(void)
{
    struct http_request req;
    struct span sid;
    char out[256];
    int r = http_request_parse(REQ, REQ_LEN, HTTP_MAX_HEAD_DEFAULT, &req);
    if (r != (int)REQ_LEN)
        die("parse", r);
    if ((r = http_upgrade_check(&req)) != 0 || (r = http_route_ws(req.path, &sid)) != 0)
        die("check/route", r);
    size_t n = http_write_101(out, sizeof(out), req.ws_key, req.ws_protocol);
    if (n == 0)
        die("write_101", 0);
    sink += n + sid.len;
}

static char resp[256];
static size_t resp_len;

static void run_response(void)
{
    struct http_response res;
    int r = http_response_parse(resp, resp_len, HTTP_MAX_HEAD_DEFAULT, &res);
    if (r != (int)resp_len ||
        !ws_accept_matches(SPAN_LIT("dGhlIHNhbXBsZSBub25jZQ=="), res.ws_accept))
        die("response", r);
    sink += (uint64_t)res.status;
}

static void run_split(void)
{
    struct http_request req;
    int r = http_request_parse(REQ, REQ_LEN / 2, HTTP_MAX_HEAD_DEFAULT, &req);
    if (r != HTTP_NEED_MORE)
        die("split first half", r);
    r = http_request_parse(REQ, REQ_LEN, HTTP_MAX_HEAD_DEFAULT, &req);
    if (r != (int)REQ_LEN)
        die("split", r);
    sink += req.num_headers;
}

int main(int argc, char **argv)
{
    double seconds = 1.0;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            json = true;
        } else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            char *end;
            seconds = strtod(argv[++i], &end);
            if (*end || seconds <= 0 || seconds > 600) {
                fprintf(stderr, "bench_http: --seconds wants a number in (0, 600]\n");
                return 2;
            }
        } else {
            usage(stderr);
            return 2;
        }
    }

    struct http_request req;
    if (http_request_parse(REQ, REQ_LEN, HTTP_MAX_HEAD_DEFAULT, &req) != (int)REQ_LEN)
        die("warm-up parse", 0);
    unsigned headers = req.num_headers;
    resp_len = http_write_101(resp, sizeof(resp), req.ws_key, SPAN_NULL);

    uint64_t n_parse, n_hs, n_resp, n_split;
    double parse = timed(seconds, run_parse, &n_parse);
    double hs = timed(seconds, run_handshake, &n_hs);
    double res = timed(seconds, run_response, &n_resp);
    double split = timed(seconds, run_split, &n_split);

    if (json) {
        printf("{\"bench\":\"http\",\"request_bytes\":%zu,\"request_headers\":%u,"
               "\"seconds\":%g,"
               "\"parse_per_sec\":%.0f,\"parse_ns\":%.1f,\"parse_mb_per_sec\":%.1f,"
               "\"handshake_per_sec\":%.0f,\"handshake_ns\":%.1f,"
               "\"response_per_sec\":%.0f,\"response_ns\":%.1f,"
               "\"split_per_sec\":%.0f,\"split_ns\":%.1f}\n",
               (size_t)REQ_LEN, headers, seconds, parse, 1e9 / parse, parse * (double)REQ_LEN / 1e6,
               hs, 1e9 / hs, res, 1e9 / res, split, 1e9 / split);
    } else {
        printf("request: %zu bytes, %u headers\n", (size_t)REQ_LEN, headers);
        printf("parse      %12.0f req/s  %8.1f ns/req  %8.1f MB/s  (%llu calls)\n", parse,
               1e9 / parse, parse * (double)REQ_LEN / 1e6, (unsigned long long)n_parse);
        printf("handshake  %12.0f req/s  %8.1f ns/req  (parse+check+route+101, %llu calls)\n", hs,
               1e9 / hs, (unsigned long long)n_hs);
        printf("response   %12.0f res/s  %8.1f ns/res  (101 parse+accept check, %llu calls)\n", res,
               1e9 / res, (unsigned long long)n_resp);
        printf("split      %12.0f req/s  %8.1f ns/req  (two reads, %llu calls)\n", split,
               1e9 / split, (unsigned long long)n_split);
    }
    return 0;
}
