/* config.c - options from defaults, an INI file (libinih), RINGCAST_* and argv (see config.h).
 *
 * One table describes every option: its name, type, limits, default and help. The command line,
 * the INI file, the environment and --help are all generated from it, so the four can never
 * disagree about what an option is called or what it accepts.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <ini.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
};

struct opt {
    const char *name;
    enum opt_type type;
    size_t offset;
    size_t size; /* of the field: numbers are stored and read at their own width */
    uint64_t min, max;
    const char *unit;
    const char *help;
};

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
    {"bind", OPT_STR, OFF(bind), 0, 0, "address", "IPv4/IPv6 address to listen on"},
    {"port", OPT_PORT, OFF(port), 1, 65535, "port", "TCP port"},
    {"threads", OPT_UINT, OFF(threads), 0, RC_MAX_THREADS, "workers",
     "worker threads, one io_uring ring each, pinned (0 = one per CPU we may run on)"},
    {"max-connections", OPT_UINT, OFF(max_connections), 1, 10000000, "connections",
     "connections across all workers; beyond it the upgrade gets HTTP 503"},
    {"max-message-bytes", OPT_BYTES, OFF(max_message_bytes), 126, 16u << 20, "bytes",
     "largest client message (all fragments); larger closes with 1009"},
    {"max-subscriptions", OPT_UINT, OFF(max_subscriptions), 1, 1000000, "rooms",
     "rooms one connection may join (TOO_MANY_SUBSCRIPTIONS beyond)"},
    {"max-rooms", OPT_UINT, OFF(max_rooms), 1, 100000000, "rooms",
     "rooms with subscribers across all workers (TOO_MANY_ROOMS beyond)"},
    {"max-queue-bytes", OPT_BYTES, OFF(max_queue_bytes), 4096, 1ull << 34, "bytes",
     "bytes queued to one connection before it is closed as a slow consumer (4008)"},
    {"rate-limit", OPT_UINT, OFF(rate_limit), 0, 10000000, "messages/s",
     "client messages per second per connection (token bucket); 0 = off"},
    {"rate-burst", OPT_UINT, OFF(rate_burst), 1, 10000000, "messages",
     "token bucket depth: messages a client may send at once"},
    {"heartbeat-s", OPT_UINT, OFF(heartbeat_s), 0, 86400, "seconds",
     "ping connections silent this long; 0 = never"},
    {"heartbeat-timeout-s", OPT_UINT, OFF(heartbeat_timeout_s), 1, 86400, "seconds",
     "close (4000) a pinged connection that stays silent this long"},
    {"handshake-timeout-s", OPT_UINT, OFF(handshake_timeout_s), 1, 3600, "seconds",
     "time a client has to complete the HTTP upgrade"},
    {"drain-timeout-s", OPT_UINT, OFF(drain_timeout_s), 0, 3600, "seconds",
     "graceful shutdown: time to deliver queued events and close handshakes"},
    {"recv-buffers", OPT_UINT, OFF(recv_buffers), 16, 32768, "buffers",
     "provided receive buffers per worker (a power of two)"},
    {"recv-buffer-size", OPT_BYTES, OFF(recv_buffer_size), 512, 1u << 20, "bytes",
     "size of each provided receive buffer"},
    {"ring-entries", OPT_UINT, OFF(ring_entries), 64, 32768, "entries",
     "submission queue entries per worker ring"},
    {"log-level", OPT_LEVEL, OFF(log_level), 0, 0, "level", "debug, info, warn or error"},
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

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
    c->log_level = LOG_LVL_INFO;
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

/* Applies one value; origin says where it came from ("--port", "file.ini:3", "RINGCAST_PORT")
 * so that the error names the exact place to fix. */
static int apply(struct rc_config *c, const struct opt *o, const char *val, const char *origin)
{
    char *field = (char *)c + o->offset;
    uint64_t v = 0;
    switch (o->type) {
    case OPT_STR:
        if (strlen(val) == 0 || strlen(val) >= o->size) {
            fprintf(stderr, "ringcast: %s: bad %s '%s'\n", origin, o->name, val);
            return -1;
        }
        snprintf(field, o->size, "%s", val);
        return 0;
    case OPT_LEVEL: {
        int lvl = log_level_parse(val);
        if (lvl < 0) {
            fprintf(stderr, "ringcast: %s: log-level '%s' is not debug, info, warn or error\n",
                    origin, val);
            return -1;
        }
        *(enum log_level *)field = (enum log_level)lvl;
        return 0;
    }
    case OPT_UINT:
    case OPT_PORT:
    case OPT_BYTES:
        if (parse_u64(val, o->type == OPT_BYTES, &v) != 0 || v < o->min || v > o->max) {
            fprintf(stderr, "ringcast: %s: %s '%s' is not a number in %llu..%llu (%s)\n", origin,
                    o->name, val, (unsigned long long)o->min, (unsigned long long)o->max, o->unit);
            return -1;
        }
        num_store(field, o->size, v);
        return 0;
    }
    return -1;
}

struct ini_ctx {
    struct rc_config *cfg;
    char error[256]; /* first error; inih tells its line number */
};

/* Debian's libinih is built without INI_HANDLER_LINENO, so the handler cannot see line
 * numbers; it records what went wrong and ini_parse_file returns the line of the first error. */
static int on_ini_key(void *user, const char *section, const char *name, const char *value)
{
    struct ini_ctx *ctx = user;
    if (ctx->error[0])
        return 0;
    if (section[0] && strcmp(section, "ringcast") != 0) {
        snprintf(ctx->error, sizeof(ctx->error), "unknown section [%s] (use [ringcast] or none)",
                 section);
        return 0;
    }
    const struct opt *o = find_opt(name);
    if (!o) {
        snprintf(ctx->error, sizeof(ctx->error), "unknown key '%s' (see ringcast --help)", name);
        return 0;
    }
    char origin[80];
    snprintf(origin, sizeof(origin), "key %s", o->name);
    if (apply(ctx->cfg, o, value, origin) != 0) {
        snprintf(ctx->error, sizeof(ctx->error), "bad value '%s' for %s", value, o->name);
        return 0;
    }
    return 1;
}

static int load_file(struct rc_config *c, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "ringcast: cannot open config file %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct ini_ctx ctx = {.cfg = c};
    int rc = ini_parse_file(f, on_ini_key, &ctx);
    fclose(f);
    if (rc != 0) {
        fprintf(stderr, "ringcast: %s:%d: %s\n", path, rc,
                ctx.error[0] ? ctx.error : "syntax error (expected key = value)");
        return -1;
    }
    snprintf(c->config_file, sizeof(c->config_file), "%s", path);
    return 0;
}

static int load_env(struct rc_config *c)
{
    for (size_t i = 0; i < NOPTS; i++) {
        char env[64] = "RINGCAST_";
        size_t n = strlen(env);
        for (const char *p = opts[i].name; *p && n < sizeof(env) - 1; p++)
            env[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
        env[n] = 0;
        const char *v = getenv(env);
        if (v && apply(c, &opts[i], v, env) != 0)
            return -1;
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
           "4008 slow consumer (reconnect). See docs/configuration.md.\n");
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

int config_load(struct rc_config *c, int argc, char **argv)
{
    set_defaults(c);

    /* getopt_long's table, built from ours: index i is opts[i]; then config/help/version. */
    struct option lopts[NOPTS + 4];
    for (size_t i = 0; i < NOPTS; i++)
        lopts[i] = (struct option){opts[i].name, required_argument, NULL, 1000 + (int)i};
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
    if (file && *file && load_file(c, file) != 0)
        return -1;
    if (load_env(c) != 0)
        return -1;

    /* Pass 2: flags win over file and environment. */
    optind = 1;
    while ((ch = getopt_long(argc, argv, "hc:V", lopts, NULL)) != -1) {
        if (ch >= 1000) {
            const struct opt *o = &opts[ch - 1000];
            char origin[80];
            snprintf(origin, sizeof(origin), "--%s", o->name);
            if (apply(c, o, optarg, origin) != 0)
                return -1;
        }
    }

    if (c->recv_buffers & (c->recv_buffers - 1)) {
        fprintf(stderr, "ringcast: recv-buffers %u is not a power of two\n", c->recv_buffers);
        return -1;
    }
    if (c->threads == 0) {
        c->threads = usable_cpus();
        if (c->threads > RC_MAX_THREADS)
            c->threads = RC_MAX_THREADS;
    }
    log_set_level(c->log_level);
    return 0;
}

void config_log(const struct rc_config *c)
{
    log_info("config: bind=%s port=%u threads=%u max-connections=%u max-message-bytes=%u "
             "max-subscriptions=%u max-queue-bytes=%llu rate-limit=%u/s burst=%u heartbeat=%us "
             "heartbeat-timeout=%us handshake-timeout=%us drain-timeout=%us%s%s",
             c->bind, c->port, c->threads, c->max_connections, c->max_message_bytes,
             c->max_subscriptions, (unsigned long long)c->max_queue_bytes, c->rate_limit,
             c->rate_burst, c->heartbeat_s, c->heartbeat_timeout_s, c->handshake_timeout_s,
             c->drain_timeout_s, c->config_file[0] ? " file=" : "", c->config_file);
}
