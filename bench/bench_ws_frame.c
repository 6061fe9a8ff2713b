/* bench_ws_frame.c - micro-benchmark for the frame parser, masking and UTF-8 validation.
 *
 * Measures, each for a fixed wall-clock time:
 *   frames      parsing 128-byte masked text frames as a server does (header checks, unmask,
 *               UTF-8 validation), batches of 1024 back-to-back frames;
 *   utf8_ascii  utf8_valid over 1 MiB of ASCII (the word-at-a-time path);
 *   utf8_mixed  utf8_valid over 1 MiB of mixed 1- to 4-byte text (the state machine);
 *   mask        ws_mask over 1 MiB (what unmasking costs per byte).
 * The parser unmasks in place, so each frame batch is restored from a pristine copy first; the
 * restore is timed on its own and subtracted, and both figures are printed.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/ws_frame.h"

#define FRAME_PAYLOAD 128
#define BATCH_FRAMES  1024
#define UTF8_BYTES    (1u << 20)

static volatile uint64_t sink; /* keeps results observable so nothing is optimized away */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: bench_ws_frame [--seconds S] [--json] [--help]\n"
                 "  Parses 128-byte masked text frames (unmask + UTF-8 included) and validates\n"
                 "  UTF-8 (ASCII and mixed multi-byte text), each for S seconds (default 1).\n"
                 "  --json prints one JSON object instead of the human-readable lines.\n");
}

/* A realistic chat payload: JSON, exactly FRAME_PAYLOAD bytes of ASCII. */
static void fill_payload(uint8_t *p, unsigned seq)
{
    char tmp[FRAME_PAYLOAD + 1];
    int n = snprintf(tmp, sizeof(tmp), "{\"type\":\"publish\",\"room\":\"lobby-%04u\",\"body\":\"",
                     seq);
    memcpy(p, tmp, (size_t)n);
    for (size_t i = (size_t)n; i < FRAME_PAYLOAD - 2; i++)
        p[i] = (uint8_t)('a' + (i * 7 + seq) % 26);
    p[FRAME_PAYLOAD - 2] = '"';
    p[FRAME_PAYLOAD - 1] = '}';
}

static double bench_frames(double seconds, double *restore_share)
{
    size_t frame_len = ws_frame_header_len(FRAME_PAYLOAD, true) + FRAME_PAYLOAD;
    size_t total = frame_len * BATCH_FRAMES;
    uint8_t *pristine = malloc(total), *work = malloc(total);
    if (!pristine || !work) {
        perror("malloc");
        exit(1);
    }
    for (unsigned i = 0; i < BATCH_FRAMES; i++) {
        uint8_t *f = pristine + i * frame_len;
        uint8_t key[4] = {(uint8_t)(i * 13 + 1), (uint8_t)(i * 29 + 2), (uint8_t)(i + 3), 0x5A};
        size_t h = ws_frame_header_write(f, WS_OP_TEXT, true, FRAME_PAYLOAD, key);
        fill_payload(f + h, i);
        ws_mask(f + h, FRAME_PAYLOAD, key, 0);
    }

    /* Restore cost alone, to subtract it from the parse loop. */
    uint64_t batches = 0;
    double t0 = now(), t1;
    do {
        memcpy(work, pristine, total);
        sink += work[batches % total];
        batches++;
    } while ((t1 = now()) - t0 < seconds / 4);
    double restore_per_batch = (t1 - t0) / (double)batches;

    struct ws_parser p;
    ws_parser_init(&p, WS_ROLE_SERVER, 1 << 20, true);
    uint64_t frames = 0;
    batches = 0;
    t0 = now();
    do {
        memcpy(work, pristine, total);
        size_t pos = 0;
        while (pos < total) {
            struct ws_frame f;
            enum ws_err e;
            int rc = ws_frame_parse(&p, work + pos, total - pos, &f, &e, NULL);
            if (rc <= 0) {
                fprintf(stderr, "bench_ws_frame: parse failed (%d, %s)\n", rc, ws_err_str(e));
                exit(1);
            }
            sink += f.payload[0];
            pos += (size_t)rc;
            frames++;
        }
        batches++;
    } while ((t1 = now()) - t0 < seconds);
    double elapsed = t1 - t0;
    double net = elapsed - restore_per_batch * (double)batches;
    *restore_share = restore_per_batch * (double)batches / elapsed;
    free(pristine);
    free(work);
    return (double)frames / net;
}

/* Mixed text: ASCII, Latin-1 supplement, Cyrillic, CJK, emoji, in a repeating pattern. */
static void fill_mixed(uint8_t *buf, size_t len)
{
    static const char *pieces[] = {"hello ",
                                   "caf\xC3\xA9 ",
                                   "\xD0\xBF\xD1\x80\xD0\xB8 ",
                                   "\xE6\x97\xA5\xE6\x9C\xAC ",
                                   "\xF0\x9F\x98\x80 ",
                                   "ok, "};
    size_t pos = 0, i = 0;
    while (pos < len) {
        const char *s = pieces[i++ % 6];
        size_t n = strlen(s);
        if (pos + n > len) {
            memset(buf + pos, ' ', len - pos);
            break;
        }
        memcpy(buf + pos, s, n);
        pos += n;
    }
}

/* Returns GB/s (1e9 bytes per second) of utf8_valid over buf. */
static double bench_utf8(const uint8_t *buf, size_t len, double seconds)
{
    uint64_t rounds = 0;
    double t0 = now(), t1;
    do {
        if (!utf8_valid(buf, len)) {
            fprintf(stderr, "bench_ws_frame: benchmark text is not valid UTF-8\n");
            exit(1);
        }
        sink += rounds++;
    } while ((t1 = now()) - t0 < seconds);
    return (double)rounds * (double)len / (t1 - t0) / 1e9;
}

static double bench_mask(uint8_t *buf, size_t len, double seconds)
{
    static const uint8_t key[4] = {1, 2, 3, 4};
    uint64_t rounds = 0;
    double t0 = now(), t1;
    do {
        ws_mask(buf, len, key, rounds);
        sink += buf[rounds % len];
        rounds++;
    } while ((t1 = now()) - t0 < seconds);
    return (double)rounds * (double)len / (t1 - t0) / 1e9;
}

int main(int argc, char **argv)
{
    double seconds = 1.0;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds = strtod(argv[++i], NULL);
            if (!(seconds > 0 && seconds <= 600)) {
                fprintf(stderr, "bench_ws_frame: --seconds must be in (0, 600]\n");
                return 2;
            }
        } else {
            usage(stderr);
            return 2;
        }
    }

    double restore_share = 0;
    double fps = bench_frames(seconds, &restore_share);

    uint8_t *text = malloc(UTF8_BYTES);
    if (!text) {
        perror("malloc");
        return 1;
    }
    for (size_t i = 0; i < UTF8_BYTES; i++)
        text[i] = (uint8_t)(' ' + i % 95);
    double ascii = bench_utf8(text, UTF8_BYTES, seconds);
    fill_mixed(text, UTF8_BYTES);
    double mixed = bench_utf8(text, UTF8_BYTES, seconds);
    double mask = bench_mask(text, UTF8_BYTES, seconds);
    free(text);

    double payload_gbs = fps * FRAME_PAYLOAD / 1e9;
    if (json) {
        printf("{\"bench\":\"ws_frame\",\"seconds\":%.3f,\"frame_payload\":%d,"
               "\"frames_per_s\":%.0f,\"frame_payload_gb_per_s\":%.3f,"
               "\"frame_restore_share\":%.3f,\"utf8_ascii_gb_per_s\":%.3f,"
               "\"utf8_mixed_gb_per_s\":%.3f,\"mask_gb_per_s\":%.3f}\n",
               seconds, FRAME_PAYLOAD, fps, payload_gbs, restore_share, ascii, mixed, mask);
    } else {
        printf("frames      %.2f M frames/s (128-byte masked text, unmask + UTF-8; %.2f GB/s of "
               "payload; batch restore %.0f%% of wall time, subtracted)\n",
               fps / 1e6, payload_gbs, restore_share * 100);
        printf("utf8_ascii  %.2f GB/s\n", ascii);
        printf("utf8_mixed  %.2f GB/s (1- to 4-byte characters)\n", mixed);
        printf("mask        %.2f GB/s\n", mask);
    }
    return 0;
}
