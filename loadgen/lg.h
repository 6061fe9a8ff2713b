/* lg.h - ringcast-load's shared types: the scenario, the run's shared state, per-worker
 * counters. Modules: main.c (CLI, orchestration), config.c (options, INI scenarios), conn.c
 * (workers: io_uring connections, receive path), tls_client.c (wss://, shared with ringcast-cli),
 * publish.c (schedules and publish frames), check.c (per-recipient accounting), payload.c (payload
 * format, parsing), hist.c, report.c (table, JSON), html.c (HTML report), gate.c (gates, baseline),
 * sysstat.c (CPU/RSS).
 *
 * Threads: the main thread only orchestrates and prints; each worker owns one io_uring and a
 * fixed share of the connections, and touches only its own connections and counters. What is
 * shared across workers is written with atomics: the phase, the per-room subscriber counts and
 * sequences, and (closed loop only) the per-publish outstanding-delivery counters.
 */
#ifndef RINGCAST_LOADGEN_LG_H
#define RINGCAST_LOADGEN_LG_H

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/resource.h>
#include <time.h>

#include "hist.h"

#define LG_VERSION "0.1.0"

/* Exit statuses: 0 every gate held, 1 a gate failed, 2 usage or connection error. */
#define LG_EXIT_OK    0
#define LG_EXIT_GATE  1
#define LG_EXIT_USAGE 2

/* File descriptors kept free beyond the connections: rings, stdio, report files. */
#define LG_FD_RESERVE 100
/* Connections per source address (127.0.X.Y): far below the ~28k ephemeral ports per
 * (source, destination) pair, so port exhaustion never limits a run. */
#define LG_CONNS_PER_SRC 1000
/* Closed-loop slots per publisher: the largest window one publisher may have. */
#define LG_MAX_WINDOW 256
/* --url given several times: at most this many nodes. */
#define LG_MAX_URLS 16

struct lg_config {
    char url[512];
    char host[256];
    char path[256];
    uint16_t port;
    struct sockaddr_in addr;
    bool tls;          /* wss:// */
    bool tls_insecure; /* --tls-insecure: no certificate or name check */
    char ca_file[512]; /* --ca FILE: trust this CA (PEM); empty: the system's store */
    /* Several nodes (a cluster, docs/cluster.md): --url repeated spreads subscribers round-robin
     * over them; --pub-url puts every publisher on one node (default: the first --url). */
    struct sockaddr_in sub_addrs[LG_MAX_URLS];
    unsigned nurls; /* --url flags given (0: the default URL) */
    struct sockaddr_in pub_addr;
    bool has_pub_url;
    unsigned connections; /* subscribers */
    unsigned nrooms;      /* rooms */
    char **room_names;    /* nrooms names (generated or from the comma list) */
    char room_prefix[64]; /* generated names: PREFIX0, PREFIX1, ... */
    unsigned subs_per_conn;
    unsigned publishers;
    double rate;          /* publishes/s in total; 0 = closed loop */
    unsigned window;      /* closed loop: publishes in flight in total */
    unsigned size;        /* payload bytes */
    uint64_t duration_ns; /* measured period, after the warmup */
    uint64_t warmup_ns;
    uint64_t drain_ns; /* wait for stragglers after the last publish */
    uint64_t connect_timeout_ns;
    double ramp; /* connections/s; 0 = as fast as possible */
    unsigned threads;
    char event_name[64]; /* the publish's data.event */
    bool publish_http;   /* --publish-via http: publishers POST /api/publish (keep-alive) */
    char api_key[256];   /* --api-key, sent with each HTTP publish */
    char json_path[512], html_path[512], baseline_path[512];
    int server_pid; /* 0 = none */
    bool quiet;
    int progress; /* -1 auto (isatty), 0 off, 1 on */
    /* gates; negative = not set */
    int64_t max_p99_ns, max_p999_ns;
    double max_loss; /* deliveries; with loss_pct, percent of expected */
    bool loss_pct;
    double min_deliveries_per_s;
    double max_regression; /* fraction (0.1 = 10 %) */
    bool max_regression_set;
    bool no_integrity_gate;
    int64_t max_refused;  /* refused publishes allowed (default 0) */
    int64_t max_stall_ns; /* gate on the longest gap without a delivery; -1 = none */
    uint64_t stall_ns;    /* a gap longer than this is a stall (counted) */
    bool rooms_listed;    /* --rooms a,b,c: the names go into the JSON */
    unsigned repeat;      /* --repeat N: runs of the scenario, medians gated (1) */
    /* --reconnect-every D[:J] (reconnect.c): each subscriber drops its connection after a
     * uniform random D..D+J of being live, reconnects after a jittered --reconnect-backoff and
     * resumes with since/epoch. 0 = never. */
    uint64_t reconnect_ns, reconnect_jitter_ns, reconnect_backoff_ns;
};

/* The first setup/usage error of the run (printed, and written into the JSON and HTML report
 * that an exit 2 still produces). */
extern char lg_error_msg[1024];
/* Prints "ringcast-load: MSG" on stderr and keeps the first such message in lg_error_msg. */
void lg_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

enum lg_phase {
    LG_PHASE_CONNECT = 0, /* connecting, handshaking, subscribing */
    LG_PHASE_RUN,         /* publishing (warmup, then measured) */
    LG_PHASE_DRAIN,       /* no more publishes; waiting for deliveries */
    LG_PHASE_STOP,
};

struct lg_room {
    const char *name;
    size_t len;
    unsigned publishers;   /* publishers that send to it */
    _Atomic uint32_t subs; /* confirmed subscriptions */
    _Atomic uint64_t seq;  /* last room sequence handed out (payload q) */
    /* --reconnect-every: the lowest server seq of this run's acked publishes to the room (0:
     * none yet). A subscriber that saw no event of the room resumes from it minus one. */
    _Atomic uint64_t first_srv_seq;
};

/* Closed loop: a publish's deliveries still outstanding, indexed by k % LG_MAX_WINDOW. */
struct lg_pubslot {
    _Atomic int32_t remaining;
    _Atomic uint64_t k;
    uint64_t sent_ns;
};

/* One publish, for the whole run: the subscribers it was sent to (its room's confirmed
 * subscriptions at send time) and how many distinct subscribers got it. Loss and excess are
 * judged per publish at the end, so one publish's error reply or excess deliveries can never
 * offset another publish's loss. Receivers on any worker add to `got`. */
struct lg_pubrec {
    _Atomic uint32_t got;
    uint32_t expect;
    _Atomic uint8_t answer; /* LG_ANS_* */
};

enum { LG_ANS_NONE = 0, LG_ANS_ACKED, LG_ANS_REFUSED };

/* Per-publish records are allocated in chunks as a publisher goes: 4096 records (48 KiB). */
#define LG_PUBREC_CHUNK 4096u

struct lg_conn;
struct lg_series;
struct lg_reconnect;

struct lg_publisher {
    unsigned idx;
    struct lg_conn *conn;
    unsigned worker;
    unsigned *rooms; /* rooms it publishes to, round-robin */
    unsigned nrooms;
    unsigned window;    /* closed loop: its share of --window */
    uint64_t k;         /* publishes sent */
    uint64_t scan_from; /* closed loop: oldest k possibly still outstanding */
    uint64_t abandoned; /* closed loop: publishes given up on after the drain timeout */
    uint64_t answered;  /* replies read (acked or refused); only its own worker touches it */
    _Atomic uint64_t completed;
    uint64_t seen_completed; /* closed loop: completed at the last tick, for stalls */
    uint64_t last_completion_ns;
    struct lg_pubslot slots[LG_MAX_WINDOW];
    /* Per-publish records (k = 1, 2, ...): rec[(k-1) / CHUNK][(k-1) % CHUNK]. Chunks are
     * published with a release store before the first publish that uses them. */
    struct lg_pubrec *_Atomic *recs;
    unsigned nchunks;  /* size of recs */
    bool recs_full;    /* it stopped publishing: no record left (reported) */
    unsigned room_pos; /* its index among the publishers of its rooms (per-publisher tracks) */
};

/* The record of publish (p, k), or NULL when k was never sent by this run. */
struct lg_pubrec *lg_pubrec_get(const struct lg_publisher *pub, uint64_t k);

/* Counters one worker owns. The main thread reads them racily for the progress line and
 * exactly after joining the workers. */
struct lg_stats {
    uint64_t conn_attempted, conn_established, conn_failed, conn_ready, disconnects;
    uint64_t expected, delivered, delivered_measured, duplicate, out_of_order, corrupt, misrouted,
        late, foreign, wrong_event, no_room, no_seq;
    uint64_t pub_sent, pub_acked, pub_errors, pub_sent_measured, errors;
    uint64_t pub_sent_in_period; /* sent (actual time) in the measured period: achieved rate */
    uint64_t bytes_in, frames_in, reads; /* reads: recv completions that carried data */
    uint64_t vc_hits, vc_misses;         /* verified-message cache (vcache.h) */
    uint64_t behind_ns_max;
    uint64_t stall_max_ns, stalls; /* gaps without a delivery in the measured period */
    /* --reconnect-every (reconnect.c): drops (rst + clean), resumes answered recovered true or
     * false, deliveries that came in a resume's replay (published while the subscriber was
     * away), and reconnects that failed (counted as disconnects too) */
    uint64_t reconnects, drops_rst, drops_clean, resumes_recovered, resumes_unrecovered, replayed,
        reconnect_failed;
};

/* Refusal reasons (error codes of publish replies), counted per worker. */
#define LG_MAX_REASONS 8
struct lg_reason {
    char code[32];
    uint64_t n;
};

struct lg_worker {
    unsigned id;
    pthread_t thread;
    struct lg_run *run;
    void *priv; /* conn.c's ring state */
    struct lg_conn **conns;
    unsigned nconns;
    struct lg_publisher **pubs;
    unsigned npubs;
    struct lg_stats st;
    struct hist lat, lat_corr, connect, lag;
    struct hist lat_replay;   /* send -> receive of replayed deliveries (reconnect.c) */
    struct lg_series *series; /* per-second figures (series.h); NULL when not allocated */
    struct lg_reconnect *rc;  /* reconnect.c's timers; NULL without --reconnect-every */
    int setup_err;            /* lg_worker_setup's result, valid once setup_done */
    _Atomic int setup_done;
    double cpu_s;    /* this thread's CPU seconds over the measured period */
    char error[256]; /* first connection error, for the message (a publisher's wins) */
    bool error_pub;  /* error is a publisher's: "publisher P: ..." */
    struct lg_reason reasons[LG_MAX_REASONS];
    uint64_t last_delivery_ns; /* for stalls */
};

struct lg_run {
    struct lg_config cfg;
    struct lg_room *rooms;
    struct lg_conn *conns; /* subscribers first, then publishers */
    unsigned nconns;
    struct lg_publisher *pubs;
    struct lg_worker *workers;
    _Atomic int phase;
    uint64_t t0;       /* connect phase start */
    uint64_t t_start;  /* first publish */
    uint64_t warm_end; /* latency recorded from here */
    uint64_t pub_end;  /* last publish */
    uint64_t t_stop;
    /* room name -> index, open addressing */
    int32_t *room_hash;
    unsigned room_hash_mask;
    unsigned pubs_per_room;     /* tracks per (subscriber, room): one per publisher of the room */
    int ring_fds[256];          /* each worker's ring, for waking a publisher's worker */
    struct ssl_ctx_st *tls_ctx; /* wss://: the client context every connection shares */
};

static inline uint64_t lg_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline int lg_phase(struct lg_run *r)
{
    return atomic_load_explicit(&r->phase, memory_order_acquire);
}

/* config.c */
/* Fills cfg from argv (with --scenario FILE applied first, flags overriding it). Returns 0, or
 * LG_EXIT_USAGE after printing why; 3 when --help/--version printed and the caller exits 0. */
int lg_config_parse(struct lg_config *cfg, int argc, char **argv);
/* Parses "5ms", "250us", "1.5s", "2m"; bare numbers are in default_unit_ns. -1 if malformed. */
int64_t lg_parse_duration(const char *s, int64_t default_unit_ns);
void lg_usage(FILE *f);

/* conn.c */
/* Sets up worker w's ring and buffers (called by the worker thread itself). 0 or -errno. */
int lg_worker_setup(struct lg_worker *w);
/* The worker thread: sets up, then runs until the phase is LG_PHASE_STOP. */
void *lg_worker_main(void *arg);
void lg_worker_teardown(struct lg_worker *w);
/* Room index of name, or -1. */
int lg_room_lookup(const struct lg_run *r, const char *name, size_t len);

#endif
