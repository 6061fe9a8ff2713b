"""ringcast-load against a deliberately faulty server: each fault is reported with its exact
count, nothing else is reported, and the right gate fails."""
import json
import time

import pytest

from lg_helpers import run_loadgen

COUNT = 5
COUNTERS = ["lost", "duplicate", "out_of_order", "corrupt", "misrouted", "late"]


def scenario(port, tmp_path, *extra):
    return ["--url", "ws://127.0.0.1:%d/ws" % port, "--connections", 20, "--rooms", 2,
            "--rate", 200, "--duration", "1.5s", "--warmup", "300ms", "--drain", "1s",
            "--size", 128, "--json", tmp_path / "r.json"] + list(extra)


def wait_for_lines(path, n, timeout=5.0):
    """The server logs a close once its closing handshake ends: wait for n lines."""
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        lines = path.read_text().split() if path.exists() else []
        if len(lines) >= n:
            break
        time.sleep(0.05)
    return lines


def report(tmp_path):
    with open(tmp_path / "r.json") as f:
        return json.load(f)


def test_clean_server_reports_nothing_wrong(faulty, tmp_path):
    port = faulty("none")
    r = run_loadgen(scenario(port, tmp_path, "--max-loss", 0))
    assert r.returncode == 0, r.stderr
    j = report(tmp_path)
    d = j["deliveries"]
    assert j["ok"] is True
    assert d["expected"] == j["publishes"]["sent"] * 10  # 20 subscribers over 2 rooms
    assert d["delivered"] == d["expected"]
    assert all(d[k] == 0 for k in COUNTERS)
    assert j["connect"]["established"] == 21
    assert j["publishes"]["acked"] == j["publishes"]["sent"]
    assert j["latency_us"]["count"] > 0
    assert 0 < j["latency_us"]["p50"] <= j["latency_us"]["p99"] <= j["latency_us"]["max"]


@pytest.mark.parametrize("fault,counter", [
    ("drop", "lost"),
    ("duplicate", "duplicate"),
    ("reorder", "out_of_order"),
    ("misroute", "misrouted"),
    ("corrupt", "corrupt"),
])
@pytest.mark.parametrize("layout", ["ringcast", "spaced"])
def test_fault_counted_exactly(faulty, tmp_path, fault, counter, layout):
    if layout == "spaced" and fault not in ("duplicate", "corrupt"):
        pytest.skip("the fallback parser is covered by two faults")
    port = faulty(fault, COUNT, layout)
    r = run_loadgen(scenario(port, tmp_path, "--max-loss", 0))
    j = report(tmp_path)
    d = j["deliveries"]
    assert d[counter] == COUNT, (fault, d)
    for other in COUNTERS:
        if other != counter:
            assert d[other] == 0, (fault, other, d)
    # Every fault fails a gate: loss fails max-loss, the others fail integrity.
    assert r.returncode == 1, r.stderr
    gate = "max-loss" if fault == "drop" else "integrity"
    assert "GATE FAILED: " + gate in r.stderr
    assert j["ok"] is False
    failed = [g["name"] for g in j["gates"] if not g["ok"]]
    assert failed == [gate]


@pytest.mark.parametrize("fault,code,reason", [
    ("utf8", "1007", "invalid utf-8"),
    ("rsv", "1002", "reserved bits set"),
])
def test_bad_frame_closes_that_connection_only(faulty, tmp_path, fault, code, reason):
    """Text that is not UTF-8 (RFC 6455 8.1) or a frame with a reserved bit set (5.2) must end
    the connection that got it, even though every other subscriber got the same event as valid
    bytes: the bad copy must not match the good one the load generator already verified."""
    log = tmp_path / "closes"
    port = faulty(fault, 1, start=55, close_log=log)
    r = run_loadgen(scenario(port, tmp_path, "--max-loss", 0))
    j = report(tmp_path)
    # the server is told why: the code from the one that got the bad frame, 1000 from the others
    codes = wait_for_lines(log, j["connect"]["established"])
    assert len(codes) == j["connect"]["established"], codes
    assert codes.count(code) == 1 and codes.count("1000") == len(codes) - 1, codes
    assert j["connect"]["disconnects"] == 1, j["connect"]
    assert "bad frame from server: " + reason in r.stderr, r.stderr
    assert "1 connections ended during the run" in r.stderr
    assert j["deliveries"]["corrupt"] == j["deliveries"]["duplicate"] == 0
    assert j["deliveries"]["misrouted"] == 0
    assert r.returncode == 1
    assert "GATE FAILED: disconnects" in r.stderr


def test_integrity_gate_can_be_disabled(faulty, tmp_path):
    port = faulty("duplicate", COUNT)
    r = run_loadgen(scenario(port, tmp_path, "--no-integrity-gate"))
    assert r.returncode == 0, r.stderr
    assert report(tmp_path)["deliveries"]["duplicate"] == COUNT


def test_closed_loop(faulty, tmp_path):
    port = faulty("none")
    r = run_loadgen(["--url", "ws://127.0.0.1:%d/ws" % port, "--connections", 10, "--rate", 0,
                     "--window", 4, "--duration", "1s", "--warmup", "200ms",
                     "--json", tmp_path / "r.json", "--max-loss", 0])
    assert r.returncode == 0, r.stderr
    j = report(tmp_path)
    assert j["publishes"]["sent"] > 20
    assert j["deliveries"]["lost"] == 0
    assert j["deliveries"]["delivered"] == j["publishes"]["sent"] * 10
    assert j["publishes"]["abandoned"] == 0


def test_closed_loop_survives_loss(faulty, tmp_path):
    """A dropped delivery must not stall the closed loop forever: the publish is abandoned
    after --drain and the loss is reported."""
    port = faulty("drop", 3, start=20, every=11)
    r = run_loadgen(["--url", "ws://127.0.0.1:%d/ws" % port, "--connections", 5, "--rate", 0,
                     "--window", 2, "--duration", "2s", "--warmup", "0s", "--drain", "300ms",
                     "--json", tmp_path / "r.json", "--max-loss", 0])
    assert r.returncode == 1
    j = report(tmp_path)
    assert j["deliveries"]["lost"] == 3
    assert j["publishes"]["abandoned"] >= 1
    assert j["publishes"]["sent"] > 10
