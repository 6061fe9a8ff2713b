/* ringcast-cli: subscribe and publish from a terminal (docs/integration.md, README quickstart).
 *
 *   ringcast-cli sub ws://HOST:PORT/ws ROOM [ROOM...] [--since N [--epoch E]]
 *   ringcast-cli pub ws://HOST:PORT/ws ROOM EVENT ['JSON']
 *
 * sub prints every event as one JSON line on stdout, exactly the bytes the server sent, so the
 * output pipes into jq; everything else (subscribed, errors, close codes) goes to stderr. What
 * wscat is for other servers, tuned to ringcast's envelope.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/envelope.h"
#include "proto/json.h"
#include "wsc.h"

/* Exit statuses, documented in the usage text. */
enum {
    EXIT_REFUSED = 1, /* the server answered with an error envelope or closed the connection */
    EXIT_USAGE = 2,
    EXIT_CONNECT = 3, /* no WebSocket: bad URL, lookup, connect, or the upgrade refused */
};

/* How long connecting, and pub's wait for its response, may take by default, in seconds. */
#define DEFAULT_TIMEOUT_S 10

static const char usage[] =
    "usage: ringcast-cli sub URL ROOM [ROOM...] [--since N [--epoch E]] [options]\n"
    "       ringcast-cli pub URL ROOM EVENT ['JSON'] [options]\n"
    "\n"
    "A terminal client for ringcast (docs/protocol.md).\n"
    "\n"
    "  sub   subscribes to each ROOM and prints every event as one JSON line on stdout\n"
    "        (pipe it into jq); 'subscribed' lines, errors and close codes go to stderr.\n"
    "        Ctrl-C (SIGINT) or SIGTERM closes cleanly (1000) and exits 0.\n"
    "  pub   publishes EVENT with payload JSON (default null) to ROOM and prints the\n"
    "        server's response line; an error envelope prints its code and exits 1.\n"
    "\n"
    "URL is ws://HOST[:PORT][/PATH] or wss://HOST[:PORT][/PATH] (port 80, or 443 for\n"
    "wss; path /ws for ringcast); host names are resolved, IPv6 literals go in brackets.\n"
    "wss:// checks the server's certificate against the system's trusted CAs (or --ca)\n"
    "and its name against HOST, which is also sent as SNI.\n"
    "\n"
    "options:\n"
    "  --token T       send 'Authorization: Bearer T' with the upgrade (--auth, docs/security.md)\n"
    "  --since N       sub: resume after seq N (every ROOM; 0 asks for the history there is)\n"
    "  --epoch E       sub: the epoch seq N belongs to (one ROOM only); needs --since\n"
    "  --timeout S     seconds to connect and, for pub, to wait for the response (10)\n"
    "  --ca FILE       wss: trust the CA certificate(s) in FILE (PEM)\n"
    "  --insecure      wss: no certificate or host name check (test servers only)\n"
    "  -h, --help      this text\n"
    "\n"
    "--since/--epoch are sent in the subscribe request (data.since, data.epoch); an engine\n"
    "without room history ignores them and delivers live events only.\n"
    "\n"
    "exit status: 0 success; 1 the server refused (error envelope, or it closed the\n"
    "connection); 2 usage; 3 no connection (bad URL, lookup, connect, TLS handshake,\n"
    "refused upgrade).\n"
    "\n"
    "examples:\n"
    "  ringcast-cli sub ws://127.0.0.1:8765/ws workflow:42 | jq -c .data\n"
    "  ringcast-cli pub ws://127.0.0.1:8765/ws workflow:42 step.done '{\"step\":3}'\n";

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

struct opts {
    const char *cmd;
    const char *url;
    const char *args[64]; /* positional arguments after URL */
    int nargs;
    const char *token;
    const char *since;
    const char *epoch;
    const char *ca;
    bool insecure;
    int timeout_s;
};

static int usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, "ringcast-cli: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(ringcast-cli --help for usage)\n");
    return EXIT_USAGE;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof(*o));
    o->timeout_s = DEFAULT_TIMEOUT_S;
    bool dashdash = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!dashdash && a[0] == '-' && a[1] == '-' && a[2] == 0) {
            dashdash = true;
            continue;
        }
        if (!dashdash && (!strcmp(a, "-h") || !strcmp(a, "--help"))) {
            fputs(usage, stdout);
            exit(0);
        }
        if (!dashdash && !strcmp(a, "--insecure")) {
            o->insecure = true;
            continue;
        }
        if (!dashdash && a[0] == '-' && a[1] == '-') {
            const char **dst = !strcmp(a, "--token")   ? &o->token
                               : !strcmp(a, "--since") ? &o->since
                               : !strcmp(a, "--epoch") ? &o->epoch
                               : !strcmp(a, "--ca")    ? &o->ca
                                                       : NULL;
            bool is_timeout = !strcmp(a, "--timeout");
            if (!dst && !is_timeout)
                return usage_error("unknown option %s", a);
            if (i + 1 >= argc)
                return usage_error("%s needs a value", a);
            const char *v = argv[++i];
            if (is_timeout) {
                char *end;
                long t = strtol(v, &end, 10);
                if (*end || t < 1 || t > 86400)
                    return usage_error("--timeout takes whole seconds, 1-86400, not '%s'", v);
                o->timeout_s = (int)t;
            } else {
                *dst = v;
            }
            continue;
        }
        if (!o->cmd)
            o->cmd = a;
        else if (!o->url)
            o->url = a;
        else if (o->nargs < (int)(sizeof(o->args) / sizeof(o->args[0])))
            o->args[o->nargs++] = a;
        else
            return usage_error("too many arguments (at most 64 after the URL)%s", "");
    }
    if (!o->cmd) {
        fputs(usage, stderr);
        return EXIT_USAGE;
    }
    if (strcmp(o->cmd, "sub") && strcmp(o->cmd, "pub"))
        return usage_error("unknown command '%s': sub or pub", o->cmd);
    if (!o->url)
        return usage_error("%s needs a URL (ws://HOST:PORT/ws)", o->cmd);
    if (!strcmp(o->cmd, "sub")) {
        if (o->nargs < 1)
            return usage_error("sub needs at least one ROOM%s", "");
        if (o->epoch && !o->since)
            return usage_error("--epoch needs --since%s", "");
        if (o->epoch && o->nargs != 1)
            return usage_error("--epoch names one room's stream: give exactly one ROOM%s", "");
        if (o->since) {
            uint64_t v;
            jsmntok_t t = {.type = JSMN_PRIMITIVE, .start = 0, .end = (int)strlen(o->since)};
            if (!json_tok_u64(o->since, &t, &v))
                return usage_error("--since takes an unsigned integer, not '%s'", o->since);
        }
    } else {
        if (o->nargs < 2 || o->nargs > 3)
            return usage_error("pub needs ROOM EVENT ['JSON']%s", "");
        if (o->since || o->epoch)
            return usage_error("--since and --epoch are for sub%s", "");
    }
    return 0;
}

/* Parses a server message; toks is grown to fit. Returns false (and says so) when the server
 * sent something that is not an envelope. */
static bool parse_msg(struct span m, jsmntok_t **toks, size_t *ntoks, struct env_msg *msg)
{
    size_t need = env_max_tokens(m.len);
    if (need > *ntoks) {
        jsmntok_t *nt = realloc(*toks, need * sizeof(**toks));
        if (!nt)
            return false;
        *toks = nt;
        *ntoks = need;
    }
    enum env_err e = env_msg_parse(m.base, m.len, *toks, (unsigned)*ntoks, msg);
    if (e != ENV_OK) {
        fprintf(stderr, "ringcast-cli: the server sent a message that is not an envelope (%s)\n",
                env_err_str(e));
        return false;
    }
    return true;
}

/* The message of an error envelope's data, for printing ("" when absent). */
static struct span error_message(struct span data)
{
    jsmntok_t toks[64];
    int n = json_tokenize(data.base, data.len, toks, 64);
    if (n <= 0)
        return SPAN_LIT("");
    int i = json_obj_get(data.base, toks, n, 0, "message");
    if (i < 0 || toks[i].type != JSMN_STRING)
        return SPAN_LIT("");
    return json_tok_span(data.base, &toks[i]);
}

static void print_close(const struct wsc *c)
{
    fprintf(stderr, "ringcast-cli: the server closed the connection: %u%s%s\n", c->close_code,
            c->close_reason[0] ? " " : "", c->close_reason);
}

/* A receive that ended the session (the server's close, or a transport error): says which on
 * stderr. Returns the exit status. */
static int recv_failed(struct wsc *c, int r)
{
    if (r == WSC_CLOSED)
        print_close(c);
    else
        fprintf(stderr, "ringcast-cli: %s\n", c->err);
    return EXIT_REFUSED;
}

static int connect_or_say(struct wsc *c, const struct opts *o)
{
    struct wsc_url u;
    const char *err;
    memset(c, 0, sizeof(*c));
    c->fd = -1; /* wsc_free must be safe whatever fails first */
    if (wsc_url_parse(o->url, &u, &err)) {
        fprintf(stderr, "ringcast-cli: %s: %s\n", o->url, err);
        return EXIT_CONNECT;
    }
    if ((o->ca || o->insecure) && !u.tls) {
        fprintf(stderr, "ringcast-cli: --ca and --insecure are for wss:// URLs\n");
        return EXIT_USAGE;
    }
    if (o->ca && o->insecure) {
        fprintf(stderr, "ringcast-cli: --ca and --insecure contradict each other: give one\n");
        return EXIT_USAGE;
    }
    if (o->ca && access(o->ca, R_OK) != 0) {
        fprintf(stderr, "ringcast-cli: cannot read --ca %s: %s\n", o->ca, strerror(errno));
        return EXIT_USAGE;
    }
    struct wsc_tls tls = {.ca_file = o->ca, .insecure = o->insecure};
    if (wsc_connect(c, &u, o->token, &tls, o->timeout_s * 1000)) {
        fprintf(stderr, "ringcast-cli: %s\n", c->err);
        return EXIT_CONNECT;
    }
    return 0;
}

/* ---- sub ---- */

static int cmd_sub(const struct opts *o)
{
    struct wsc c;
    int rc = connect_or_say(&c, o);
    if (rc) {
        wsc_free(&c);
        return rc;
    }
    char req[1024];
    for (int i = 0; i < o->nargs; i++) {
        struct jw w;
        jw_init(&w, req, sizeof(req));
        jw_lit(&w, "{\"type\":\"request\",\"event\":\"subscribe\",\"data\":{\"channel\":");
        jw_str(&w, o->args[i], strlen(o->args[i]));
        if (o->since) {
            jw_lit(&w, ",\"since\":");
            jw_raw(&w, o->since, strlen(o->since));
        }
        if (o->epoch) {
            jw_lit(&w, ",\"epoch\":");
            jw_str(&w, o->epoch, strlen(o->epoch));
        }
        jw_lit(&w, "},\"id\":");
        jw_u64(&w, (uint64_t)i);
        jw_lit(&w, "}");
        if (w.overflow) {
            fprintf(stderr, "ringcast-cli: room name too long: %.40s...\n", o->args[i]);
            wsc_close(&c, WS_CLOSE_NORMAL, NULL);
            wsc_free(&c);
            return EXIT_USAGE;
        }
        if (wsc_send_text(&c, req, w.len)) {
            fprintf(stderr, "ringcast-cli: %s\n", c.err);
            wsc_free(&c);
            return EXIT_REFUSED;
        }
    }

    /* SIGINT/SIGTERM stay blocked except inside ppoll, so one that arrives between two reads is
     * not lost: it interrupts the next wait. */
    sigset_t block, waitmask;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, &waitmask);
    sigdelset(&waitmask, SIGINT);
    sigdelset(&waitmask, SIGTERM);

    jsmntok_t *toks = NULL;
    size_t ntoks = 0;
    rc = 0;
    for (;;) {
        struct span m;
        int r = wsc_recv(&c, -1, &waitmask, &m);
        if (r == WSC_INTR) {
            if (!stop_signal)
                continue;
            if (wsc_close(&c, WS_CLOSE_NORMAL, NULL) != WSC_OK)
                fprintf(stderr, "ringcast-cli: the server did not answer the close: %s\n",
                        c.err[0] ? c.err : "timeout");
            break;
        }
        if (r != WSC_OK) {
            rc = recv_failed(&c, r);
            break;
        }
        struct env_msg msg;
        if (!parse_msg(m, &toks, &ntoks, &msg))
            continue;
        if (span_eq_lit(msg.type, "event") && msg.room.base) {
            /* One line per event: the server's JSON never holds a raw newline. */
            if (fwrite(m.base, 1, m.len, stdout) != m.len || putchar('\n') == EOF ||
                fflush(stdout) == EOF) {
                /* The reader went away (jq quit): stop as cleanly as on Ctrl-C. */
                rc = errno == EPIPE ? 0 : EXIT_REFUSED;
                wsc_close(&c, WS_CLOSE_NORMAL, NULL);
                break;
            }
        } else if (span_eq_lit(msg.type, "response") && span_eq_lit(msg.event, "subscribe")) {
            fprintf(stderr, "ringcast-cli: subscribed: %.*s\n", (int)msg.data.len, msg.data.base);
        } else if (span_eq_lit(msg.type, "error")) {
            struct span em = error_message(msg.data);
            int idx = msg.id.len ? atoi(msg.id.base) : -1;
            fprintf(stderr, "ringcast-cli: %s%s%.*s: %.*s\n", idx >= 0 ? "subscribe " : "",
                    idx >= 0 && idx < o->nargs ? o->args[idx] : "", (int)msg.code.len,
                    msg.code.base, (int)em.len, em.base);
            wsc_close(&c, WS_CLOSE_NORMAL, NULL);
            rc = EXIT_REFUSED;
            break;
        }
    }
    free(toks);
    wsc_free(&c);
    return rc;
}

/* ---- pub ---- */

static int cmd_pub(const struct opts *o)
{
    const char *room = o->args[0], *event = o->args[1];
    const char *payload = o->nargs > 2 ? o->args[2] : "null";
    size_t plen = strlen(payload);
    jsmntok_t *toks = malloc(env_max_tokens(plen) * sizeof(*toks));
    if (!toks)
        return EXIT_REFUSED;
    if (json_tokenize(payload, plen, toks, (unsigned)env_max_tokens(plen)) <= 0) {
        free(toks);
        return usage_error("the payload is not valid JSON: %s", payload);
    }
    free(toks);

    size_t cap = plen + strlen(room) * 6 + strlen(event) * 6 + 256;
    char *req = malloc(cap);
    if (!req)
        return EXIT_REFUSED;
    struct jw w;
    jw_init(&w, req, cap);
    jw_lit(&w, "{\"type\":\"request\",\"event\":\"publish\",\"data\":{\"channel\":");
    jw_str(&w, room, strlen(room));
    jw_lit(&w, ",\"event\":");
    jw_str(&w, event, strlen(event));
    jw_lit(&w, ",\"payload\":");
    jw_raw(&w, payload, plen);
    jw_lit(&w, "},\"id\":\"pub\"}");

    struct wsc c;
    int rc = connect_or_say(&c, o);
    if (rc == 0 && wsc_send_text(&c, req, w.len)) {
        fprintf(stderr, "ringcast-cli: %s\n", c.err);
        rc = EXIT_REFUSED;
    }
    free(req);
    if (rc) {
        wsc_free(&c);
        return rc;
    }

    toks = NULL;
    size_t ntoks = 0;
    for (;;) {
        struct span m;
        int r = wsc_recv(&c, o->timeout_s * 1000, NULL, &m);
        if (r == WSC_TIMEOUT) {
            fprintf(stderr, "ringcast-cli: no response to the publish within %d s\n", o->timeout_s);
            wsc_close(&c, WS_CLOSE_NORMAL, NULL);
            rc = EXIT_REFUSED;
            break;
        }
        if (r != WSC_OK) {
            rc = recv_failed(&c, r);
            break;
        }
        struct env_msg msg;
        if (!parse_msg(m, &toks, &ntoks, &msg))
            continue;
        bool ours = span_eq_lit(msg.id, "\"pub\"");
        /* An error without a correlation id answers a request the server could not read. */
        if (!ours && !(span_eq_lit(msg.type, "error") && msg.id.len == 0))
            continue; /* session.created */
        printf("%.*s\n", (int)m.len, m.base);
        fflush(stdout);
        if (span_eq_lit(msg.type, "error")) {
            struct span em = error_message(msg.data);
            fprintf(stderr, "ringcast-cli: publish refused: %.*s: %.*s\n", (int)msg.code.len,
                    msg.code.base, (int)em.len, em.base);
            rc = EXIT_REFUSED;
        }
        wsc_close(&c, WS_CLOSE_NORMAL, NULL);
        break;
    }
    free(toks);
    wsc_free(&c);
    return rc;
}

int main(int argc, char **argv)
{
    struct opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc;
    /* A reader that quits (jq, head) must end us with a message, not SIGPIPE. */
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL); /* no SA_RESTART: the wait must see EINTR */
    sigaction(SIGTERM, &sa, NULL);
    return !strcmp(o.cmd, "sub") ? cmd_sub(&o) : cmd_pub(&o);
}
