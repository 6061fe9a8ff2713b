/* fuzz_jwt.c - jwt_parse and jwt_b64url_decode over arbitrary bytes.
 *
 * Beyond "no crash": every span of an accepted token lies inside the token or the scratch, the
 * signing input is the token up to its second dot, counts stay within their bounds, and every
 * base64url string that decodes re-encodes to itself (one token, one encoding). Any violation
 * aborts with a message.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(cond)                                                                              \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_jwt: invariant broken: %s (line %d)\n", #cond, __LINE__);        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static struct jwt_scratch scratch;

static void require_in(const void *base, size_t len, struct span s)
{
    const char *b = base;
    REQUIRE(s.base >= b && s.len <= len && (size_t)(s.base - b) <= len - s.len);
}

static void check_b64(const char *in, size_t len)
{
    static uint8_t out[8192];
    static char back[16384];
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    int n = jwt_b64url_decode(in, len, out, sizeof(out));
    if (n < 0)
        return;
    size_t o = 0;
    for (int i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)out[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)out[i + 1] << 8;
        if (i + 2 < n)
            v |= out[i + 2];
        back[o++] = a[(v >> 18) & 63];
        back[o++] = a[(v >> 12) & 63];
        if (i + 1 < n)
            back[o++] = a[(v >> 6) & 63];
        if (i + 2 < n)
            back[o++] = a[v & 63];
    }
    REQUIRE(o == len && memcmp(back, in, len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    check_b64(in, size);
    struct jwt t;
    enum jwt_err e = jwt_parse(in, size, &scratch, &t);
    REQUIRE(e >= JWT_OK && e <= JWT_ERR_PATTERNS);
    REQUIRE(jwt_err_str(e) != NULL);
    if (e != JWT_OK)
        return 0;
    REQUIRE(t.alg >= JWT_ALG_HS256 && t.alg <= JWT_ALG_ES256);
    REQUIRE(t.signing_input.base == in && t.signing_input.len < size);
    REQUIRE(in[t.signing_input.len] == '.');
    REQUIRE(t.sig == scratch.sig && t.sig_len > 0 && t.sig_len <= JWT_MAX_SIG);
    REQUIRE(t.nchannels <= JWT_MAX_PATTERNS && t.npublish <= JWT_MAX_PATTERNS);
    if (t.has_sub)
        require_in(scratch.payload, sizeof(scratch.payload), t.sub);
    for (unsigned i = 0; i < t.nchannels; i++)
        require_in(scratch.payload, sizeof(scratch.payload), t.channels[i]);
    for (unsigned i = 0; i < t.npublish; i++)
        require_in(scratch.payload, sizeof(scratch.payload), t.publish[i]);
    REQUIRE(!t.has_exp || t.exp >= 0);
    REQUIRE(!t.has_nbf || t.nbf >= 0);
    /* Patterns against each other: a pattern always matches itself unless it ends in '*'. */
    for (unsigned i = 0; i < t.nchannels; i++) {
        struct span p = t.channels[i];
        if (!p.len || p.base[p.len - 1] != '*')
            REQUIRE(jwt_pattern_match(p.base, p.len, p.base, p.len));
    }
    return 0;
}
