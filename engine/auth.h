/* auth.h - JWT authentication at the upgrade, and the channel permissions it grants.
 *
 * proto/jwt.c parses a token (pure); this module verifies its signature with OpenSSL 3 (EVP:
 * HMAC-SHA256 compared with CRYPTO_memcmp, RSA PKCS#1 v1.5 SHA-256, ECDSA P-256 SHA-256 with the
 * JOSE r||s signature converted to DER), checks exp/nbf with the configured leeway, and turns
 * the claims into a grant: the connection's user (sub) and the channel patterns it may
 * subscribe to (channels) and publish to (publish). A claim that is absent grants nothing.
 *
 * The key decides the algorithm: a token is verified only with the key of its alg (HS256 with
 * --jwt-secret-file, RS256 with an RSA --jwt-public-key, ES256 with a P-256 one), so "none" and
 * algorithm confusion (an RS256 public key used as an HMAC secret) cannot happen.
 *
 * The keys are loaded once by auth_init, before the workers start, and only read afterwards: the
 * workers share them without locks (OpenSSL allows concurrent use of a key that nobody
 * modifies). No secret and no token is ever written to the log.
 */
#ifndef RINGCAST_ENGINE_AUTH_H
#define RINGCAST_ENGINE_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/span.h"

struct rc_config;
struct http_request;

enum auth_mode {
    AUTH_OFF = 0,  /* tokens are ignored: everyone may do everything (the default) */
    AUTH_OPTIONAL, /* no token: unrestricted, as with off; a token: verified and it restricts */
    AUTH_REQUIRED, /* no valid token, no upgrade (401) */
};

struct auth_pat {
    uint16_t off, len; /* into the grant's data */
};

/* What a verified token allows. One allocation (auth_grant_free), owned by the connection. */
struct auth_grant {
    int64_t exp_ms; /* exp plus the leeway, ms since the epoch: the connection closes with 4001 */
    uint8_t sub_len;
    uint8_t nchannels, npublish;
    struct auth_pat pat[]; /* nchannels subscribe patterns, then npublish publish patterns;
                            * the strings (sub first) follow the array */
};

/* Loads the keys the configuration names and checks that the mode can work (required or
 * optional need a key). Returns 0, or -1 after printing the error to stderr. Main thread, once,
 * before the workers start. */
int auth_init(const struct rc_config *cfg);
/* Frees the keys (after the workers have stopped). */
void auth_shutdown(void);
/* The configured mode. */
enum auth_mode auth_mode(void);
/* True when a key to verify tokens with is loaded (whatever the mode): the HTTP API then takes a
 * JWT with a publish claim in place of its API key. */
bool auth_has_key(void);

/* Verifies token at now_ms (wall clock). On success returns NULL and sets *grant (the caller
 * owns it); otherwise returns why, one line of plain text (a static string) that names no part
 * of the token, for a 401 body and the log. */
const char *auth_verify(struct span token, int64_t now_ms, struct auth_grant **grant);
void auth_grant_free(struct auth_grant *g);

/* The user the grant names (empty when the token had no sub). */
static inline struct span auth_grant_sub(const struct auth_grant *g)
{
    return (struct span){(const char *)&g->pat[g->nchannels + g->npublish], g->sub_len};
}
/* True when g allows subscribing (publish false) or publishing (publish true) to channel (an
 * unescaped, valid name). A NULL grant (no token under off or optional) allows everything. */
bool auth_grant_allows(const struct auth_grant *g, struct span channel, bool publish);
/* True when g's token has expired at now_ms (the leeway included). */
static inline bool auth_grant_expired(const struct auth_grant *g, int64_t now_ms)
{
    return g && now_ms >= g->exp_ms;
}

/* Finds the token an upgrade request carries: Authorization: Bearer, else the
 * Sec-WebSocket-Protocol pair "bearer, <jwt>" (*protocol is then "bearer", to echo in the 101),
 * else ?token= (percent-decoded into buf, cap bytes). Returns 1 and *token when one is found,
 * 0 when none is, -1 with *why when what was sent cannot be a token. */
int auth_token_find(const struct http_request *req, char *buf, size_t cap, struct span *token,
                    struct span *protocol, const char **why);

/* Copies a request target into out (cap bytes, NUL-terminated) with the value of every token=
 * query parameter replaced by "[redacted]": what the log may show of a URL. */
void auth_redact_target(struct span target, char *out, size_t cap);

#endif
