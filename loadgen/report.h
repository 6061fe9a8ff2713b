/* report.h - a finished run's figures, and everything that turns them into output: the table,
 * the JSON (schema in docs/loadgen.md), the HTML report, the gates, /proc readings. */
#ifndef RINGCAST_LOADGEN_REPORT_H
#define RINGCAST_LOADGEN_REPORT_H

#include <stdbool.h>
#include <stdio.h>

#include "hist.h"
#include "lg.h"

#define LG_MAX_GATES 24

struct lg_gate {
    const char *name;
    double limit, value;
    bool ok;
    bool at_least;    /* value must be >= limit (else <=) */
    const char *unit; /* for messages: "us", "deliveries", "/s", "%" */
    char note[256];   /* why it failed when the value alone does not say (no samples, ...) */
};

struct lg_server_stat {
    bool ok;
    double cpu_s; /* utime + stime */
    long rss_kb;  /* VmRSS */
};

/* A baseline's figures: medians over its runs (one run: the run's own) and their spread, the
 * half range in percent of the median (0 for one run). */
struct lg_baseline {
    bool have;
    double p99_us, dps, p99_spread_pct, dps_spread_pct;
    unsigned runs;
};

struct lg_result {
    struct lg_stats st; /* summed over workers */
    struct hist lat, lat_corr, connect, lag;
    uint64_t lost, abandoned, scheduled;
    uint64_t excess;       /* deliveries beyond a publish's subscribers (or of a refused one) */
    uint64_t unsent;       /* open loop: scheduled publishes never sent */
    uint64_t unanswered;   /* publishes with neither a response nor an error after the drain */
    bool lagging;          /* open loop: the publishers' lag matters to the figures (lg_lag_eval) */
    double achieved_per_s; /* open loop: publishes actually sent in the measured period / s */
    double target_per_s;   /* --rate */
    double rate_short_pct; /* how far achieved_per_s is below --rate, % (negative: above) */
    struct hist lat_replay;   /* --reconnect-every: send -> receive of replayed deliveries */
    struct lg_series *series; /* per-second figures (series.h), merged; NULL if none */
    struct lg_reason reasons[LG_MAX_REASONS]; /* refusals by error code */
    bool interrupted;                         /* SIGINT/SIGTERM ended the run early */
    int signal;
    double stall_max_ms;     /* longest gap without a delivery in the measured period */
    uint64_t stalls;         /* gaps longer than --stall-threshold */
    bool recs_full;          /* a publisher ran out of per-publish records and stopped */
    struct lg_baseline base; /* --baseline, read before the run */
    double measured_s, deliveries_per_s, publishes_per_s, acked_per_s, connect_rate;
    bool behind_schedule;
    double cpu_pct, max_thread_pct;
    bool saturated;
    /* --server-pid */
    bool server;
    double server_cpu_s, server_cpu_us_per_1000;
    double server_rss_per_conn; /* RSS growth since before connecting, per connection; NaN
                                 * when RSS fell (a reused server handing memory back) */
    long server_rss_kb;
    /* gates */
    struct lg_gate gates[LG_MAX_GATES];
    unsigned ngates;
    bool ok;
    char gate_error[1024]; /* baseline unreadable, ... */
};

/* A publisher lag matters to the figures when the achieved rate is more than
 * LG_RATE_SHORT_PCT below the target, or when the lag p99 is above 1 ms and above
 * LG_LAG_FRACTION of the latency p99 (the corrected latency is then mostly the publisher's own
 * delay). Sets res->lagging, achieved_per_s and rate_short_pct. */
#define LG_RATE_SHORT_PCT 3.0
#define LG_LAG_FRACTION   1.0
void lg_lag_eval(const struct lg_config *cfg, struct lg_result *res);
/* The warning's text for a lagging or behind-schedule run, into buf. */
const char *lg_lag_warning(const struct lg_result *res, char *buf, size_t size);

/* report.c */
void lg_report_table(FILE *f, const struct lg_run *run, const struct lg_result *res);
/* "1027 B/conn", or "n/a per conn" when the growth is not measurable; into buf. */
const char *lg_rss_per_conn_str(const struct lg_result *res, char *buf, size_t size);
/* Writes the JSON report. Returns 0 or -errno. */
int lg_report_json(const char *path, const struct lg_run *run, const struct lg_result *res);

/* html.c: the self-contained HTML report. Returns 0 or -errno. */
int lg_report_html(const char *path, const struct lg_run *run, const struct lg_result *res);

/* gate.c: evaluates every gate the configuration asks for into res->gates and res->ok. */
void lg_gates_eval(const struct lg_config *cfg, struct lg_result *res);
/* Reads and checks --baseline before the run: it must be a ringcast-load report of a run that
 * passed, was not interrupted, measured something, and ran this scenario. Fills res->base_*.
 * Returns 0, or -1 with the reason in err. */
int lg_baseline_load(const struct lg_config *cfg, struct lg_result *res, char *err, size_t cap);
/* Adds the two regression gates for a run (or the medians of --repeat runs: p99 in us and
 * deliveries/s with their spreads, over `runs` runs) against res->base. A regression fails
 * when it exceeds --max-regression plus the baseline's own spread. */
void lg_regression_gates(const struct lg_config *cfg, struct lg_result *res, double p99_us,
                         double p99_spread, double dps, double dps_spread, unsigned runs);
/* repeat.c: --repeat N: runs the scenario N times (child processes of this binary), gates
 * every run, and the medians against the baseline; writes the combined report. Returns the
 * exit status. */
int lg_repeat_main(const struct lg_config *cfg, struct lg_result *res, int argc, char **argv);

/* The report written when the run could not be made (exit 2): the scenario and the error. */
int lg_report_json_error(const char *path, const struct lg_config *cfg, const char *error);
int lg_report_html_error(const char *path, const struct lg_config *cfg, const char *error);

/* sysstat.c */
/* Reads /proc/PID/stat and /proc/PID/status. */
struct lg_server_stat lg_server_stat_read(int pid);
/* This process's CPU seconds (user + system) so far. */
double lg_self_cpu_s(void);

#endif
