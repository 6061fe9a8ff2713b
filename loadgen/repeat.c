/* repeat.c - --repeat N: one sample of p99 is no statistic on a noisy runner (two identical
 * back-to-back runs have differed by 13 %), so the scenario is run N times, each run a child
 * process of this binary with the same options, and the regression gates compare the medians
 * with the baseline's medians, allowing for the baseline's own run-to-run spread.
 *
 * Every run's own gates still apply: one failed run fails the whole (gate `runs-failed`).
 * The combined JSON holds the medians where a single run's report has its figures (so it can
 * be a baseline itself), `repeat` with every run's p99 and deliveries/s and their spreads,
 * and every run's full report under `runs`. --html goes to the last run.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proto/json.h"

#include "report.h"

#define MAX_DOC (4u << 20)
#define NTOKS   8192

static volatile sig_atomic_t stop_sig;

static void on_stop(int sig)
{
    stop_sig = sig;
}

struct run_fig {
    char *doc; /* the run's JSON report, as written */
    size_t len;
    double p50, p99, p999, count, dps, expected, delivered, lost;
    bool ok;
};

static double num(const char *doc, jsmntok_t *t, int nt, const char *k1, const char *k2)
{
    int v = json_obj_get(doc, t, nt, 0, k1);
    if (v >= 0 && k2 && t[v].type == JSMN_OBJECT)
        v = json_obj_get(doc, t, nt, v, k2);
    if (v < 0 || t[v].type != JSMN_PRIMITIVE || doc[t[v].start] == 'n')
        return 0;
    return strtod(doc + t[v].start, NULL);
}

static int read_run(const char *path, struct run_fig *f, jsmntok_t *toks)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return -1;
    f->doc = malloc(MAX_DOC);
    f->len = f->doc ? fread(f->doc, 1, MAX_DOC - 1, fp) : 0;
    fclose(fp);
    if (!f->doc)
        return -1;
    f->doc[f->len] = 0;
    int nt = json_tokenize(f->doc, f->len, toks, NTOKS);
    if (nt <= 0)
        return -1;
    f->p50 = num(f->doc, toks, nt, "latency_us", "p50");
    f->p99 = num(f->doc, toks, nt, "latency_us", "p99");
    f->p999 = num(f->doc, toks, nt, "latency_us", "p999");
    f->count = num(f->doc, toks, nt, "latency_us", "count");
    f->dps = num(f->doc, toks, nt, "deliveries", "per_s");
    f->expected = num(f->doc, toks, nt, "deliveries", "expected");
    f->delivered = num(f->doc, toks, nt, "deliveries", "delivered");
    f->lost = num(f->doc, toks, nt, "deliveries", "lost");
    int ok = json_obj_get(f->doc, toks, nt, 0, "ok");
    f->ok = ok >= 0 && f->doc[toks[ok].start] == 't';
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of v[0..n) and the half range in percent of it. */
static double median(const double *v, unsigned n, double *spread_pct)
{
    double s[100];
    memcpy(s, v, n * sizeof(double));
    qsort(s, n, sizeof(double), cmp_double);
    double m = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
    *spread_pct = m > 0 ? (s[n - 1] - s[0]) / 2 / m * 100.0 : 0;
    return m;
}

/* The options a run gets: all of ours but those the repeat itself handles. */
static bool handled_here(const char *a, bool *takes_next)
{
    static const char *const opts[] = {"repeat", "baseline", "max-regression",
                                       "json",   "html",     NULL};
    *takes_next = false;
    if (strncmp(a, "--", 2) != 0)
        return false;
    for (int i = 0; opts[i]; i++) {
        size_t n = strlen(opts[i]);
        if (!strncmp(a + 2, opts[i], n) && (a[2 + n] == 0 || a[2 + n] == '=')) {
            *takes_next = a[2 + n] == 0;
            return true;
        }
    }
    return false;
}

static void write_doc(FILE *f, const struct lg_config *cfg, const struct lg_result *res,
                      struct run_fig *runs, unsigned n, const double *p99s, const double *dpss,
                      double p99, double p99_sp, double dps, double dps_sp, unsigned failed)
{
    fprintf(f, "{\"tool\":\"ringcast-load\",\"version\":\"%s\",\"ok\":%s,\n", LG_VERSION,
            res->ok ? "true" : "false");
    fprintf(f, " \"interrupted\":%s,\"signal\":%d,\"error\":null,\n",
            res->interrupted ? "true" : "false", res->signal);
    /* The scenario as the first run wrote it. */
    static jsmntok_t toks[NTOKS];
    int nt = n ? json_tokenize(runs[0].doc, runs[0].len, toks, NTOKS) : 0;
    int sc = nt > 0 ? json_obj_get(runs[0].doc, toks, nt, 0, "scenario") : -1;
    if (sc >= 0)
        fprintf(f, " \"scenario\":%.*s,\n", toks[sc].end - toks[sc].start,
                runs[0].doc + toks[sc].start);
    fprintf(f, " \"repeat\":{\"runs\":%u,\"failed_runs\":%u,\"p99_us\":[", n, failed);
    for (unsigned i = 0; i < n; i++)
        fprintf(f, "%s%.6g", i ? "," : "", p99s[i]);
    fputs("],\"deliveries_per_s\":[", f);
    for (unsigned i = 0; i < n; i++)
        fprintf(f, "%s%.6g", i ? "," : "", dpss[i]);
    fprintf(f, "],\"p99_spread_pct\":%.6g,\"deliveries_per_s_spread_pct\":%.6g},\n", p99_sp,
            dps_sp);
    double p50s[100], p999s[100], sp;
    double count = 0, expected = 0, delivered = 0, lost = 0;
    for (unsigned i = 0; i < n; i++) {
        p50s[i] = runs[i].p50;
        p999s[i] = runs[i].p999;
        count += runs[i].count;
        expected += runs[i].expected;
        delivered += runs[i].delivered;
        lost += runs[i].lost;
    }
    fprintf(f, " \"latency_us\":{\"p50\":%.6g,\"p99\":%.6g,\"p999\":%.6g,\"count\":%.0f},\n",
            n ? median(p50s, n, &sp) : 0, p99, n ? median(p999s, n, &sp) : 0, count);
    fprintf(
        f, " \"deliveries\":{\"expected\":%.0f,\"delivered\":%.0f,\"lost\":%.0f,\"per_s\":%.6g},\n",
        expected, delivered, lost, dps);
    fputs(" \"gates\":[", f);
    for (unsigned i = 0; i < res->ngates; i++) {
        const struct lg_gate *g = &res->gates[i];
        fprintf(f, "%s{\"name\":\"%s\",\"limit\":%.6g,\"value\":%.6g,\"unit\":\"%s\",\"ok\":%s,",
                i ? "," : "", g->name, g->limit, g->value, g->unit, g->ok ? "true" : "false");
        fputs("\"note\":\"", f);
        for (const char *c = g->note; *c; c++)
            fputc(*c == '"' || *c == '\\' ? '\'' : *c, f);
        fputs("\"}", f);
    }
    fputs("],\n \"runs\":[", f);
    for (unsigned i = 0; i < n; i++) {
        size_t len = runs[i].len;
        while (len && (runs[i].doc[len - 1] == '\n' || runs[i].doc[len - 1] == ' '))
            len--;
        fprintf(f, "%s%.*s", i ? ",\n" : "\n", (int)len, runs[i].doc);
    }
    fputs("]}\n", f);
    (void)cfg;
}

int lg_repeat_main(const struct lg_config *cfg, struct lg_result *res, int argc, char **argv)
{
    unsigned n = cfg->repeat;
    char dir[] = "/tmp/ringcast-load-repeat-XXXXXX";
    if (!mkdtemp(dir)) {
        lg_error("--repeat: cannot create a temporary directory: %s", strerror(errno));
        return LG_EXIT_USAGE;
    }
    struct sigaction sa = {.sa_handler = on_stop}; /* no SA_RESTART: waitpid returns */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    struct run_fig *runs = calloc(n, sizeof(*runs));
    char **cargv = calloc((size_t)argc + 8, sizeof(char *));
    jsmntok_t *toks = malloc(NTOKS * sizeof(*toks));
    if (!runs || !cargv || !toks) {
        lg_error("out of memory");
        return LG_EXIT_USAGE;
    }
    int status = LG_EXIT_OK;
    unsigned done = 0, failed = 0;
    char path[n][64];
    for (unsigned i = 0; i < n && !stop_sig; i++) {
        int c = 0;
        cargv[c++] = argv[0];
        for (int a = 1; a < argc; a++) {
            bool next;
            if (handled_here(argv[a], &next)) {
                a += next;
                continue;
            }
            cargv[c++] = argv[a];
        }
        snprintf(path[i], sizeof(path[i]), "%s/run-%u.json", dir, i + 1);
        cargv[c++] = "--json";
        cargv[c++] = path[i];
        if (i == n - 1 && cfg->html_path[0]) {
            cargv[c++] = "--html";
            cargv[c++] = (char *)cfg->html_path;
        }
        cargv[c++] = "--quiet";
        cargv[c] = NULL;
        fprintf(stderr, "ringcast-load: run %u of %u\n", i + 1, n);
        pid_t pid = fork();
        if (pid == 0) {
            execv("/proc/self/exe", cargv);
            _exit(127);
        }
        int ws = 0;
        while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
            if (stop_sig)
                kill(pid, stop_sig);
        int rc = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
        if (rc == LG_EXIT_USAGE || rc == 127) {
            lg_error("--repeat: run %u of %u could not be made (exit %d)", i + 1, n, rc);
            status = LG_EXIT_USAGE;
            break;
        }
        if (rc > 128 || read_run(path[i], &runs[i], toks) < 0) {
            if (!stop_sig)
                stop_sig = rc > 128 ? rc - 128 : SIGTERM;
            break;
        }
        unlink(path[i]);
        done++;
        failed += !runs[i].ok;
        printf("  run %u of %u: p99 %.6g us, %.6g deliveries/s, %s\n", i + 1, n, runs[i].p99,
               runs[i].dps, runs[i].ok ? "PASS" : "FAIL");
        fflush(stdout);
    }
    rmdir(dir);
    if (status == LG_EXIT_USAGE) {
        if (cfg->json_path[0])
            lg_report_json_error(cfg->json_path, cfg, lg_error_msg);
        if (cfg->html_path[0])
            lg_report_html_error(cfg->html_path, cfg, lg_error_msg);
    } else {
        double p99s[100], dpss[100], p99_sp = 0, dps_sp = 0, p99 = 0, dps = 0;
        for (unsigned i = 0; i < done; i++) {
            p99s[i] = runs[i].p99;
            dpss[i] = runs[i].dps;
        }
        if (done) {
            p99 = median(p99s, done, &p99_sp);
            dps = median(dpss, done, &dps_sp);
        }
        res->interrupted = stop_sig != 0;
        res->signal = stop_sig;
        struct lg_gate *g = &res->gates[res->ngates++];
        memset(g, 0, sizeof(*g));
        g->name = "runs-failed";
        g->unit = "runs";
        g->value = failed;
        g->ok = failed == 0;
        if (res->base.have)
            lg_regression_gates(cfg, res, p99, p99_sp, dps, dps_sp, done);
        res->ok = !res->interrupted && done == n;
        for (unsigned i = 0; i < res->ngates; i++)
            res->ok = res->ok && res->gates[i].ok;
        printf("  medians over %u runs: p99 %.6g us (spread +-%.1f%%), %.6g deliveries/s (spread "
               "+-%.1f%%)\n",
               done, p99, p99_sp, dps, dps_sp);
        for (unsigned i = 0; i < res->ngates; i++) {
            g = &res->gates[i];
            printf("  gate %-28s %s  %.6g %s (limit %s %.6g)%s%s\n", g->name,
                   g->ok ? "ok  " : "FAIL", g->value, g->unit, g->at_least ? ">=" : "<=", g->limit,
                   g->note[0] ? "  " : "", g->note);
            if (!g->ok)
                fprintf(
                    stderr, "ringcast-load: GATE FAILED: %s: %.6g %s (must be <= %.6g %s)%s%s\n",
                    g->name, g->value, g->unit, g->limit, g->unit, g->note[0] ? ": " : "", g->note);
        }
        printf("  verdict                %s\n", res->interrupted ? "INTERRUPTED (not a result)"
                                                : res->ok        ? "PASS"
                                                                 : "FAIL");
        if (cfg->json_path[0]) {
            FILE *f = fopen(cfg->json_path, "w");
            if (f) {
                write_doc(f, cfg, res, runs, done, p99s, dpss, p99, p99_sp, dps, dps_sp, failed);
                fclose(f);
            } else {
                lg_error("cannot write %s: %s", cfg->json_path, strerror(errno));
                status = LG_EXIT_USAGE;
            }
        }
        if (status != LG_EXIT_USAGE)
            status = res->interrupted ? 128 + res->signal : res->ok ? LG_EXIT_OK : LG_EXIT_GATE;
    }
    for (unsigned i = 0; i < n; i++)
        free(runs[i].doc);
    free(runs);
    free(cargv);
    free(toks);
    return status;
}
