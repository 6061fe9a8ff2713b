"""Operator experience against the real binary (issue 17): signals (SIGHUP reload and log
reopen, SIGUSR1 status, a second SIGTERM), the connection lifecycle at debug level, refusals
logged at info and rate-limited, reasons in 400 bodies, INVALID_MESSAGE correlation ids, and a
publish whose payload is larger than the default token budget (issue 9)."""

import json
import os
import re
import resource
import signal
import socket
import subprocess
import tempfile
import time

import pytest

from engine_harness import (BINARY, Engine, connect, free_port, http_exchange, publish,
                            recv_json, run, subscribe, upgrade_request)


def wait_for(pred, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def upgraded(port):
    status, _, _ = http_exchange(port, upgrade_request())
    return status


# ---- signals ---------------------------------------------------------------------------------

def test_sigusr1_logs_one_status_line_per_worker_and_keeps_serving(start_engine):
    e = start_engine("--threads", "2", "--rate-limit", "0")

    async def go():
        ws, _ = await connect(e.url)
        await subscribe(ws, "status-room")
        e.signal(signal.SIGUSR1)
        wait_for(lambda: e.stderr().count(" status: ") >= 2, what="two status lines")
        await subscribe(ws, "status-room-2")  # still serving
        await ws.close()

    run(go())
    lines = [l for l in e.stderr().splitlines() if " status: " in l]
    assert len(lines) == 2, lines
    assert {re.search(r"\[(w\d)\]", l).group(1) for l in lines} == {"w0", "w1"}, lines
    for l in lines:
        assert re.search(r"connections=\d+ handshaking=\d+ closing=\d+ rooms=\d+ "
                         r"queued_bytes=\d+ ", l), l
    assert sum(int(re.search(r"connections=(\d+)", l).group(1)) for l in lines) == 1, lines
    assert sum(int(re.search(r"rooms=(\d+)", l).group(1)) for l in lines) >= 1, lines


def test_sighup_reloads_runtime_limits_and_logs_what_changed(start_engine, tmp_path):
    ini = tmp_path / "r.ini"
    ini.write_text("threads = 1\nmax-connections = 100\nheartbeat-s = 25\n")
    e = start_engine("--config", str(ini))
    assert upgraded(e.port) == 101
    ini.write_text("threads = 1\nmax-connections = 1\nheartbeat-s = 7\n")
    e.signal(signal.SIGHUP)
    wait_for(lambda: "reload: max-connections 100 -> 1" in e.stderr(), what="reload line")
    log = e.stderr()
    assert f"reload: max-connections 100 -> 1 (from {ini}:2)" in log, log
    assert f"reload: heartbeat-s 25 -> 7 (from {ini}:3) needs a restart; keeping 25" in log, log

    async def go():
        ws, _ = await connect(e.url)  # the one connection allowed now
        status, _, raw = http_exchange(e.port, upgrade_request())
        await ws.close()
        return status, raw

    status, raw = run(go())
    assert status == 503, raw
    assert b"max-connections (1) reached" in raw, raw


def test_sighup_with_a_bad_config_keeps_the_old_one(start_engine, tmp_path):
    ini = tmp_path / "r.ini"
    ini.write_text("threads = 1\nrate-limit = 50\n")
    e = start_engine("--config", str(ini))
    ini.write_text("threads = 1\nrate-limit = lots\n")
    e.signal(signal.SIGHUP)
    wait_for(lambda: "configuration unchanged" in e.stderr(), what="reload error")
    assert (f"reload: {ini}:2: rate-limit 'lots' is not a number in 0..10000000 (messages/s) "
            "(configuration unchanged)") in e.stderr(), e.stderr()
    assert upgraded(e.port) == 101


def test_sighup_reopens_the_log_file(start_engine, tmp_path):
    log = tmp_path / "ringcast.log"
    e = start_engine("--threads", "1", "--log-file", str(log))
    wait_for(lambda: log.exists() and "listening on" in log.read_text(), what="log file")
    rotated = tmp_path / "ringcast.log.1"
    os.rename(log, rotated)
    e.signal(signal.SIGHUP)
    wait_for(lambda: log.exists() and "reload:" in log.read_text(), what="reopened log")
    assert "SIGHUP: reopening the log" in rotated.read_text()
    assert "listening on" not in log.read_text()


def test_second_sigterm_during_the_drain_exits_at_once():
    e = Engine(["--threads", "1", "--drain-timeout-s", "30"])
    try:
        # A client that never answers our close frame keeps the drain waiting.
        s = socket.create_connection(("127.0.0.1", e.port))
        s.sendall(upgrade_request())
        time.sleep(0.3)
        e.signal(signal.SIGTERM)
        wait_for(lambda: "shutting down" in e.stderr(), what="drain start")
        time.sleep(0.3)
        assert e.proc.poll() is None, "the drain should still be waiting for the client"
        t0 = time.monotonic()
        e.signal(signal.SIGTERM)
        rc = e.wait(5)
        assert time.monotonic() - t0 < 2
        assert rc == 1, rc
        assert "SIGTERM during the drain: exiting now, 1 connections not drained" in e.stderr()
        s.close()
    finally:
        e.stop()
        os.unlink(e._err.name)


def test_sighup_and_sigusr1_during_the_drain_are_ignored(start_engine):
    e = start_engine("--threads", "1", "--drain-timeout-s", "3")
    s = socket.create_connection(("127.0.0.1", e.port))
    s.sendall(upgrade_request())
    time.sleep(0.3)
    e.signal(signal.SIGTERM)
    wait_for(lambda: "shutting down" in e.stderr(), what="drain start")
    e.signal(signal.SIGHUP)
    e.signal(signal.SIGUSR1)
    assert e.wait(10) == 0
    assert "SIGHUP ignored: shutting down" in e.stderr()
    s.close()


# ---- logs ------------------------------------------------------------------------------------

def test_debug_logs_the_connection_lifecycle(start_engine):
    e = start_engine("--threads", "1", "--rate-limit", "0", "--log-level", "debug")

    async def go():
        ws, welcome = await connect(e.url + "/sess-1")
        await subscribe(ws, "life")
        await ws.close(code=1000, reason="bye")
        return welcome["data"]["connection_id"]

    cid = run(go())
    wait_for(lambda: f"({cid}): closed" in e.stderr(), what="closed line")
    log = e.stderr()
    for what in ("accepted", "upgraded: /ws/sess-1", "subscribe life", "peer sent close 1000",
                 "closed (after our close)"):
        assert re.search(rf"127\.0\.0\.1:\d+ \({cid}\): {re.escape(what)}", log), (what, log)


def test_server_close_logs_code_and_reason_at_debug(start_engine):
    e = start_engine("--threads", "1", "--log-level", "debug", "--max-message-bytes", "200",
                     "--max-queue-bytes", "4096")

    async def go():
        ws, welcome = await connect(e.url)
        await ws.send("x" * 300)
        try:
            await recv_json(ws)
        except Exception:
            pass
        return welcome["data"]["connection_id"]

    cid = run(go())
    wait_for(lambda: f"({cid}): closing with 1009" in e.stderr(), what="closing line")


def test_handshake_refusals_are_logged_at_info_rate_limited(start_engine):
    e = start_engine("--threads", "1")
    bad = b"GET /ws HTTP/1.1\r\n\r\n"  # no Host
    for _ in range(10):
        http_exchange(e.port, bad)
    time.sleep(1.1)
    http_exchange(e.port, bad)
    status, _, _ = http_exchange(e.port, upgrade_request(path="/nowhere"))
    assert status == 404
    wait_for(lambda: "refused with 404" in e.stderr(), what="404 line")
    log = e.stderr()
    lines = [l for l in log.splitlines() if "handshake refused with 400" in l]
    assert 2 <= len(lines) <= 3, lines
    assert all(" INFO " in l and "HTTP/1.1 request without a Host header" in l for l in lines)
    suppressed = sum(int(m) for m in re.findall(r"\((\d+) more like this suppressed\)",
                                                "\n".join(lines)))
    assert len(lines) + suppressed == 11, lines
    assert "no WebSocket endpoint at this path" in log


@pytest.mark.parametrize("req,reason", [
    (b"GET /ws HTTP/1.1\r\n\r\n", b"HTTP/1.1 request without a Host header"),
    (b"GET /ws HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", b"repeated Host header"),
    (b"GET /ws HTTP/1.1\r\nHost: a\r\n\r\n", b"the Upgrade header must list websocket"),
    (b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
     b"Sec-WebSocket-Version: 13\r\n\r\n", b"Sec-WebSocket-Key header missing"),
    (b"GET /ws HTTP/2.0\r\nHost: a\r\n\r\n", b"the version must be HTTP/1.0 or HTTP/1.1"),
])
def test_400_body_says_which_rule_was_broken(engine, req, reason):
    status, _, raw = http_exchange(engine.port, req)
    assert status == 400, raw
    assert raw.rstrip().endswith(reason), raw


def test_accept_backs_off_on_emfile_with_one_line_per_interval():
    port = free_port()
    penv = {k: v for k, v in os.environ.items() if not k.startswith("RINGCAST_")}

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (48, 48))

    with tempfile.TemporaryFile() as err:
        p = subprocess.Popen([BINARY, "--threads", "1", "--port", str(port),
                              "--max-connections", "1000", "--handshake-timeout-s", "30"],
                             stderr=err, env=penv, preexec_fn=limit)
        socks = []
        try:
            wait_for(lambda: _connects(port), what="engine up")
            for _ in range(80):
                socks.append(socket.create_connection(("127.0.0.1", port)))
            time.sleep(2.5)
            assert p.poll() is None
        finally:
            for s in socks:
                s.close()
            p.send_signal(signal.SIGTERM)
            rc = p.wait(10)
        err.seek(0)
        log = err.read().decode()
    assert rc == 0, log
    lines = [l for l in log.splitlines() if "accept: " in l]
    assert 1 <= len(lines) <= 4, log
    assert "pausing accept" in lines[0], lines


def _connects(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


# ---- protocol --------------------------------------------------------------------------------

@pytest.mark.parametrize("msg,detail", [
    ({"type": "request", "event": "subscribe", "data": [], "id": "c1"}, "data"),
    ({"type": "request", "event": "subscribe", "data": "x", "id": "c2"}, "data"),
    ({"type": "request", "id": "c3"}, "event"),
    ({"type": "request", "event": 7, "id": "c4"}, "event"),
    ({"type": "request", "event": "publish", "id": "c5",
      "data": {"channel": "r", "event": 5, "payload": 1}}, "data.event must be a string"),
    ({"type": "request", "event": "ping", "data": [], "id": 42}, "data"),
])
def test_invalid_message_carries_the_correlation_id(engine, msg, detail):
    async def go():
        ws, _ = await connect(engine.url)
        await ws.send(json.dumps(msg))
        m = await recv_json(ws)
        await ws.close()
        return m

    m = run(go())
    assert m["type"] == "error" and m["data"]["code"] == "INVALID_MESSAGE", m
    assert m["correlation_id"] == msg["id"], m
    assert detail in m["data"]["message"], m


def test_publish_with_a_large_array_payload_is_delivered(engine):
    payload = list(range(1100))  # ~5.6 KB, more values than the default token budget
    wide = [[i, "x"] for i in range(3000)]

    async def go():
        sub, _ = await connect(engine.url)
        pub, _ = await connect(engine.url)
        await subscribe(sub, "big")
        out = []
        for p in (payload, wide):
            r = await publish(pub, "big", p)
            assert r["type"] == "response" and r["data"]["status"] == "published", r
            ev = await recv_json(sub)
            out.append(ev["data"])
        await sub.close()
        await pub.close()
        return out

    got = run(go())
    assert got == [payload, wide]
