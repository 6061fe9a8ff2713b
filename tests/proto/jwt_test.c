/* jwt_test.c - jwt_parse's strictness (base64url, header, claims), what it reports, the error
 * strings, and channel pattern matching. Signatures are the engine's (tests/engine/test_auth.py).
 */
#include "unit.h"
#include "proto/jwt.h"

#include <stdlib.h>

static struct jwt_scratch scratch;

/* base64url of s without padding, into out. */
static void b64url(const char *s, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)(unsigned char)s[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)(unsigned char)s[i + 1] << 8;
        if (i + 2 < n)
            v |= (unsigned char)s[i + 2];
        out[o++] = a[(v >> 18) & 63];
        out[o++] = a[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = a[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = a[v & 63];
    }
    out[o] = 0;
}

/* A token with the given header and claims JSON and a 32-byte signature of 'S'. */
static const char *tok(const char *header, const char *claims)
{
    static char buf[8192];
    char h[1024], c[4096], s[64];
    b64url(header, strlen(header), h);
    b64url(claims, strlen(claims), c);
    b64url("SSSSSSSSSSSSSSSSSSSSSSSSSSSSSSSS", 32, s);
    snprintf(buf, sizeof(buf), "%s.%s.%s", h, c, s);
    return buf;
}

static enum jwt_err parse(const char *t, struct jwt *out)
{
    return jwt_parse(t, strlen(t), &scratch, out);
}

#define HS "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

static void test_b64url(void)
{
    unit_current = "b64url";
    uint8_t out[16];
    CHECK_EQ(jwt_b64url_decode("", 0, out, sizeof(out)), 0);
    CHECK_EQ(jwt_b64url_decode("YQ", 2, out, sizeof(out)), 1);
    CHECK_EQ(out[0], 'a');
    CHECK_EQ(jwt_b64url_decode("YWI", 3, out, sizeof(out)), 2);
    CHECK_EQ(jwt_b64url_decode("YWJj", 4, out, sizeof(out)), 3);
    CHECK_EQ(jwt_b64url_decode("-_8", 3, out, sizeof(out)), 2);
    CHECK_EQ(out[0], 0xfb);
    CHECK_EQ(jwt_b64url_decode("YQ==", 4, out, sizeof(out)), -1); /* padding */
    CHECK_EQ(jwt_b64url_decode("Y", 1, out, sizeof(out)), -1);    /* impossible length */
    CHECK_EQ(jwt_b64url_decode("YR", 2, out, sizeof(out)), -1);   /* trailing bits set */
    CHECK_EQ(jwt_b64url_decode("+/8", 3, out, sizeof(out)), -1);  /* base64, not base64url */
    CHECK_EQ(jwt_b64url_decode("YWJj", 4, out, 2), -1);           /* does not fit */
}

static void test_valid(void)
{
    unit_current = "valid";
    struct jwt t;
    const char *s =
        tok(HS, "{\"sub\":\"al\\u0069ce\",\"exp\":1700000000.75,\"nbf\":17,"
                "\"channels\":[\"a:*\",\"b\"],\"publish\":[],\"iat\":1,\"x\":{\"y\":[1]}}");
    CHECK_EQ(parse(s, &t), JWT_OK);
    CHECK_EQ(t.alg, JWT_ALG_HS256);
    CHECK(t.has_exp && t.exp == 1700000000 && t.has_nbf && t.nbf == 17);
    CHECK(t.has_sub);
    CHECK_MEM(t.sub.base, t.sub.len, "al\\u0069ce"); /* still escaped */
    CHECK(t.has_channels && t.nchannels == 2 && t.has_publish && t.npublish == 0);
    CHECK_MEM(t.channels[0].base, t.channels[0].len, "a:*");
    CHECK_MEM(t.channels[1].base, t.channels[1].len, "b");
    CHECK_EQ(t.sig_len, 32);
    CHECK(t.signing_input.base == s && s[t.signing_input.len] == '.');
    CHECK(memchr(t.signing_input.base, '.', t.signing_input.len) != NULL);

    CHECK_EQ(parse(tok("{\"alg\":\"RS256\"}", "{}"), &t), JWT_OK);
    CHECK_EQ(t.alg, JWT_ALG_RS256);
    CHECK(!t.has_exp && !t.has_sub && !t.has_channels);
    CHECK_EQ(parse(tok("{\"alg\":\"ES256\",\"kid\":\"k1\"}", "{}"), &t), JWT_OK);
    CHECK_EQ(t.alg, JWT_ALG_ES256);
}

static void test_format(void)
{
    unit_current = "format";
    struct jwt t;
    CHECK_EQ(parse("", &t), JWT_ERR_FORMAT);
    CHECK_EQ(parse("abc", &t), JWT_ERR_FORMAT);
    CHECK_EQ(parse("a.b", &t), JWT_ERR_FORMAT);
    CHECK_EQ(parse("a.b.c.d", &t), JWT_ERR_FORMAT);
    CHECK_EQ(parse("..", &t), JWT_ERR_FORMAT);
    CHECK_EQ(parse("e30.e30.", &t), JWT_ERR_FORMAT); /* empty signature */
    CHECK_EQ(parse("e30.e30.A", &t), JWT_ERR_FORMAT);
    CHECK_EQ(parse("e3=.e30.AAAA", &t), JWT_ERR_FORMAT);
    char big[JWT_MAX_TOKEN + 2];
    memset(big, 'A', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    CHECK_EQ(parse(big, &t), JWT_ERR_TOO_LONG);
    /* A signature too long for the scratch. */
    char s[2000];
    memset(s, 'A', 1000);
    s[1000] = 0;
    char buf[3000];
    snprintf(buf, sizeof(buf), "e30.e30.%s", s);
    CHECK_EQ(parse(buf, &t), JWT_ERR_TOO_LONG);
}

static void test_header(void)
{
    unit_current = "header";
    struct jwt t;
    CHECK_EQ(parse(tok("[]", "{}"), &t), JWT_ERR_HEADER);
    CHECK_EQ(parse(tok("{}", "{}"), &t), JWT_ERR_HEADER);
    CHECK_EQ(parse(tok("{\"alg\":256}", "{}"), &t), JWT_ERR_HEADER);
    CHECK_EQ(parse(tok("{\"alg\":\"HS256\",\"alg\":\"none\"}", "{}"), &t), JWT_ERR_HEADER);
    CHECK_EQ(parse(tok("{\"alg\":\"none\"}", "{}"), &t), JWT_ERR_ALG);
    CHECK_EQ(parse(tok("{\"alg\":\"hs256\"}", "{}"), &t), JWT_ERR_ALG);
    CHECK_EQ(parse(tok("{\"alg\":\"HS512\"}", "{}"), &t), JWT_ERR_ALG);
    CHECK_EQ(parse(tok("{\"alg\":\"HS256\",\"crit\":[\"b64\"]}", "{}"), &t), JWT_ERR_CRIT);
    CHECK_EQ(parse(tok("{\"alg\":\"HS256\"", "{}"), &t), JWT_ERR_HEADER); /* truncated JSON */
    CHECK_EQ(parse(tok("{\"alg\":\"HS256\"} x", "{}"), &t), JWT_ERR_HEADER);
}

static void test_claims(void)
{
    unit_current = "claims";
    struct jwt t;
    CHECK_EQ(parse(tok(HS, "[]"), &t), JWT_ERR_CLAIMS);
    CHECK_EQ(parse(tok(HS, "{\"exp\":1,\"exp\":2}"), &t), JWT_ERR_CLAIMS);
    CHECK_EQ(parse(tok(HS, "{\"sub\":\"a\",\"sub\":\"b\"}"), &t), JWT_ERR_CLAIMS);
    CHECK_EQ(parse(tok(HS, "{\"channels\":[],\"channels\":[\"*\"]}"), &t), JWT_ERR_CLAIMS);
    CHECK_EQ(parse(tok(HS, "{\"exp\":\"1\"}"), &t), JWT_ERR_CLAIM_TYPE);
    CHECK_EQ(parse(tok(HS, "{\"exp\":-1}"), &t), JWT_ERR_CLAIM_TYPE);
    CHECK_EQ(parse(tok(HS, "{\"exp\":1e9}"), &t), JWT_ERR_CLAIM_TYPE);
    CHECK_EQ(parse(tok(HS, "{\"exp\":true}"), &t), JWT_ERR_CLAIM_TYPE);
    CHECK_EQ(parse(tok(HS, "{\"exp\":99999999999999999999}"), &t), JWT_ERR_CLAIM_TYPE);
    CHECK_EQ(parse(tok(HS, "{\"nbf\":null}"), &t), JWT_ERR_CLAIM_TYPE);
    CHECK_EQ(parse(tok(HS, "{\"sub\":1}"), &t), JWT_ERR_CLAIM_TYPE);
    CHECK_EQ(parse(tok(HS, "{\"channels\":\"a:*\"}"), &t), JWT_ERR_CLAIM_TYPE);
    CHECK_EQ(parse(tok(HS, "{\"publish\":[1]}"), &t), JWT_ERR_CLAIM_TYPE);
    CHECK_EQ(parse(tok(HS, "{\"publish\":[[\"a\"]]}"), &t), JWT_ERR_CLAIM_TYPE);
    char c[2048] = "{\"channels\":[";
    for (int i = 0; i <= JWT_MAX_PATTERNS; i++)
        strcat(c, i ? ",\"x\"" : "\"x\"");
    strcat(c, "]}");
    CHECK_EQ(parse(tok(HS, c), &t), JWT_ERR_PATTERNS);
    /* Too many JSON tokens in the claims. */
    char many[2048] = "{\"x\":[";
    for (int i = 0; i < JWT_MAX_JSON_TOKENS + 2; i++)
        strcat(many, i ? ",1" : "1");
    strcat(many, "]}");
    CHECK_EQ(parse(tok(HS, many), &t), JWT_ERR_TOO_LONG);
}

static void test_err_str(void)
{
    unit_current = "err_str";
    for (int e = JWT_OK; e <= JWT_ERR_PATTERNS; e++) {
        const char *s = jwt_err_str((enum jwt_err)e);
        CHECK(s && *s && !strchr(s, '\n'));
    }
}

static bool m(const char *p, const char *c)
{
    return jwt_pattern_match(p, strlen(p), c, strlen(c));
}

static void test_patterns(void)
{
    unit_current = "patterns";
    CHECK(m("*", "anything"));
    CHECK(m("*", ""));
    CHECK(m("workflow:*", "workflow:42"));
    CHECK(m("workflow:*", "workflow:"));
    CHECK(!m("workflow:*", "workflow"));
    CHECK(!m("workflow:*", "workflows:1"));
    CHECK(!m("a:*", "b:1"));
    CHECK(m("a:1", "a:1"));
    CHECK(!m("a:1", "a:10"));
    CHECK(!m("a:1", "a:"));
    CHECK(m("a*b", "a*b")); /* a star inside is literal */
    CHECK(!m("a*b", "axb"));
    CHECK(!m("", "a"));
}

int main(void)
{
    test_b64url();
    test_valid();
    test_format();
    test_header();
    test_claims();
    test_err_str();
    test_patterns();
    printf("jwt: %d checks, %d failed\n", unit_checks, unit_failed);
    return unit_failed ? 1 : 0;
}
