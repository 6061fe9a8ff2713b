"""Exit codes and gates: 0 when every gate holds, 1 naming the failing gate with its numbers,
2 for usage errors, refused connections and a connection count the fd limit cannot hold."""
import json
import os

from lg_helpers import REPO, free_port, run_loadgen

QUICK = ["--connections", 5, "--rate", 100, "--duration", "500ms", "--warmup", "100ms",
         "--drain", "500ms"]


def url(port):
    return ["--url", "ws://127.0.0.1:%d/ws" % port]


def test_gates_hold(faulty, tmp_path):
    port = faulty()
    r = run_loadgen(url(port) + QUICK + ["--max-p99", "10s", "--max-p999", "10s",
                                         "--max-loss", "0", "--min-deliveries-per-s", "1",
                                         "--json", tmp_path / "r.json"])
    assert r.returncode == 0, r.stderr
    j = json.load(open(tmp_path / "r.json"))
    names = [g["name"] for g in j["gates"]]
    assert names[:4] == ["max-p99", "max-p999", "max-loss", "min-deliveries-per-s"]
    assert all(g["ok"] for g in j["gates"])


def test_p99_gate_fails_with_numbers(faulty, tmp_path):
    port = faulty()
    r = run_loadgen(url(port) + QUICK + ["--max-p99", "1us", "--json", tmp_path / "r.json"])
    assert r.returncode == 1
    assert "GATE FAILED: max-p99" in r.stderr
    assert "must be <= 1 us" in r.stderr
    j = json.load(open(tmp_path / "r.json"))
    g = [g for g in j["gates"] if g["name"] == "max-p99"][0]
    assert g["ok"] is False and g["limit"] == 1 and g["value"] > 1
    assert j["ok"] is False


def test_min_deliveries_gate(faulty):
    port = faulty()
    r = run_loadgen(url(port) + QUICK + ["--min-deliveries-per-s", "1e9"])
    assert r.returncode == 1
    assert "GATE FAILED: min-deliveries-per-s" in r.stderr


def test_baseline_regression(faulty, tmp_path):
    port = faulty()
    r = run_loadgen(url(port) + QUICK + ["--json", tmp_path / "base.json"])
    assert r.returncode == 0, r.stderr
    # Against itself, with a generous margin: holds.
    r = run_loadgen(url(port) + QUICK + ["--baseline", tmp_path / "base.json",
                                         "--max-regression", "1000%"])
    assert r.returncode == 0, r.stderr
    # Against a baseline 100x faster: both regression gates fail.
    j = json.load(open(tmp_path / "base.json"))
    j["latency_us"]["p99"] /= 100
    j["deliveries"]["per_s"] *= 100
    json.dump(j, open(tmp_path / "fast.json", "w"))
    r = run_loadgen(url(port) + QUICK + ["--baseline", tmp_path / "fast.json",
                                         "--max-regression", "10%"])
    assert r.returncode == 1
    assert "GATE FAILED: regression-p99" in r.stderr
    assert "GATE FAILED: regression-deliveries-per-s" in r.stderr
    # An unreadable baseline is a usage error, not a pass.
    r = run_loadgen(url(port) + QUICK + ["--baseline", tmp_path / "missing.json"])
    assert r.returncode == 2
    assert "baseline" in r.stderr


def test_refused_connection_exits_2():
    r = run_loadgen(url(free_port()) + QUICK)
    assert r.returncode == 2
    assert "connections failed" in r.stderr
    assert "Connection refused" in r.stderr


def test_usage_errors_exit_2():
    for args in (["--bogus"], ["--connections", "x"], ["--max-p99", "5"],
                 ["--url", "http://127.0.0.1:1/"], ["--rooms", "2", "--subs-per-conn", "3"],
                 ["--duration", "5 parsecs"], ["--scenario", "/nonexistent.ini"]):
        r = run_loadgen(args)
        assert r.returncode == 2, (args, r.stderr)
        assert "ringcast-load:" in r.stderr
    r = run_loadgen(["--help"])
    assert r.returncode == 0 and "--max-p99" in r.stdout


def test_fd_limit_message():
    # Above the hard limit (20000 here): impossible in one process, said plainly.
    hard = int(open("/proc/self/limits").read().split("Max open files")[1].split()[1])
    r = run_loadgen(["--connections", hard + 10, "--url", "ws://127.0.0.1:1/ws"])
    assert r.returncode == 2
    assert "run several ringcast-load processes" in r.stderr
    assert "hard RLIMIT_NOFILE" in r.stderr
    # A lowered hard limit is caught the same way, before any connection is made.
    r = run_loadgen(["--connections", 500, "--url", "ws://127.0.0.1:1/ws"],
                    prefix=["prlimit", "--nofile=300:300"])
    assert r.returncode == 2
    assert "at most 200 connections" in r.stderr


def test_scenario_file_and_override(faulty, tmp_path):
    port = faulty()
    ini = tmp_path / "s.ini"
    ini.write_text("[scenario]\nurl = ws://127.0.0.1:%d/ws\nconnections = 3\nrate = 50\n"
                   "duration = 500ms\nwarmup = 100ms\nsize = 200\n" % port)
    r = run_loadgen(["--scenario", ini, "--connections", 4, "--json", tmp_path / "r.json"])
    assert r.returncode == 0, r.stderr
    j = json.load(open(tmp_path / "r.json"))
    assert j["scenario"]["connections"] == 4  # the flag wins
    assert j["scenario"]["size"] == 200 and j["scenario"]["rate"] == 50
    bad = tmp_path / "bad.ini"
    bad.write_text("connectionz = 3\n")
    assert run_loadgen(["--scenario", bad]).returncode == 2


def test_shipped_scenarios_parse():
    d = os.path.join(REPO, "bench", "scenarios")
    for name in ("reference.ini", "fanout-max.ini", "rooms-100.ini", "idle-10k.ini"):
        # --help after the scenario: parses it fully, then prints usage and exits 0.
        r = run_loadgen(["--scenario", os.path.join(d, name), "--help"])
        assert r.returncode == 0, (name, r.stderr)
