"""bench/jitter: the machine's scheduling jitter, which bench/run reports beside its latency
tables. It must measure what it says on the CPUs it is given and refuse what it cannot do."""
import json
import os
import subprocess
import sys

import pytest

from lg_helpers import BUILD, REPO

JITTER = os.path.join(BUILD, "bench", "jitter")
sys.path.insert(0, os.path.join(REPO, "bench", "lib"))
import report  # noqa: E402


def jitter(*args):
    if not os.path.exists(JITTER):
        pytest.skip("bench/jitter not built")
    return subprocess.run([JITTER, *args], capture_output=True, text=True, timeout=30)


def test_json_per_cpu():
    cpus = sorted(os.sched_getaffinity(0))[:2]
    r = jitter("--seconds", "0.3", "--cpus", ",".join(map(str, cpus)), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["tool"] == "jitter" and doc["threshold_us"] == 50
    assert [c["cpu"] for c in doc["cpus"]] == cpus
    for c in doc["cpus"]:
        assert c["pinned"] is True
        # Lost time is at most the run, and the longest gap is part of it.
        assert 0 <= c["lost_ms_per_s"] <= 1000
        assert c["max_ms"] <= c["lost_ms_per_s"] * 0.3 + 1e-3 or c["gaps"] == 0
        assert c["gaps"] >= c["gaps_over_1ms"] >= c["gaps_over_10ms"] >= 0


def test_text_line_names_the_cpu_and_threshold():
    cpu = min(os.sched_getaffinity(0))
    r = jitter("--seconds", "0.2", "--cpus", str(cpu), "--threshold-us", "200")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("jitter: CPU %d: " % cpu), r.stdout
    assert "lost to gaps over 200 us" in r.stdout and "longest" in r.stdout


def test_refuses_a_cpu_it_cannot_use_and_bad_arguments():
    r = jitter("--seconds", "0.1", "--cpus", "1000")
    assert r.returncode == 2 and "cannot pin to CPU 1000" in r.stderr
    assert "jitter: CPU 1000" not in r.stdout  # nothing measured unpinned is reported
    for bad in (["--cpus", "x"], ["--seconds", "0"], ["--threshold-us", "0"], ["--what"]):
        r = jitter(*bad)
        assert r.returncode == 2, bad
        assert "usage: jitter" in r.stderr or "--seconds must be" in r.stderr, (bad, r.stderr)


def test_report_line_reads_before_and_after():
    doc = {"tool": "jitter", "seconds": 3.0, "threshold_us": 50,
           "cpus": [{"cpu": 0, "lost_ms_per_s": 8.4, "max_ms": 2.83},
                    {"cpu": 1, "lost_ms_per_s": 37.7, "max_ms": 1.18}]}
    line = report.jitter_line([doc, None])
    assert "before: CPU 0 8.4 ms/s, longest 2.83 ms, CPU 1 37.7 ms/s, longest 1.18 ms" in line
    assert "after" not in line and "for 3 s" in line and "over 50 µs" in line
    assert report.jitter_line([None, None]) is None and report.jitter_line(None) is None
