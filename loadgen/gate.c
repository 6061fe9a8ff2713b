/* gate.c - the pass/fail gates: absolute limits from the flags, integrity (on unless
 * --no-integrity-gate), and regressions against a baseline JSON from an earlier run. A gate
 * is only added when asked for, so `gates` in the JSON lists exactly what was checked. */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/json.h"

#include "report.h"

static void add(struct lg_result *res, const char *name, double limit, double value, bool at_least,
                const char *unit)
{
    if (res->ngates >= LG_MAX_GATES)
        return;
    struct lg_gate *g = &res->gates[res->ngates++];
    g->name = name;
    g->limit = limit;
    g->value = value;
    g->at_least = at_least;
    g->unit = unit;
    g->ok = at_least ? value >= limit : value <= limit;
}

/* Reads a number at a path of object keys ("latency_us", "p99") from a JSON document. */
static bool json_number_at(const char *json, size_t len, jsmntok_t *toks, int ntoks, const char *k1,
                           const char *k2, double *out)
{
    int v = json_obj_get(json, toks, ntoks, 0, k1);
    if (v < 0 || toks[v].type != JSMN_OBJECT)
        return false;
    v = json_obj_get(json, toks, ntoks, v, k2);
    if (v < 0 || toks[v].type != JSMN_PRIMITIVE)
        return false;
    char buf[64];
    size_t n = (size_t)(toks[v].end - toks[v].start);
    if (n == 0 || n >= sizeof(buf) || (size_t)toks[v].end > len)
        return false;
    memcpy(buf, json + toks[v].start, n);
    buf[n] = 0;
    char *end;
    *out = strtod(buf, &end);
    return *end == 0;
}

/* A number at scenario.KEY (or its absence) in the baseline. */
static bool scenario_num(const char *json, size_t len, jsmntok_t *toks, int nt, const char *key,
                         double *out)
{
    return json_number_at(json, len, toks, nt, "scenario", key, out);
}

static bool bool_at(const char *json, jsmntok_t *toks, int nt, const char *key, bool *out)
{
    int v = json_obj_get(json, toks, nt, 0, key);
    if (v < 0 || toks[v].type != JSMN_PRIMITIVE)
        return false;
    *out = json[toks[v].start] == 't';
    return true;
}

int lg_baseline_load(const struct lg_config *cfg, struct lg_result *res, char *err, size_t cap)
{
    const char *path = cfg->baseline_path;
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, cap, "cannot read baseline %s: %s", path, strerror(errno));
        return -1;
    }
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    enum { NT = 4096 };
    jsmntok_t *toks = malloc(NT * sizeof(*toks));
    if (!toks) {
        snprintf(err, cap, "out of memory reading baseline %s", path);
        return -1;
    }
    int nt = json_tokenize(buf, n, toks, NT);
    int ret = -1;
    double p99, dps, count;
    bool ok = false, interrupted = false;
    int tool = nt > 0 && toks[0].type == JSMN_OBJECT ? json_obj_get(buf, toks, nt, 0, "tool") : -1;
    if (tool < 0 || !span_eq_lit(json_tok_span(buf, &toks[tool]), "ringcast-load") ||
        !json_number_at(buf, n, toks, nt, "latency_us", "p99", &p99) ||
        !json_number_at(buf, n, toks, nt, "latency_us", "count", &count) ||
        !json_number_at(buf, n, toks, nt, "deliveries", "per_s", &dps) ||
        !bool_at(buf, toks, nt, "ok", &ok)) {
        snprintf(err, cap, "baseline %s is not a ringcast-load --json report", path);
        goto out;
    }
    bool_at(buf, toks, nt, "interrupted", &interrupted);
    if (interrupted) {
        snprintf(err, cap, "baseline %s is from an interrupted run: refusing to compare with it",
                 path);
        goto out;
    }
    if (!ok) {
        snprintf(err, cap,
                 "baseline %s is from a run that failed its gates: refusing to compare "
                 "with it",
                 path);
        goto out;
    }
    if (count <= 0 || p99 <= 0 || dps <= 0) {
        snprintf(err, cap,
                 "baseline %s measured nothing (%.0f latency samples, p99 %.6g us, %.6g "
                 "deliveries/s): a regression against it would mean nothing",
                 path, count, p99, dps);
        goto out;
    }
    /* The scenario must be the same: a regression against another load is no regression. */
    struct {
        const char *key;
        double want;
    } keys[] = {
        {"connections", cfg->connections},
        {"rooms", cfg->nrooms},
        {"subs_per_conn", cfg->subs_per_conn},
        {"publishers", cfg->publishers},
        {"rate", cfg->rate},
        {"size", cfg->size},
        {"window", cfg->rate > 0 ? -1.0 : (double)cfg->window},
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        double have;
        if (keys[i].want < 0)
            continue;
        if (!scenario_num(buf, n, toks, nt, keys[i].key, &have)) {
            snprintf(err, cap, "baseline %s has no scenario.%s", path, keys[i].key);
            goto out;
        }
        if (have != keys[i].want) {
            snprintf(err, cap,
                     "baseline %s ran another scenario: %s %.6g there, %.6g here; compare only "
                     "runs of the same scenario",
                     path, keys[i].key, have, keys[i].want);
            goto out;
        }
    }
    res->base.have = true;
    res->base.p99_us = p99;
    res->base.dps = dps;
    res->base.runs = 1;
    /* A --repeat baseline: its medians are above, and its spread widens the limits. */
    double runs;
    if (json_number_at(buf, n, toks, nt, "repeat", "runs", &runs) && runs >= 1) {
        res->base.runs = (unsigned)runs;
        json_number_at(buf, n, toks, nt, "repeat", "p99_spread_pct", &res->base.p99_spread_pct);
        json_number_at(buf, n, toks, nt, "repeat", "deliveries_per_s_spread_pct",
                       &res->base.dps_spread_pct);
    }
    ret = 0;
out:
    free(toks);
    return ret;
}

static void note(struct lg_result *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Adds a note to the last gate. */
static void note(struct lg_result *res, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->gates[res->ngates - 1].note, sizeof(res->gates[0].note), fmt, ap);
    va_end(ap);
}

/* A latency gate over no samples holds nothing: it fails, and says why. */
static void latency_gate(struct lg_result *res, const char *name, int64_t limit_ns, double p)
{
    double v = (double)hist_percentile_upper(&res->lat, p) / 1e3;
    add(res, name, (double)limit_ns / 1e3, v, false, "us");
    if (res->lat.count == 0) {
        res->gates[res->ngates - 1].ok = false;
        note(res,
             "no latency samples (%" PRIu64 " of %" PRIu64 " expected deliveries arrived "
             "with a trusted time in the measured period)",
             res->st.delivered, res->st.expected);
    }
}

void lg_gates_eval(const struct lg_config *cfg, struct lg_result *res)
{
    if (cfg->max_p99_ns >= 0)
        latency_gate(res, "max-p99", cfg->max_p99_ns, 99);
    if (cfg->max_p999_ns >= 0)
        latency_gate(res, "max-p999", cfg->max_p999_ns, 99.9);
    if (cfg->max_loss >= 0) {
        if (cfg->loss_pct)
            add(res, "max-loss", cfg->max_loss,
                res->st.expected ? (double)res->lost * 100.0 / (double)res->st.expected : 0, false,
                "%");
        else
            add(res, "max-loss", cfg->max_loss, (double)res->lost, false, "deliveries");
    }
    if (cfg->reconnect_ns) {
        /* A reconnect run exists to show that nothing is lost across reconnects: loss is gated
         * (at 0 unless --max-loss says otherwise), and so is every resume the server could not
         * recover, whose skipped events are lost. */
        if (cfg->max_loss < 0)
            add(res, "max-loss", 0, (double)res->lost, false, "deliveries");
        add(res, "unrecoverable-resumes", 0, (double)res->st.resumes_unrecovered, false, "resumes");
        if (res->st.resumes_unrecovered)
            note(res, "the server answered \"recovered\":false: the events published while those "
                      "subscribers were away were not replayed");
    }
    if (cfg->min_deliveries_per_s >= 0)
        add(res, "min-deliveries-per-s", cfg->min_deliveries_per_s, res->deliveries_per_s, true,
            "/s");
    /* Refused publishes are publishes the scenario asked for and the server did not carry. */
    add(res, "max-refused", (double)cfg->max_refused, (double)res->st.pub_errors, false,
        "publishes");
    /* A publish never sent, or never answered, is load that was not offered or not accounted. */
    add(res, "unsent-publishes", 0, (double)res->unsent, false, "publishes");
    add(res, "unanswered-publishes", 0, (double)res->unanswered, false, "publishes");
    if (cfg->max_stall_ns >= 0)
        add(res, "max-stall", (double)cfg->max_stall_ns / 1e6, res->stall_max_ms, false, "ms");
    if (!cfg->no_integrity_gate) {
        /* Wrong data is never acceptable: a fast server that duplicates, reorders, corrupts,
         * misroutes, renames or over-delivers is broken, whatever its latency. */
        const struct lg_stats *s = &res->st;
        add(res, "integrity", 0,
            (double)(s->duplicate + s->out_of_order + s->corrupt + s->misrouted + s->late +
                     s->foreign + s->wrong_event + s->no_room + res->excess),
            false, "bad deliveries");
        add(res, "disconnects", 0, (double)res->st.disconnects, false, "connections");
    }
    if (res->base.have)
        lg_regression_gates(cfg, res, (double)hist_percentile(&res->lat, 99) / 1e3, 0,
                            res->deliveries_per_s, 0, 1);
    res->ok = !res->gate_error[0];
    for (unsigned i = 0; i < res->ngates; i++)
        res->ok = res->ok && res->gates[i].ok;
}

void lg_regression_gates(const struct lg_config *cfg, struct lg_result *res, double p99_us,
                         double p99_spread, double dps, double dps_spread, unsigned runs)
{
    const struct lg_baseline *b = &res->base;
    double lim = cfg->max_regression * 100.0;
    add(res, "regression-p99", lim + b->p99_spread_pct, (p99_us / b->p99_us - 1.0) * 100.0, false,
        "%");
    note(res,
         "baseline p99 %.6g us (spread +-%.1f%%, %u runs), this run %.6g us (spread +-%.1f%%, "
         "%u runs); limit %.6g%% + the baseline's spread",
         b->p99_us, b->p99_spread_pct, b->runs, p99_us, p99_spread, runs, lim);
    if (res->lat.count == 0 && runs == 1) {
        res->gates[res->ngates - 1].ok = false;
        note(res, "no latency samples in this run (baseline p99 %.6g us)", b->p99_us);
    }
    add(res, "regression-deliveries-per-s", lim + b->dps_spread_pct, (1.0 - dps / b->dps) * 100.0,
        false, "%");
    note(res,
         "baseline %.6g/s (spread +-%.1f%%, %u runs), this run %.6g/s (spread +-%.1f%%, %u "
         "runs); limit %.6g%% + the baseline's spread",
         b->dps, b->dps_spread_pct, b->runs, dps, dps_spread, runs, lim);
}
