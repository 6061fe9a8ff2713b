/* jwt.c - compact JWT parsing: base64url, header, claims (see jwt.h). */
#include "jwt.h"

#include <string.h>

/* ---- base64url ---- */

static int b64url_value(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '-')
        return 62;
    if (ch == '_')
        return 63;
    return -1;
}

int jwt_b64url_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    /* One leftover character carries 6 bits: never a whole byte, so never a valid encoding. */
    if (len % 4 == 1)
        return -1;
    size_t need = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
    if (need > cap)
        return -1;
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value((unsigned char)in[i]);
        if (v < 0)
            return -1;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    /* The bits left over must be zero: one token has one encoding (no malleability). */
    if (acc != 0)
        return -1;
    return (int)n;
}

/* ---- JSON helpers ---- */

static bool tok_is(const char *json, const jsmntok_t *t, const char *lit)
{
    size_t n = strlen(lit);
    return t->type == JSMN_STRING && (size_t)(t->end - t->start) == n &&
           memcmp(json + t->start, lit, n) == 0;
}

/* A NumericDate: a non-negative JSON number without exponent; the fraction is dropped. Bounded
 * to 2^53 (what a JavaScript backend can represent exactly). */
static bool numeric_date(const char *json, const jsmntok_t *t, int64_t *out)
{
    if (t->type != JSMN_PRIMITIVE)
        return false;
    const char *p = json + t->start, *end = json + t->end;
    if (p == end || *p < '0' || *p > '9')
        return false; /* also refuses true/false/null and negatives */
    int64_t v = 0;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        v = v * 10 + (*p - '0');
        if (v > (INT64_C(1) << 53))
            return false;
    }
    if (p < end && *p == '.')
        for (p++; p < end && *p >= '0' && *p <= '9'; p++)
            ;
    if (p != end)
        return false; /* an exponent */
    *out = v;
    return true;
}

/* An array of strings into out (at most JWT_MAX_PATTERNS). Strings own no tokens, so the
 * elements are the tokens right after the array. */
static enum jwt_err pattern_list(const char *json, const jsmntok_t *toks, int ntoks, int i,
                                 struct span *out, unsigned *n)
{
    const jsmntok_t *a = &toks[i];
    if (a->type != JSMN_ARRAY)
        return JWT_ERR_CLAIM_TYPE;
    if (a->size > JWT_MAX_PATTERNS)
        return JWT_ERR_PATTERNS;
    for (int k = 0; k < a->size; k++) {
        if (i + 1 + k >= ntoks || toks[i + 1 + k].type != JSMN_STRING)
            return JWT_ERR_CLAIM_TYPE;
        out[k] = json_tok_span(json, &toks[i + 1 + k]);
    }
    *n = (unsigned)a->size;
    return JWT_OK;
}

static enum jwt_err parse_header(const char *json, size_t len, jsmntok_t *toks, struct jwt *out)
{
    int n = json_tokenize(json, len, toks, JWT_MAX_JSON_TOKENS);
    if (n <= 0 || toks[0].type != JSMN_OBJECT)
        return JWT_ERR_HEADER;
    int alg = -1;
    for (int i = 1; i < n; i = json_skip(toks, n, i)) {
        const jsmntok_t *k = &toks[i];
        if (tok_is(json, k, "alg")) {
            if (alg >= 0)
                return JWT_ERR_HEADER; /* two algs: which one would a verifier use? */
            alg = i + 1;
        } else if (tok_is(json, k, "crit")) {
            return JWT_ERR_CRIT;
        }
    }
    if (alg < 0 || toks[alg].type != JSMN_STRING)
        return JWT_ERR_HEADER;
    if (tok_is(json, &toks[alg], "HS256"))
        out->alg = JWT_ALG_HS256;
    else if (tok_is(json, &toks[alg], "RS256"))
        out->alg = JWT_ALG_RS256;
    else if (tok_is(json, &toks[alg], "ES256"))
        out->alg = JWT_ALG_ES256;
    else
        return JWT_ERR_ALG;
    return JWT_OK;
}

static enum jwt_err parse_claims(const char *json, size_t len, jsmntok_t *toks, struct jwt *out)
{
    int n = json_tokenize(json, len, toks, JWT_MAX_JSON_TOKENS);
    if (n == -JSON_ERR_TOO_MANY)
        return JWT_ERR_TOO_LONG;
    if (n <= 0 || toks[0].type != JSMN_OBJECT)
        return JWT_ERR_CLAIMS;
    for (int i = 1; i < n; i = json_skip(toks, n, i)) {
        const jsmntok_t *k = &toks[i];
        int v = i + 1;
        enum jwt_err e = JWT_OK;
        bool *seen = NULL;
        if (tok_is(json, k, "exp")) {
            seen = &out->has_exp;
            if (!*seen && !numeric_date(json, &toks[v], &out->exp))
                e = JWT_ERR_CLAIM_TYPE;
        } else if (tok_is(json, k, "nbf")) {
            seen = &out->has_nbf;
            if (!*seen && !numeric_date(json, &toks[v], &out->nbf))
                e = JWT_ERR_CLAIM_TYPE;
        } else if (tok_is(json, k, "sub")) {
            seen = &out->has_sub;
            if (toks[v].type != JSMN_STRING)
                e = JWT_ERR_CLAIM_TYPE;
            out->sub = json_tok_span(json, &toks[v]);
        } else if (tok_is(json, k, "channels")) {
            seen = &out->has_channels;
            if (!*seen)
                e = pattern_list(json, toks, n, v, out->channels, &out->nchannels);
        } else if (tok_is(json, k, "publish")) {
            seen = &out->has_publish;
            if (!*seen)
                e = pattern_list(json, toks, n, v, out->publish, &out->npublish);
        } else {
            continue; /* iat, iss, aud, jti, private claims: not ours to judge */
        }
        if (*seen)
            return JWT_ERR_CLAIMS; /* a repeated claim: parsers disagree on which one wins */
        if (e != JWT_OK)
            return e;
        *seen = true;
    }
    return JWT_OK;
}

/* ---- the token ---- */

enum jwt_err jwt_parse(const char *token, size_t len, struct jwt_scratch *s, struct jwt *out)
{
    memset(out, 0, sizeof(*out));
    if (len > JWT_MAX_TOKEN)
        return JWT_ERR_TOO_LONG;
    const char *d1 = memchr(token, '.', len);
    if (!d1)
        return JWT_ERR_FORMAT;
    const char *d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token));
    if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
        return JWT_ERR_FORMAT;
    size_t hl = (size_t)(d1 - token), pl = (size_t)(d2 - d1 - 1);
    size_t sl = len - (size_t)(d2 + 1 - token);
    if (!hl || !pl || !sl)
        return JWT_ERR_FORMAT; /* an empty signature is alg "none" in disguise */
    int hn = jwt_b64url_decode(token, hl, s->header, sizeof(s->header));
    int pn = jwt_b64url_decode(d1 + 1, pl, s->payload, sizeof(s->payload));
    int sn = jwt_b64url_decode(d2 + 1, sl, s->sig, sizeof(s->sig));
    if (hn < 0 || pn < 0 || sn < 0) {
        bool too_long = hl / 4 * 3 > sizeof(s->header) || pl / 4 * 3 > sizeof(s->payload) ||
                        sl / 4 * 3 > sizeof(s->sig);
        return too_long ? JWT_ERR_TOO_LONG : JWT_ERR_FORMAT;
    }
    enum jwt_err e = parse_header((const char *)s->header, (size_t)hn, s->toks, out);
    if (e != JWT_OK)
        return e;
    e = parse_claims((const char *)s->payload, (size_t)pn, s->toks, out);
    if (e != JWT_OK)
        return e;
    out->signing_input = (struct span){token, (size_t)(d2 - token)};
    out->sig = s->sig;
    out->sig_len = (size_t)sn;
    return JWT_OK;
}

const char *jwt_err_str(enum jwt_err err)
{
    switch (err) {
    case JWT_OK: return "ok";
    case JWT_ERR_TOO_LONG: return "token too long";
    case JWT_ERR_FORMAT: return "token malformed: not three base64url parts";
    case JWT_ERR_HEADER: return "token malformed: header is not a JSON object with one \"alg\"";
    case JWT_ERR_ALG: return "token algorithm not accepted (HS256, RS256 or ES256 only)";
    case JWT_ERR_CRIT: return "token has a \"crit\" header this server does not understand";
    case JWT_ERR_CLAIMS: return "token malformed: claims are not a JSON object without repeats";
    case JWT_ERR_CLAIM_TYPE: return "token malformed: exp, nbf, sub, channels or publish mistyped";
    case JWT_ERR_PATTERNS: return "token has too many channel patterns";
    }
    return "token malformed";
}

bool jwt_pattern_match(const char *pattern, size_t plen, const char *channel, size_t clen)
{
    if (plen && pattern[plen - 1] == '*')
        return clen >= plen - 1 && memcmp(pattern, channel, plen - 1) == 0;
    return plen == clen && memcmp(pattern, channel, plen) == 0;
}
