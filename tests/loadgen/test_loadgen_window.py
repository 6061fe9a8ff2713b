"""Closed loop (--rate 0): a publisher never has more than its --window of publishes unanswered,
even when their deliveries are complete. A server that delivers at once but holds the publish
replies back counts how many publishes it received before it answered any: at most the window
(before the fix, a window slot was freed by the deliveries alone, so the publisher ran ahead of
its replies without bound and the engine closed it with 4008 when its send queue to the
publisher overflowed). Over WebSocket (faulty_server.py --hold-replies-ms) and over pipelined
HTTP (hold_proxy.py in front of the real engine)."""
import json
import os
import sys

from lg_helpers import HERE, run_loadgen, start_server, stop_server

sys.path.insert(0, os.path.join(HERE, "..", "engine"))
from engine_harness import Engine  # noqa: E402

WINDOW = 4
HOLD_MS = 700
KEY = "lg-window-key-0123456789"


def max_unanswered(path):
    return int(path.read_text()) if path.exists() else 0


def assert_windowed_run(r, tmp_path, log):
    """The run passed, every publish was answered and delivered to all 10 subscribers, and the
    hold was in force while the publisher had a full window out."""
    assert r.returncode == 0, r.stderr
    j = json.load(open(tmp_path / "r.json"))
    p = j["publishes"]
    assert p["acked"] == p["sent"] > WINDOW and p["unanswered"] == 0
    assert j["deliveries"]["delivered"] == j["deliveries"]["expected"] == p["sent"] * 10
    assert max_unanswered(log) == WINDOW


def test_ws_publisher_waits_for_its_replies(faulty, tmp_path):
    log = tmp_path / "unanswered"
    port = faulty("none", extra=["--hold-replies-ms", HOLD_MS, "--unanswered-log", log])
    r = run_loadgen(["--url", "ws://127.0.0.1:%d/ws" % port, "--connections", 10, "--rooms", 1,
                     "--rate", 0, "--window", WINDOW, "--duration", "1500ms", "--warmup",
                     "300ms", "--json", tmp_path / "r.json", "--quiet"])
    assert_windowed_run(r, tmp_path, log)


def test_http_publisher_pipelines_at_most_the_window(tmp_path):
    e = Engine(["--threads", "1", "--api-key", KEY, "--rate-limit", "0"])
    log = tmp_path / "unanswered"
    proxy, pport = start_server([sys.executable, os.path.join(HERE, "hold_proxy.py"), "--to",
                                 str(e.port), "--hold-ms", str(HOLD_MS), "--unanswered-log",
                                 str(log)])
    try:
        r = run_loadgen(["--url", "ws://127.0.0.1:%d/ws" % e.port, "--pub-url",
                         "ws://127.0.0.1:%d/ws" % pport, "--publish-via", "http", "--api-key",
                         KEY, "--connections", 10, "--rooms", 1, "--rate", 0, "--window", WINDOW,
                         "--duration", "1500ms", "--warmup", "300ms", "--json",
                         tmp_path / "r.json", "--quiet"])
        assert_windowed_run(r, tmp_path, log)
    finally:
        stop_server(proxy)
        e.stop()
    e.check_clean_exit()


def test_publisher_closed_by_the_server_is_reported_by_its_code(faulty, tmp_path):
    # A subscriber is failed first (a non-UTF-8 delivery), then the server closes the publisher
    # with 1011: the message names the publisher and its close code, not the subscriber.
    port = faulty("utf8", count=1, start=3, extra=["--close-publisher-after", 10])
    r = run_loadgen(["--url", "ws://127.0.0.1:%d/ws" % port, "--connections", 10, "--rooms", 1,
                     "--rate", 0, "--window", WINDOW, "--duration", "1500ms", "--warmup",
                     "300ms", "--drain", "100ms", "--json", tmp_path / "r.json", "--quiet"])
    assert r.returncode == 1, r.stderr
    assert "GATE FAILED: disconnects" in r.stderr
    assert "publisher 0: server closed the connection: 1011 closing the publisher" in r.stderr
    assert json.load(open(tmp_path / "r.json"))["connect"]["disconnects"] == 2
