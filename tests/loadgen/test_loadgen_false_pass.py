"""Issue 16: ringcast-load must never report PASS for a run whose result is false. Each test
drives the real binary against a server that misbehaves in one way (faulty_server.py's
adversarial faults, or the engine itself) and checks the run fails, with the reason."""
import json
import os
import signal
import subprocess
import time

import pytest

from lg_helpers import BUILD, ENGINE, LOADGEN, REPO, engine_fixture, free_port, run_loadgen


def base(port, tmp_path, *extra, conns=20, rooms=2, rate=200):
    return ["--url", "ws://127.0.0.1:%d/ws" % port, "--connections", conns, "--rooms", rooms,
            "--rate", rate, "--duration", "1.5s", "--warmup", "300ms", "--drain", "1s",
            "--json", tmp_path / "r.json"] + list(extra)


def report(tmp_path, name="r.json"):
    with open(tmp_path / name) as f:
        return json.load(f)


def failed_gates(j):
    return [g["name"] for g in j["gates"] if not g["ok"]]


engine = engine_fixture()  # engine(*flags) -> port


# ---- 1. a payload delivered under the wrong room ----

def test_1_event_swapped_into_another_room_is_misrouted_and_lost(faulty, tmp_path):
    port = faulty("swap", 5)
    r = run_loadgen(base(port, tmp_path, "--max-loss", 0))
    d = report(tmp_path)["deliveries"]
    assert d["misrouted"] == 5 and d["lost"] == 5, d
    assert r.returncode == 1
    assert "GATE FAILED: integrity" in r.stderr and "GATE FAILED: max-loss" in r.stderr


# ---- 2 and 20. refused publishes ----

def test_2_every_publish_refused_fails_with_reason(faulty, tmp_path):
    port = faulty("none", extra=["--refuse-every", 1])
    r = run_loadgen(base(port, tmp_path, "--max-p99", "1s", "--max-loss", 0))
    assert r.returncode == 1, r.stderr
    j = report(tmp_path)
    assert j["publishes"]["refused"] == j["publishes"]["sent"] > 0
    assert j["publishes"]["refused_reasons"] == {"RATE_LIMITED": j["publishes"]["sent"]}
    assert "GATE FAILED: max-refused" in r.stderr
    assert "publishes refused by the server: RATE_LIMITED" in r.stderr
    # allowed explicitly, the refusals alone no longer fail the run (the p99 gate still does)
    r = run_loadgen(base(port, tmp_path, "--max-refused", 100000))
    assert r.returncode == 0, r.stderr


def test_2_engine_too_large_refused(engine, tmp_path):
    port = engine("--rate-limit", "0")
    r = run_loadgen(base(port, tmp_path, "--size", 65434, conns=2, rooms=1, rate=20))
    j = report(tmp_path)
    assert j["publishes"]["refused"] > 0, j["publishes"]
    assert r.returncode == 1
    assert "GATE FAILED: max-refused" in r.stderr
    assert "TOO_LARGE" in r.stderr


def test_20_engine_rate_limit_refusals_fail_the_run(engine, tmp_path):
    port = engine()  # the default limit: 100 publishes/s per connection
    r = run_loadgen(base(port, tmp_path, conns=5, rooms=1, rate=300))
    j = report(tmp_path)
    assert j["publishes"]["refused"] > 0, j["publishes"]
    assert r.returncode == 1
    assert "GATE FAILED: max-refused" in r.stderr and "RATE_LIMITED" in r.stderr
    assert "fell behind" not in r.stderr


# ---- 3. latency gates with no samples ----

def test_3_latency_gate_without_samples_fails(faulty, tmp_path):
    port = faulty("drop", 10 ** 9, start=0, every=1)
    r = run_loadgen(base(port, tmp_path, "--max-p99", "10s", "--max-p999", "10s"))
    assert r.returncode == 1, r.stderr
    assert "GATE FAILED: max-p99" in r.stderr and "no latency samples" in r.stderr
    j = report(tmp_path)
    assert {"max-p99", "max-p999"} <= set(failed_gates(j))
    assert j["latency_us"]["count"] == 0 and j["latency_us"]["p99"] is None
    out = r.stdout
    assert "p50 0.0 us" not in out and "no samples" in out


# ---- 4. an error reply after delivery hides no loss ----

def test_4_error_after_delivery_does_not_mask_loss(faulty, tmp_path):
    port = faulty("drop", 3, extra=["--error-after", 40])
    r = run_loadgen(base(port, tmp_path, "--max-loss", 0, "--max-refused", 1))
    j = report(tmp_path)
    d = j["deliveries"]
    assert d["lost"] == 3, d
    assert d["excess"] == 10, d  # the refused publish reached its room's 10 subscribers
    assert r.returncode == 1
    assert "GATE FAILED: max-loss" in r.stderr and "GATE FAILED: integrity" in r.stderr


# ---- 5. truncated payloads ----

def test_5_truncated_payload_is_corrupt(faulty, tmp_path):
    port = faulty("truncate", 5)
    r = run_loadgen(base(port, tmp_path, "--size", 1000))
    assert report(tmp_path)["deliveries"]["corrupt"] == 5
    assert r.returncode == 1 and "GATE FAILED: integrity" in r.stderr


# ---- 6. an interrupted run ----

@pytest.mark.parametrize("sig,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_6_interrupted_run_fails_and_says_so(faulty, tmp_path, sig, status):
    if not os.path.exists(LOADGEN):
        pytest.skip("not built")
    port = faulty()
    args = [LOADGEN] + [str(a) for a in base(port, tmp_path)]
    args[args.index("1.5s")] = "20s"
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)
    p.send_signal(sig)
    out, err = p.communicate(timeout=30)
    assert p.returncode == status, err
    j = report(tmp_path)
    assert j["interrupted"] is True and j["ok"] is False
    assert 0 < j["measured_s"] < 5
    assert "INTERRUPTED" in err and "PASS" not in out
    # such a report is no baseline
    r = run_loadgen(base(free_port(), tmp_path, "--baseline", tmp_path / "r.json"))
    assert r.returncode == 2 and "interrupted" in r.stderr


# ---- 7 and 15. baselines ----

def test_7_baseline_that_measured_nothing_failed_or_differs_is_refused(faulty, tmp_path):
    port = faulty()
    r = run_loadgen(base(port, tmp_path))
    assert r.returncode == 0, r.stderr
    good = report(tmp_path)
    cases = {
        "zeros": lambda j: (j["latency_us"].update(p99=0, count=0),
                            j["deliveries"].update(per_s=0)),
        "failed": lambda j: j.update(ok=False),
        "connections": lambda j: j["scenario"].update(connections=999),
        "rate": lambda j: j["scenario"].update(rate=5),
        "size": lambda j: j["scenario"].update(size=4096),
        "publishers": lambda j: j["scenario"].update(publishers=3),
        "rooms": lambda j: j["scenario"].update(rooms=7),
    }
    words = {"zeros": "measured nothing", "failed": "failed"}
    for name, change in cases.items():
        j = json.loads(json.dumps(good))
        change(j)
        path = tmp_path / ("base-%s.json" % name)
        path.write_text(json.dumps(j))
        t0 = time.monotonic()
        r = run_loadgen(base(port, tmp_path, "--baseline", path))
        assert r.returncode == 2, (name, r.stderr)
        assert words.get(name, name) in r.stderr, (name, r.stderr)
        assert time.monotonic() - t0 < 1.5, name  # refused before the run, not after it
    # the report of an exit 2 holds the error
    j = report(tmp_path)
    assert j["ok"] is False and j["exit_status"] == 2 and "baseline" in j["error"]


def test_15_exit_2_still_writes_the_reports(tmp_path):
    r = run_loadgen(base(free_port(), tmp_path, "--html", tmp_path / "r.html"))
    assert r.returncode == 2
    j = report(tmp_path)
    assert j["ok"] is False and j["exit_status"] == 2
    assert "Connection refused" in j["error"]
    assert j["scenario"]["connections"] == 20
    assert "Connection refused" in (tmp_path / "r.html").read_text()


def test_15_paths_and_options_checked_before_the_run(tmp_path):
    port = free_port()  # nothing listens: an error about it would mean the run was tried
    r = run_loadgen(base(port, tmp_path, "--html", "/nonexistent/dir/r.html"))
    assert r.returncode == 2 and "--html /nonexistent/dir/r.html" in r.stderr
    assert "Connection refused" not in r.stderr
    r = run_loadgen(base(port, tmp_path, "--baseline", tmp_path / "missing.json"))
    assert r.returncode == 2 and "baseline" in r.stderr
    assert "Connection refused" not in r.stderr
    r = run_loadgen(base(port, tmp_path, "--max-regression", "5%"))
    assert r.returncode == 2 and "--max-regression needs --baseline" in r.stderr
    assert "--max-regression needs --baseline" in report(tmp_path)["error"]


def test_16_regression_gate_line_shows_both_runs(faulty, tmp_path):
    port = faulty()
    assert run_loadgen(base(port, tmp_path, "--json", tmp_path / "b.json")).returncode == 0
    r = run_loadgen(base(port, tmp_path, "--baseline", tmp_path / "b.json",
                         "--max-regression", "1000%"))
    assert r.returncode == 0, r.stderr
    assert "baseline p99" in r.stdout and "this run" in r.stdout
    g = [g for g in report(tmp_path)["gates"] if g["name"] == "regression-p99"][0]
    assert "baseline p99" in g["note"]


# ---- 8. renamed events, events without a room ----

@pytest.mark.parametrize("fault,counter", [("rename", "wrong_event"), ("noroom", "no_room")])
def test_8_renamed_or_roomless_event_is_an_integrity_failure(faulty, tmp_path, fault, counter):
    port = faulty(fault, 5)
    r = run_loadgen(base(port, tmp_path))
    assert report(tmp_path)["deliveries"][counter] == 5
    assert r.returncode == 1 and "GATE FAILED: integrity" in r.stderr


# ---- 9. several publishers per room ----

def test_9_slowed_publisher_in_a_shared_room_is_no_loss(faulty, tmp_path):
    port = faulty("none", extra=["--stall-at", 200, "--stall-ms", 1500])
    r = run_loadgen(["--url", "ws://127.0.0.1:%d/ws" % port, "--connections", 2, "--rooms", 1,
                     "--publishers", 2, "--rate", 2000, "--duration", "2s", "--warmup", "0s",
                     "--drain", "3s", "--max-loss", 0, "--json", tmp_path / "r.json"],
                    timeout=90)
    d = report(tmp_path)["deliveries"]
    assert d["lost"] == d["late"] == d["out_of_order"] == 0, d
    assert d["delivered"] == d["expected"] > 0
    assert r.returncode == 0, r.stderr


# ---- 10 and 11. closed loop ----

def test_10_closed_loop_abandons_a_lost_publish_instead_of_shrinking_the_window(faulty,
                                                                                tmp_path):
    port = faulty("drop", 1, start=10)
    run_loadgen(["--url", "ws://127.0.0.1:%d/ws" % port, "--connections", 5, "--rate", 0,
                 "--window", 2, "--duration", "2s", "--warmup", "0s", "--drain", "10s",
                 "--json", tmp_path / "r.json"], timeout=60)
    j = report(tmp_path)
    assert j["deliveries"]["lost"] == 1
    assert j["publishes"]["abandoned"] == 1, j["publishes"]


def test_11_closed_loop_stall_is_reported_and_gated(faulty, tmp_path):
    port = faulty("none", extra=["--stall-at", 100, "--stall-ms", 400])
    r = run_loadgen(["--url", "ws://127.0.0.1:%d/ws" % port, "--connections", 5, "--rate", 0,
                     "--window", 2, "--duration", "2s", "--warmup", "0s",
                     "--max-stall", "100ms", "--json", tmp_path / "r.json"])
    j = report(tmp_path)
    assert j["stalls"]["longest_ms"] >= 390, j["stalls"]
    assert j["latency_corrected"] is False
    assert r.returncode == 1 and "GATE FAILED: max-stall" in r.stderr
    assert "not corrected for coordinated omission" in r.stdout
    assert "corrected for coordinated omission)" not in r.stdout


# ---- 12. room names that need escaping; missing seq ----

def test_12_room_name_with_u2028(faulty, tmp_path):
    port = faulty()
    r = run_loadgen(base(port, tmp_path, "--max-loss", 0) + ["--rooms", "a\u2028b,c"])
    d = report(tmp_path)["deliveries"]
    assert d["misrouted"] == 0 and d["lost"] == 0, d
    assert r.returncode == 0, r.stderr
    assert report(tmp_path)["scenario"]["room_names"] == ["a\u2028b", "c"]


def test_12_missing_seq_is_warned(faulty, tmp_path):
    port = faulty("noseq")
    r = run_loadgen(base(port, tmp_path))
    assert "without a server seq" in r.stderr
    assert report(tmp_path)["deliveries"]["no_seq"] > 0


# ---- 13. unsent and unanswered publishes ----

def test_13_publisher_closed_midway_fails_even_without_integrity_gate(faulty, tmp_path):
    port = faulty("none", extra=["--close-publisher-after", 101])
    r = run_loadgen(base(port, tmp_path, "--no-integrity-gate"))
    j = report(tmp_path)
    assert j["publishes"]["sent"] == 101 and j["publishes"]["unsent"] > 100
    assert r.returncode == 1 and "GATE FAILED: unsent-publishes" in r.stderr
    assert "scheduled publishes were never sent" in r.stderr


def test_13_unanswered_publishes_fail(faulty, tmp_path):
    port = faulty("none", extra=["--no-ack"])
    r = run_loadgen(base(port, tmp_path))
    j = report(tmp_path)
    assert j["publishes"]["unanswered"] == j["publishes"]["sent"] > 0
    assert r.returncode == 1 and "GATE FAILED: unanswered-publishes" in r.stderr


# ---- 14. foreign deliveries ----

def test_14_foreign_deliveries_fail_integrity(faulty, tmp_path):
    if not os.path.exists(LOADGEN):
        pytest.skip("not built")
    port = faulty()
    other = subprocess.Popen([LOADGEN] + [str(a) for a in base(port, tmp_path, conns=1, rooms=1)
                                          ] + ["--json", tmp_path / "other.json", "--quiet"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        r = run_loadgen(base(port, tmp_path, "--publishers", 0, conns=2, rooms=1))
    finally:
        other.wait(timeout=30)
    assert report(tmp_path)["deliveries"]["foreign"] > 0
    assert "foreign" in r.stdout
    assert r.returncode == 1 and "GATE FAILED: integrity" in r.stderr


# ---- 17 and 18. what is printed ----

def test_17_publishers_0_says_no_publishes(faulty, tmp_path):
    port = faulty()
    r = run_loadgen(base(port, tmp_path, "--publishers", 0, conns=2))
    assert "publishes/s" not in r.stdout.split("\n")[2]
    assert "no publishes" in r.stdout


def test_18_option_and_scenario_messages(tmp_path):
    r = run_loadgen(["--bogus"])
    assert r.returncode == 2 and "unknown option: --bogus" in r.stderr
    assert "needs a value" not in r.stderr
    ini = tmp_path / "s.ini"
    ini.write_text("[scenario]\nrooms = 4\nsubs_per_conn = 2\n")
    r = run_loadgen(["--scenario", ini, "--help"])
    assert r.returncode == 0, r.stderr
    bad = tmp_path / "bad.ini"
    bad.write_text("[scenario]\nrooms = 2\nconnectionz = 3\n")
    r = run_loadgen(["--scenario", bad])
    assert r.returncode == 2
    lines = [l for l in r.stderr.splitlines() if l]
    assert lines == ["ringcast-load: %s:3: unknown key: connectionz" % bad], lines


# ---- 19. the documented CI recipe runs ----

def test_19_documented_ci_recipe_runs(tmp_path):
    """The `run:` steps after the build in docs/loadgen.md's CI example, run as written
    (shortened by a scenario override), against the real engine."""
    if not os.path.exists(ENGINE) or not os.path.exists(LOADGEN):
        pytest.skip("engine or loadgen not built")
    doc = open(os.path.join(REPO, "docs", "loadgen.md")).read()
    yaml = doc.split("Example job")[1].split("```yaml")[1].split("```")[0]
    steps = [l.split("- run:", 1)[1].split("#")[0].strip() for l in yaml.splitlines()
             if "- run:" in l]
    steps = [s for s in steps if s.startswith("bench/gate")]
    assert len(steps) >= 2, steps
    # Shorter and smaller than the reference run, and loose latency and regression limits: this
    # checks that the recipe works, not this shared machine's noise or an ASan build's speed
    # (issue 16 item 16).
    env = dict(os.environ, RINGCAST_BUILD=BUILD, RINGCAST_GATE_PORT=str(free_port()),
               RINGCAST_GATE_EXTRA="--duration 1s --warmup 200ms --drain 1s --connections 50 "
                                   "--max-p99 10s")
    for step in steps:
        step = step.replace("bench/gate", os.path.join(REPO, "bench", "gate"), 1)
        if "--baseline" in step:
            step += " --max-regression 1000%"
        r = subprocess.run(step, shell=True, cwd=tmp_path, capture_output=True, text=True,
                           timeout=120, env=env)
        assert r.returncode == 0, (step, r.stdout, r.stderr)
        assert "gate verdict: PASS" in r.stdout, (step, r.stdout)
    assert json.load(open(tmp_path / "baseline" / "reference.json"))["ok"] is True


def test_16_repeat_gates_medians_against_the_baselines_spread(faulty, tmp_path):
    port = faulty()
    quick = ["--connections", 10, "--rooms", 1, "--duration", "600ms", "--warmup", "100ms",
             "--drain", "500ms"]
    url = ["--url", "ws://127.0.0.1:%d/ws" % port]
    r = run_loadgen(url + quick + ["--repeat", 3, "--json", tmp_path / "b.json"], timeout=120)
    assert r.returncode == 0, r.stderr
    b = report(tmp_path, "b.json")
    assert b["ok"] is True and b["repeat"]["runs"] == 3 and len(b["runs"]) == 3
    assert b["latency_us"]["p99"] == sorted(b["repeat"]["p99_us"])[1]
    assert b["deliveries"]["per_s"] == sorted(b["repeat"]["deliveries_per_s"])[1]
    # compared with itself through the medians: the gate line names both runs and their spread
    r = run_loadgen(url + quick + ["--repeat", 3, "--baseline", tmp_path / "b.json",
                                   "--max-regression", "1000%", "--json", tmp_path / "c.json"],
                    timeout=120)
    assert r.returncode == 0, r.stderr
    line = [l for l in r.stdout.splitlines() if "regression-p99" in l][0]
    assert "baseline p99" in line and "3 runs" in line and "spread" in line, line
    g = [g for g in report(tmp_path, "c.json")["gates"] if g["name"] == "regression-p99"][0]
    assert "spread" in g["note"] and g["limit"] >= 1000
    # a baseline 100x faster fails, whatever the spread
    b["latency_us"]["p99"] /= 100
    (tmp_path / "fast.json").write_text(json.dumps(b))
    r = run_loadgen(url + quick + ["--repeat", 3, "--baseline", tmp_path / "fast.json"],
                    timeout=120)
    assert r.returncode == 1 and "GATE FAILED: regression-p99" in r.stderr
