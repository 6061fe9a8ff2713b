/* config.h - the engine's configuration: defaults (defaults.h) < config file (INI, --config or
 * RINGCAST_CONFIG) < RINGCAST_* environment < command-line flags.
 *
 * Every option has one name used everywhere: "--max-connections" on the command line,
 * "max-connections" (or "max_connections") in the INI file, RINGCAST_MAX_CONNECTIONS in the
 * environment. Unknown keys and bad values are startup errors that name the key, the value and
 * where it came from.
 */
#ifndef RINGCAST_ENGINE_CONFIG_H
#define RINGCAST_ENGINE_CONFIG_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "log.h"

struct rc_config {
    char bind[256]; /* address or host name */
    uint16_t port;
    unsigned threads; /* resolved: never 0 after config_load */
    unsigned max_connections;
    uint32_t max_message_bytes;
    unsigned max_subscriptions;
    unsigned max_rooms;
    uint64_t max_queue_bytes;
    unsigned rate_limit; /* messages/s, 0 = off */
    unsigned rate_burst;
    unsigned heartbeat_s; /* 0 = no heartbeat */
    unsigned heartbeat_timeout_s;
    unsigned handshake_timeout_s;
    unsigned drain_timeout_s;
    unsigned recv_buffers;     /* provided buffers per worker (power of two) */
    unsigned recv_buffer_size; /* bytes each */
    unsigned ring_entries;
    unsigned http_idle_timeout_s;    /* HTTP API keep-alive: idle (or partial request) limit */
    char api_key[256];               /* empty: the key-protected HTTP endpoints answer 401 */
    char api_key_file[256];          /* read into api_key at load (api_key wins if both) */
    char metrics_key[256];           /* empty: /health and /metrics are open */
    char auth[16];                   /* off, optional or required (auth.h) */
    char jwt_secret_file[256];       /* HS256 secret, read at startup */
    char jwt_secret[256];            /* the secret itself: allowed, with a warning */
    char jwt_public_key[256];        /* PEM: RSA (RS256) or P-256 (ES256) */
    unsigned jwt_leeway_s;           /* clock skew allowed on exp and nbf */
    char allowed_origins[1024];      /* comma-separated (edge.h); empty: any Origin */
    unsigned max_connections_per_ip; /* 0 = off */
    unsigned max_new_connections_per_ip_per_s; /* 0 = off */
    unsigned per_ip_table_size;                /* entries of the per-IP table */
    char tls_cert[256];                        /* PEM chain: wss:// and https:// (tls.h) */
    char tls_key[256];                         /* PEM private key of tls_cert */
    unsigned history_size;                     /* events kept per room (history.h); 0 = none */
    unsigned history_ttl;                      /* seconds an event is kept; 0 = until pushed out */
    char redis[512];                           /* cluster bus URL (cluster.h); empty: single node */
    unsigned redis_optional;    /* 1: Redis unreachable at start means local-only, not exit 2 */
    unsigned redis_timeout_ms;  /* a reply later than this: Redis is down */
    unsigned redis_max_pending; /* publishes queued or in flight to Redis */
    unsigned redis_down_503;    /* 1: /health answers 503 while Redis is down */
    unsigned presence_max;      /* rooms with more members: presence is a count, no events */
    unsigned presence_events;   /* 1: every member gets $presence.join/leave (presence.h) */
    enum log_level log_level;
    char log_file[256];    /* empty: stderr */
    char config_file[256]; /* empty when none */
};

/* Fills cfg from defaults, file, environment and argv (in that order of precedence, the last
 * winning). Returns 0 to run, 1 when --help or --version was printed (exit 0), -1 on an error
 * already printed to stderr (exit 2). */
int config_load(struct rc_config *cfg, int argc, char **argv);

/* SIGHUP: re-reads the same sources config_load read (the same file, the environment as it is
 * now, the same flags) and writes into next a copy of cur in which only the options that are
 * safe to change at run time (rate-limit, rate-burst, max-connections, max-subscriptions,
 * heartbeat-timeout-s, handshake-timeout-s, drain-timeout-s, log-level) take their new values.
 * Logs every change, and warns about changes that need a restart. Returns how many options
 * changed, or -1 on an error (logged; next is untouched). Main thread only. */
int config_reload(const struct rc_config *cur, struct rc_config *next);

/* Calls fn for every option in force, in --help's order: its name, its value as text (NULL for
 * an unset secret; a set one reads "(redacted)") and whether that text is a number. */
typedef void config_each_fn(void *arg, const char *name, const char *value, bool number);
void config_each(const struct rc_config *cfg, config_each_fn *fn, void *arg);

/* Logs the effective configuration at info level, one line. */
void config_log(const struct rc_config *cfg);

#endif
