"""Turns ringcast-load --json results into bench/run's tables (docs/benchmarks.md).

A run's JSON is ringcast-load's --json output (its schema is fixed: bench/run and CI read it); this module
reads only the keys it tabulates, each through get() so that a key missing from a partial result
gives "n/a" in the table rather than an exception. Repetitions are combined by median, metric by
metric.
"""

import datetime
import os
import platform
import re
import statistics
import subprocess

MARKER = "<!-- bench/run writes everything below this line; edit the text above it. -->"

# (key, column title, path into the JSON, format, better): better is "high" or "low", used only
# to say which way the ratio column reads.
METRICS = [
    ("deliveries_per_s", "deliveries/s", ("deliveries", "per_s"), "{:,.0f}", "high"),
    ("p50_us", "p50 µs", ("latency_us", "p50"), "{:,.0f}", "low"),
    ("p99_us", "p99 µs", ("latency_us", "p99"), "{:,.0f}", "low"),
    ("p999_us", "p99.9 µs", ("latency_us", "p999"), "{:,.0f}", "low"),
    ("cpu_us_per_1000", "server CPU µs / 1000 deliveries",
     ("server", "cpu_us_per_1000_deliveries"), "{:,.0f}", "low"),
    ("rss_per_conn", "server RSS B / conn", ("server", "rss_bytes_per_conn"), "{:,.0f}", "low"),
    ("connects_per_s", "connects/s", ("connect", "rate_per_s"), "{:,.0f}", "high"),
]
# Integrity counters: any non-zero is shown, summed over repetitions.
INTEGRITY = ["lost", "duplicate", "out_of_order", "corrupt", "misrouted"]


def get(obj, path):
    """obj[path[0]][path[1]]... or None when any step is missing or not a number."""
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return None
        obj = obj[key]
    if isinstance(obj, bool) or not isinstance(obj, (int, float)):
        return None
    return obj


def summarize_run(result):
    """The numbers one run contributes to the table, from its loadgen JSON. Figures that have
    nothing to measure (latency without samples, per-delivery CPU without deliveries, as in an
    idle scenario) are None, so they read "n/a" rather than a misleading 0."""
    out = {key: get(result, path) for key, _, path, _, _ in METRICS}
    if not get(result, ("latency_us", "count")):
        for key in ("p50_us", "p99_us", "p999_us"):
            out[key] = None
    if not get(result, ("deliveries", "expected")):
        out["deliveries_per_s"] = out["cpu_us_per_1000"] = None
    for k in INTEGRITY:
        out[k] = get(result, ("deliveries", k))
    out["expected"] = get(result, ("deliveries", "expected"))
    out["saturated"] = bool(result.get("loadgen", {}).get("saturated"))
    out["behind"] = bool(result.get("publishes", {}).get("behind_schedule"))
    out["gates_ok"] = result.get("ok")
    return out


def median_of(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def combine(runs):
    """Median of each metric over the successful repetitions; integrity counters summed."""
    row = {key: median_of(runs, key) for key, _, _, _, _ in METRICS}
    for k in INTEGRITY + ["expected"]:
        vals = [r[k] for r in runs if r.get(k) is not None]
        row[k] = sum(vals) if vals else None
    row["saturated"] = any(r.get("saturated") for r in runs)
    row["behind"] = any(r.get("behind") for r in runs)
    row["gates_ok"] = all(r.get("gates_ok") for r in runs)
    row["n"] = len(runs)
    return row


def fmt(v, f):
    return "n/a" if v is None else f.format(v)


def loss_str(row):
    lost, exp = row.get("lost"), row.get("expected")
    if lost is None:
        return "n/a"
    parts = []
    if exp:
        parts.append("%d (%.3g %%)" % (lost, 100.0 * lost / exp) if lost else "0")
    else:
        parts.append(str(lost))
    for k in INTEGRITY[1:]:
        if row.get(k):
            parts.append("%d %s" % (row[k], k.replace("_", " ")))
    return ", ".join(parts)


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    r = a / b
    if r < 0.1:
        return "%.2g×" % r  # two significant digits: 0.0048× rather than 0.00×
    return ("%.2f×" if r < 10 else "%.1f×" if r < 100 else "%.0f×") % r


def scenario_tables(scenario, servers, cells, reps_wanted):
    """Markdown for one scenario. cells[server] is {"row": combined, "failed": [reasons]}."""
    lines = ["### %s" % scenario, ""]
    head = ["server"] + [m[1] for m in METRICS] + ["lost (of expected)", "runs"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    flagged = {"saturated": [], "behind": []}
    for spec in servers:
        cell = cells.get(spec.name, {})
        row, failed = cell.get("row"), cell.get("failed", [])
        if not row or not row["n"]:
            reason = failed[0] if failed else "not run"
            lines.append("| %s | failed: %s |" % (spec.label, md_escape(reason)) +
                         " |" * (len(head) - 2))
            continue
        label = spec.label
        if row["saturated"]:
            label += " ¹"
            flagged["saturated"].append(spec.label)
        if row["behind"]:
            label += " ²"
            flagged["behind"].append(spec.label)
        runs = "%d/%d" % (row["n"], reps_wanted)
        if failed:
            runs += " (failed: %s)" % md_escape(failed[0])
        vals = [fmt(row[m[0]], m[3]) for m in METRICS]
        lines.append("| " + " | ".join([label] + vals + [loss_str(row), runs]) + " |")
    lines.append("")
    if flagged["saturated"]:
        lines.append("¹ %s: the load generator's core was saturated, so these figures bound the "
                     "server from below rather than measure it." % ", ".join(flagged["saturated"]))
    if flagged["behind"]:
        lines.append("² %s: the publishers could not keep the scenario's rate (the server did not "
                     "read fast enough, or the machine was busy); latency includes that queueing."
                     % ", ".join(flagged["behind"]))
    if flagged["saturated"] or flagged["behind"]:
        lines.append("")

    base = cells.get("ringcast", {}).get("row")
    peers = [s for s in servers if s.name != "ringcast"]
    if base and base["n"] and peers:
        lines.append("ringcast ÷ peer, same run (deliveries/s and connects/s: above 1 means "
                     "ringcast is faster; latency, CPU and RSS: below 1 means ringcast uses "
                     "less):")
        lines.append("")
        head = ["peer"] + [m[1] for m in METRICS]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for spec in peers:
            row = cells.get(spec.name, {}).get("row")
            if not row or not row["n"]:
                vals = ["n/a"] * len(METRICS)
            else:
                vals = [ratio(base[m[0]], row[m[0]]) for m in METRICS]
            lines.append("| " + " | ".join([spec.label] + vals) + " |")
        lines.append("")
    return lines


def md_escape(s):
    return s.replace("|", "\\|").replace("\n", " ")


def _cmd(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


def machine_description(repo):
    """One paragraph: CPU, cores, memory, kernel, OS, compiler and peer library versions."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
            cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            kb = int(re.search(r"MemTotal:\s*(\d+)", f.read()).group(1))
            mem = "%.1f GiB RAM" % (kb / 1048576)
    except (OSError, AttributeError):
        pass
    osname = None
    try:
        with open("/etc/os-release") as f:
            m = re.search(r'^PRETTY_NAME="?([^"\n]+)', f.read(), re.M)
            osname = m.group(1) if m else None
    except OSError:
        pass
    parts = ["%s, %d logical CPUs" % (cpu, os.cpu_count() or 0)]
    if mem:
        parts.append(mem)
    parts.append("Linux %s" % platform.release())
    if osname:
        parts.append(osname)
    versions = []
    node = _cmd(["node", "--version"])
    if node:
        versions.append("Node.js " + node)
    ws = _read_version(os.path.join(repo, "bench/peers/node/node_modules/ws/package.json"))
    if ws:
        versions.append("ws " + ws)
    py = _cmd(["/usr/bin/python3", "-c",
               "import sys, websockets; print('Python %d.%d.%d' % sys.version_info[:3],"
               " 'websockets', websockets.__version__)"])
    if py:
        versions.append(py)
    lws = _cmd(["pkg-config", "--modversion", "libwebsockets"])
    if lws:
        versions.append("libwebsockets " + lws.rstrip("-"))
    gcc = _cmd(["gcc", "-dumpfullversion"])
    if gcc:
        versions.append("gcc " + gcc)
    uring = _cmd(["pkg-config", "--modversion", "liburing"])
    if uring:
        versions.append("liburing " + uring)
    return "; ".join(parts) + ". " + ", ".join(versions) + "."


def _read_version(path):
    try:
        with open(path) as f:
            m = re.search(r'"version"\s*:\s*"([^"]+)"', f.read())
            return m.group(1) if m else None
    except OSError:
        return None


def loadavg():
    """The 1-minute load average, or None."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def jitter_line(jitter):
    """One report line from bench/jitter's JSON before and after the runs, or None."""
    parts = []
    for when, doc in zip(("before", "after"), jitter or ()):
        if doc and doc.get("cpus"):
            parts.append("%s: %s" % (when, ", ".join(
                "CPU %d %.1f ms/s, longest %.2f ms" % (c["cpu"], c["lost_ms_per_s"], c["max_ms"])
                for c in doc["cpus"])))
    if not parts:
        return None
    first = next(doc for doc in jitter if doc and doc.get("cpus"))
    return ("- **Scheduling jitter** (`bench/jitter`: a spinning thread pinned to each CPU for "
            "%.0f s; the time lost to gaps over %d µs, and the longest gap): %s. A server pinned "
            "there loses the same time, and an event it holds arrives late by up to the gap: "
            "percentiles near these gaps measure the machine as much as the server."
            % (first["seconds"], first["threshold_us"], "; ".join(parts)))


def render(scenarios, servers, cells, reps, command, machine, results_dir, started, load=None,
           finished=None, jitter=None):
    """The generated part of docs/benchmarks.md. load: (1-min load average at start, at end);
    jitter: bench/jitter's JSON (before, after)."""
    lines = [MARKER, "", "## Results", ""]
    finished = finished or datetime.datetime.now(datetime.timezone.utc)
    lines.append("- **Date:** %s (%.0f min)" % (
        started.strftime("%Y-%m-%d %H:%M UTC"), (finished - started).total_seconds() / 60))
    lines.append("- **Machine:** %s" % machine)
    if load and None not in load:
        busy = " — other work was running: treat the absolute numbers with care" \
            if max(load) > 1.5 else ""
        lines.append("- **Load average** (1 min, %d CPUs): %.2f at the start, %.2f at the end%s."
                     % (os.cpu_count() or 0, load[0], load[1], busy))
    jl = jitter_line(jitter)
    if jl:
        lines.append(jl)
    lines.append("- **Command:** `%s`" % command)
    lines.append("- **Repetitions:** %d per server and scenario, interleaved; each cell is the "
                 "median (loss: the sum). Raw results: `%s`." % (reps, results_dir))
    lines.append("")
    for sc in scenarios:
        lines.extend(scenario_tables(sc, servers, cells.get(sc, {}), reps))
    return "\n".join(lines).rstrip() + "\n"


DEFAULT_INTRO = """# Benchmarks

(Intro missing: bench/run wrote this file from scratch. Describe the method above the marker.)

"""


def write_doc(path, generated):
    """Keeps everything above MARKER (or writes a default intro) and replaces what follows."""
    intro = DEFAULT_INTRO
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
        idx = text.find(MARKER)
        intro = text[:idx] if idx >= 0 else text.rstrip() + "\n\n"
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(intro + generated)
    os.replace(tmp, path)
