/* auth.c - JWT signature and claim checks, keys, grants (see auth.h). */
#include "auth.h"

#include <errno.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config.h"
#include "log.h"
#include "proto/channel.h"
#include "proto/http.h"
#include "proto/json.h"
#include "proto/jwt.h"

/* HS256 keys shorter than the hash are refused (RFC 7518 §3.2). */
#define HS256_MIN_KEY 32
/* RSA keys below 2048 bits are refused (NIST SP 800-131A). */
#define RSA_MIN_BITS 2048
/* Longest user name (sub) kept: it appears in log lines. */
#define SUB_MAX 128

/* Read-only after auth_init: shared by every worker. */
static enum auth_mode mode;
static int64_t leeway_ms;
static unsigned char hmac_key[1024];
static size_t hmac_key_len; /* 0: HS256 not configured */
static EVP_MAC *hmac;
static EVP_PKEY *pubkey; /* NULL: RS256/ES256 not configured */
static enum jwt_alg pubkey_alg;

enum auth_mode auth_mode(void)
{
    return mode;
}

bool auth_has_key(void)
{
    return hmac_key_len || pubkey;
}

/* ---- keys ---- */

static int load_secret(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "ringcast: cannot open jwt-secret-file %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t n = fread(hmac_key, 1, sizeof(hmac_key), f);
    bool more = fgetc(f) != EOF;
    fclose(f);
    while (n && (hmac_key[n - 1] == '\n' || hmac_key[n - 1] == '\r'))
        n--; /* the editor's newline is not part of the secret */
    if (more) {
        fprintf(stderr, "ringcast: jwt-secret-file %s: longer than %zu bytes\n", path,
                sizeof(hmac_key));
        return -1;
    }
    hmac_key_len = n;
    return 0;
}

static int load_public_key(const char *path)
{
    BIO *bio = BIO_new_file(path, "r");
    if (!bio) {
        fprintf(stderr, "ringcast: cannot open jwt-public-key %s: %s\n", path, strerror(errno));
        return -1;
    }
    pubkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (!pubkey) {
        fprintf(stderr, "ringcast: jwt-public-key %s: not a PEM public key\n", path);
        return -1;
    }
    if (EVP_PKEY_is_a(pubkey, "RSA")) {
        if (EVP_PKEY_get_bits(pubkey) < RSA_MIN_BITS) {
            fprintf(stderr, "ringcast: jwt-public-key %s: RSA key of %d bits (at least %d)\n", path,
                    EVP_PKEY_get_bits(pubkey), RSA_MIN_BITS);
            return -1;
        }
        pubkey_alg = JWT_ALG_RS256;
        return 0;
    }
    char group[64] = "";
    if (EVP_PKEY_is_a(pubkey, "EC") &&
        EVP_PKEY_get_utf8_string_param(pubkey, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                       NULL) &&
        (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0)) {
        pubkey_alg = JWT_ALG_ES256;
        return 0;
    }
    fprintf(stderr, "ringcast: jwt-public-key %s: neither an RSA nor a P-256 EC key\n", path);
    return -1;
}

int auth_init(const struct rc_config *cfg)
{
    if (strcmp(cfg->auth, "off") == 0)
        mode = AUTH_OFF;
    else if (strcmp(cfg->auth, "optional") == 0)
        mode = AUTH_OPTIONAL;
    else if (strcmp(cfg->auth, "required") == 0)
        mode = AUTH_REQUIRED;
    else {
        fprintf(stderr, "ringcast: auth '%s' is not off, optional or required\n", cfg->auth);
        return -1;
    }
    leeway_ms = (int64_t)cfg->jwt_leeway_s * 1000;
    if (cfg->jwt_secret[0]) {
        log_warn("jwt-secret given as an option: it is visible to every local user in the "
                 "process list and the environment; use jwt-secret-file");
        hmac_key_len = strlen(cfg->jwt_secret);
        memcpy(hmac_key, cfg->jwt_secret, hmac_key_len);
    } else if (cfg->jwt_secret_file[0] && load_secret(cfg->jwt_secret_file) != 0) {
        return -1;
    }
    if ((cfg->jwt_secret[0] || cfg->jwt_secret_file[0]) && hmac_key_len < HS256_MIN_KEY) {
        fprintf(stderr, "ringcast: the HS256 secret is %zu bytes: at least %d are required\n",
                hmac_key_len, HS256_MIN_KEY);
        return -1;
    }
    if (hmac_key_len && !(hmac = EVP_MAC_fetch(NULL, "HMAC", NULL))) {
        fprintf(stderr, "ringcast: OpenSSL has no HMAC\n");
        return -1;
    }
    if (cfg->jwt_public_key[0] && load_public_key(cfg->jwt_public_key) != 0)
        return -1;
    if (mode != AUTH_OFF && !hmac_key_len && !pubkey) {
        fprintf(stderr,
                "ringcast: auth %s needs a key: jwt-secret-file (HS256) or "
                "jwt-public-key (RS256, ES256)\n",
                cfg->auth);
        return -1;
    }
    return 0;
}

void auth_shutdown(void)
{
    OPENSSL_cleanse(hmac_key, sizeof(hmac_key));
    hmac_key_len = 0;
    EVP_MAC_free(hmac);
    hmac = NULL;
    EVP_PKEY_free(pubkey);
    pubkey = NULL;
}

/* ---- signatures ---- */

static bool verify_hs256(struct span input, const uint8_t *sig, size_t sig_len)
{
    unsigned char mac[32];
    size_t n = 0;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
                           OSSL_PARAM_construct_end()};
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(hmac);
    bool ok = ctx && EVP_MAC_init(ctx, hmac_key, hmac_key_len, params) &&
              EVP_MAC_update(ctx, (const unsigned char *)input.base, input.len) &&
              EVP_MAC_final(ctx, mac, &n, sizeof(mac)) && n == sizeof(mac);
    EVP_MAC_CTX_free(ctx);
    /* The length is public (always 32 for a real token); the bytes are compared in constant
     * time, so the time taken tells an attacker nothing about how much of a forgery matched. */
    return ok && sig_len == sizeof(mac) && CRYPTO_memcmp(mac, sig, sizeof(mac)) == 0;
}

/* JOSE ES256 signatures are r||s, 32 bytes each (RFC 7518 §3.4); EVP wants DER. */
static int es256_to_der(const uint8_t *sig, size_t sig_len, unsigned char *der, size_t cap)
{
    if (sig_len != 64)
        return -1;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
    if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s)) {
        BN_free(r);
        BN_free(s);
        ECDSA_SIG_free(es);
        return -1;
    }
    int n = i2d_ECDSA_SIG(es, NULL);
    unsigned char *p = der;
    if (n <= 0 || (size_t)n > cap || i2d_ECDSA_SIG(es, &p) != n)
        n = -1;
    ECDSA_SIG_free(es); /* frees r and s */
    return n;
}

static bool verify_pubkey(struct span input, const uint8_t *sig, size_t sig_len)
{
    unsigned char der[80];
    if (pubkey_alg == JWT_ALG_ES256) {
        int n = es256_to_der(sig, sig_len, der, sizeof(der));
        if (n < 0)
            return false;
        sig = der;
        sig_len = (size_t)n;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    bool ok =
        ctx && EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pubkey) == 1 &&
        EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *)input.base, input.len) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

/* ---- grants ---- */

/* Unescapes one claim string into dst (cap bytes); -1 when it is not valid or too long. */
static int unescape(struct span s, char *dst, size_t cap)
{
    return json_unescape(s.base, s.len, dst, cap);
}

static struct auth_grant *grant_build(const struct jwt *t, const char **why)
{
    unsigned np = t->nchannels + t->npublish;
    size_t cap = JWT_MAX_PAYLOAD + SUB_MAX; /* unescaping never makes a string longer */
    struct auth_grant *g = malloc(sizeof(*g) + np * sizeof(struct auth_pat) + cap);
    if (!g) {
        *why = "server out of memory";
        return NULL;
    }
    g->exp_ms = t->exp * 1000 + leeway_ms;
    g->nchannels = (uint8_t)t->nchannels;
    g->npublish = (uint8_t)t->npublish;
    char *data = (char *)&g->pat[np];
    size_t used = 0;
    int n = t->has_sub ? unescape(t->sub, data, SUB_MAX) : 0;
    for (int i = 0; i < n; i++)
        if ((unsigned char)data[i] < 0x20 || data[i] == 0x7f)
            n = -1; /* it goes into log lines */
    if (n < 0) {
        *why = "token sub is not a string of at most 128 printable bytes";
        free(g);
        return NULL;
    }
    g->sub_len = (uint8_t)n;
    used = (size_t)n;
    for (unsigned i = 0; i < np; i++) {
        struct span s = i < t->nchannels ? t->channels[i] : t->publish[i - t->nchannels];
        n = unescape(s, data + used, cap - used);
        if (n < 0 || channel_validate(data + used, (size_t)n) != CHANNEL_OK) {
            *why = "token channels/publish hold an invalid channel pattern";
            free(g);
            return NULL;
        }
        g->pat[i] = (struct auth_pat){(uint16_t)used, (uint16_t)n};
        used += (size_t)n;
    }
    return g;
}

void auth_grant_free(struct auth_grant *g)
{
    free(g);
}

bool auth_grant_allows(const struct auth_grant *g, struct span channel, bool publish)
{
    if (!g)
        return true;
    const char *data = (const char *)&g->pat[g->nchannels + g->npublish];
    unsigned from = publish ? g->nchannels : 0;
    unsigned to = publish ? g->nchannels + g->npublish : g->nchannels;
    for (unsigned i = from; i < to; i++)
        if (jwt_pattern_match(data + g->pat[i].off, g->pat[i].len, channel.base, channel.len))
            return true;
    return false;
}

const char *auth_verify(struct span token, int64_t now_ms, struct auth_grant **grant)
{
    struct jwt_scratch s;
    struct jwt t;
    *grant = NULL;
    enum jwt_err e = jwt_parse(token.base, token.len, &s, &t);
    if (e != JWT_OK)
        return jwt_err_str(e);
    bool ok;
    if (t.alg == JWT_ALG_HS256) {
        if (!hmac_key_len)
            return "token algorithm HS256 not accepted: this server verifies with a public key";
        ok = verify_hs256(t.signing_input, t.sig, t.sig_len);
    } else {
        if (!pubkey || t.alg != pubkey_alg)
            return pubkey_alg == JWT_ALG_RS256 ? "token algorithm not accepted: this server "
                                                 "expects RS256"
                   : pubkey_alg == JWT_ALG_ES256
                       ? "token algorithm not accepted: this server expects ES256"
                       : "token algorithm not accepted: this server expects HS256";
        ok = verify_pubkey(t.signing_input, t.sig, t.sig_len);
    }
    if (!ok)
        return "token signature does not verify";
    /* Only now are the claims worth reading. */
    if (!t.has_exp)
        return "token has no exp claim";
    if (t.exp * 1000 + leeway_ms <= now_ms)
        return "token expired";
    if (t.has_nbf && now_ms + leeway_ms < t.nbf * 1000)
        return "token not yet valid (nbf)";
    const char *why = NULL;
    *grant = grant_build(&t, &why);
    return *grant ? NULL : why;
}

/* ---- where the token is ---- */

/* The next comma-separated element of a header list, trimmed of spaces and tabs. */
static bool list_next(struct span *rest, struct span *item)
{
    const char *p = rest->base, *end = rest->base + rest->len;
    if (p >= end)
        return false;
    const char *comma = memchr(p, ',', (size_t)(end - p));
    const char *e = comma ? comma : end;
    *rest = comma ? (struct span){comma + 1, (size_t)(end - comma - 1)} : (struct span){end, 0};
    while (p < e && (*p == ' ' || *p == '\t'))
        p++;
    while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *item = (struct span){p, (size_t)(e - p)};
    return true;
}

int auth_token_find(const struct http_request *req, char *buf, size_t cap, struct span *token,
                    struct span *protocol, const char **why)
{
    *protocol = SPAN_NULL;
    if (req->authorization.base) {
        struct span a = req->authorization;
        if (a.len <= 7 || strncasecmp(a.base, "Bearer ", 7) != 0) {
            *why = "Authorization header is not \"Bearer <token>\"";
            return -1;
        }
        *token = (struct span){a.base + 7, a.len - 7};
        while (token->len && token->base[0] == ' ')
            token->base++, token->len--;
        return 1;
    }
    if (req->ws_protocol.base) {
        struct span rest = req->ws_protocol, item;
        while (list_next(&rest, &item)) {
            if (item.len != 6 || strncasecmp(item.base, "bearer", 6) != 0)
                continue;
            if (!list_next(&rest, token) || !token->len) {
                *why = "Sec-WebSocket-Protocol \"bearer\" not followed by a token";
                return -1;
            }
            *protocol = item;
            return 1;
        }
    }
    struct span v;
    if (http_query_get(req->query, "token", &v)) {
        int n = http_pct_decode(v, buf, cap, false);
        if (n < 0) {
            *why = "token query parameter is badly percent-encoded or too long";
            return -1;
        }
        *token = (struct span){buf, (size_t)n};
        return 1;
    }
    return 0;
}

void auth_redact_target(struct span target, char *out, size_t cap)
{
    size_t n = 0;
    const char *p = target.base, *end = target.base + target.len;
    const char *q = memchr(p, '?', target.len);
    if (!cap)
        return;
#define PUT(s, len)                                                                                \
    do {                                                                                           \
        size_t l_ = (len) < cap - 1 - n ? (len) : cap - 1 - n;                                     \
        memcpy(out + n, (s), l_);                                                                  \
        n += l_;                                                                                   \
    } while (0)
    if (!q) {
        PUT(p, target.len);
        out[n] = 0;
        return;
    }
    PUT(p, (size_t)(q + 1 - p));
    /* Parameters one by one: a token's value never reaches out, whatever its key's case or
     * its position. */
    for (const char *s = q + 1; s < end;) {
        const char *amp = memchr(s, '&', (size_t)(end - s));
        const char *e = amp ? amp : end;
        const char *eq = memchr(s, '=', (size_t)(e - s));
        if (eq && eq - s == 5 && strncasecmp(s, "token", 5) == 0) {
            PUT(s, 6);
            PUT("[redacted]", 10);
        } else {
            PUT(s, (size_t)(e - s));
        }
        if (amp)
            PUT("&", 1);
        s = amp ? amp + 1 : end;
    }
#undef PUT
    out[n] = 0;
}
