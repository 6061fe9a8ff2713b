/* bench_envelope.c - how fast the JSON envelope goes on the three hot paths:
 *
 *   parse    the engine parsing a publish request with a 128-byte payload (env_request_parse)
 *   encode   the engine encoding the broadcast event for it, once per publish (env_write_event)
 *   client   a client parsing that event back, once per recipient (env_msg_parse), which is
 *            what bounds the load generator's receive side
 *
 * Each case runs for a fixed time (or a fixed iteration count) and reports operations per
 * second, nanoseconds per operation and MB/s of JSON; --json prints one JSON object instead.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/envelope.h"

static const char usage[] =
    "usage: bench_envelope [--seconds S] [--iterations N] [--json] [--help]\n"
    "\n"
    "Measures env_request_parse on a publish request with a 128-byte payload, env_write_event\n"
    "encoding the broadcast event, and env_msg_parse on that event (the client side).\n"
    "\n"
    "  --seconds S      run each case for about S seconds (default 1)\n"
    "  --iterations N   run each case exactly N times instead\n"
    "  --json           print one JSON object instead of a table\n"
    "  --help           this text\n";

/* Defeats dead-code elimination of results nobody reads. */
static volatile size_t sink;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct result {
    const char *name;
    unsigned long long ops;
    double secs;
    size_t bytes_per_op;
};

static char request[1024];
static size_t request_len;
static char event[1024];
static size_t event_len;
static char payload[129];
static jsmntok_t toks[ENV_MAX_TOKENS];

/* A 128-byte payload shaped like real traffic: a small object with strings and numbers. */
static void build_inputs(void)
{
    /* Pad the text field so the whole payload is exactly 128 bytes. */
    int pad = 128 - (int)strlen("{\"user\":\"u-1842\",\"text\":\"\",\"n\":12345,\"ok\":true}");
    snprintf(payload, sizeof(payload),
             "{\"user\":\"u-1842\",\"text\":\"%.*s\",\"n\":12345,\"ok\":true}", pad,
             "the quick brown fox jumps over the lazy dog; the quick brown fox jumps over "
             "the lazy dog; the quick brown fox jumps over the lazy dog");
    if (strlen(payload) != 128) {
        fprintf(stderr, "bench_envelope: payload is %zu bytes, not 128\n", strlen(payload));
        exit(1);
    }
    request_len = (size_t)snprintf(request, sizeof(request),
                                   "{\"type\":\"request\",\"event\":\"publish\",\"data\":{"
                                   "\"channel\":\"room-1\",\"event\":\"bench\",\"payload\":%s},"
                                   "\"id\":\"req-000001\"}",
                                   payload);
    struct jw w;
    jw_init(&w, event, sizeof(event));
    env_write_event(&w, SPAN_LIT("bench"), SPAN_LIT("room-1"),
                    (struct span){payload, strlen(payload)}, 1795322100123LL, 7);
    if (w.overflow) {
        fprintf(stderr, "bench_envelope: event does not fit\n");
        exit(1);
    }
    event_len = w.len;
}

static void op_parse(unsigned long long i)
{
    struct env_request r;
    enum env_err e = env_request_parse(request, request_len, toks, ENV_MAX_TOKENS, &r);
    if (e != ENV_OK) {
        fprintf(stderr, "bench_envelope: parse failed: %s\n", env_err_str(e));
        exit(1);
    }
    sink += r.payload.len + (size_t)i;
}

static void op_encode(unsigned long long i)
{
    static char out[1024];
    struct jw w;
    jw_init(&w, out, sizeof(out));
    env_write_event(&w, SPAN_LIT("bench"), SPAN_LIT("room-1"), (struct span){payload, 128},
                    1795322100123LL + (long long)i, i + 1);
    sink += w.len;
}

static void op_client(unsigned long long i)
{
    struct env_msg m;
    enum env_err e = env_msg_parse(event, event_len, toks, ENV_MAX_TOKENS, &m);
    if (e != ENV_OK) {
        fprintf(stderr, "bench_envelope: client parse failed: %s\n", env_err_str(e));
        exit(1);
    }
    sink += m.seq + (size_t)i;
}

static struct result run(const char *name, void (*op)(unsigned long long), size_t bytes,
                         double seconds, unsigned long long iterations)
{
    struct result r = {name, 0, 0, bytes};
    double t0 = now_s(), t;
    if (iterations) {
        for (unsigned long long i = 0; i < iterations; i++)
            op(i);
        r.ops = iterations;
        t = now_s();
    } else {
        /* Check the clock every 4096 operations so clock_gettime stays out of the numbers. */
        do {
            for (int k = 0; k < 4096; k++)
                op(r.ops++);
            t = now_s();
        } while (t - t0 < seconds);
    }
    r.secs = t - t0;
    return r;
}

int main(int argc, char **argv)
{
    double seconds = 1.0;
    unsigned long long iterations = 0;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage, stdout);
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) {
            seconds = atof(argv[++i]);
            if (!(seconds > 0 && seconds <= 3600)) {
                fprintf(stderr, "bench_envelope: --seconds must be in (0, 3600]\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--iterations") && i + 1 < argc) {
            iterations = strtoull(argv[++i], NULL, 10);
            if (iterations == 0) {
                fprintf(stderr, "bench_envelope: --iterations must be > 0\n");
                return 2;
            }
        } else {
            fputs(usage, stderr);
            return 2;
        }
    }

    build_inputs();
    struct result res[] = {
        run("parse_request", op_parse, request_len, seconds, iterations),
        run("encode_event", op_encode, event_len, seconds, iterations),
        run("parse_event", op_client, event_len, seconds, iterations),
    };
    size_t nres = sizeof(res) / sizeof(res[0]);

    if (json) {
        printf("{\"bench\":\"envelope\",\"payload_bytes\":128,\"request_bytes\":%zu,"
               "\"event_bytes\":%zu,\"results\":[",
               request_len, event_len);
        for (size_t i = 0; i < nres; i++) {
            double ops_s = (double)res[i].ops / res[i].secs;
            printf("%s{\"name\":\"%s\",\"ops\":%llu,\"seconds\":%.3f,\"ops_per_s\":%.0f,"
                   "\"ns_per_op\":%.1f,\"mb_per_s\":%.1f}",
                   i ? "," : "", res[i].name, res[i].ops, res[i].secs, ops_s, 1e9 / ops_s,
                   ops_s * (double)res[i].bytes_per_op / 1e6);
        }
        printf("]}\n");
    } else {
        printf("bench_envelope: 128-byte payload, request %zu bytes, event %zu bytes\n",
               request_len, event_len);
        printf("  %-14s %14s %12s %10s\n", "case", "ops/s", "ns/op", "MB/s");
        for (size_t i = 0; i < nres; i++) {
            double ops_s = (double)res[i].ops / res[i].secs;
            printf("  %-14s %14.0f %12.1f %10.1f\n", res[i].name, ops_s, 1e9 / ops_s,
                   ops_s * (double)res[i].bytes_per_op / 1e6);
        }
    }
    return 0;
}
