/* gate.c - the pass/fail gates: absolute limits from the flags, integrity (on unless
 * --no-integrity-gate), and regressions against a baseline JSON from an earlier run. A gate
 * is only added when asked for, so `gates` in the JSON lists exactly what was checked. */
#include <errno.h>
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

static int read_baseline(const char *path, double *p99_us, double *dps, char *err, size_t cap)
{
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
    if (!toks)
        return -1;
    int nt = json_tokenize(buf, n, toks, NT);
    int ret = 0;
    if (nt <= 0 || toks[0].type != JSMN_OBJECT ||
        !json_number_at(buf, n, toks, nt, "latency_us", "p99", p99_us) ||
        !json_number_at(buf, n, toks, nt, "deliveries", "per_s", dps)) {
        snprintf(err, cap, "baseline %s is not a ringcast-load --json report", path);
        ret = -1;
    }
    free(toks);
    return ret;
}

void lg_gates_eval(const struct lg_config *cfg, struct lg_result *res)
{
    double p99_us = (double)hist_percentile(&res->lat, 99) / 1e3;
    double p999_us = (double)hist_percentile(&res->lat, 99.9) / 1e3;
    if (cfg->max_p99_ns >= 0)
        add(res, "max-p99", (double)cfg->max_p99_ns / 1e3, p99_us, false, "us");
    if (cfg->max_p999_ns >= 0)
        add(res, "max-p999", (double)cfg->max_p999_ns / 1e3, p999_us, false, "us");
    if (cfg->max_loss >= 0) {
        if (cfg->loss_pct)
            add(res, "max-loss", cfg->max_loss,
                res->st.expected ? (double)res->lost * 100.0 / (double)res->st.expected : 0, false,
                "%");
        else
            add(res, "max-loss", cfg->max_loss, (double)res->lost, false, "deliveries");
    }
    if (cfg->min_deliveries_per_s >= 0)
        add(res, "min-deliveries-per-s", cfg->min_deliveries_per_s, res->deliveries_per_s, true,
            "/s");
    if (!cfg->no_integrity_gate) {
        /* Wrong data is never acceptable: a fast server that duplicates, reorders, corrupts or
         * misroutes is broken, whatever its latency. */
        add(res, "integrity", 0,
            (double)(res->st.duplicate + res->st.out_of_order + res->st.corrupt +
                     res->st.misrouted + res->st.late),
            false, "bad deliveries");
        add(res, "disconnects", 0, (double)res->st.disconnects, false, "connections");
    }
    if (cfg->baseline_path[0]) {
        double base_p99, base_dps;
        if (read_baseline(cfg->baseline_path, &base_p99, &base_dps, res->gate_error,
                          sizeof(res->gate_error)) == 0) {
            double lim = cfg->max_regression * 100.0;
            add(res, "regression-p99", lim, base_p99 > 0 ? (p99_us / base_p99 - 1.0) * 100.0 : 0,
                false, "%");
            add(res, "regression-deliveries-per-s", lim,
                base_dps > 0 ? (1.0 - res->deliveries_per_s / base_dps) * 100.0 : 0, false, "%");
        }
    }
    res->ok = !res->gate_error[0];
    for (unsigned i = 0; i < res->ngates; i++)
        res->ok = res->ok && res->gates[i].ok;
}
