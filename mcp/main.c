/* ringcast-mcp - a Model Context Protocol server (stdio) for a running ringcast engine.
 *
 * Transport: JSON-RPC 2.0 messages, one per line, on stdin and stdout (MCP's stdio transport);
 * logs go to stderr. Flow: initialize -> notifications/initialized -> tools/list, tools/call,
 * ping. Every tool answers through the engine's HTTP API (docs/http-api.md): one request per
 * call, Connection: close, a deadline (--timeout-ms). An engine that cannot be reached or that
 * answers an error status is a tool error (result.isError, the engine's answer as the text);
 * a malformed message, an unknown method or tool, or bad arguments are JSON-RPC errors.
 *
 * Bounds: a message is at most MCP_MAX_LINE bytes (a longer line is answered -32600 and
 * skipped), one message is handled at a time, and each response is written before the next
 * line is read.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_client.h"
#include "proto/json.h"

#ifndef RINGCAST_VERSION
#define RINGCAST_VERSION "0.1.0"
#endif

#define MCP_MAX_LINE    (1u << 20)
#define LATEST_PROTOCOL "2025-06-18"

/* JSON-RPC 2.0 error codes */
#define E_PARSE           -32700
#define E_INVALID_REQUEST -32600
#define E_METHOD          -32601
#define E_PARAMS          -32602
#define E_INTERNAL        -32603

static struct {
    struct hc_target target;
    const char *url;
    char *api_key;
    char *metrics_key;
    int timeout_ms;
    bool initialized;
} g = {.timeout_ms = 5000};

/* ---- output ---- */

/* Writes one message (a line) to stdout. */
static void emit(const char *s, size_t n)
{
    fwrite(s, 1, n, stdout);
    fputc('\n', stdout);
    fflush(stdout);
}

static void reply_result(struct span id, const char *result, size_t rlen)
{
    size_t cap = 64 + id.len + rlen;
    char *buf = malloc(cap);
    if (!buf) {
        fprintf(stderr, "ringcast-mcp: out of memory\n");
        return;
    }
    struct jw w;
    jw_init(&w, buf, cap);
    jw_lit(&w, "{\"jsonrpc\":\"2.0\",\"id\":");
    jw_span(&w, id);
    jw_lit(&w, ",\"result\":");
    jw_raw(&w, result, rlen);
    jw_lit(&w, "}");
    if (!w.overflow)
        emit(buf, w.len);
    free(buf);
}

static void reply_error(struct span id, int code, const char *message)
{
    size_t mlen = strlen(message);
    size_t cap = 128 + id.len + 6 * mlen;
    char *buf = malloc(cap);
    if (!buf)
        return;
    struct jw w;
    jw_init(&w, buf, cap);
    jw_lit(&w, "{\"jsonrpc\":\"2.0\",\"id\":");
    if (id.len)
        jw_span(&w, id);
    else
        jw_lit(&w, "null");
    jw_lit(&w, ",\"error\":{\"code\":");
    jw_i64(&w, code);
    jw_lit(&w, ",\"message\":");
    jw_str(&w, message, mlen);
    jw_lit(&w, "}}");
    if (!w.overflow)
        emit(buf, w.len);
    free(buf);
}

/* ---- tools ---- */

static const char TOOLS[] =
    "{\"tools\":["
    "{\"name\":\"websocket_health_check\","
    "\"description\":\"Checks that the ringcast engine is up (GET /health): status (healthy or "
    "draining), uptime, connections, rooms and workers.\","
    "\"inputSchema\":{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false}},"
    "{\"name\":\"websocket_get_status\","
    "\"description\":\"The engine's status (GET /api/status): version, configuration in force "
    "(secrets redacted), per-worker connections, rooms, queued bytes and deliveries, and the "
    "limits.\","
    "\"inputSchema\":{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false}},"
    "{\"name\":\"websocket_list_rooms\","
    "\"description\":\"Lists rooms with their subscriber counts and last sequence numbers (GET "
    "/api/rooms), in name order, paged.\","
    "\"inputSchema\":{\"type\":\"object\",\"properties\":{"
    "\"prefix\":{\"type\":\"string\",\"description\":\"only rooms whose name starts with this\"},"
    "\"limit\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":1000,\"description\":\"rooms per "
    "page\"},"
    "\"cursor\":{\"type\":\"string\",\"description\":\"the previous page's next value\"}},"
    "\"additionalProperties\":false}},"
    "{\"name\":\"websocket_broadcast_test_event\","
    "\"description\":\"Publishes a test event (event name \\\"test\\\") to one room (POST "
    "/api/publish) and reports its sequence number and how many subscribers it reached.\","
    "\"inputSchema\":{\"type\":\"object\",\"properties\":{"
    "\"channel\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":255,\"description\":\"the room "
    "to publish to, e.g. workflow:42\"},"
    "\"message\":{\"type\":\"string\",\"description\":\"text to put in the event (optional)\"}},"
    "\"required\":[\"channel\"],\"additionalProperties\":false}},"
    "{\"name\":\"websocket_get_metrics\","
    "\"description\":\"The engine's Prometheus metrics (GET /metrics, text exposition format "
    "0.0.4).\","
    "\"inputSchema\":{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false}}"
    "]}";

/* Result of a tool that called the engine: its answer as text; an error status or no answer
 * is a tool error. */
static void reply_http(struct span id, const char *what, int rc, struct hc_response *r)
{
    const char *text = rc == 0 ? r->body : r->error;
    size_t tlen = rc == 0 ? r->body_len : strlen(r->error);
    bool is_error = rc != 0 || r->status >= 400;
    char prefix[128] = "";
    if (rc == 0 && r->status >= 400)
        snprintf(prefix, sizeof(prefix), "%s failed: HTTP %d: ", what, r->status);
    else if (rc != 0)
        snprintf(prefix, sizeof(prefix), "%s failed: ", what);
    size_t cap = 128 + 6 * (tlen + strlen(prefix));
    char *buf = malloc(cap), *text_all = malloc(strlen(prefix) + tlen + 1);
    if (!buf || !text_all) {
        free(buf);
        free(text_all);
        reply_error(id, E_INTERNAL, "out of memory");
        return;
    }
    size_t pl = strlen(prefix);
    memcpy(text_all, prefix, pl);
    memcpy(text_all + pl, text, tlen);
    struct jw w;
    jw_init(&w, buf, cap);
    jw_lit(&w, "{\"content\":[{\"type\":\"text\",\"text\":");
    jw_str(&w, text_all, pl + tlen);
    jw_lit(&w, "}],\"isError\":");
    if (is_error)
        jw_lit(&w, "true}");
    else
        jw_lit(&w, "false}");
    if (w.overflow)
        reply_error(id, E_INTERNAL, "result too large");
    else
        reply_result(id, buf, w.len);
    free(buf);
    free(text_all);
}

/* Percent-encodes s (unescaped bytes) for a query string. */
static void url_encode(struct jw *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '_' || ch == '.' || ch == '~' || ch == ':') {
            jw_raw(w, (const char *)&ch, 1);
        } else {
            char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            jw_raw(w, e, 3);
        }
    }
}

struct args {
    const char *json;
    const jsmntok_t *toks;
    int ntoks;
    int obj; /* the arguments object, or -1 */
};

/* Checks that every key of the arguments is one of allowed (NULL-terminated). */
static const char *args_check(const struct args *a, const char *const *allowed)
{
    if (a->obj < 0)
        return NULL;
    int i = a->obj + 1;
    for (int k = 0; k < a->toks[a->obj].size; k++) {
        struct span key = json_tok_span(a->json, &a->toks[i]);
        bool ok = false;
        for (const char *const *p = allowed; *p; p++)
            if (strlen(*p) == key.len && memcmp(*p, key.base, key.len) == 0)
                ok = true;
        if (!ok)
            return "unknown argument";
        i = json_skip(a->toks, a->ntoks, i);
    }
    return NULL;
}

static int arg(const struct args *a, const char *name)
{
    return a->obj < 0 ? -1 : json_obj_get(a->json, a->toks, a->ntoks, a->obj, name);
}

/* A string argument, unescaped into out (cap bytes). 0 absent, 1 present, -1 bad. */
static int arg_str(const struct args *a, const char *name, char *out, size_t cap, size_t *len)
{
    int i = arg(a, name);
    if (i < 0)
        return 0;
    if (a->toks[i].type != JSMN_STRING)
        return -1;
    struct span s = json_tok_span(a->json, &a->toks[i]);
    int n = json_unescape(s.base, s.len, out, cap);
    if (n < 0)
        return -1;
    *len = (size_t)n;
    return 1;
}

static void tool_list_rooms(struct span id, const struct args *a)
{
    static const char *const allowed[] = {"prefix", "limit", "cursor", NULL};
    char prefix[1024], cursor[1024], path[8192];
    size_t plen = 0, clen = 0;
    uint64_t limit = 0;
    int li = arg(a, "limit");
    if (args_check(a, allowed)) {
        reply_error(id, E_PARAMS, "websocket_list_rooms takes prefix, limit and cursor only");
        return;
    }
    int hp = arg_str(a, "prefix", prefix, sizeof(prefix), &plen);
    int hc = arg_str(a, "cursor", cursor, sizeof(cursor), &clen);
    if (hp < 0 || hc < 0) {
        reply_error(id, E_PARAMS, "prefix and cursor must be strings (at most 1 KiB)");
        return;
    }
    if (li >= 0 && (!json_tok_u64(a->json, &a->toks[li], &limit) || limit < 1 || limit > 1000)) {
        reply_error(id, E_PARAMS, "limit must be an integer from 1 to 1000");
        return;
    }
    struct jw w;
    jw_init(&w, path, sizeof(path));
    jw_lit(&w, "/api/rooms");
    char sep = '?';
    if (hp > 0) {
        jw_raw(&w, &sep, 1);
        jw_lit(&w, "prefix=");
        url_encode(&w, prefix, plen);
        sep = '&';
    }
    if (hc > 0) {
        jw_raw(&w, &sep, 1);
        jw_lit(&w, "cursor=");
        url_encode(&w, cursor, clen);
        sep = '&';
    }
    if (li >= 0) {
        jw_raw(&w, &sep, 1);
        jw_lit(&w, "limit=");
        jw_u64(&w, limit);
    }
    jw_lit(&w, "\0");
    struct hc_response r;
    int rc = hc_request(&g.target, "GET", path, g.api_key, NULL, 0, g.timeout_ms, &r);
    reply_http(id, "list rooms", rc, &r);
    free(r.body);
}

static void tool_broadcast(struct span id, const struct args *a)
{
    static const char *const allowed[] = {"channel", "message", NULL};
    if (args_check(a, allowed)) {
        reply_error(id, E_PARAMS, "websocket_broadcast_test_event takes channel and message only");
        return;
    }
    int ci = arg(a, "channel"), mi = arg(a, "message");
    if (ci < 0 || a->toks[ci].type != JSMN_STRING || a->toks[ci].end == a->toks[ci].start) {
        reply_error(id, E_PARAMS, "channel (a non-empty string) is required");
        return;
    }
    if (mi >= 0 && a->toks[mi].type != JSMN_STRING) {
        reply_error(id, E_PARAMS, "message must be a string");
        return;
    }
    /* The tokens are validated JSON strings: they go into the body as they are. */
    struct span ch = json_tok_span(a->json, &a->toks[ci]);
    struct span msg = mi >= 0 ? json_tok_span(a->json, &a->toks[mi])
                              : (struct span){"ringcast-mcp test event", 23};
    size_t cap = 256 + ch.len + msg.len;
    char *body = malloc(cap);
    if (!body) {
        reply_error(id, E_INTERNAL, "out of memory");
        return;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct jw w;
    jw_init(&w, body, cap);
    jw_lit(&w, "{\"channel\":\"");
    jw_span(&w, ch);
    jw_lit(&w, "\",\"event\":\"test\",\"data\":{\"message\":\"");
    jw_span(&w, msg);
    jw_lit(&w, "\",\"source\":\"ringcast-mcp\",\"sent_at\":");
    jw_timestamp(&w, (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000);
    jw_lit(&w, "}}");
    struct hc_response r;
    int rc =
        hc_request(&g.target, "POST", "/api/publish", g.api_key, body, w.len, g.timeout_ms, &r);
    free(body);
    reply_http(id, "publish", rc, &r);
    free(r.body);
}

static void tools_call(struct span id, const char *json, const jsmntok_t *toks, int n, int params)
{
    if (params < 0 || toks[params].type != JSMN_OBJECT) {
        reply_error(id, E_PARAMS, "params (an object with name and arguments) is required");
        return;
    }
    int ni = json_obj_get(json, toks, n, params, "name");
    int ai = json_obj_get(json, toks, n, params, "arguments");
    if (ni < 0 || toks[ni].type != JSMN_STRING) {
        reply_error(id, E_PARAMS, "params.name (a string) is required");
        return;
    }
    if (ai >= 0 && toks[ai].type != JSMN_OBJECT &&
        !(toks[ai].type == JSMN_PRIMITIVE && json[toks[ai].start] == 'n')) {
        reply_error(id, E_PARAMS, "params.arguments must be an object");
        return;
    }
    struct args a = {json, toks, n, ai >= 0 && toks[ai].type == JSMN_OBJECT ? ai : -1};
    struct span name = json_tok_span(json, &toks[ni]);
    static const char *const none[] = {NULL};
    const char *path = NULL, *what = NULL, *key = g.api_key;
    if (span_eq_lit(name, "websocket_list_rooms")) {
        tool_list_rooms(id, &a);
        return;
    }
    if (span_eq_lit(name, "websocket_broadcast_test_event")) {
        tool_broadcast(id, &a);
        return;
    }
    if (span_eq_lit(name, "websocket_health_check"))
        path = "/health", what = "health check", key = g.metrics_key;
    else if (span_eq_lit(name, "websocket_get_status"))
        path = "/api/status", what = "status";
    else if (span_eq_lit(name, "websocket_get_metrics"))
        path = "/metrics", what = "metrics", key = g.metrics_key;
    if (!path) {
        char msg[400];
        snprintf(msg, sizeof(msg), "unknown tool: %.*s", name.len > 300 ? 300 : (int)name.len,
                 name.base);
        reply_error(id, E_PARAMS, msg);
        return;
    }
    if (args_check(&a, none)) {
        reply_error(id, E_PARAMS, "this tool takes no arguments");
        return;
    }
    struct hc_response r;
    int rc = hc_request(&g.target, "GET", path, key, NULL, 0, g.timeout_ms, &r);
    reply_http(id, what, rc, &r);
    free(r.body);
}

static void initialize(struct span id, const char *json, const jsmntok_t *toks, int n, int params)
{
    static const char *const known[] = {"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25",
                                        NULL};
    const char *version = LATEST_PROTOCOL;
    int vi = params >= 0 && toks[params].type == JSMN_OBJECT
                 ? json_obj_get(json, toks, n, params, "protocolVersion")
                 : -1;
    if (vi >= 0 && toks[vi].type == JSMN_STRING) {
        struct span v = json_tok_span(json, &toks[vi]);
        for (const char *const *k = known; *k; k++)
            if (strlen(*k) == v.len && memcmp(*k, v.base, v.len) == 0)
                version = *k;
    }
    char buf[512];
    int len = snprintf(buf, sizeof(buf),
                       "{\"protocolVersion\":\"%s\",\"capabilities\":{\"tools\":{\"listChanged\":"
                       "false}},\"serverInfo\":{\"name\":\"ringcast-mcp\",\"version\":\"%s\"},"
                       "\"instructions\":\"Tools to check and operate a ringcast WebSocket "
                       "broadcast engine through its HTTP API.\"}",
                       version, RINGCAST_VERSION);
    reply_result(id, buf, (size_t)len);
}

/* ---- one message ---- */

static void handle(const char *json, size_t len)
{
    struct span noid = {NULL, 0};
    unsigned ntoks = (unsigned)(len / 2 + 2);
    jsmntok_t *toks = malloc(ntoks * sizeof(*toks));
    if (!toks) {
        reply_error(noid, E_INTERNAL, "out of memory");
        return;
    }
    int n = json_tokenize(json, len, toks, ntoks);
    if (n < 0) {
        reply_error(noid, E_PARSE, "parse error: not valid JSON");
        goto out;
    }
    if (toks[0].type == JSMN_ARRAY) {
        reply_error(noid, E_INVALID_REQUEST, "batches are not supported");
        goto out;
    }
    if (toks[0].type != JSMN_OBJECT) {
        reply_error(noid, E_INVALID_REQUEST, "a request must be a JSON object");
        goto out;
    }
    int ii = json_obj_get(json, toks, n, 0, "id");
    int vi = json_obj_get(json, toks, n, 0, "jsonrpc");
    int mi = json_obj_get(json, toks, n, 0, "method");
    int pi = json_obj_get(json, toks, n, 0, "params");
    struct span id = noid;
    if (ii >= 0) {
        const jsmntok_t *t = &toks[ii];
        bool number = t->type == JSMN_PRIMITIVE &&
                      (json[t->start] == '-' || (json[t->start] >= '0' && json[t->start] <= '9'));
        if (t->type == JSMN_STRING)
            id = (struct span){json + t->start - 1, (size_t)(t->end - t->start) + 2};
        else if (number)
            id = json_tok_span(json, t);
        else {
            reply_error(noid, E_INVALID_REQUEST, "id must be a string or a number");
            goto out;
        }
    }
    if (vi < 0 || !span_eq_lit(json_tok_span(json, &toks[vi]), "2.0") ||
        toks[vi].type != JSMN_STRING) {
        reply_error(id, E_INVALID_REQUEST, "jsonrpc must be \"2.0\"");
        goto out;
    }
    if (mi < 0) {
        /* A response (result or error) to a request of ours: we send none, so ignore it. */
        if (ii < 0 || json_obj_get(json, toks, n, 0, "result") >= 0 ||
            json_obj_get(json, toks, n, 0, "error") >= 0)
            goto out;
        reply_error(id, E_INVALID_REQUEST, "method (a string) is required");
        goto out;
    }
    if (toks[mi].type != JSMN_STRING) {
        reply_error(id, E_INVALID_REQUEST, "method must be a string");
        goto out;
    }
    if (pi >= 0 && toks[pi].type != JSMN_OBJECT && toks[pi].type != JSMN_ARRAY) {
        reply_error(id, E_INVALID_REQUEST, "params must be an object or an array");
        goto out;
    }
    struct span method = json_tok_span(json, &toks[mi]);
    if (ii < 0) { /* a notification: never answered */
        if (span_eq_lit(method, "notifications/initialized"))
            g.initialized = true;
        goto out;
    }
    if (span_eq_lit(method, "initialize"))
        initialize(id, json, toks, n, pi);
    else if (span_eq_lit(method, "ping"))
        reply_result(id, "{}", 2);
    else if (span_eq_lit(method, "tools/list"))
        reply_result(id, TOOLS, sizeof(TOOLS) - 1);
    else if (span_eq_lit(method, "tools/call"))
        tools_call(id, json, toks, n, pi);
    else {
        char msg[400];
        snprintf(msg, sizeof(msg), "method not found: %.*s",
                 method.len > 300 ? 300 : (int)method.len, method.base);
        reply_error(id, E_METHOD, msg);
    }
out:
    free(toks);
}

/* ---- main ---- */

static char *read_key_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return NULL;
    char buf[1024];
    char *s = fgets(buf, sizeof(buf), f) ? strdup(buf) : strdup("");
    fclose(f);
    if (s)
        s[strcspn(s, "\r\n")] = 0;
    return s;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: ringcast-mcp [--url http://HOST:PORT] [--api-key KEY | --api-key-file PATH]\n"
            "                    [--metrics-key KEY] [--timeout-ms MS]\n"
            "An MCP server on stdin/stdout (JSON-RPC 2.0, one message per line) whose tools\n"
            "call a ringcast engine's HTTP API. --url defaults to $RINGCAST_URL or\n"
            "http://127.0.0.1:8080, --api-key to $RINGCAST_API_KEY.\n");
}

int main(int argc, char **argv)
{
    enum { OPT_URL = 1, OPT_KEY, OPT_KEY_FILE, OPT_MKEY, OPT_TIMEOUT, OPT_HELP, OPT_VERSION };
    static const struct option opts[] = {
        {"url", required_argument, NULL, OPT_URL},
        {"api-key", required_argument, NULL, OPT_KEY},
        {"api-key-file", required_argument, NULL, OPT_KEY_FILE},
        {"metrics-key", required_argument, NULL, OPT_MKEY},
        {"timeout-ms", required_argument, NULL, OPT_TIMEOUT},
        {"help", no_argument, NULL, OPT_HELP},
        {"version", no_argument, NULL, OPT_VERSION},
        {NULL, 0, NULL, 0},
    };
    g.url = getenv("RINGCAST_URL") ? getenv("RINGCAST_URL") : "http://127.0.0.1:8080";
    g.api_key = strdup(getenv("RINGCAST_API_KEY") ? getenv("RINGCAST_API_KEY") : "");
    g.metrics_key = strdup("");
    int o;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case OPT_URL: g.url = optarg; break;
        case OPT_KEY:
            free(g.api_key);
            g.api_key = strdup(optarg);
            break;
        case OPT_KEY_FILE:
            free(g.api_key);
            if (!(g.api_key = read_key_file(optarg))) {
                fprintf(stderr, "ringcast-mcp: cannot read %s: %s\n", optarg, strerror(errno));
                return 2;
            }
            break;
        case OPT_MKEY:
            free(g.metrics_key);
            g.metrics_key = strdup(optarg);
            break;
        case OPT_TIMEOUT:
            g.timeout_ms = atoi(optarg);
            if (g.timeout_ms < 1 || g.timeout_ms > 600000) {
                fprintf(stderr, "ringcast-mcp: --timeout-ms must be 1..600000\n");
                return 2;
            }
            break;
        case OPT_HELP: usage(stdout); return 0;
        case OPT_VERSION: printf("ringcast-mcp %s\n", RINGCAST_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc || !g.api_key || !g.metrics_key) {
        usage(stderr);
        return 2;
    }
    if (!hc_parse_url(g.url, &g.target)) {
        fprintf(stderr, "ringcast-mcp: --url must be http://HOST[:PORT][/PATH], not %s\n", g.url);
        return 2;
    }
    char *line = malloc(MCP_MAX_LINE + 1);
    if (!line)
        return 1;
    for (;;) {
        size_t len = 0;
        bool too_long = false;
        int ch;
        while ((ch = getc_unlocked(stdin)) != EOF && ch != '\n') {
            if (len < MCP_MAX_LINE)
                line[len++] = (char)ch;
            else
                too_long = true;
        }
        if (ch == EOF && len == 0)
            break;
        while (len && (line[len - 1] == '\r' || line[len - 1] == ' ' || line[len - 1] == '\t'))
            len--;
        if (too_long)
            reply_error((struct span){NULL, 0}, E_INVALID_REQUEST, "message too large (1 MiB)");
        else if (len)
            handle(line, len);
        if (ch == EOF)
            break;
    }
    free(line);
    free(g.api_key);
    free(g.metrics_key);
    return 0;
}
