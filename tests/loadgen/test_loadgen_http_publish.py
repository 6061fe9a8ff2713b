"""ringcast-load --publish-via http against the real engine: publishers POST /api/publish over
one keep-alive connection each, pipelined, and every per-recipient check still holds (exact
accounting, no loss, order, payload integrity); a refused publish (wrong key) fails the run and
is reported by its code."""
import json
import os
import sys

from lg_helpers import run_loadgen

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "engine"))
from engine_harness import Engine  # noqa: E402

KEY = "lg-http-key-0123456789"


def engine():
    return Engine(["--threads", "2", "--api-key", KEY, "--rate-limit", "0"])


def lg(e, tmp_path, *extra):
    r = run_loadgen(["--url", "ws://127.0.0.1:%d/ws" % e.port, "--connections", 20, "--rooms", 10,
                     "--publishers", 2, "--publish-via", "http", "--duration", "1500ms",
                     "--warmup", "300ms", "--json", tmp_path / "r.json", "--quiet", *extra])
    return r, json.load(open(tmp_path / "r.json"))


def exact(j):
    d, p = j["deliveries"], j["publishes"]
    assert p["acked"] == p["sent"] > 0 and p["refused"] == p["unanswered"] == 0
    assert d["delivered"] == d["expected"] == p["sent"] * 2  # 20 subscribers over 10 rooms
    for k in ("lost", "duplicate", "out_of_order", "corrupt", "misrouted", "wrong_event",
              "excess", "no_seq"):
        assert d[k] == 0, (k, d)


def test_http_publishers_open_loop(tmp_path):
    e = engine()
    try:
        r, j = lg(e, tmp_path, "--api-key", KEY, "--rate", 2000)
        assert r.returncode == 0, r.stderr
        exact(j)
    finally:
        e.stop()
    e.check_clean_exit()


def test_http_publishers_closed_loop_pipelined(tmp_path):
    e = engine()
    try:
        r, j = lg(e, tmp_path, "--api-key", KEY, "--rate", 0, "--window", 64)
        assert r.returncode == 0, r.stderr
        exact(j)
        assert j["publishes"]["per_s"] > 1000  # modest: sanitizer builds, shared cores
    finally:
        e.stop()
    e.check_clean_exit()


def test_http_publish_refusals_fail_the_run_by_code(tmp_path):
    e = engine()
    try:
        r, j = lg(e, tmp_path, "--api-key", "wrong-key", "--rate", 300)
        assert r.returncode != 0
        p = j["publishes"]
        assert p["refused"] == p["sent"] > 0 and p["refused_reasons"] == {"UNAUTHORIZED": p["sent"]}
        assert "UNAUTHORIZED" in r.stderr
        assert j["deliveries"]["expected"] == j["deliveries"]["delivered"] == 0
    finally:
        e.stop()
    e.check_clean_exit()


def test_publish_via_bad_value_is_a_usage_error(tmp_path):
    r = run_loadgen(["--publish-via", "carrier-pigeon"])
    assert r.returncode == 2 and "publish-via" in r.stderr
    r = run_loadgen(["--publish-via", "http"])
    assert r.returncode == 2 and "--api-key" in r.stderr
