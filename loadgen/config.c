/* config.c - ringcast-load's options: one table serves the command line and INI scenario
 * files (the same names without the dashes), so a scenario can say anything a flag can. The
 * scenario is applied first, then the flags, so flags override it. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lg.h"

/* Defaults, with why. */
#define DEF_URL                  "ws://127.0.0.1:8765/ws" /* the engine's default bind and port */
#define DEF_CONNECTIONS          100
#define DEF_RATE                 100.0 /* publishes/s: the CI reference rate */
#define DEF_WINDOW               8     /* closed loop: enough in flight to keep a fan-out busy */
#define DEF_SIZE                 128   /* bytes: a typical small event */
#define DEF_DURATION_NS          10000000000ll
#define DEF_WARMUP_NS            1000000000ll /* lets caches, TCP windows and the server settle */
#define DEF_DRAIN_NS             2000000000ll /* stragglers later than this count as lost */
#define DEF_CONNECT_TIMEOUT_NS   30000000000ll
#define DEF_RECONNECT_BACKOFF_NS 50000000ll  /* 25-75 ms before a dropped subscriber returns */
#define DEF_STALL_NS             100000000ll /* a gap without deliveries above 100 ms is a stall */

char lg_error_msg[1024];

/* Where an error goes while a scenario file is read: its handler cannot know the line, so the
 * message is kept and printed once, with FILE:LINE, when ini_parse returns. */
static char *ini_msg;
static size_t ini_msg_cap;

void lg_error(const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (ini_msg) {
        if (!ini_msg[0])
            snprintf(ini_msg, ini_msg_cap, "%s", buf);
        return;
    }
    fprintf(stderr, "ringcast-load: %s\n", buf);
    if (!lg_error_msg[0])
        snprintf(lg_error_msg, sizeof(lg_error_msg), "%s", buf);
}

void lg_usage(FILE *f)
{
    fputs("usage: ringcast-load [options]\n"
          "Measures per-recipient broadcast latency, loss, duplicates, order and payload\n"
          "integrity of a ringcast-protocol WebSocket pub/sub server.\n\n"
          "Scenario (also as keys of an INI file given with --scenario; flags override it):\n"
          "  --url URL              ws://HOST:PORT/PATH or wss://HOST:PORT/PATH (" DEF_URL ");\n"
          "                         repeat it for several nodes (same scheme): subscribers are\n"
          "                         spread over them round-robin\n"
          "  --pub-url URL          publishers connect here (default: the first --url)\n"
          "  --ca FILE              wss: trust the CA certificate(s) in FILE (PEM) instead of\n"
          "                         the system's store; the name checked and sent (SNI) is HOST\n"
          "  --tls-insecure         wss: no certificate or host name check (test servers only)\n"
          "  --connections N        subscriber connections (100)\n"
          "  --rooms R|a,b,c        R rooms named PREFIX0..PREFIX(R-1), or a list of names (1)\n"
          "  --room-prefix S        prefix of generated room names (room-)\n"
          "  --subs-per-conn S      rooms each subscriber joins: i*S .. i*S+S-1 mod R (1)\n"
          "  --publishers P         publishing connections, separate from subscribers (1)\n"
          "  --rate X               publishes/s in total, open loop; 0 = closed loop (100)\n"
          "  --window W             closed loop: publishes in flight in total (8)\n"
          "  --size B               payload bytes per publish (128)\n"
          "  --duration D           measured period, after the warmup (10s)\n"
          "  --warmup D             publishing before measuring; no latency recorded (1s)\n"
          "  --drain D              wait for deliveries after the last publish (2s)\n"
          "  --ramp N               connections opened per second; 0 = all at once (0)\n"
          "  --threads T            worker threads, one io_uring each (1)\n"
          "  --event NAME           event name of each publish (bench)\n"
          "  --publish-via ws|http  publishers use WebSocket, or POST /api/publish over one\n"
          "                         keep-alive HTTP connection each, pipelined (ws)\n"
          "  --api-key KEY          the engine's API key, for --publish-via http\n"
          "  --connect-timeout D    give up if setup takes longer (30s)\n"
          "  --reconnect-every D[:J]  each subscriber drops its connection (RST or clean close)\n"
          "                         after a uniform D..D+J live, reconnects and resumes with\n"
          "                         since/epoch; losses, duplicates and order span it (off)\n"
          "  --reconnect-backoff B  wait B/2..3B/2 before reconnecting (50ms)\n"
          "  --scenario FILE        INI file with any of these options\n"
          "Output:\n"
          "  --json FILE            every figure as JSON\n"
          "  --html FILE            self-contained report with latency plots\n"
          "  --quiet                no final table\n"
          "  --progress|--no-progress  live line each second (default: when stderr is a tty)\n"
          "  --server-pid PID       report the server's CPU time and RSS from /proc\n"
          "Gates (exit 1 when one fails; durations take us, ms, s units):\n"
          "  --max-p99 D            p99 latency at most D (e.g. 5ms)\n"
          "  --max-p999 D           p99.9 latency at most D\n"
          "  --max-loss N|X%        lost deliveries at most N (or X percent of expected)\n"
          "  --min-deliveries-per-s N\n"
          "  --baseline FILE.json   a previous --json run to compare with\n"
          "  --max-regression X%    p99 and deliveries/s at most X% worse than the baseline (10%)\n"
          "  --no-integrity-gate    do not fail on duplicates, reordering, corruption, misrouting\n"
          "  --max-refused N        publishes the server may refuse (0)\n"
          "  --repeat N             run the scenario N times; gate every run, and the medians\n"
          "                         against the baseline's (with both runs' spread) (1)\n"
          "  --max-stall D          longest gap without a delivery in the measured period\n"
          "  --stall-threshold D    a gap longer than this counts as a stall (100ms)\n"
          "Exit status: 0 all gates held, 1 a gate failed, 2 usage or connection error,\n"
          "130/143 interrupted by SIGINT/SIGTERM (the reports say \"interrupted\").\n",
          f);
}

int64_t lg_parse_duration(const char *s, int64_t default_unit_ns)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0 || !isfinite(v))
        return -1;
    double unit;
    if (*end == 0)
        unit = (double)default_unit_ns;
    else if (!strcmp(end, "ns"))
        unit = 1;
    else if (!strcmp(end, "us"))
        unit = 1e3;
    else if (!strcmp(end, "ms"))
        unit = 1e6;
    else if (!strcmp(end, "s"))
        unit = 1e9;
    else if (!strcmp(end, "m"))
        unit = 60e9;
    else
        return -1;
    if (unit <= 0 || v * unit > 9e18)
        return -1;
    return (int64_t)llround(v * unit);
}

static int parse_uint(const char *s, unsigned max, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (end == s || *end || errno || v > max || *s == '-')
        return -1;
    *out = (unsigned)v;
    return 0;
}

static int parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !isfinite(v) || v < 0)
        return -1;
    *out = v;
    return 0;
}

static void set_str(char *dst, size_t cap, const char *v)
{
    size_t n = strnlen(v, cap - 1);
    memcpy(dst, v, n);
    dst[n] = 0;
}

static int parse_url(struct lg_config *cfg, const char *url)
{
    set_str(cfg->url, sizeof(cfg->url), url);
    size_t skip;
    if (strncmp(url, "ws://", 5) == 0) {
        skip = 5;
        cfg->tls = false;
    } else if (strncmp(url, "wss://", 6) == 0) {
        skip = 6;
        cfg->tls = true;
    } else {
        lg_error("--url must start with ws:// or wss://");
        return -1;
    }
    const char *h = url + skip;
    const char *slash = strchr(h, '/');
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    char hostport[256];
    if (hl == 0 || hl >= sizeof(hostport))
        return -1;
    memcpy(hostport, h, hl);
    hostport[hl] = 0;
    set_str(cfg->path, sizeof(cfg->path), slash ? slash : "/");
    char *colon = strrchr(hostport, ':');
    unsigned port = cfg->tls ? 443 : 80;
    if (colon) {
        *colon = 0;
        if (parse_uint(colon + 1, 65535, &port) || port == 0)
            return -1;
    }
    cfg->port = (uint16_t)port;
    set_str(cfg->host, sizeof(cfg->host), hostport);
    cfg->addr.sin_family = AF_INET;
    cfg->addr.sin_port = htons(cfg->port);
    if (inet_pton(AF_INET, hostport, &cfg->addr.sin_addr) == 1)
        return 0;
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(hostport, NULL, &hints, &ai) != 0) {
        lg_error("cannot resolve %s", hostport);
        return -1;
    }
    cfg->addr.sin_addr = ((struct sockaddr_in *)ai->ai_addr)->sin_addr;
    freeaddrinfo(ai);
    return 0;
}

static bool room_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 255)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == '"' || s[i] == '\\' || s[i] == 0x7f)
            return false;
    return true;
}

static void free_rooms(struct lg_config *cfg)
{
    for (unsigned i = 0; cfg->room_names && i < cfg->nrooms; i++)
        free(cfg->room_names[i]);
    free(cfg->room_names);
    cfg->room_names = NULL;
}

/* --rooms: a count, or a comma-separated list of names. */
static int parse_rooms(struct lg_config *cfg, const char *v)
{
    unsigned n;
    free_rooms(cfg);
    if (parse_uint(v, 1000000, &n) == 0) {
        cfg->nrooms = n;
        return n ? 0 : -1;
    }
    n = 1;
    for (const char *p = v; *p; p++)
        n += *p == ',';
    cfg->room_names = calloc(n, sizeof(char *));
    if (!cfg->room_names)
        return -1;
    cfg->nrooms = 0;
    const char *p = v;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        while (len && isspace((unsigned char)*p))
            p++, len--;
        while (len && isspace((unsigned char)p[len - 1]))
            len--;
        if (!room_name_ok(p, len)) {
            lg_error("bad room name in --rooms: \"%.*s\"", (int)len, p);
            return -1;
        }
        cfg->room_names[cfg->nrooms++] = strndup(p, len);
        if (!comma)
            break;
        p = comma + 1;
    }
    return 0;
}

static int parse_gate_duration(const char *name, const char *v, int64_t *out)
{
    /* A bare number is refused: "--max-p99 5" could mean 5 s or 5 ms, and a gate that is
     * silently 1000x too loose is worse than an error. */
    int64_t d = lg_parse_duration(v, 0);
    if (d < 0) {
        lg_error("--%s needs a duration with a unit (us, ms, s): %s", name, v);
        return -1;
    }
    *out = d;
    return 0;
}

/* Applies one option by its long name. Returns 0, -1 (bad value: message printed), -2 unknown
 * option, 1 for --help, 2 for --version. */
static int apply(struct lg_config *cfg, const char *name, const char *v)
{
    int64_t d;
    double x;
#define NEED_V                                                                                     \
    do {                                                                                           \
        if (!v)                                                                                    \
            goto missing;                                                                          \
    } while (0)
#define DUR(field)                                                                                 \
    do {                                                                                           \
        NEED_V;                                                                                    \
        if ((d = lg_parse_duration(v, 1000000000)) < 0)                                            \
            goto bad;                                                                              \
        cfg->field = (uint64_t)d;                                                                  \
    } while (0)
#define UINT(field, max)                                                                           \
    do {                                                                                           \
        NEED_V;                                                                                    \
        if (parse_uint(v, max, &cfg->field))                                                       \
            goto bad;                                                                              \
    } while (0)
    if (!strcmp(name, "help"))
        return 1;
    if (!strcmp(name, "version"))
        return 2;
    if (!strcmp(name, "quiet"))
        cfg->quiet = !v || strcmp(v, "false");
    else if (!strcmp(name, "progress"))
        cfg->progress = (!v || strcmp(v, "false")) ? 1 : 0;
    else if (!strcmp(name, "no-progress"))
        cfg->progress = 0;
    else if (!strcmp(name, "no-integrity-gate"))
        cfg->no_integrity_gate = !v || strcmp(v, "false");
    else if (!strcmp(name, "tls-insecure"))
        cfg->tls_insecure = !v || strcmp(v, "false");
    else if (!strcmp(name, "ca")) {
        NEED_V;
        if (!*v || strlen(v) >= sizeof(cfg->ca_file))
            goto bad;
        set_str(cfg->ca_file, sizeof(cfg->ca_file), v);
    } else if (!strcmp(name, "url")) {
        NEED_V;
        if (cfg->nurls >= LG_MAX_URLS) {
            lg_error("--url: at most %d", LG_MAX_URLS);
            goto bad;
        }
        if (cfg->nurls) { /* one more node: the first --url stays the report's */
            struct lg_config tmp = *cfg;
            if (parse_url(&tmp, v))
                goto bad;
            cfg->sub_addrs[cfg->nurls++] = tmp.addr;
        } else {
            if (parse_url(cfg, v))
                goto bad;
            cfg->sub_addrs[cfg->nurls++] = cfg->addr;
        }
    } else if (!strcmp(name, "pub-url")) {
        NEED_V;
        struct lg_config tmp = *cfg;
        if (parse_url(&tmp, v))
            goto bad;
        cfg->pub_addr = tmp.addr;
        cfg->has_pub_url = true;
    } else if (!strcmp(name, "connections"))
        UINT(connections, 10000000);
    else if (!strcmp(name, "rooms")) {
        NEED_V;
        if (parse_rooms(cfg, v))
            goto bad;
        cfg->rooms_listed = cfg->room_names != NULL;
    } else if (!strcmp(name, "room-prefix")) {
        NEED_V;
        if (!room_name_ok(v, strlen(v)) || strlen(v) > 40)
            goto bad;
        set_str(cfg->room_prefix, sizeof(cfg->room_prefix), v);
    } else if (!strcmp(name, "subs-per-conn"))
        UINT(subs_per_conn, 65535);
    else if (!strcmp(name, "publishers"))
        UINT(publishers, 100000);
    else if (!strcmp(name, "rate")) {
        NEED_V;
        if (parse_double(v, &cfg->rate))
            goto bad;
    } else if (!strcmp(name, "window"))
        UINT(window, 1000000);
    else if (!strcmp(name, "size"))
        UINT(size, 16u << 20);
    else if (!strcmp(name, "duration"))
        DUR(duration_ns);
    else if (!strcmp(name, "warmup"))
        DUR(warmup_ns);
    else if (!strcmp(name, "drain"))
        DUR(drain_ns);
    else if (!strcmp(name, "connect-timeout"))
        DUR(connect_timeout_ns);
    else if (!strcmp(name, "ramp")) {
        NEED_V;
        if (parse_double(v, &cfg->ramp))
            goto bad;
    } else if (!strcmp(name, "threads"))
        UINT(threads, 256);
    else if (!strcmp(name, "publish-via")) {
        NEED_V;
        if (strcmp(v, "ws") && strcmp(v, "http"))
            goto bad;
        cfg->publish_http = !strcmp(v, "http");
    } else if (!strcmp(name, "api-key")) {
        NEED_V;
        if (!*v || strlen(v) >= sizeof(cfg->api_key) || strpbrk(v, "\r\n"))
            goto bad;
        set_str(cfg->api_key, sizeof(cfg->api_key), v);
    } else if (!strcmp(name, "event")) {
        NEED_V;
        if (!room_name_ok(v, strlen(v)) || strlen(v) >= sizeof(cfg->event_name))
            goto bad;
        set_str(cfg->event_name, sizeof(cfg->event_name), v);
    } else if (!strcmp(name, "json")) {
        NEED_V;
        set_str(cfg->json_path, sizeof(cfg->json_path), v);
    } else if (!strcmp(name, "html")) {
        NEED_V;
        set_str(cfg->html_path, sizeof(cfg->html_path), v);
    } else if (!strcmp(name, "baseline")) {
        NEED_V;
        set_str(cfg->baseline_path, sizeof(cfg->baseline_path), v);
    } else if (!strcmp(name, "server-pid")) {
        unsigned pid;
        NEED_V;
        if (parse_uint(v, 1u << 30, &pid) || pid == 0)
            goto bad;
        cfg->server_pid = (int)pid;
    } else if (!strcmp(name, "max-p99")) {
        NEED_V;
        if (parse_gate_duration(name, v, &cfg->max_p99_ns))
            return -1;
    } else if (!strcmp(name, "max-p999")) {
        NEED_V;
        if (parse_gate_duration(name, v, &cfg->max_p999_ns))
            return -1;
    } else if (!strcmp(name, "max-loss")) {
        NEED_V;
        char tmp[64];
        set_str(tmp, sizeof(tmp), v);
        size_t n = strlen(tmp);
        cfg->loss_pct = n && tmp[n - 1] == '%';
        if (cfg->loss_pct)
            tmp[n - 1] = 0;
        if (parse_double(tmp, &cfg->max_loss))
            goto bad;
    } else if (!strcmp(name, "min-deliveries-per-s")) {
        NEED_V;
        if (parse_double(v, &cfg->min_deliveries_per_s))
            goto bad;
    } else if (!strcmp(name, "max-refused")) {
        unsigned n;
        NEED_V;
        if (parse_uint(v, UINT32_MAX, &n))
            goto bad;
        cfg->max_refused = n;
    } else if (!strcmp(name, "repeat")) {
        UINT(repeat, 100);
        if (cfg->repeat == 0)
            goto bad;
    } else if (!strcmp(name, "max-stall")) {
        NEED_V;
        if (parse_gate_duration(name, v, &cfg->max_stall_ns))
            return -1;
    } else if (!strcmp(name, "stall-threshold")) {
        NEED_V;
        if (parse_gate_duration(name, v, &d))
            return -1;
        cfg->stall_ns = (uint64_t)d;
    } else if (!strcmp(name, "reconnect-every")) {
        /* D[:J]: every subscriber drops after a uniform D..D+J of being live (0: never). */
        NEED_V;
        char tmp[64];
        set_str(tmp, sizeof(tmp), v);
        char *colon = strchr(tmp, ':');
        int64_t j = 0;
        if (colon) {
            *colon = 0;
            if ((j = lg_parse_duration(colon + 1, 1000000000)) < 0)
                goto bad;
        }
        if ((d = lg_parse_duration(tmp, 1000000000)) < 0 || (d && d < 10000000) ||
            d > 3600 * INT64_C(1000000000) || j > 3600 * INT64_C(1000000000))
            goto bad;
        cfg->reconnect_ns = (uint64_t)d;
        cfg->reconnect_jitter_ns = (uint64_t)j;
    } else if (!strcmp(name, "reconnect-backoff")) {
        NEED_V;
        if ((d = lg_parse_duration(v, 1000000000)) < 0 || d > 60 * INT64_C(1000000000))
            goto bad;
        cfg->reconnect_backoff_ns = (uint64_t)d;
    } else if (!strcmp(name, "max-regression")) {
        cfg->max_regression_set = true;
        NEED_V;
        char tmp[64];
        set_str(tmp, sizeof(tmp), v);
        size_t n = strlen(tmp);
        if (n && tmp[n - 1] == '%')
            tmp[n - 1] = 0;
        if (parse_double(tmp, &x))
            goto bad;
        cfg->max_regression = x / 100.0;
    } else
        return -2;
    return 0;
missing:
    lg_error("--%s needs a value", name);
    return -1;
bad:
    lg_error("bad value for --%s: %s", name, v);
    return -1;
#undef NEED_V
#undef DUR
#undef UINT
}

static const char *const known[] = {"help",
                                    "version",
                                    "quiet",
                                    "progress",
                                    "no-progress",
                                    "no-integrity-gate",
                                    "url",
                                    "tls-insecure",
                                    "ca",
                                    "pub-url",
                                    "connections",
                                    "rooms",
                                    "room-prefix",
                                    "subs-per-conn",
                                    "publishers",
                                    "rate",
                                    "window",
                                    "size",
                                    "duration",
                                    "warmup",
                                    "drain",
                                    "connect-timeout",
                                    "ramp",
                                    "threads",
                                    "event",
                                    "publish-via",
                                    "api-key",
                                    "json",
                                    "html",
                                    "baseline",
                                    "server-pid",
                                    "max-p99",
                                    "max-p999",
                                    "max-loss",
                                    "min-deliveries-per-s",
                                    "max-regression",
                                    "max-refused",
                                    "max-stall",
                                    "stall-threshold",
                                    "scenario",
                                    "repeat",
                                    "reconnect-every",
                                    "reconnect-backoff",
                                    NULL};

static bool is_known(const char *name)
{
    for (int i = 0; known[i]; i++)
        if (!strcmp(name, known[i]))
            return true;
    return false;
}

static bool takes_value(const char *name)
{
    static const char *const flags[] = {"help",         "version",     "quiet",
                                        "progress",     "no-progress", "no-integrity-gate",
                                        "tls-insecure", NULL};
    for (int i = 0; flags[i]; i++)
        if (!strcmp(name, flags[i]))
            return false;
    return true;
}

static int on_ini_line(void *user, const char *section, const char *key, const char *value)
{
    (void)section;
    struct lg_config *cfg = user;
    /* Keys are the long option names; underscores are accepted for dashes (subs_per_conn, as
     * the JSON report and the engine's INI spell them). */
    char name[64];
    size_t n = strnlen(key, sizeof(name) - 1);
    for (size_t i = 0; i < n; i++)
        name[i] = key[i] == '_' ? '-' : key[i];
    name[n] = 0;
    if (!strcmp(name, "scenario") || !strcmp(name, "help") || !strcmp(name, "version")) {
        lg_error("key not allowed in a scenario: %s", key);
        return 0;
    }
    int r = apply(cfg, name, value);
    if (r == -2)
        lg_error("unknown key: %s", key);
    return r == 0;
}

static void defaults(struct lg_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    parse_url(cfg, DEF_URL);
    cfg->connections = DEF_CONNECTIONS;
    cfg->nrooms = 1;
    set_str(cfg->room_prefix, sizeof(cfg->room_prefix), "room-");
    cfg->subs_per_conn = 1;
    cfg->publishers = 1;
    cfg->rate = DEF_RATE;
    cfg->window = DEF_WINDOW;
    cfg->size = DEF_SIZE;
    cfg->duration_ns = DEF_DURATION_NS;
    cfg->warmup_ns = DEF_WARMUP_NS;
    cfg->drain_ns = DEF_DRAIN_NS;
    cfg->connect_timeout_ns = DEF_CONNECT_TIMEOUT_NS;
    cfg->threads = 1;
    set_str(cfg->event_name, sizeof(cfg->event_name), "bench");
    cfg->progress = -1;
    cfg->max_p99_ns = cfg->max_p999_ns = -1;
    cfg->max_loss = -1;
    cfg->min_deliveries_per_s = -1;
    cfg->max_regression = 0.10;
    cfg->max_refused = 0;
    cfg->repeat = 1;
    cfg->max_stall_ns = -1;
    cfg->stall_ns = DEF_STALL_NS;
    cfg->reconnect_backoff_ns = DEF_RECONNECT_BACKOFF_NS;
}

int lg_config_parse(struct lg_config *cfg, int argc, char **argv)
{
    defaults(cfg);
    /* The scenario first, wherever it is on the line, so that every flag overrides it. */
    for (int i = 1; i < argc; i++) {
        const char *file = NULL;
        if (!strcmp(argv[i], "--scenario") && i + 1 < argc)
            file = argv[i + 1];
        else if (!strncmp(argv[i], "--scenario=", 11))
            file = argv[i] + 11;
        if (!file)
            continue;
        char msg[512] = "";
        ini_msg = msg;
        ini_msg_cap = sizeof(msg);
        int r = ini_parse(file, on_ini_line, cfg);
        ini_msg = NULL;
        if (r != 0) {
            if (r < 0)
                lg_error("cannot read scenario %s: %s", file,
                         r == -1 ? strerror(errno) : "out of memory");
            else
                lg_error("%s:%d: %s", file, r, msg[0] ? msg : "not a key = value line");
            return LG_EXIT_USAGE;
        }
    }
    bool cli_url = false;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (strncmp(a, "--", 2) != 0) {
            lg_error("unexpected argument: %s", a);
            return LG_EXIT_USAGE;
        }
        char name[64];
        const char *v = NULL;
        char *eq = strchr(a + 2, '=');
        size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if (n >= sizeof(name)) {
            lg_error("unknown option: %s", a);
            return LG_EXIT_USAGE;
        }
        memcpy(name, a + 2, n);
        name[n] = 0;
        if (!is_known(name)) {
            lg_error("unknown option: %s (see --help)", a);
            return LG_EXIT_USAGE;
        }
        if (eq)
            v = eq + 1;
        else if (takes_value(name)) {
            if (i + 1 >= argc) {
                lg_error("--%s needs a value", name);
                return LG_EXIT_USAGE;
            }
            v = argv[++i];
        }
        if (!strcmp(name, "scenario"))
            continue;
        if (!strcmp(name, "url") && !cli_url) { /* the line's URLs replace the scenario's */
            cfg->nurls = 0;
            cli_url = true;
        }
        int r = apply(cfg, name, v);
        if (r == 1) {
            lg_usage(stdout);
            return 3;
        }
        if (r == 2) {
            printf("ringcast-load %s", LG_VERSION);
            return 3;
        }
        if (r == -2) {
            lg_error("unknown option: %s (see --help)", a);
            return LG_EXIT_USAGE;
        }
        if (r < 0)
            return LG_EXIT_USAGE;
    }
    /* Consistency. */
    if (cfg->subs_per_conn == 0 || cfg->subs_per_conn > cfg->nrooms) {
        lg_error("--subs-per-conn must be 1..rooms (%u)", cfg->nrooms);
        return LG_EXIT_USAGE;
    }
    if ((cfg->ca_file[0] || cfg->tls_insecure) && !cfg->tls) {
        lg_error("--ca and --tls-insecure are for wss:// URLs (--url %s)", cfg->url);
        return LG_EXIT_USAGE;
    }
    if (cfg->ca_file[0] && cfg->tls_insecure) {
        lg_error("--ca and --tls-insecure contradict each other: give one");
        return LG_EXIT_USAGE;
    }
    if (cfg->publish_http && !cfg->api_key[0]) {
        lg_error("--publish-via http needs --api-key (POST /api/publish is keyed)");
        return LG_EXIT_USAGE;
    }
    if (cfg->rate == 0 && cfg->publishers && cfg->window == 0) {
        lg_error("closed loop (--rate 0) needs --window >= 1");
        return LG_EXIT_USAGE;
    }
    if (cfg->max_regression_set && !cfg->baseline_path[0]) {
        lg_error("--max-regression needs --baseline (the run to compare with)");
        return LG_EXIT_USAGE;
    }
    if (cfg->threads == 0)
        cfg->threads = 1;
    if (!cfg->room_names) {
        cfg->room_names = calloc(cfg->nrooms, sizeof(char *));
        if (!cfg->room_names)
            return LG_EXIT_USAGE;
        for (unsigned i = 0; i < cfg->nrooms; i++) {
            char buf[80];
            snprintf(buf, sizeof(buf), "%s%u", cfg->room_prefix, i);
            cfg->room_names[i] = strdup(buf);
        }
    }
    return 0;
}
