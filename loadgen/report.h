/* report.h - a finished run's figures, and everything that turns them into output: the table,
 * the JSON (schema in docs/loadgen.md), the HTML report, the gates, /proc readings. */
#ifndef RINGCAST_LOADGEN_REPORT_H
#define RINGCAST_LOADGEN_REPORT_H

#include <stdbool.h>
#include <stdio.h>

#include "hist.h"
#include "lg.h"

#define LG_MAX_GATES 16

struct lg_gate {
    const char *name;
    double limit, value;
    bool ok;
    bool at_least;    /* value must be >= limit (else <=) */
    const char *unit; /* for messages: "us", "deliveries", "/s", "%" */
};

struct lg_server_stat {
    bool ok;
    double cpu_s; /* utime + stime */
    long rss_kb;  /* VmRSS */
};

struct lg_result {
    struct lg_stats st; /* summed over workers */
    struct hist lat, lat_corr, connect, lag;
    uint64_t lost, abandoned, scheduled;
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

/* sysstat.c */
/* Reads /proc/PID/stat and /proc/PID/status. */
struct lg_server_stat lg_server_stat_read(int pid);
/* This process's CPU seconds (user + system) so far. */
double lg_self_cpu_s(void);

#endif
