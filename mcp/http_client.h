/* http_client.h - the smallest HTTP/1.1 client ringcast-mcp needs: one request per
 * connection (Connection: close), a deadline for the whole exchange, a bounded response. */
#ifndef RINGCAST_MCP_HTTP_CLIENT_H
#define RINGCAST_MCP_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

/* Responses larger than this are refused (a /metrics of many workers is well under it). */
#define HC_MAX_RESPONSE (16u << 20)

struct hc_target {
    char host[256];
    char port[8];
    char base[512]; /* path prefix, without a trailing slash ("" for none) */
};

struct hc_response {
    int status;
    char *body; /* malloc'd, NUL-terminated; the caller frees it */
    size_t body_len;
    char error[256]; /* why there is no response */
};

/* Parses "http://host[:port][/base]". */
bool hc_parse_url(const char *url, struct hc_target *t);
/* Sends method base+path (with X-API-Key when key is non-empty, and a JSON body when body is
 * non-NULL), reads the answer. 0 with out filled in, or -1 with out->error set. */
int hc_request(const struct hc_target *t, const char *method, const char *path, const char *key,
               const char *body, size_t body_len, int timeout_ms, struct hc_response *out);

#endif
