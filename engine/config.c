/* config.c - options from defaults, an INI file (libinih), RINGCAST_* and argv (see config.h).
 *
 * One table describes every option: its name, type, limits, default and help. The command line,
 * the INI file, the environment and --help are all generated from it, so the four can never
 * disagree about what an option is called or what it accepts.
 */
#include "config.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdbool.h>
#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster.h"
#include "defaults.h"

#ifndef RINGCAST_VERSION
#define RINGCAST_VERSION "0.1.0"
#endif

enum opt_type {
    OPT_UINT,  /* unsigned, plain number */
    OPT_BYTES, /* uint64, accepts k/M/G suffixes (powers of 1024) */
    OPT_PORT,
    OPT_STR,
    OPT_LEVEL,
    OPT_PATH, /* a string that may be empty */
};

struct opt {
    const char *name;
    enum opt_type type;
    size_t offset;
    size_t size; /* of the field: numbers are stored and read at their own width */
    uint64_t min, max;
    const char *unit;
    const char *help;
    bool runtime; /* SIGHUP may change it: every reader looks it up at the moment of use */
};

/* Options whose values are never logged or shown (logs and /api/status say "(redacted)"). */
static bool is_secret(const struct opt *o)
{
    return strcmp(o->name, "api-key") == 0 || strcmp(o->name, "metrics-key") == 0 ||
           strcmp(o->name, "jwt-secret") == 0 ||
           strcmp(o->name, "redis") == 0; /* the URL may hold a password */
}

/* A field's place and width in struct rc_config. */
#define OFF(f) offsetof(struct rc_config, f), sizeof(((struct rc_config *)0)->f)

/* Numeric fields are uint16_t, unsigned/uint32_t or uint64_t: the table's size says which. */
static void num_store(void *field, size_t size, uint64_t v)
{
    if (size == sizeof(uint16_t))
        *(uint16_t *)field = (uint16_t)v;
    else if (size == sizeof(uint32_t))
        *(uint32_t *)field = (uint32_t)v;
    else
        *(uint64_t *)field = v;
}

static uint64_t num_load(const void *field, size_t size)
{
    if (size == sizeof(uint16_t))
        return *(const uint16_t *)field;
    if (size == sizeof(uint32_t))
        return *(const uint32_t *)field;
    return *(const uint64_t *)field;
}

static const struct opt opts[] = {
    {"bind", OPT_STR, OFF(bind), 0, 0, "address",
     "address or host name to listen on (resolved once at startup)", false},
    {"port", OPT_PORT, OFF(port), 1, 65535, "port", "TCP port", false},
    {"threads", OPT_UINT, OFF(threads), 0, RC_MAX_THREADS, "workers",
     "worker threads, one io_uring ring each, pinned (0 = one per CPU we may run on)", false},
    {"max-connections", OPT_UINT, OFF(max_connections), 1, 10000000, "connections",
     "connections across all workers; beyond it the upgrade gets HTTP 503", true},
    {"max-message-bytes", OPT_BYTES, OFF(max_message_bytes), 126, 16u << 20, "bytes",
     "largest client message (all fragments); larger closes with 1009", false},
    /* Bounds per-connection membership memory (48 B each); test-covered at the limit. */
    {"max-subscriptions", OPT_UINT, OFF(max_subscriptions), 1, RC_MAX_SUBSCRIPTIONS, "rooms",
     "rooms one connection may join (TOO_MANY_SUBSCRIPTIONS beyond)", true},
    {"max-rooms", OPT_UINT, OFF(max_rooms), 1, 100000000, "rooms",
     "room entries across all workers (TOO_MANY_ROOMS beyond)", false},
    {"max-queue-bytes", OPT_BYTES, OFF(max_queue_bytes), 4096, 1ull << 34, "bytes",
     "bytes queued to one connection before it is closed as a slow consumer (4008); at least "
     "twice max-message-bytes",
     false},
    {"rate-limit", OPT_UINT, OFF(rate_limit), 0, 10000000, "messages/s",
     "client messages per second per connection (token bucket); 0 = off", true},
    /* rate_burst * 1000 must fit the 32-bit token count (thousandths of a message). */
    {"rate-burst", OPT_UINT, OFF(rate_burst), 1, RC_MAX_RATE_BURST, "messages",
     "token bucket depth: messages a client may send at once", true},
    {"heartbeat-s", OPT_UINT, OFF(heartbeat_s), 0, 86400, "seconds",
     "ping connections silent this long; 0 = never", false},
    {"heartbeat-timeout-s", OPT_UINT, OFF(heartbeat_timeout_s), 1, 86400, "seconds",
     "close (4000) a pinged connection that stays silent this long", true},
    {"handshake-timeout-s", OPT_UINT, OFF(handshake_timeout_s), 1, 3600, "seconds",
     "time a client has to complete the HTTP upgrade", true},
    {"drain-timeout-s", OPT_UINT, OFF(drain_timeout_s), 0, 3600, "seconds",
     "graceful shutdown: time to deliver queued events and close handshakes", true},
    /* The kernel's buffer rings hold at most 32768 entries. */
    {"recv-buffers", OPT_UINT, OFF(recv_buffers), 16, 32768, "buffers",
     "provided receive buffers per worker (a power of two)", false},
    {"recv-buffer-size", OPT_BYTES, OFF(recv_buffer_size), 512, 1u << 20, "bytes",
     "size of each provided receive buffer", false},
    /* The completion queue is 8x this, and the kernel takes at most 65536 CQ entries. */
    {"ring-entries", OPT_UINT, OFF(ring_entries), 64, RC_MAX_RING_ENTRIES, "entries",
     "submission queue entries per worker ring (completion queue: 8x)", false},
    {"http-idle-timeout-s", OPT_UINT, OFF(http_idle_timeout_s), 1, 3600, "seconds",
     "HTTP API: close a keep-alive connection idle this long (408 if a request is unfinished)",
     true},
    {"history-size", OPT_UINT, OFF(history_size), 0, 1000000, "events",
     "events each room keeps for resume and polling (0 = none)", false},
    {"history-ttl", OPT_UINT, OFF(history_ttl), 0, 31536000, "seconds",
     "drop kept events older than this (0 = keep until history-size newer ones)", false},
    {"presence-max", OPT_UINT, OFF(presence_max), 0, 1000000, "members",
     "presence lists and join/leave events only for rooms with at most this many members", false},
    {"presence-events", OPT_UINT, OFF(presence_events), 0, 1, "0|1",
     "1: every subscriber gets $presence.join/leave events (else only those that ask)", false},
    {"api-key", OPT_PATH, OFF(api_key), 0, 0, "key",
     "HTTP API key for /api/* (X-API-Key or Authorization: Bearer); empty: /api/* answers 401",
     false},
    {"api-key-file", OPT_PATH, OFF(api_key_file), 0, 0, "path",
     "file holding the HTTP API key (first line), read at startup", false},
    {"metrics-key", OPT_PATH, OFF(metrics_key), 0, 0, "key",
     "key required by /health and /metrics (empty: open)", false},
    {"auth", OPT_STR, OFF(auth), 0, 0, "mode",
     "WebSocket upgrades: off (no tokens), optional (a token, if sent, must be valid and "
     "restricts), required (401 without a valid JWT)",
     false},
    {"jwt-secret-file", OPT_PATH, OFF(jwt_secret_file), 0, 0, "path",
     "file holding the HS256 secret (at least 32 bytes; a trailing newline is dropped)", false},
    {"jwt-secret", OPT_PATH, OFF(jwt_secret), 0, 0, "secret",
     "the HS256 secret itself (warned about: visible in the process list; use jwt-secret-file)",
     false},
    {"jwt-public-key", OPT_PATH, OFF(jwt_public_key), 0, 0, "path",
     "PEM public key: RSA (2048+ bits) verifies RS256, EC P-256 verifies ES256", false},
    {"jwt-leeway-s", OPT_UINT, OFF(jwt_leeway_s), 0, 300, "seconds",
     "clock skew tolerated on a token's exp and nbf", false},
    {"allowed-origins", OPT_PATH, OFF(allowed_origins), 0, 0, "list",
     "comma-separated Origins allowed to upgrade (exact, *.example.com, https://*.example.com, "
     "*); others get 403; empty: any",
     true},
    {"max-connections-per-ip", OPT_UINT, OFF(max_connections_per_ip), 0, 10000000, "connections",
     "WebSocket connections from one address (IPv6: one /64); beyond: 429; 0 = off", true},
    {"max-new-connections-per-ip-per-s", OPT_UINT, OFF(max_new_connections_per_ip_per_s), 0,
     10000000, "upgrades/s", "upgrade attempts per second from one address; beyond: 429; 0 = off",
     true},
    {"per-ip-table-size", OPT_UINT, OFF(per_ip_table_size), 256, 16777216, "entries",
     "addresses the per-IP limits track at once (32 B each); a new address beyond it gets 503",
     false},
    {"tls-cert", OPT_PATH, OFF(tls_cert), 0, 0, "path",
     "PEM certificate chain: the port speaks only TLS (wss://, https://); SIGHUP reloads it",
     false},
    {"tls-key", OPT_PATH, OFF(tls_key), 0, 0, "path",
     "PEM private key of tls-cert (read at startup and on SIGHUP)", false},
    {"redis", OPT_PATH, OFF(redis), 0, 0, "url",
     "cluster mode: redis://[[user]:password@]host[:port][/db] or unix:/path; every publish "
     "goes through this Redis and reaches every node (docs/cluster.md)",
     false},
    {"redis-optional", OPT_UINT, OFF(redis_optional), 0, 1, "0|1",
     "1: when Redis is unreachable at startup, run local-only (warned) instead of exiting 2",
     false},
    {"redis-timeout-ms", OPT_UINT, OFF(redis_timeout_ms), 50, 600000, "ms",
     "Redis is down when a reply takes longer than this (publishes then fail UNAVAILABLE)", false},
    {"redis-max-pending", OPT_UINT, OFF(redis_max_pending), 1, 8192, "publishes",
     "publishes queued or in flight to Redis per node; beyond: UNAVAILABLE", false},
    {"redis-down-503", OPT_UINT, OFF(redis_down_503), 0, 1, "0|1",
     "1: /health answers 503 while Redis is down (take the node out of the balancer)", false},
    {"log-level", OPT_LEVEL, OFF(log_level), 0, 0, "level", "debug, info, warn or error", true},
    {"log-file", OPT_PATH, OFF(log_file), 0, 0, "path",
     "append the log to this file instead of stderr (SIGHUP reopens it)", false},
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

/* 0|1 options are flags on the command line: "--redis-optional" is "--redis-optional=1"; the
 * value may still follow as its own word ("--presence-events 1"), like every other option's. */
static bool is_flag(const struct opt *o)
{
    return o->type == OPT_UINT && o->min == 0 && o->max == 1;
}

static int flag_arg(const struct opt *o)
{
    return is_flag(o) ? optional_argument : required_argument;
}

/* The value of the option getopt_long just returned (ch >= 1000): optarg, the next word for a
 * flag followed by "0" or "1" (consumed), or "1" for a bare flag. */
static const char *opt_value(int ch, int argc, char **argv)
{
    if (optarg || !is_flag(&opts[ch - 1000]))
        return optarg;
    if (optind < argc && (strcmp(argv[optind], "0") == 0 || strcmp(argv[optind], "1") == 0))
        return argv[optind++];
    return "1";
}

static void set_defaults(struct rc_config *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->bind, sizeof(c->bind), "%s", RC_DEF_BIND);
    c->port = RC_DEF_PORT;
    c->threads = RC_DEF_THREADS;
    c->max_connections = RC_DEF_MAX_CONNECTIONS;
    c->max_message_bytes = RC_DEF_MAX_MESSAGE_BYTES;
    c->max_subscriptions = RC_DEF_MAX_SUBSCRIPTIONS;
    c->max_queue_bytes = RC_DEF_MAX_QUEUE_BYTES;
    c->max_rooms = RC_DEF_MAX_ROOMS;
    c->rate_limit = RC_DEF_RATE_LIMIT;
    c->rate_burst = RC_DEF_RATE_BURST;
    c->heartbeat_s = RC_DEF_HEARTBEAT_S;
    c->heartbeat_timeout_s = RC_DEF_HEARTBEAT_TIMEOUT_S;
    c->handshake_timeout_s = RC_DEF_HANDSHAKE_TIMEOUT_S;
    c->drain_timeout_s = RC_DEF_DRAIN_TIMEOUT_S;
    c->recv_buffers = RC_DEF_RECV_BUFFERS;
    c->recv_buffer_size = RC_DEF_RECV_BUFFER_SIZE;
    c->ring_entries = RC_DEF_RING_ENTRIES;
    c->http_idle_timeout_s = RC_DEF_HTTP_IDLE_TIMEOUT_S;
    c->history_size = RC_DEF_HISTORY_SIZE;
    c->history_ttl = RC_DEF_HISTORY_TTL;
    c->presence_max = RC_DEF_PRESENCE_MAX;
    c->log_level = LOG_LVL_INFO;
    c->redis_timeout_ms = CLUSTER_DEF_TIMEOUT_MS;
    c->redis_max_pending = CLUSTER_DEF_MAX_PENDING;
    snprintf(c->auth, sizeof(c->auth), "%s", RC_DEF_AUTH);
    c->jwt_leeway_s = RC_DEF_JWT_LEEWAY_S;
    c->per_ip_table_size = RC_DEF_PER_IP_TABLE_SIZE;
}

/* Option names are written with dashes; INI files and the environment may use underscores. */
static const struct opt *find_opt(const char *name)
{
    char norm[64];
    size_t n = strlen(name);
    if (n >= sizeof(norm))
        return NULL;
    for (size_t i = 0; i <= n; i++)
        norm[i] = name[i] == '_' ? '-' : (char)tolower((unsigned char)name[i]);
    for (size_t i = 0; i < NOPTS; i++)
        if (strcmp(opts[i].name, norm) == 0)
            return &opts[i];
    return NULL;
}

static int parse_u64(const char *s, bool suffixes, uint64_t *out)
{
    if (!isdigit((unsigned char)*s))
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    if (suffixes && *end) {
        unsigned shift = 0;
        switch (*end) {
        case 'k':
        case 'K': shift = 10; break;
        case 'm':
        case 'M': shift = 20; break;
        case 'g':
        case 'G': shift = 30; break;
        default: return -1;
        }
        end++;
        if (*end == 'i')
            end++;
        if (*end == 'B' || *end == 'b')
            end++;
        if (v > (ULLONG_MAX >> shift))
            return -1;
        v <<= shift;
    }
    if (*end)
        return -1;
    *out = v;
    return 0;
}

/* Where each option's value came from ("default", "--port", "ringcast.ini:3", "RINGCAST_PORT"),
 * for errors that involve two options. Only the main thread loads configuration. */
static char origins[NOPTS][300];
/* Set while SIGHUP re-reads the configuration: errors then go to the log, not to stderr. */
static bool reloading;

/* One error line: "ringcast: ORIGIN: option 'value' problem" at startup, an ERROR log line
 * (prefixed "reload:") on SIGHUP. */
static void __attribute__((format(printf, 1, 2))) cfg_error(const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (reloading)
        log_error("reload: %s (configuration unchanged)", msg);
    else
        fprintf(stderr, "ringcast: %s\n", msg);
}

/* Applies one value; origin says where it came from ("--port", "file.ini:3", "RINGCAST_PORT")
 * so that the error names the exact place to fix. On error the one-line message is in err. */
static int apply(struct rc_config *c, const struct opt *o, const char *val, const char *origin,
                 char *err, size_t errcap)
{
    char *field = (char *)c + o->offset;
    uint64_t v = 0;
    switch (o->type) {
    case OPT_STR:
    case OPT_PATH:
        if ((o->type == OPT_STR && strlen(val) == 0) || strlen(val) >= o->size) {
            snprintf(err, errcap, "%s: %s '%s' must be 1 to %zu characters", origin, o->name, val,
                     o->size - 1);
            return -1;
        }
        snprintf(field, o->size, "%s", val);
        break;
    case OPT_LEVEL: {
        int lvl = log_level_parse(val);
        if (lvl < 0) {
            snprintf(err, errcap, "%s: log-level '%s' is not debug, info, warn or error", origin,
                     val);
            return -1;
        }
        *(enum log_level *)field = (enum log_level)lvl;
        break;
    }
    case OPT_UINT:
    case OPT_PORT:
    case OPT_BYTES:
        if (parse_u64(val, o->type == OPT_BYTES, &v) != 0 || v < o->min || v > o->max) {
            snprintf(err, errcap, "%s: %s '%s' is not a number in %llu..%llu (%s)", origin, o->name,
                     val, (unsigned long long)o->min, (unsigned long long)o->max, o->unit);
            return -1;
        }
        num_store(field, o->size, v);
        break;
    }
    snprintf(origins[o - opts], sizeof(origins[0]), "%s", origin);
    return 0;
}

struct ini_ctx {
    struct rc_config *cfg;
    FILE *f;
    const char *path;
    int line;        /* lines read so far: the handler runs for the line just read */
    char error[768]; /* first error, with its file:line */
};

/* Debian's libinih is built without INI_HANDLER_LINENO: a reader that counts lines tells the
 * handler where it is. */
static char *ini_read_line(char *str, int num, void *stream)
{
    struct ini_ctx *ctx = stream;
    char *r = fgets(str, num, ctx->f);
    if (r)
        ctx->line++;
    return r;
}

static int on_ini_key(void *user, const char *section, const char *name, const char *value)
{
    struct ini_ctx *ctx = user;
    if (ctx->error[0])
        return 0;
    char origin[300];
    snprintf(origin, sizeof(origin), "%s:%d", ctx->path, ctx->line);
    if (section[0] && strcmp(section, "ringcast") != 0) {
        snprintf(ctx->error, sizeof(ctx->error),
                 "%s: unknown section [%s] (use [ringcast] or none)", origin, section);
        return 0;
    }
    const struct opt *o = find_opt(name);
    if (!o) {
        snprintf(ctx->error, sizeof(ctx->error), "%s: unknown key '%s' (see ringcast --help)",
                 origin, name);
        return 0;
    }
    if (apply(ctx->cfg, o, value, origin, ctx->error, sizeof(ctx->error)) != 0)
        return 0;
    return 1;
}

static int load_file(struct rc_config *c, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        cfg_error("cannot open config file %s: %s", path, strerror(errno));
        return -1;
    }
    struct ini_ctx ctx = {.cfg = c, .f = f, .path = path};
    int rc = ini_parse_stream(ini_read_line, &ctx, on_ini_key, &ctx);
    fclose(f);
    if (rc != 0) {
        if (ctx.error[0])
            cfg_error("%s", ctx.error);
        else if (rc > 0)
            cfg_error("%s:%d: syntax error (expected key = value)", path, rc);
        else
            cfg_error("cannot read config file %s", path);
        return -1;
    }
    snprintf(c->config_file, sizeof(c->config_file), "%s", path);
    return 0;
}

static void env_name(const struct opt *o, char *env, size_t cap)
{
    size_t n = (size_t)snprintf(env, cap, "RINGCAST_");
    for (const char *p = o->name; *p && n < cap - 1; p++)
        env[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    env[n] = 0;
}

/* Edit distance between two short names, for "did you mean". */
static unsigned distance(const char *a, const char *b)
{
    unsigned la = (unsigned)strlen(a), lb = (unsigned)strlen(b);
    if (la > 63 || lb > 63)
        return 99;
    unsigned d[64], prev;
    for (unsigned j = 0; j <= lb; j++)
        d[j] = j;
    for (unsigned i = 1; i <= la; i++) {
        prev = d[0];
        d[0] = i;
        for (unsigned j = 1; j <= lb; j++) {
            unsigned t = d[j];
            unsigned sub = prev + (a[i - 1] != b[j - 1]);
            unsigned del = d[j] + 1, ins = d[j - 1] + 1;
            d[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
            prev = t;
        }
    }
    return d[lb];
}

/* Variables of the project's own scripts (tests/run, bench/demo, the test gates), which start
 * the engine with their environment: not options, and not mistakes. */
static bool tool_variable(const char *name)
{
    static const char *const prefixes[] = {"RINGCAST_BUILD", "RINGCAST_DEMO_", "RINGCAST_GATE_",
                                           "RINGCAST_TEST_"};
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
        if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

/* configuration.md promises that a mistake anywhere is a startup error: a RINGCAST_ variable
 * that names no option is one, with the closest option's variable as a hint. */
static int check_env_names(void)
{
    extern char **environ;
    for (char **e = environ; e && *e; e++) {
        if (strncmp(*e, "RINGCAST_", 9) != 0)
            continue;
        const char *eq = strchr(*e, '=');
        size_t n = eq ? (size_t)(eq - *e) : strlen(*e);
        char name[128];
        if (n >= sizeof(name))
            n = sizeof(name) - 1;
        memcpy(name, *e, n);
        name[n] = 0;
        if (strcmp(name, "RINGCAST_CONFIG") == 0 || tool_variable(name))
            continue;
        const char *best = NULL;
        unsigned best_d = 99;
        bool known = false;
        for (size_t i = 0; i < NOPTS; i++) {
            char env[64];
            env_name(&opts[i], env, sizeof(env));
            if (strcmp(env, name) == 0) {
                known = true;
                break;
            }
            unsigned d = distance(env, name);
            if (d < best_d) {
                best_d = d;
                best = opts[i].name;
            }
        }
        if (known)
            continue;
        if (best && best_d <= 2) {
            char env[64];
            env_name(find_opt(best), env, sizeof(env));
            cfg_error("%s: unknown environment variable (did you mean %s?)", name, env);
        } else {
            cfg_error("%s: unknown environment variable (RINGCAST_<OPTION>, see ringcast --help; "
                      "RINGCAST_CONFIG names a file)",
                      name);
        }
        return -1;
    }
    return 0;
}

static int load_env(struct rc_config *c)
{
    if (check_env_names() != 0)
        return -1;
    for (size_t i = 0; i < NOPTS; i++) {
        char env[64], err[768];
        env_name(&opts[i], env, sizeof(env));
        const char *v = getenv(env);
        if (v && apply(c, &opts[i], v, env, err, sizeof(err)) != 0) {
            cfg_error("%s", err);
            return -1;
        }
    }
    return 0;
}

static void print_help(void)
{
    struct rc_config d;
    set_defaults(&d);
    printf("Usage: ringcast [options]\n"
           "WebSocket pub/sub broadcast server on io_uring: ws://BIND:PORT/ws\n\n"
           "Options (also INI keys in --config FILE, and RINGCAST_<NAME> environment\n"
           "variables; flags override the environment, which overrides the file):\n");
    for (size_t i = 0; i < NOPTS; i++) {
        const struct opt *o = &opts[i];
        const char *field = (const char *)&d + o->offset;
        char def[64];
        switch (o->type) {
        case OPT_STR: snprintf(def, sizeof(def), "%s", field); break;
        case OPT_LEVEL: snprintf(def, sizeof(def), "%s", log_level_name(d.log_level)); break;
        default: snprintf(def, sizeof(def), "%llu", (unsigned long long)num_load(field, o->size));
        }
        printf("  --%-21s %s\n  %-23s   default: %s (%s)\n", o->name, o->help, "", def, o->unit);
    }
    printf("  --%-21s %s\n", "config FILE", "read options from an INI file (RINGCAST_CONFIG)");
    printf("  --%-21s %s\n", "help", "print this help and exit");
    printf("  --%-21s %s\n", "version", "print the version and exit");
    printf("\nByte sizes accept k, M, G suffixes (powers of 1024), e.g. --max-queue-bytes 4M.\n"
           "Close codes: 1001 shutdown, 1008 rate limit, 1009 too big, 4000 heartbeat timeout,\n"
           "4008 slow consumer (reconnect). See docs/configuration.md.\n"
           "Signals: SIGTERM/SIGINT drain and stop (twice: stop now), SIGHUP reopens --log-file\n"
           "and reloads the run-time options, SIGUSR1 logs a status line per worker.\n");
}

/* The CPUs this process may run on (respects taskset and cgroup cpusets). */
static unsigned usable_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0)
            return (unsigned)n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

/* The argv config_load read, kept so that SIGHUP re-reads the same flags. */
static int saved_argc;
static char **saved_argv;

/* Checks between options, after every source is read. */
static int check_combined(struct rc_config *c)
{
    size_t rb = (size_t)(find_opt("recv-buffers") - opts);
    if (c->recv_buffers & (c->recv_buffers - 1)) {
        cfg_error("%s: recv-buffers '%u' is not a power of two (e.g. %u)", origins[rb],
                  c->recv_buffers, 1u << (31 - __builtin_clz(c->recv_buffers)));
        return -1;
    }
    /* A message that fits max-message-bytes becomes an event a little larger (envelope, room
     * name); a queue that cannot hold two of them closes every subscriber of a room on one
     * large publish. */
    size_t mq = (size_t)(find_opt("max-queue-bytes") - opts);
    size_t mm = (size_t)(find_opt("max-message-bytes") - opts);
    if (c->max_queue_bytes < 2 * (uint64_t)c->max_message_bytes) {
        cfg_error("%s: max-queue-bytes '%llu' is less than twice max-message-bytes %u (from %s): "
                  "one large publish would close every subscriber as a slow consumer; use at "
                  "least %llu",
                  origins[mq], (unsigned long long)c->max_queue_bytes, c->max_message_bytes,
                  origins[mm], 2 * (unsigned long long)c->max_message_bytes);
        return -1;
    }
    if (!c->tls_cert[0] != !c->tls_key[0]) {
        cfg_error("tls-cert and tls-key go together: %s is set, %s is not",
                  c->tls_cert[0] ? "tls-cert" : "tls-key", c->tls_cert[0] ? "tls-key" : "tls-cert");
        return -1;
    }
    return 0;
}

/* Reads every source into c; shared by config_load and config_reload. */
/* --api-key-file: the key is the file's first line (a trailing CR/LF dropped), so a secret
 * never has to appear in argv or the environment. An explicit --api-key wins. */
static int load_key_file(struct rc_config *c)
{
    if (!c->api_key_file[0] || c->api_key[0])
        return 0;
    FILE *f = fopen(c->api_key_file, "r");
    if (!f) {
        cfg_error("cannot open api-key-file %s: %s", c->api_key_file, strerror(errno));
        return -1;
    }
    char line[sizeof(c->api_key) + 2];
    bool ok = fgets(line, sizeof(line), f) != NULL;
    fclose(f);
    size_t n = ok ? strcspn(line, "\r\n") : 0;
    if (!n || n >= sizeof(c->api_key)) {
        cfg_error("api-key-file %s: the first line must hold a key of 1 to %zu characters",
                  c->api_key_file, sizeof(c->api_key) - 1);
        return -1;
    }
    memcpy(c->api_key, line, n);
    c->api_key[n] = 0;
    return 0;
}

static int load_all(struct rc_config *c, int argc, char **argv, const char *file)
{
    set_defaults(c);
    for (size_t i = 0; i < NOPTS; i++)
        snprintf(origins[i], sizeof(origins[i]), "default");
    if (file && *file && load_file(c, file) != 0)
        return -1;
    if (load_env(c) != 0)
        return -1;

    /* getopt_long's table, built from ours: index i is opts[i]; then config/help/version. */
    struct option lopts[NOPTS + 4];
    for (size_t i = 0; i < NOPTS; i++)
        lopts[i] = (struct option){opts[i].name, flag_arg(&opts[i]), NULL, 1000 + (int)i};
    lopts[NOPTS] = (struct option){"config", required_argument, NULL, 'c'};
    lopts[NOPTS + 1] = (struct option){"help", no_argument, NULL, 'h'};
    lopts[NOPTS + 2] = (struct option){"version", no_argument, NULL, 'V'};
    lopts[NOPTS + 3] = (struct option){NULL, 0, NULL, 0};
    /* Flags win over file and environment. */
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "hc:V", lopts, NULL)) != -1) {
        if (ch >= 1000) {
            const struct opt *o = &opts[ch - 1000];
            char origin[80], err[768];
            snprintf(origin, sizeof(origin), "--%s", o->name);
            if (apply(c, o, opt_value(ch, argc, argv), origin, err, sizeof(err)) != 0) {
                cfg_error("%s", err);
                return -1;
            }
        }
    }
    if (check_combined(c) != 0 || load_key_file(c) != 0)
        return -1;
    unsigned cpus = usable_cpus();
    if (c->threads == 0) {
        c->threads = cpus;
        if (c->threads > RC_MAX_THREADS)
            c->threads = RC_MAX_THREADS;
    } else if (c->threads > cpus && !reloading) {
        size_t th = (size_t)(find_opt("threads") - opts);
        log_warn("%s: threads %u is more than the %u CPU%s this process may run on: workers "
                 "will share cores and preempt each other",
                 origins[th], c->threads, cpus, cpus == 1 ? "" : "s");
    }
    return 0;
}

int config_load(struct rc_config *c, int argc, char **argv)
{
    /* getopt_long's table, built from ours: index i is opts[i]; then config/help/version. */
    struct option lopts[NOPTS + 4];
    for (size_t i = 0; i < NOPTS; i++)
        lopts[i] = (struct option){opts[i].name, flag_arg(&opts[i]), NULL, 1000 + (int)i};
    lopts[NOPTS] = (struct option){"config", required_argument, NULL, 'c'};
    lopts[NOPTS + 1] = (struct option){"help", no_argument, NULL, 'h'};
    lopts[NOPTS + 2] = (struct option){"version", no_argument, NULL, 'V'};
    lopts[NOPTS + 3] = (struct option){NULL, 0, NULL, 0};

    /* Pass 1: find --config, --help, --version and reject unknown flags early. */
    const char *file = getenv("RINGCAST_CONFIG");
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "hc:V", lopts, NULL)) != -1) {
        if (ch == 'h') {
            print_help();
            return 1;
        }
        if (ch == 'V') {
            printf("ringcast %s\n", RINGCAST_VERSION);
            return 1;
        }
        if (ch == 'c')
            file = optarg;
        if (ch >= 1000)
            (void)opt_value(ch, argc, argv); /* a flag's "0"/"1" word is not a stray argument */
        if (ch == '?' || ch == ':') {
            if (optopt >= 1000 || ch == ':')
                fprintf(stderr, "ringcast: %s needs a value (see --help)\n", argv[optind - 1]);
            else
                fprintf(stderr, "ringcast: unknown option '%s' (see --help)\n", argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "ringcast: unexpected argument '%s' (see --help)\n", argv[optind]);
        return -1;
    }
    saved_argc = argc;
    saved_argv = argv;
    if (load_all(c, argc, argv, file) != 0)
        return -1;
    log_set_level(c->log_level);
    return 0;
}

int config_reload(const struct rc_config *cur, struct rc_config *next)
{
    struct rc_config fresh;
    reloading = true;
    int r = load_all(&fresh, saved_argc, saved_argv, cur->config_file);
    reloading = false;
    if (r != 0)
        return -1;
    *next = *cur;
    int changed = 0;
    for (size_t i = 0; i < NOPTS; i++) {
        const struct opt *o = &opts[i];
        const char *a = (const char *)cur + o->offset, *b = (const char *)&fresh + o->offset;
        char was[64], now[64];
        if (o->type == OPT_STR || o->type == OPT_PATH) {
            if (strcmp(a, b) == 0)
                continue;
            snprintf(was, sizeof(was), "%s", is_secret(o) ? "(redacted)" : a);
            snprintf(now, sizeof(now), "%s", is_secret(o) ? "(a new value)" : b);
        } else if (o->type == OPT_LEVEL) {
            if (*(const enum log_level *)a == *(const enum log_level *)b)
                continue;
            snprintf(was, sizeof(was), "%s", log_level_name(*(const enum log_level *)a));
            snprintf(now, sizeof(now), "%s", log_level_name(*(const enum log_level *)b));
        } else {
            uint64_t va = num_load(a, o->size), vb = num_load(b, o->size);
            if (va == vb)
                continue;
            snprintf(was, sizeof(was), "%llu", (unsigned long long)va);
            snprintf(now, sizeof(now), "%llu", (unsigned long long)vb);
        }
        if (o->runtime) {
            memcpy((char *)next + o->offset, b, o->size);
            log_info("reload: %s %s -> %s (from %s)", o->name, was, now, origins[i]);
            changed++;
        } else {
            log_warn("reload: %s %s -> %s (from %s) needs a restart; keeping %s", o->name, was, now,
                     origins[i], was);
        }
    }
    if (!changed)
        log_info("reload: no run-time option changed");
    return changed;
}

void config_each(const struct rc_config *c, config_each_fn *fn, void *arg)
{
    for (size_t i = 0; i < NOPTS; i++) {
        const struct opt *o = &opts[i];
        const char *p = (const char *)c + o->offset;
        char num[24];
        if (o->type == OPT_STR || o->type == OPT_PATH) {
            if (is_secret(o))
                fn(arg, o->name, *p ? "(redacted)" : NULL, false);
            else
                fn(arg, o->name, p, false);
        } else if (o->type == OPT_LEVEL) {
            fn(arg, o->name, log_level_name(*(const enum log_level *)p), false);
        } else {
            snprintf(num, sizeof(num), "%llu", (unsigned long long)num_load(p, o->size));
            fn(arg, o->name, num, true);
        }
    }
}

void config_log(const struct rc_config *c)
{
    log_info("config: bind=%s port=%u threads=%u max-connections=%u max-message-bytes=%u "
             "max-subscriptions=%u max-queue-bytes=%llu rate-limit=%u/s burst=%u heartbeat=%us "
             "heartbeat-timeout=%us handshake-timeout=%us drain-timeout=%us%s%s%s%s%s%s",
             c->bind, c->port, c->threads, c->max_connections, c->max_message_bytes,
             c->max_subscriptions, (unsigned long long)c->max_queue_bytes, c->rate_limit,
             c->rate_burst, c->heartbeat_s, c->heartbeat_timeout_s, c->handshake_timeout_s,
             c->drain_timeout_s, c->config_file[0] ? " file=" : "", c->config_file,
             c->log_file[0] ? " log-file=" : "", c->log_file, c->tls_cert[0] ? " tls-cert=" : "",
             c->tls_cert);
}
