"""bench/scale smoke tests: the one-command scaling benchmark runs end to end on this machine
(N = 1, a few seconds) and plans a 16-core host without a 16-core host."""
import json
import os
import subprocess

import pytest

from lg_helpers import BUILD, LOADGEN, REPO

SCALE = os.path.join(REPO, "bench", "scale")
ENGINE = os.path.join(BUILD, "engine", "ringcast")


def scale(*args, timeout=120):
    env = dict(os.environ, RINGCAST_BUILD=BUILD)
    return subprocess.run([SCALE, *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=REPO)


def test_quick_run_measures_n1(tmp_path):
    if not os.path.exists(ENGINE) or not os.path.exists(LOADGEN):
        pytest.skip("engine or load generator not built")
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("bench/scale needs 2 CPUs")
    out = tmp_path / "scale.json"
    r = scale("--quick", "--shapes", "rooms", "--json", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "| rooms | 1,000 | 10 | 1 |" in r.stdout and "load CPU %" in r.stdout
    doc = json.loads(out.read_text())
    assert doc["tool"] == "bench/scale"
    (row,) = doc["rows"]
    assert row["n"] == 1 and row["runs"] == 1 and not row["failed"]
    assert row["deliveries_per_s"] > 0 and row["lost"] == 0
    assert row["server_cpu_us_per_delivery"] > 0 and row["efficiency"] == 1.0


def test_dry_run_plans_a_16_core_host():
    r = scale("--dry-run", "--cpus", "16", "--subscribers", "1000")
    assert r.returncode == 0, r.stderr
    for n, load in ((1, 15), (2, 14), (4, 12), (8, 8)):
        assert "rooms S=1000 N=%d: %d rooms" % (n, 10 * n) in r.stdout
        assert "(--threads %d)" % load in r.stdout
    assert "N=16" not in r.stdout


def test_refuses_clearly_what_the_machine_cannot_do():
    r = scale("--dry-run", "--cpus", "2", "--threads", "1,2", "--subscribers", "1000")
    assert "skip rooms S=1000 N=2: N=2 needs 3 CPUs" in r.stdout
    hard = __import__("resource").getrlimit(__import__("resource").RLIMIT_NOFILE)[1]
    if hard < 200000:
        r = scale("--dry-run", "--cpus", "16", "--subscribers", "1000000")
        assert "RLIMIT_NOFILE (hard)" in r.stdout and "--subscribers" in r.stdout
    r = scale("--cpus", "4")
    assert r.returncode == 2 and "--dry-run only" in r.stderr


def test_floor_server_passes_every_check():
    """bench/floor (the rooms-100 floor) delivers every event intact and in order, so its CPU
    figure is a floor for correct work, not for a shortcut."""
    floor = os.path.join(BUILD, "bench", "floor")
    if not os.path.exists(floor) or not os.path.exists(LOADGEN):
        pytest.skip("bench/floor or the load generator not built")
    from lg_helpers import start_server, stop_server
    proc, port = start_server([floor, "--port", "0"])
    try:
        r = subprocess.run([LOADGEN, "--url", "ws://127.0.0.1:%d/ws" % port, "--connections",
                            "200", "--rooms", "10", "--publishers", "4", "--rate", "400",
                            "--warmup", "0.5s", "--duration", "1s", "--max-loss", "0", "--json",
                            "/dev/stdout", "--quiet"], capture_output=True, text=True,
                           timeout=60)
    finally:
        stop_server(proc)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert proc.returncode == 0
    doc = json.loads(r.stdout)
    assert doc["deliveries"]["delivered"] == doc["deliveries"]["expected"] > 0


def test_splits_the_load_over_processes_past_the_per_process_cap(tmp_path):
    """Above the per-process connection cap (here forced to 600, as 19,900 is under the usual
    20,000 open files), a rooms case runs several ringcast-load processes and sums them; a hot
    case says why it cannot."""
    if not os.path.exists(ENGINE) or not os.path.exists(LOADGEN):
        pytest.skip("engine or load generator not built")
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("bench/scale needs 2 CPUs")
    out = tmp_path / "scale.json"
    r = scale("--quick", "--load-process-conns", "600", "--json", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads(out.read_text())
    (row,) = doc["rows"]
    assert row["shape"] == "rooms" and row["load_processes"] == 2 and len(row["raw"]) == 1
    assert row["deliveries_per_s"] > 0 and row["lost"] == 0
    (skip,) = doc["skipped"]
    assert skip["shape"] == "hot" and "--load-process-conns" in skip["reason"]
    assert "2 load processes" in r.stdout
