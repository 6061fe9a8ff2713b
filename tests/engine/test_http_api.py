"""The HTTP API on the engine's port (docs/http-api.md), against the real binary over real
sockets: keep-alive, pipelining in order, every error status, the bounds, publish/broadcast
reaching WebSocket subscribers, status/rooms gathered from every worker, Prometheus metrics
checked by promtool."""

import asyncio
import json
import shutil
import socket
import subprocess
import time

import pytest

from engine_harness import connect, recv_json, request, run

KEY = "test-key-123"


def conn(port, timeout=5.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return s


def req(method, path, body=None, headers=(), key=KEY, close=False):
    lines = [f"{method} {path} HTTP/1.1", "Host: x"]
    if key:
        lines.append(f"X-API-Key: {key}")
    if body is not None:
        if not isinstance(body, (bytes, str)):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    lines += list(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


class Reader:
    """Reads Content-Length framed responses one after another from one socket."""

    def __init__(self, s):
        self.s, self.buf = s, b""

    def _fill(self):
        d = self.s.recv(65536)
        if not d:
            raise EOFError("connection closed")
        self.buf += d

    def response(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        status = int(lines[0].split()[1])
        headers = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
        n = int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body

    def closed(self, timeout=5.0):
        self.s.settimeout(timeout)
        try:
            return self.s.recv(1) == b""
        except ConnectionResetError:
            return True


def call(port, method, path, body=None, **kw):
    with conn(port) as s:
        s.sendall(req(method, path, body, **kw))
        st, h, b = Reader(s).response()
        return st, h, json.loads(b) if h.get("content-type", "").startswith("application/json") else b


def api_engine(start_engine, *extra):
    return start_engine("--threads", "3", "--rate-limit", "0", "--api-key", KEY, *extra)


# ---- HTTP/1.1 framing ----


def test_health_keepalive_and_fields(start_engine):
    e = api_engine(start_engine)
    with conn(e.port) as s:
        r = Reader(s)
        for _ in range(3):
            s.sendall(req("GET", "/health", key=None))
            st, h, b = r.response()
            assert st == 200 and h["connection"] == "keep-alive"
            d = json.loads(b)
            assert d["status"] == "healthy" and d["workers"] == 3
            assert {"uptime_s", "connections", "rooms"} <= d.keys()


def test_pipelined_requests_answered_in_order(start_engine):
    """Publishes to rooms homed on every worker (held answers), gathers and plain answers,
    pipelined in one write: the answers come back in request order."""
    e = api_engine(start_engine)
    reqs, expect = [], []
    for i in range(60):
        k = i % 4
        if k == 0:
            reqs.append(req("POST", "/api/publish", {"channel": f"room-{i}", "data": i}))
            expect.append(("pub", f"room-{i}"))
        elif k == 1:
            reqs.append(req("GET", "/health"))
            expect.append(("health", None))
        elif k == 2:
            reqs.append(req("GET", f"/nope-{i}"))
            expect.append(("404", None))
        else:
            reqs.append(req("GET", "/api/status"))
            expect.append(("status", None))
    with conn(e.port) as s:
        s.sendall(b"".join(reqs))
        r = Reader(s)
        for kind, ch in expect:
            st, _, b = r.response()
            d = json.loads(b)
            if kind == "pub":
                assert st == 200 and d["channel"] == ch and d["seq"] == 1, d
            elif kind == "health":
                assert st == 200 and d["status"] == "healthy"
            elif kind == "404":
                assert st == 404 and d["error"]["code"] == "NOT_FOUND"
            else:
                assert st == 200 and len(d["workers"]) == 3


def test_error_statuses(start_engine):
    e = api_engine(start_engine, "--max-message-bytes", "4096")
    st, h, d = call(e.port, "GET", "/api/publish")
    assert st == 405 and h["allow"] == "POST" and d["error"]["code"] == "METHOD_NOT_ALLOWED"
    st, h, d = call(e.port, "POST", "/health", body="{}")
    assert st == 405 and h["allow"] == "GET"
    st, h, d = call(e.port, "POST", "/api/publish", {"channel": "a"}, key=None)
    assert st == 401 and d["error"]["code"] == "UNAUTHORIZED" and "www-authenticate" in h
    st, _, d = call(e.port, "POST", "/api/publish", {"channel": "a"}, key="wrong")
    assert st == 401 and d["error"]["message"] == "wrong API key"
    st, _, d = call(e.port, "POST", "/api/publish", {"channel": "a"}, key=None,
                    headers=[f"Authorization: Bearer {KEY}"])
    assert st == 200 and d["seq"] == 1
    st, _, d = call(e.port, "POST", "/api/publish", "{not json")
    assert st == 400 and d["error"]["code"] == "INVALID_MESSAGE"
    st, _, d = call(e.port, "POST", "/api/publish", {"channel": ""})
    assert st == 400
    st, _, d = call(e.port, "POST", "/api/publish", {"channel": "a", "data": "x" * 5000})
    assert st == 413 and d["error"]["code"] == "TOO_LARGE"
    st, _, d = call(e.port, "GET", "/api/rooms?limit=0")
    assert st == 400
    # 411: a POST without Content-Length; 501: chunked; both close the connection.
    for extra, want in (([], 411), (["Transfer-Encoding: chunked"], 501)):
        with conn(e.port) as s:
            s.sendall(req("POST", "/api/publish", headers=extra))
            r = Reader(s)
            st, h, b = r.response()
            assert st == want and h["connection"] == "close", b
            assert json.loads(b)["error"]["code"] in ("LENGTH_REQUIRED", "NOT_IMPLEMENTED")
            assert r.closed()
    # 413 announced by Content-Length alone: refused before the body is read.
    with conn(e.port) as s:
        s.sendall(req("POST", "/api/publish", headers=["Content-Length: 100000"], key=KEY))
        st, _, _ = Reader(s).response()
        assert st == 413
    # 431: a head over 8 KiB (on a connection that is already an API connection).
    with conn(e.port) as s:
        r = Reader(s)
        s.sendall(req("GET", "/health"))
        assert r.response()[0] == 200
        s.sendall(req("GET", "/health", headers=["X-Pad: " + "a" * 9000]))
        st, _, b = r.response()
        assert st == 431 and r.closed()


def test_no_api_key_configured_refuses(start_engine):
    e = start_engine("--threads", "1")
    st, _, d = call(e.port, "GET", "/api/status")
    assert st == 401 and "no API key" in d["error"]["message"]
    assert call(e.port, "GET", "/health")[0] == 200


def test_metrics_key(start_engine):
    e = api_engine(start_engine, "--metrics-key", "mk")
    assert call(e.port, "GET", "/metrics", key=None)[0] == 401
    assert call(e.port, "GET", "/metrics", key="mk")[0] == 200
    assert call(e.port, "GET", "/health", key="mk")[0] == 200


def test_rate_limited_429_then_closed(start_engine):
    e = start_engine("--threads", "1", "--rate-limit", "1", "--rate-burst", "2")
    with conn(e.port) as s:
        s.sendall(req("GET", "/health", key=None) * 20)
        r = Reader(s)
        codes = []
        try:
            while True:
                codes.append(r.response()[0])
        except (EOFError, ConnectionResetError, socket.timeout):
            pass
    assert codes[:2] == [200, 200] and 429 in codes and len(codes) < 20, codes


def test_503_at_connection_limit(start_engine):
    e = start_engine("--threads", "1", "--max-connections", "1")

    async def go():
        # the harness's readiness probe holds the one pending slot until its FIN is seen
        await asyncio.sleep(0.3)
        ws, _ = await connect(e.url)
        st, _, d = await asyncio.get_running_loop().run_in_executor(
            None, lambda: call(e.port, "GET", "/health", key=None))
        await ws.close()
        return st, d

    st, d = run(go())
    assert st == 503 and d["error"]["code"] == "SERVER_FULL"


# ---- hostile clients ----


def test_pipeline_flood_never_read_is_bounded(start_engine):
    """A client that pipelines thousands of requests and never reads is closed as a slow
    consumer once its answers pass max-queue-bytes; the engine stays healthy."""
    e = api_engine(start_engine, "--max-queue-bytes", "131072")
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", e.port))
    s.settimeout(5)
    blob = req("GET", "/api/status") * 200
    sent = 0
    try:
        for _ in range(200):
            s.sendall(blob)
            sent += 200
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        pass
    s.close()
    time.sleep(0.3)
    assert call(e.port, "GET", "/health")[0] == 200
    assert "slow consumer" in e.stderr()


def test_half_close_after_request_still_answered(start_engine):
    e = api_engine(start_engine)
    with conn(e.port) as s:
        s.sendall(req("POST", "/api/publish", {"channel": "hc", "data": 1}) + req("GET", "/health"))
        s.shutdown(socket.SHUT_WR)
        r = Reader(s)
        assert r.response()[0] == 200
        assert r.response()[0] == 200
        assert r.closed()


def test_slow_body_and_idle_timeout(start_engine):
    e = api_engine(start_engine, "--http-idle-timeout-s", "1")
    with conn(e.port) as s:
        r = Reader(s)
        s.sendall(req("GET", "/health"))
        assert r.response()[0] == 200
        s.sendall(req("POST", "/api/publish", b'{"channel":"slow"}')[:-5])  # body unfinished
        t0 = time.monotonic()
        st, h, b = r.response()
        assert st == 408 and json.loads(b)["error"]["code"] == "TIMEOUT"
        assert r.closed() and time.monotonic() - t0 < 4
    with conn(e.port) as s:  # idle keep-alive: closed quietly
        r = Reader(s)
        s.sendall(req("GET", "/health"))
        assert r.response()[0] == 200
        assert r.closed(timeout=4)


def test_waiting_answers_per_connection_bounded(start_engine):
    """More pipelined gathers than HTTP_API_MAX_JOBS (64) in one write: those beyond the bound
    are answered 429, the rest 200, still in order."""
    e = api_engine(start_engine)
    with conn(e.port) as s:
        s.sendall(req("GET", "/api/status") * 100)
        r = Reader(s)
        codes = [r.response()[0] for _ in range(100)]
    assert codes[:64] == [200] * 64 and 429 in codes[64:], codes


# ---- publish, broadcast ----


def test_http_publish_reaches_subscribers_like_ws_publish(start_engine):
    e = api_engine(start_engine)
    chans = [f"ch-{i}" for i in range(6)]  # homes spread over the 3 workers

    async def go():
        sub, _ = await connect(e.url)
        pub, _ = await connect(e.url)
        for c in chans:
            assert (await request(sub, "subscribe", {"channel": c}))["data"]["status"] == "subscribed"
        loop = asyncio.get_running_loop()
        got = []
        for c in chans:
            st, _, d = await loop.run_in_executor(
                None, lambda c=c: call(e.port, "POST", "/api/publish",
                                       {"channel": c, "event": "job.done", "data": {"n": [1, "x"]}}))
            assert st == 200 and d["seq"] == 1 and d["subscribers"] == 1, d
            ev = await recv_json(sub)
            got.append(ev)
            # the same room published over WebSocket: same envelope shape
            await pub.send(json.dumps({"type": "request", "event": "publish",
                                       "data": {"channel": c, "event": "job.done",
                                                "payload": {"n": [1, "x"]}}}))
            ev2 = await recv_json(sub)
            assert ev2["seq"] == 2
            assert set(ev) == set(ev2) and ev["event"] == ev2["event"] == "job.done"
            assert ev["data"] == ev2["data"] == {"n": [1, "x"]} and ev["room"] == c
        await sub.close()
        await pub.close()

    run(go())


def test_http_broadcast_several_channels(start_engine):
    e = api_engine(start_engine)

    async def go():
        sub, _ = await connect(e.url)
        for c in ("workflow:42", "global"):
            await request(sub, "subscribe", {"channel": c})
        loop = asyncio.get_running_loop()
        st, _, d = await loop.run_in_executor(None, lambda: call(
            e.port, "POST", "/api/broadcast",
            {"channels": ["workflow:42", "global", "nobody"], "event": "wf", "data": 7}))
        assert st == 200 and d["subscribers"] == 2, d
        assert [r["channel"] for r in d["results"]] == ["workflow:42", "global", "nobody"]
        evs = {(await recv_json(sub))["room"] for _ in range(2)}
        assert evs == {"workflow:42", "global"}
        await sub.close()

    run(go())
    st, _, d = call(e.port, "POST", "/api/broadcast", {"channels": ["a"] * 65})
    assert st == 400


# ---- status, rooms ----


def test_rooms_paged_with_prefix_and_one_room(start_engine):
    e = api_engine(start_engine)
    names = [f"team-{i:02d}" for i in range(25)] + ["other"]

    async def go():
        ws, _ = await connect(e.url)
        for n in names:
            await request(ws, "subscribe", {"channel": n})
        loop = asyncio.get_running_loop()

        def pages():
            seen, cursor = [], None
            while True:
                q = "/api/rooms?prefix=team-&limit=10" + (f"&cursor={cursor}" if cursor else "")
                st, _, d = call(e.port, "GET", q)
                assert st == 200, d
                seen += [r["name"] for r in d["rooms"]]
                assert all(r["subscribers"] == 1 for r in d["rooms"])
                cursor = d["next"]
                if not cursor:
                    return seen

        seen = await loop.run_in_executor(None, pages)
        assert seen == sorted(n for n in names if n.startswith("team-"))
        st, _, d = await loop.run_in_executor(None, lambda: call(e.port, "GET", "/api/rooms/other"))
        assert st == 200 and d == {"name": "other", "subscribers": 1, "seq": 0}
        st, _, d = await loop.run_in_executor(None, lambda: call(e.port, "GET", "/api/rooms/none"))
        assert st == 404
        st, _, d = await loop.run_in_executor(None, lambda: call(e.port, "GET", "/api/status"))
        # 26: no "$sys" among them, as nobody subscribes to it (no stats are published then).
        sys_room = await loop.run_in_executor(None, lambda: call(e.port, "GET", "/api/rooms/$sys"))
        assert d["totals"]["rooms"] == 26 and sys_room[0] == 404, (d["totals"], sys_room)
        assert d["config"]["api_key"] == "(redacted)"
        assert KEY not in json.dumps(d)
        await ws.close()

    run(go())


# ---- metrics ----


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool (Debian prometheus) missing")
def test_metrics_pass_promtool_under_load(start_engine):
    e = api_engine(start_engine)

    async def go():
        # max_queue=None: the library keeps reading past 32 unread events, so close() is quick
        subs = [(await connect(e.url, max_queue=None))[0] for _ in range(10)]
        for i, ws in enumerate(subs):
            await request(ws, "subscribe", {"channel": f"m{i % 3}"})
        loop = asyncio.get_running_loop()

        def load():
            with conn(e.port) as s:
                r = Reader(s)
                for batch in range(6):  # pipelined in 50s: under the 64 waiting answers
                    s.sendall(b"".join(req("POST", "/api/publish",
                                           {"channel": f"m{i % 3}", "data": i})
                                       for i in range(50)))
                    for _ in range(50):
                        assert r.response()[0] == 200
                s.sendall(req("GET", "/metrics"))
                return r.response()

        st, h, text = await loop.run_in_executor(None, load)
        for ws in subs:
            await ws.close()
        return st, h, text

    st, h, text = run(go())
    assert st == 200 and h["content-type"].startswith("text/plain; version=0.0.4")
    p = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True)
    assert p.returncode == 0, p.stdout + p.stderr
    t = text.decode()
    pubs = sum(int(l.split()[-1]) for l in t.splitlines()
               if l.startswith("ringcast_http_publishes_total{"))
    delivered = sum(int(l.split()[-1]) for l in t.splitlines()
                    if l.startswith("ringcast_deliveries_total{"))
    assert pubs == 300 and delivered >= 1000
    # The publish-to-last-send histogram: one sample per publish per worker with subscribers
    # (3 rooms over 3 workers: at least one per publish), cumulative buckets, +Inf == count.
    fam = parse_family(t, "ringcast_publish_to_last_send_seconds")
    assert len(fam["count"]) == 3 and 300 <= sum(fam["count"].values()) <= 900, fam["count"]
    for w, buckets in fam["buckets"].items():
        counts = [c for _, c in buckets]
        assert counts == sorted(counts) and buckets[-1] == ("+Inf", fam["count"][w])
        assert [le for le, _ in buckets][:3] == ["1e-05", "2.5e-05", "5e-05"]
    # engine time for a publish to 3-4 subscribers on a loaded 2-core box: well under 1 s
    assert sum(fam["sum"].values()) / sum(fam["count"].values()) < 1.0
    assert "# TYPE ringcast_errors_total counter" in t


def parse_family(text, name):
    """A histogram family's samples per worker: buckets [(le, cumulative)], sum and count."""
    out = {"buckets": {}, "sum": {}, "count": {}}
    for line in text.splitlines():
        if not line.startswith(name + "_"):
            continue
        key, val = line.rsplit(" ", 1)
        labels = dict(kv.split("=", 1) for kv in key[key.index("{") + 1:-1].split(","))
        labels = {k: v.strip('"') for k, v in labels.items()}
        w, kind = labels["worker"], key[len(name) + 1:key.index("{")]
        if kind == "bucket":
            out["buckets"].setdefault(w, []).append((labels["le"], int(val)))
        else:
            out[kind][w] = float(val) if kind == "sum" else int(val)
    return out


def error_counts(port):
    """ringcast_errors_total summed over workers: {(via, code): n}."""
    st, _, text = call(port, "GET", "/metrics")
    assert st == 200
    out = {}
    for line in text.decode().splitlines():
        if line.startswith("ringcast_errors_total{"):
            key, val = line.rsplit(" ", 1)
            labels = dict(kv.split("=", 1) for kv in key[key.index("{") + 1:-1].split(","))
            k = (labels["via"].strip('"'), labels["code"].strip('"'))
            out[k] = out.get(k, 0) + int(val)
    return out


def test_errors_counted_by_code(start_engine):
    """Every error answer, WebSocket envelope or HTTP body, counts under its code."""
    e = api_engine(start_engine)
    before = error_counts(e.port)
    assert before and all(v == 0 for v in before.values()), before
    assert ("websocket", "RATE_LIMITED") in before and ("http", "UNAUTHORIZED") in before

    async def ws_errors():
        ws, _ = await connect(e.url)
        await ws.send("{not json")
        assert (await recv_json(ws))["data"]["code"] == "INVALID_MESSAGE"
        d = await request(ws, "publish", {"channel": "$sys", "event": "x"})
        assert d["data"]["code"] == "RESERVED_CHANNEL"
        d = await request(ws, "nope", {})
        assert d["data"]["code"] == "UNKNOWN_REQUEST"
        await ws.close()

    run(ws_errors())
    assert call(e.port, "GET", "/nope")[0] == 404
    assert call(e.port, "GET", "/api/publish")[0] == 405
    for _ in range(2):
        assert call(e.port, "POST", "/api/publish", {"channel": "a"}, key=None)[0] == 401
    after = error_counts(e.port)
    diff = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    assert diff == {("websocket", "INVALID_MESSAGE"): 1, ("websocket", "RESERVED_CHANNEL"): 1,
                    ("websocket", "UNKNOWN_REQUEST"): 1, ("http", "NOT_FOUND"): 1,
                    ("http", "METHOD_NOT_ALLOWED"): 1, ("http", "UNAUTHORIZED"): 2}, diff


def test_docs_examples_replay(start_engine):
    """Every http-example block of docs/http-api.md, sent as written (KEY replaced), gets the
    documented status and a body with the documented keys."""
    import os
    import re
    doc = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "http-api.md")).read()
    blocks = re.findall(r"```http-example\n(.*?)```", doc, re.S)
    assert len(blocks) >= 6
    e = api_engine(start_engine)
    for b in blocks:
        b = b.replace("KEY", KEY)
        head, rest = b.split("\n\n", 1)
        parts = rest.strip().split("\n\n")
        body = parts[0] if len(parts) == 2 else ""
        expect = parts[-1]
        status, want = int(expect.split(" ", 1)[0]), json.loads(expect.split(" ", 1)[1])
        raw = head.replace("\n", "\r\n").encode() + b"\r\n\r\n" + body.encode()
        with conn(e.port) as s:
            s.sendall(raw)
            st, _, got = Reader(s).response()
        got = json.loads(got)
        assert st == status, (head, got)
        assert set(want) == set(got), (head, got)


def test_status_shows_every_option_in_force_secrets_redacted(start_engine, tmp_path):
    # A 0|1 option takes its value as the next word, as a bare flag, or as --opt=V.
    secret = tmp_path / "jwt.secret"
    secret.write_text("s" * 40)
    e = api_engine(start_engine, "--presence-events", "1", "--presence-max", "7",
                   "--redis-down-503", "--jwt-secret-file", str(secret),
                   "--metrics-key", "do-not-show-me")
    st, _, d = call(e.port, "GET", "/api/status")
    assert st == 200
    c = d["config"]
    assert c["presence_events"] == 1 and c["presence_max"] == 7 and c["redis_down_503"] == 1
    assert c["history_size"] == 100 and c["auth"] == "off" and c["log_level"] == "INFO"
    assert c["jwt_secret_file"] == str(secret)  # a path, not the secret
    assert c["api_key"] == "(redacted)" and c["metrics_key"] == "(redacted)"
    assert c["jwt_secret"] is None and c["redis"] is None
    text = json.dumps(d)
    assert "do-not-show-me" not in text and "s" * 40 not in text
