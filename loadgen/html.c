/* html.c - the self-contained HTML report: verdict, figures, gates, and two SVG plots drawn
 * from the merged histograms: latency by percentile (log-scale percentile axis to 99.99, both
 * send->receive and the coordinated-omission-corrected intended->receive), and the latency
 * distribution (log-scale latency axis, 10 bins per decade); and time series over the run, per
 * second (series.h): deliveries/s, live p50/p99, reconnects. No scripts, no external files. */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"
#include "series.h"

#define W  900
#define H  360
#define ML 70 /* margins: room for axis labels */
#define MR 20
#define MT 20
#define MB 50

static void esc(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '&')
            fputs("&amp;", f);
        else if (*s == '"')
            fputs("&quot;", f);
        else
            fputc(*s, f);
    }
}

/* A "nice" axis step (1, 2, 5 x 10^k) giving about n ticks up to max. */
static double nice_step(double max, int n)
{
    double raw = max / n, mag = pow(10, floor(log10(raw)));
    double r = raw / mag;
    return (r <= 1 ? 1 : r <= 2 ? 2 : r <= 5 ? 5 : 10) * mag;
}

static void fmt_ms(char *out, size_t cap, double ms)
{
    if (ms >= 1000)
        snprintf(out, cap, "%gs", ms / 1000);
    else if (ms >= 1)
        snprintf(out, cap, "%gms", ms);
    else
        snprintf(out, cap, "%gus", ms * 1000);
}

static void percentile_plot(FILE *f, const struct lg_result *res)
{
    const double xmax = 4; /* log10(1 / (1 - 0.9999)) */
    double ymax = 0;
    const struct hist *hs[2] = {&res->lat, &res->lat_corr};
    for (int s = 0; s < 2; s++) {
        double v = (double)hist_percentile(hs[s], 99.99) / 1e6;
        if (v > ymax)
            ymax = v;
    }
    if (ymax <= 0)
        ymax = 1;
    double step = nice_step(ymax, 6);
    ymax = ceil(ymax / step) * step;
    fprintf(f, "<svg viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" role=\"img\">\n", W, H, W, H);
    fprintf(f,
            "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#fafafa\" "
            "stroke=\"#ccc\"/>\n",
            ML, MT, W - ML - MR, H - MT - MB);
    double pw = W - ML - MR, ph = H - MT - MB;
    for (double y = 0; y <= ymax + step / 2; y += step) {
        double py = MT + ph - y / ymax * ph;
        char lab[32];
        fmt_ms(lab, sizeof(lab), y);
        fprintf(f,
                "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>"
                "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\" font-size=\"12\">%s</text>\n",
                ML, W - MR, py, py, ML - 6, py + 4, lab);
    }
    static const char *xl[] = {"0", "90", "99", "99.9", "99.99"};
    for (int i = 0; i <= 4; i++) {
        double px = ML + i / xmax * pw;
        fprintf(f,
                "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"#e4e4e4\"/>"
                "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" font-size=\"12\">%s</text>\n",
                px, px, MT, H - MB, px, H - MB + 18, xl[i]);
    }
    fprintf(f,
            "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"13\">percentile "
            "(log scale)</text>\n",
            ML + (int)pw / 2, H - 10);
    static const char *colors[2] = {"#1f6fd1", "#e07b00"};
    for (int s = 0; s < 2; s++) {
        if (!hs[s]->count)
            continue;
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", colors[s]);
        for (double x = 0; x <= xmax + 1e-9; x += 0.02) {
            double p = 100.0 * (1.0 - pow(10, -x));
            double y = (double)hist_percentile(hs[s], p) / 1e6;
            fprintf(f, "%.1f,%.1f ", ML + x / xmax * pw, MT + ph - fmin(y / ymax, 1) * ph);
        }
        fputs("\"/>\n", f);
    }
    fprintf(f,
            "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/><text x=\"%d\" "
            "y=\"%d\" font-size=\"13\">send &#8594; receive</text>\n",
            ML + 12, MT + 10, colors[0], ML + 30, MT + 21);
    fprintf(f,
            "<rect x=\"%d\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/><text x=\"%d\" "
            "y=\"%d\" font-size=\"13\">intended send &#8594; receive (corrected for "
            "coordinated omission)</text>\n",
            ML + 12, MT + 30, colors[1], ML + 30, MT + 41);
    fputs("</svg>\n", f);
}

static void histogram_plot(FILE *f, const struct hist *h)
{
    if (!h->count) {
        fputs("<p>No latency samples.</p>\n", f);
        return;
    }
    /* Re-bin the fine buckets into 10 bins per decade of microseconds. */
    enum { PER_DECADE = 10, NB = 8 * PER_DECADE }; /* 0.1 us .. 10^7 us */
    static uint64_t bins[NB];
    memset(bins, 0, sizeof(bins));
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        if (!h->buckets[i])
            continue;
        uint64_t lo, hi;
        hist_bucket_range(i, &lo, &hi);
        double us = ((double)lo + (double)hi) / 2e3;
        int b = us > 0 ? (int)floor((log10(us) + 1) * PER_DECADE) : 0;
        b = b < 0 ? 0 : b >= NB ? NB - 1 : b;
        bins[b] += h->buckets[i];
    }
    int first = NB, last = 0;
    uint64_t top = 0;
    for (int b = 0; b < NB; b++)
        if (bins[b]) {
            first = b < first ? b : first;
            last = b;
            top = bins[b] > top ? bins[b] : top;
        }
    first = first - first % PER_DECADE;
    last = last + PER_DECADE - last % PER_DECADE - 1;
    if (last >= NB)
        last = NB - 1;
    int n = last - first + 1;
    double pw = W - ML - MR, ph = H - MT - MB, bw = pw / n;
    fprintf(f, "<svg viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" role=\"img\">\n", W, H, W, H);
    fprintf(f,
            "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"#fafafa\" "
            "stroke=\"#ccc\"/>\n",
            ML, MT, pw, ph);
    for (int b = first; b <= last; b++) {
        double bh = top ? (double)bins[b] / (double)top * ph : 0;
        double x = ML + (b - first) * bw;
        if (bins[b])
            fprintf(f,
                    "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                    "fill=\"#1f6fd1\"><title>%" PRIu64 "</title></rect>\n",
                    x + 0.5, MT + ph - bh, bw - 1, bh, bins[b]);
        if (b % PER_DECADE == 0) {
            char lab[32];
            fmt_ms(lab, sizeof(lab), pow(10, (double)b / PER_DECADE - 1) / 1000);
            fprintf(f,
                    "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\" font-size=\"12\">%s"
                    "</text><line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" "
                    "stroke=\"#999\"/>\n",
                    x, H - MB + 18, lab, x, x, H - MB, H - MB + 5);
        }
    }
    fprintf(f,
            "<text x=\"%d\" y=\"%d\" text-anchor=\"end\" font-size=\"12\">%" PRIu64
            "</text><text x=\"%d\" y=\"%d\" text-anchor=\"end\" font-size=\"12\">0</text>\n",
            ML - 6, MT + 10, top, ML - 6, H - MB);
    fprintf(f,
            "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" font-size=\"13\">send &#8594; "
            "receive latency (log scale, 10 bins per decade); bar height = deliveries</text>\n",
            ML + (int)pw / 2, H - 10);
    fputs("</svg>\n", f);
}

/* A line chart over the run: nl series of n points (NaN: no point), x in seconds from the
 * first publish. */
static void series_chart(FILE *f, const char *id, unsigned n, double width_s, unsigned nl,
                         const double *const *ys, const char *const *names,
                         const char *const *colors, const char *unit)
{
    const int CH = 220;
    double ymax = 0;
    for (unsigned l = 0; l < nl; l++)
        for (unsigned i = 0; i < n; i++)
            if (!isnan(ys[l][i]) && ys[l][i] > ymax)
                ymax = ys[l][i];
    if (ymax <= 0)
        ymax = 1;
    double step = nice_step(ymax, 4);
    ymax = ceil(ymax / step) * step;
    double xmax = n * width_s;
    double pw = W - ML - MR, ph = CH - MT - MB;
    fprintf(f, "<svg id=\"%s\" viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" role=\"img\">\n",
            id, W, CH, W, CH);
    fprintf(f,
            "<rect x=\"%d\" y=\"%d\" width=\"%.0f\" height=\"%.0f\" fill=\"#fafafa\" "
            "stroke=\"#ccc\"/>\n",
            ML, MT, pw, ph);
    for (double v = 0; v <= ymax + step / 2; v += step) {
        double y = MT + ph - v / ymax * ph;
        fprintf(f,
                "<line x1=\"%d\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#e4e4e4\"/>"
                "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%g%s</text>\n",
                ML, ML + pw, y, y, ML - 6, y + 4, v, unit);
    }
    double xstep = nice_step(xmax, 10);
    for (double t = 0; t <= xmax + xstep / 2; t += xstep) {
        double x = ML + t / xmax * pw;
        fprintf(f,
                "<text x=\"%.1f\" y=\"%.0f\" font-size=\"11\" text-anchor=\"middle\">%gs"
                "</text>\n",
                x, MT + ph + 16, t);
    }
    for (unsigned l = 0; l < nl; l++) {
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" points=\"",
                colors[l]);
        for (unsigned i = 0; i < n; i++) {
            if (isnan(ys[l][i]))
                continue;
            fprintf(f, "%.1f,%.1f ", ML + (i + 0.5) * width_s / xmax * pw,
                    MT + ph - ys[l][i] / ymax * ph);
        }
        fputs("\"/>\n", f);
        fprintf(f, "<text x=\"%.0f\" y=\"%d\" font-size=\"12\" fill=\"%s\">%s</text>\n",
                ML + 10 + l * 160.0, CH - 10, colors[l], names[l]);
    }
    fputs("</svg>\n", f);
}

/* The run over time: deliveries/s, live latency p50/p99 per bucket, reconnects per bucket. */
static void time_series(FILE *f, const struct lg_config *cfg, const struct lg_result *res)
{
    const struct lg_series *sr = res->series;
    if (!sr)
        return;
    unsigned n = lg_series_used(sr);
    double ws = (double)sr->width_ns / 1e9;
    double *v = calloc((size_t)n * 4, sizeof(double));
    if (!v)
        return;
    double *dps = v, *p50 = v + n, *p99 = v + 2 * n, *rec = v + 3 * n;
    for (unsigned i = 0; i < n; i++) {
        dps[i] = sr->b[i].deliveries / ws;
        rec[i] = sr->b[i].reconnects / ws;
        double a = lg_series_pct(&sr->b[i], 50), b = lg_series_pct(&sr->b[i], 99);
        p50[i] = a < 0 ? NAN : a / 1e6;
        p99[i] = b < 0 ? NAN : b / 1e6;
    }
    fprintf(f,
            "<h2>Over the run</h2>\n<p style=\"color:#555;font-size:13px\">Per %g s from the "
            "first publish (warmup %g s, then the measured period, then the drain). Latency is "
            "live deliveries only (send &#8594; receive); replayed ones are not in it.</p>\n",
            ws, (double)cfg->warmup_ns / 1e9);
    {
        const double *ys[] = {dps};
        const char *nm[] = {"deliveries/s"}, *col[] = {"#0969da"};
        series_chart(f, "ts-deliveries", n, ws, 1, ys, nm, col, "");
    }
    {
        const double *ys[] = {p50, p99};
        const char *nm[] = {"p50 (ms)", "p99 (ms)"}, *col[] = {"#0969da", "#cf222e"};
        series_chart(f, "ts-latency", n, ws, 2, ys, nm, col, "ms");
    }
    if (cfg->reconnect_ns) {
        const double *ys[] = {rec};
        const char *nm[] = {"reconnects/s"}, *col[] = {"#8250df"};
        series_chart(f, "ts-reconnects", n, ws, 1, ys, nm, col, "");
    }
    free(v);
}

static void row(FILE *f, const char *k, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void row(FILE *f, const char *k, const char *fmt, ...)
{
    fprintf(f, "<tr><th>%s</th><td>", k);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputs("</td></tr>\n", f);
}

int lg_report_html_error(const char *path, const struct lg_config *cfg, const char *error)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -errno;
    fputs("<!doctype html><html><head><meta charset=\"utf-8\"><title>ringcast-load report"
          "</title></head><body style=\"font-family:system-ui,sans-serif;margin:24px\">\n",
          f);
    fprintf(f, "<h1>ringcast-load %s &mdash; ", LG_VERSION);
    esc(f, cfg->url);
    fputs("</h1>\n<p><span style=\"background:#cf222e;color:#fff;padding:6px 16px;"
          "border-radius:6px;font-size:20px;font-weight:700\">ERROR (exit 2)</span></p>\n<p>",
          f);
    esc(f, error[0] ? error : "setup failed");
    fputs("</p>\n<p>No measurement was made.</p></body></html>\n", f);
    return fclose(f) ? -errno : 0;
}

int lg_report_html(const char *path, const struct lg_run *run, const struct lg_result *res)
{
    const struct lg_config *cfg = &run->cfg;
    const struct lg_stats *s = &res->st;
    FILE *f = fopen(path, "w");
    if (!f)
        return -errno;
    fputs("<!doctype html><html><head><meta charset=\"utf-8\"><title>ringcast-load report"
          "</title><style>body{font-family:system-ui,sans-serif;margin:24px;max-width:960px;"
          "color:#222}h1{font-size:22px}h2{font-size:17px;margin-top:28px}"
          "table{border-collapse:collapse}th,td{padding:3px 12px;text-align:left;"
          "border-bottom:1px solid #eee;font-size:14px}th{font-weight:600;color:#555}"
          ".pass{background:#1a7f37;color:#fff}.fail{background:#cf222e;color:#fff}"
          ".verdict{display:inline-block;padding:6px 16px;border-radius:6px;font-size:20px;"
          "font-weight:700}.warn{color:#9a6700;font-weight:600}</style></head><body>\n",
          f);
    fprintf(f, "<h1>ringcast-load %s &mdash; ", LG_VERSION);
    esc(f, cfg->url);
    fprintf(f, "</h1>\n<p><span class=\"verdict %s\">%s</span></p>\n", res->ok ? "pass" : "fail",
            res->interrupted ? "INTERRUPTED"
            : res->ok        ? "PASS"
                             : "FAIL");
    if (res->interrupted)
        fprintf(f,
                "<p class=\"warn\">Interrupted by a signal after %.1f s of the measured "
                "period: not a result.</p>\n",
                res->measured_s);
    if (res->saturated)
        fprintf(f,
                "<p class=\"warn\">The load generator was saturated (busiest thread %.0f%% "
                "of a core): these figures may measure ringcast-load, not the server.</p>\n",
                res->max_thread_pct);
    if (res->behind_schedule || res->lagging) {
        char why[512];
        fputs("<p class=\"warn\">", f);
        esc(f, lg_lag_warning(res, why, sizeof(why)));
        fputs(".</p>\n", f);
    }
    fputs("<h2>Latency by percentile</h2>\n", f);
    percentile_plot(f, res);
    fputs("<h2>Latency distribution</h2>\n", f);
    histogram_plot(f, &res->lat);
    time_series(f, cfg, res);
    fputs("<h2>Gates</h2>\n<table><tr><th>gate</th><th>value</th><th>limit</th><th></th></tr>\n",
          f);
    for (unsigned i = 0; i < res->ngates; i++) {
        const struct lg_gate *g = &res->gates[i];
        fprintf(f,
                "<tr><td>%s</td><td>%.6g %s</td><td>%s %.6g</td><td class=\"%s\">%s</td>"
                "<td>",
                g->name, g->value, g->unit, g->at_least ? "&ge;" : "&le;", g->limit,
                g->ok ? "pass" : "fail", g->ok ? "ok" : "FAIL");
        esc(f, g->note);
        fputs("</td></tr>\n", f);
    }
    fputs("</table>\n<h2>Figures</h2>\n<table>\n", f);
    static const struct {
        const char *k;
        double p;
    } ps[] = {{"p50", 50}, {"p90", 90}, {"p99", 99}, {"p99.9", 99.9}, {"p99.99", 99.99}};
    for (int c = 0; c < 2; c++) {
        const struct hist *h = c ? &res->lat_corr : &res->lat;
        fprintf(f, "<tr><th>%s</th><td>", c ? "intended &#8594; receive" : "send &#8594; receive");
        for (int i = 0; i < 5; i++)
            fprintf(f, "%s %.1f us &nbsp; ", ps[i].k, (double)hist_percentile(h, ps[i].p) / 1e3);
        fprintf(f, "max %.1f us (%" PRIu64 " samples)</td></tr>\n",
                h->count ? (double)h->max / 1e3 : 0, h->count);
    }
    row(f, "scenario",
        "%u subscribers, %u rooms, %u subs/conn, %u publishers, %s %.0f, %u B, %.1f s measured "
        "after %.1f s warmup, %u threads",
        cfg->connections, cfg->nrooms, cfg->subs_per_conn, cfg->publishers,
        cfg->rate > 0 ? "publishes/s" : "closed loop, window",
        cfg->rate > 0 ? cfg->rate : (double)cfg->window, cfg->size, (double)cfg->duration_ns / 1e9,
        (double)cfg->warmup_ns / 1e9, cfg->threads);
    row(f, "deliveries",
        "%" PRIu64 " expected, %" PRIu64 " delivered, %.0f/s in the measured period", s->expected,
        s->delivered, res->deliveries_per_s);
    row(f, "checks",
        "lost %" PRIu64 ", duplicate %" PRIu64 ", out of order %" PRIu64 ", corrupt %" PRIu64
        ", misrouted %" PRIu64 ", late %" PRIu64 ", disconnects %" PRIu64,
        res->lost, s->duplicate, s->out_of_order, s->corrupt, s->misrouted, s->late,
        s->disconnects);
    if (cfg->reconnect_ns) {
        row(f, "reconnects",
            "%" PRIu64 " (%" PRIu64 " RST, %" PRIu64 " clean close), %" PRIu64
            " failed; resumes: %" PRIu64 " recovered, %" PRIu64 " unrecoverable; %" PRIu64
            " deliveries replayed",
            s->reconnects, s->drops_rst, s->drops_clean, s->reconnect_failed, s->resumes_recovered,
            s->resumes_unrecovered, s->replayed);
        const struct hist *h = &res->lat_replay;
        row(f, "replayed send &#8594; receive",
            "p50 %.1f ms &nbsp; p99 %.1f ms &nbsp; max %.1f ms (%" PRIu64
            " samples; not in the live latency above)",
            (double)hist_percentile(h, 50) / 1e6, (double)hist_percentile(h, 99) / 1e6,
            h->count ? (double)h->max / 1e6 : 0, h->count);
    }
    row(f, "publishes", "%" PRIu64 " sent, %" PRIu64 " acked, %" PRIu64 " refused, %.1f/s",
        s->pub_sent, s->pub_acked, s->pub_errors, res->publishes_per_s);
    row(f, "connections", "%" PRIu64 " established, %" PRIu64 " failed, %.0f/s, p99 %.2f ms",
        s->conn_established, s->conn_failed, res->connect_rate,
        (double)hist_percentile(&res->connect, 99) / 1e6);
    row(f, "load generator", "%.0f%% CPU, busiest thread %.0f%%%s", res->cpu_pct,
        res->max_thread_pct, res->saturated ? " (saturated)" : "");
    char perconn[48];
    if (res->server)
        row(f, "server", "%.2f s CPU, RSS %ld kB (%s), %.1f CPU-us per 1000 deliveries",
            res->server_cpu_s, res->server_rss_kb,
            lg_rss_per_conn_str(res, perconn, sizeof(perconn)), res->server_cpu_us_per_1000);
    fputs("</table>\n<p style=\"color:#777;font-size:12px\">Latency is measured per recipient: "
          "receive time minus the publish's send time (both CLOCK_MONOTONIC on this machine). "
          "The corrected series starts from the time the publish was due, so a stalled "
          "publisher cannot hide server delays. See docs/loadgen.md.</p>\n</body></html>\n",
          f);
    return fclose(f) ? -errno : 0;
}
