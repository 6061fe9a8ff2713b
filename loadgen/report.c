/* report.c - the final table (for people) and the JSON report (for bench/run, CI and
 * --baseline). Every figure in the table is in the JSON; docs/loadgen.md says what each means. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "report.h"
#include "series.h"

static const struct {
    const char *key;
    double p;
} pcts[] = {{"p50", 50}, {"p90", 90}, {"p99", 99}, {"p999", 99.9}, {"p9999", 99.99}};

/* How many deliveries one core of ringcast-load absorbs at this cost: its capacity, whatever the
 * server managed to produce in this run. */
static double deliveries_per_cpu_s(const struct lg_result *res)
{
    double cpu_s = res->cpu_pct * res->measured_s / 100.0;
    return cpu_s > 0 ? (double)res->st.delivered_measured / cpu_s : 0;
}

static void fmt_us(char *out, size_t cap, double us)
{
    if (us >= 1e6)
        snprintf(out, cap, "%.3f s", us / 1e6);
    else if (us >= 1e3)
        snprintf(out, cap, "%.3f ms", us / 1e3);
    else
        snprintf(out, cap, "%.1f us", us);
}

static void table_latency(FILE *f, const char *label, const struct hist *h)
{
    if (h->count == 0) {
        fprintf(f, "  %-22s no samples\n", label);
        return;
    }
    char b[6][32];
    for (int i = 0; i < 5; i++)
        fmt_us(b[i], sizeof(b[i]), (double)hist_percentile(h, pcts[i].p) / 1e3);
    fmt_us(b[5], sizeof(b[5]), (double)h->max / 1e3);
    fprintf(f, "  %-22s p50 %s  p90 %s  p99 %s  p99.9 %s  p99.99 %s  max %s\n", label, b[0], b[1],
            b[2], b[3], b[4], h->count ? b[5] : "-");
}

void lg_report_table(FILE *f, const struct lg_run *run, const struct lg_result *res)
{
    const struct lg_config *cfg = &run->cfg;
    const struct lg_stats *s = &res->st;
    fprintf(f, "\nringcast-load %s  %s\n", LG_VERSION, cfg->url);
    fprintf(f, "  scenario               %u subscribers, %u rooms, %u subs/conn, %u publishers, ",
            cfg->connections, cfg->nrooms, cfg->subs_per_conn, cfg->publishers);
    if (cfg->publishers == 0)
        fprintf(f, "no publishes");
    else if (cfg->rate > 0)
        fprintf(f, "%.0f publishes/s", cfg->rate);
    else
        fprintf(f, "closed loop, window %u", cfg->window);
    fprintf(f, ", %u B, %.1fs + %.1fs warmup, %u threads\n", cfg->size,
            (double)cfg->duration_ns / 1e9, (double)cfg->warmup_ns / 1e9, cfg->threads);
    fprintf(f,
            "  connections            %" PRIu64 " established, %" PRIu64 " failed, %.0f/s, "
            "p99 %.2f ms\n",
            s->conn_established, s->conn_failed, res->connect_rate,
            (double)hist_percentile(&res->connect, 99) / 1e6);
    fprintf(f,
            "  publishes              %" PRIu64 " sent, %" PRIu64 " acked, %" PRIu64
            " refused, %" PRIu64 " unanswered, %" PRIu64 " unsent, %" PRIu64
            " abandoned, %.1f/s%s\n",
            s->pub_sent, s->pub_acked, s->pub_errors, res->unanswered, res->unsent, res->abandoned,
            res->publishes_per_s, res->behind_schedule ? "  BEHIND SCHEDULE" : "");
    fprintf(f,
            "  deliveries             %" PRIu64 " expected, %" PRIu64 " delivered, %.0f/s "
            "(measured %.1fs)\n",
            s->expected, s->delivered, res->deliveries_per_s, res->measured_s);
    fprintf(f,
            "  checks                 lost %" PRIu64 "  excess %" PRIu64 "  duplicate %" PRIu64
            "  out_of_order %" PRIu64 "  corrupt %" PRIu64 "  misrouted %" PRIu64 "  late %" PRIu64
            "  foreign %" PRIu64 "  wrong_event %" PRIu64 "  no_room %" PRIu64
            "  disconnects %" PRIu64 "\n",
            res->lost, res->excess, s->duplicate, s->out_of_order, s->corrupt, s->misrouted,
            s->late, s->foreign, s->wrong_event, s->no_room, s->disconnects);
    fprintf(f,
            "  stalls                 longest %.1f ms without a delivery, %" PRIu64
            " over %.0f ms\n",
            res->stall_max_ms, res->stalls, (double)cfg->stall_ns / 1e6);
    if (cfg->reconnect_ns)
        fprintf(f,
                "  reconnects             %" PRIu64 " (%" PRIu64 " rst, %" PRIu64
                " clean close), %" PRIu64 " failed; resumes %" PRIu64 " recovered, %" PRIu64
                " unrecoverable; %" PRIu64 " deliveries replayed\n",
                s->reconnects, s->drops_rst, s->drops_clean, s->reconnect_failed,
                s->resumes_recovered, s->resumes_unrecovered, s->replayed);
    fprintf(f, "  latency (%" PRIu64 " samples)\n", res->lat.count);
    table_latency(f, "send -> receive", &res->lat);
    if (cfg->rate > 0)
        table_latency(f, "intended -> receive", &res->lat_corr);
    else
        fprintf(f,
                "  %-22s closed loop: the intended time is the send time, so this series is "
                "not corrected for coordinated omission (see stalls)\n",
                "intended -> receive");
    if (cfg->reconnect_ns)
        table_latency(f, "replayed send -> recv", &res->lat_replay);
    fprintf(f,
            "  loadgen                cpu %.0f%% (busiest thread %.0f%%), %.0f deliveries per "
            "cpu-second%s\n",
            res->cpu_pct, res->max_thread_pct, deliveries_per_cpu_s(res),
            res->saturated ? "  SATURATED" : "");
    char perconn[48];
    if (res->server)
        fprintf(f,
                "  server                 cpu %.2f s, rss %ld kB (%s), "
                "%.1f cpu-us per 1000 deliveries\n",
                res->server_cpu_s, res->server_rss_kb,
                lg_rss_per_conn_str(res, perconn, sizeof(perconn)), res->server_cpu_us_per_1000);
    for (unsigned i = 0; i < res->ngates; i++) {
        const struct lg_gate *g = &res->gates[i];
        fprintf(f, "  gate %-28s %s  %.6g %s (limit %s %.6g)%s%s\n", g->name,
                g->ok ? "ok  " : "FAIL", g->value, g->unit, g->at_least ? ">=" : "<=", g->limit,
                g->note[0] ? "  " : "", g->note);
    }
    fprintf(f, "  verdict                %s\n",
            res->interrupted ? "INTERRUPTED (not a result)"
            : res->ok        ? "PASS"
                             : "FAIL");
}

void lg_lag_eval(const struct lg_config *cfg, struct lg_result *res)
{
    res->lagging = false;
    res->achieved_per_s = res->rate_short_pct = 0;
    if (cfg->rate <= 0 || !cfg->publishers || res->measured_s <= 0)
        return;
    res->target_per_s = cfg->rate;
    res->achieved_per_s = (double)res->st.pub_sent_in_period / res->measured_s;
    res->rate_short_pct = (1.0 - res->achieved_per_s / cfg->rate) * 100.0;
    double lag = (double)hist_percentile(&res->lag, 99);
    double lat = (double)hist_percentile(&res->lat, 99);
    res->lagging = res->rate_short_pct > LG_RATE_SHORT_PCT ||
                   (lag > 1e6 && (res->lat.count == 0 || lag > LG_LAG_FRACTION * lat));
}

const char *lg_lag_warning(const struct lg_result *res, char *buf, size_t size)
{
    double lag = (double)hist_percentile(&res->lag, 99) / 1e6;
    double lat = (double)hist_percentile(&res->lat, 99) / 1e6;
    double corr = (double)hist_percentile(&res->lat_corr, 99) / 1e6;
    double short_pct = res->rate_short_pct > 0 ? res->rate_short_pct : 0.0;
    char tail[200];
    if (res->lat.count)
        snprintf(tail, sizeof(tail),
                 "lag p99 %.2f ms against a latency p99 of %.2f ms (the corrected p99, %.2f ms, "
                 "includes the lag)",
                 lag, lat, corr);
    else
        snprintf(tail, sizeof(tail), "lag p99 %.2f ms (no latency samples to compare with)", lag);
    int n;
    if (res->behind_schedule || res->rate_short_pct > LG_RATE_SHORT_PCT)
        n = snprintf(buf, size,
                     "publishers fell behind their schedule: %.1f publishes/s sent in the "
                     "measured period of %.1f/s asked (%.1f%% short), %s",
                     res->achieved_per_s, res->target_per_s, short_pct, tail);
    else
        n = snprintf(buf, size,
                     "publishes went out late: %s, so the corrected figures are mostly the "
                     "publishers' own delay (the rate held: %.1f publishes/s of %.1f/s asked)",
                     tail, res->achieved_per_s, res->target_per_s);
    if (res->behind_schedule && n > 0 && (size_t)n < size)
        snprintf(buf + n, size - (size_t)n,
                 "; %" PRIu64 " of %" PRIu64 " scheduled publishes were never sent", res->unsent,
                 res->scheduled);
    return buf;
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

const char *lg_rss_per_conn_str(const struct lg_result *res, char *buf, size_t size)
{
    if (isnan(res->server_rss_per_conn))
        snprintf(buf, size, "n/a per conn: RSS fell during the run");
    else
        snprintf(buf, size, "%.0f B/conn", res->server_rss_per_conn);
    return buf;
}

/* JSON has no NaN or infinity: they become null. */
static void json_num(FILE *f, double v)
{
    if (v != v || v > 1e300 || v < -1e300)
        fputs("null", f);
    else
        fprintf(f, "%.6g", v);
}

static void json_lat(FILE *f, const struct hist *h)
{
    fputc('{', f);
    if (h->count == 0) { /* no samples: no percentiles, rather than zeros that look measured */
        fputs("\"p50\":null,\"p90\":null,\"p99\":null,\"p999\":null,\"p9999\":null,"
              "\"max\":null,\"mean\":null,\"count\":0}",
              f);
        return;
    }
    for (int i = 0; i < 5; i++) {
        fprintf(f, "\"%s\":", pcts[i].key);
        json_num(f, (double)hist_percentile(h, pcts[i].p) / 1e3);
        fputc(',', f);
    }
    fputs("\"max\":", f);
    json_num(f, h->count ? (double)h->max / 1e3 : 0);
    fputs(",\"mean\":", f);
    json_num(f, hist_mean(h) / 1e3);
    fprintf(f, ",\"count\":%" PRIu64 "}", h->count);
}

static void json_scenario(FILE *f, const struct lg_config *cfg)
{
    fputs(" \"scenario\":{\"url\":", f);
    json_str(f, cfg->url);
    fprintf(f, ",\"connections\":%u,\"rooms\":%u,\"subs_per_conn\":%u,\"publishers\":%u,\"rate\":",
            cfg->connections, cfg->nrooms, cfg->subs_per_conn, cfg->publishers);
    json_num(f, cfg->rate);
    fprintf(f, ",\"window\":%u,\"size\":%u,\"duration_s\":", cfg->window, cfg->size);
    json_num(f, (double)cfg->duration_ns / 1e9);
    fputs(",\"warmup_s\":", f);
    json_num(f, (double)cfg->warmup_ns / 1e9);
    fputs(",\"drain_s\":", f);
    json_num(f, (double)cfg->drain_ns / 1e9);
    fprintf(f, ",\"threads\":%u", cfg->threads);
    if (cfg->rooms_listed && cfg->room_names) {
        fputs(",\"room_names\":[", f);
        for (unsigned r = 0; r < cfg->nrooms; r++) {
            if (r)
                fputc(',', f);
            json_str(f, cfg->room_names[r]);
        }
        fputc(']', f);
    }
    fputs("},\n", f);
}

int lg_report_json_error(const char *path, const struct lg_config *cfg, const char *error)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -errno;
    fprintf(f, "{\"tool\":\"ringcast-load\",\"version\":\"%s\",\"ok\":false,\"exit_status\":2,\n",
            LG_VERSION);
    fputs(" \"interrupted\":false,\"error\":", f);
    json_str(f, error[0] ? error : "setup failed");
    fputs(",\n", f);
    json_scenario(f, cfg);
    fputs(" \"gates\":[]}\n", f);
    return fclose(f) ? -errno : 0;
}

int lg_report_json(const char *path, const struct lg_run *run, const struct lg_result *res)
{
    const struct lg_config *cfg = &run->cfg;
    const struct lg_stats *s = &res->st;
    FILE *f = fopen(path, "w");
    if (!f)
        return -errno;
    fprintf(f, "{\"tool\":\"ringcast-load\",\"version\":\"%s\",\"ok\":%s,\n", LG_VERSION,
            res->ok ? "true" : "false");
    fprintf(f, " \"interrupted\":%s,\"signal\":%d,\"measured_s\":",
            res->interrupted ? "true" : "false", res->signal);
    json_num(f, res->measured_s);
    fputs(",\"error\":null,\n", f);
    json_scenario(f, cfg);
    fprintf(f,
            " \"connect\":{\"attempted\":%" PRIu64 ",\"established\":%" PRIu64
            ",\"failed\":%" PRIu64 ",\"disconnects\":%" PRIu64 ",\"rate_per_s\":",
            s->conn_attempted, s->conn_established, s->conn_failed, s->disconnects);
    json_num(f, res->connect_rate);
    fputs(",\"ms\":{\"p50\":", f);
    json_num(f, (double)hist_percentile(&res->connect, 50) / 1e6);
    fputs(",\"p99\":", f);
    json_num(f, (double)hist_percentile(&res->connect, 99) / 1e6);
    fputs(",\"max\":", f);
    json_num(f, res->connect.count ? (double)res->connect.max / 1e6 : 0);
    fputs("}},\n", f);
    fprintf(f,
            " \"deliveries\":{\"expected\":%" PRIu64 ",\"delivered\":%" PRIu64 ",\"lost\":%" PRIu64
            ",\"duplicate\":%" PRIu64 ",\"out_of_order\":%" PRIu64 ",\"corrupt\":%" PRIu64
            ",\"misrouted\":%" PRIu64 ",\"late\":%" PRIu64 ",\"foreign\":%" PRIu64
            ",\"wrong_event\":%" PRIu64 ",\"no_room\":%" PRIu64 ",\"excess\":%" PRIu64
            ",\"no_seq\":%" PRIu64 ",\"measured\":%" PRIu64 ",\"per_s\":",
            s->expected, s->delivered, res->lost, s->duplicate, s->out_of_order, s->corrupt,
            s->misrouted, s->late, s->foreign, s->wrong_event, s->no_room, res->excess, s->no_seq,
            s->delivered_measured);
    json_num(f, res->deliveries_per_s);
    fputs("},\n", f);
    fprintf(f,
            " \"publishes\":{\"sent\":%" PRIu64 ",\"acked\":%" PRIu64 ",\"refused\":%" PRIu64
            ",\"abandoned\":%" PRIu64 ",\"scheduled\":%" PRIu64 ",\"per_s\":",
            s->pub_sent, s->pub_acked, s->pub_errors, res->abandoned, res->scheduled);
    json_num(f, res->publishes_per_s);
    fputs(",\"lag_ms\":{\"p50\":", f);
    json_num(f, (double)hist_percentile(&res->lag, 50) / 1e6);
    fputs(",\"p99\":", f);
    json_num(f, (double)hist_percentile(&res->lag, 99) / 1e6);
    fputs(",\"max\":", f);
    json_num(f, res->lag.count ? (double)res->lag.max / 1e6 : 0);
    fprintf(f,
            "},\"achieved_per_s\":%.6g,\"rate_short_pct\":%.6g,\"behind_schedule\":%s,\"lagging\":%"
            "s,\"unsent\":%" PRIu64 ",\"unanswered\":%" PRIu64 ",\"refused_reasons\":{",
            res->achieved_per_s, res->rate_short_pct, res->behind_schedule ? "true" : "false",
            res->lagging ? "true" : "false", res->unsent, res->unanswered);
    for (unsigned i = 0; i < LG_MAX_REASONS && res->reasons[i].n; i++) {
        if (i)
            fputc(',', f);
        json_str(f, res->reasons[i].code);
        fprintf(f, ":%" PRIu64, res->reasons[i].n);
    }
    fputs("}},\n", f);
    fputs(" \"stalls\":{\"longest_ms\":", f);
    json_num(f, res->stall_max_ms);
    fprintf(f, ",\"count\":%" PRIu64 ",\"threshold_ms\":", res->stalls);
    json_num(f, (double)cfg->stall_ns / 1e6);
    fputs("},\n", f);
    fputs(" \"latency_us\":", f);
    json_lat(f, &res->lat);
    fputs(",\n \"latency_corrected_us\":", f);
    json_lat(f, &res->lat_corr);
    /* Closed loop: intended = send time, so the series is the plain one, not corrected. */
    fprintf(f, ",\n \"latency_corrected\":%s", cfg->rate > 0 ? "true" : "false");
    if (cfg->reconnect_ns) {
        fprintf(f,
                ",\n \"reconnect\":{\"every_ms\":%.6g,\"jitter_ms\":%.6g,\"backoff_ms\":%.6g,"
                "\"reconnects\":%" PRIu64 ",\"drops_rst\":%" PRIu64 ",\"drops_clean\":%" PRIu64
                ",\"failed\":%" PRIu64 ",\"resumes_recovered\":%" PRIu64
                ",\"resumes_unrecovered\":%" PRIu64 ",\"replayed\":%" PRIu64 "}",
                (double)cfg->reconnect_ns / 1e6, (double)cfg->reconnect_jitter_ns / 1e6,
                (double)cfg->reconnect_backoff_ns / 1e6, s->reconnects, s->drops_rst,
                s->drops_clean, s->reconnect_failed, s->resumes_recovered, s->resumes_unrecovered,
                s->replayed);
        fputs(",\n \"latency_replayed_us\":", f);
        json_lat(f, &res->lat_replay);
    }
    if (res->series) {
        const struct lg_series *sr = res->series;
        unsigned n = lg_series_used(sr);
        fprintf(f, ",\n \"series\":{\"bucket_s\":%.6g,\"deliveries\":[",
                (double)sr->width_ns / 1e9);
        for (unsigned i = 0; i < n; i++)
            fprintf(f, "%s%" PRIu32, i ? "," : "", sr->b[i].deliveries);
        fputs("],\"reconnects\":[", f);
        for (unsigned i = 0; i < n; i++)
            fprintf(f, "%s%" PRIu32, i ? "," : "", sr->b[i].reconnects);
        for (int q = 0; q < 2; q++) {
            fprintf(f, "],\"%s_us\":[", q ? "p99" : "p50");
            for (unsigned i = 0; i < n; i++) {
                double v = lg_series_pct(&sr->b[i], q ? 99 : 50);
                if (i)
                    fputc(',', f);
                if (v < 0)
                    fputs("null", f);
                else
                    fprintf(f, "%.1f", v / 1e3);
            }
        }
        fputs("]}", f);
    }
    fputs(",\n \"loadgen\":{\"cpu_pct\":", f);
    json_num(f, res->cpu_pct);
    fputs(",\"deliveries_per_cpu_s\":", f);
    json_num(f, deliveries_per_cpu_s(res));
    fputs(",\"max_thread_cpu_pct\":", f);
    json_num(f, res->max_thread_pct);
    fprintf(f, ",\"threads\":%u,\"saturated\":%s,\"errors\":%" PRIu64, cfg->threads,
            res->saturated ? "true" : "false", s->errors);
    fprintf(f,
            ",\"bytes_in\":%" PRIu64 ",\"frames_in\":%" PRIu64 ",\"reads\":%" PRIu64
            ",\"frames_per_read\":",
            s->bytes_in, s->frames_in, s->reads);
    json_num(f, s->reads ? (double)s->frames_in / (double)s->reads : 0);
    fprintf(f, ",\"verified_cache_hits\":%" PRIu64 ",\"verified_cache_misses\":%" PRIu64 "},\n",
            s->vc_hits, s->vc_misses);
    if (res->server) {
        fprintf(f, " \"server\":{\"pid\":%d,\"cpu_s\":", cfg->server_pid);
        json_num(f, res->server_cpu_s);
        fprintf(f, ",\"rss_kb\":%ld,\"rss_bytes_per_conn\":", res->server_rss_kb);
        json_num(f, res->server_rss_per_conn);
        fputs(",\"cpu_us_per_1000_deliveries\":", f);
        json_num(f, res->server_cpu_us_per_1000);
        fputs("},\n", f);
    }
    fputs(" \"gates\":[", f);
    for (unsigned i = 0; i < res->ngates; i++) {
        const struct lg_gate *g = &res->gates[i];
        fprintf(f, "%s{\"name\":\"%s\",\"limit\":", i ? "," : "", g->name);
        json_num(f, g->limit);
        fputs(",\"value\":", f);
        json_num(f, g->value);
        fprintf(f, ",\"unit\":\"%s\",\"ok\":%s,\"note\":", g->unit, g->ok ? "true" : "false");
        json_str(f, g->note);
        fputc('}', f);
    }
    fputs("]}\n", f);
    return fclose(f) ? -errno : 0;
}
