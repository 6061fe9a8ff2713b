"""Cluster mode (--redis, docs/cluster.md): several engines, one room space, Redis as the bus.

Every test starts its own redis-server processes on free loopback ports (no persistence) and
real engine nodes pointed at them; clients are real WebSocket and HTTP clients.
"""

import asyncio
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest

from engine_harness import BINARY, connect, free_port, recv_json, reply_for, request, run

REDIS = shutil.which("redis-server")
KEY = "cluster-test-key"

pytestmark = pytest.mark.skipif(not REDIS, reason="redis-server not installed (scripts/deps.sh)")


class Redis:
    """A redis-server on a free loopback port, without persistence: a restart loses everything,
    which is the failure the epoch exists to report."""

    def __init__(self, port=None):
        self.proc = None
        for attempt in range(3):  # a free port can be taken before redis-server binds it
            self.port = port or free_port()
            try:
                self.start()
                return
            except RuntimeError:
                self.stop()
                if attempt == 2:
                    raise

    def start(self):
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}"


@pytest.fixture
def redis():
    r = Redis()
    yield r
    r.stop()


def node(start_engine, url, *extra, up=True):
    e = start_engine("--threads", "2", "--rate-limit", "0", "--api-key", KEY, "--redis", url,
                     "--redis-timeout-ms", "1000", *extra)
    if up:
        wait_health(e.port, "up")
    return e


def http(port, method, path, body=None, timeout=5):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"X-API-Key": KEY, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def health(port):
    return http(port, "GET", "/health")


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {l.split()[0]: float(l.split()[1]) for l in text.splitlines()
            if l.startswith("ringcast_redis_")}


def wait_health(port, redis_state, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st, body = health(port)
        if body.get("redis") == redis_state:
            return st, body
        time.sleep(0.05)
    raise AssertionError(f"/health never said redis {redis_state}: {body}")


async def sub(url, channel, **opts):
    ws, _ = await connect(url)
    r = await request(ws, "subscribe", {"channel": channel, **opts})
    assert r["type"] == "response" and r["data"]["status"] == "subscribed", r
    return ws, r["data"]


async def pub(ws, channel, payload, rid):
    await ws.send(json.dumps({"type": "request", "event": "publish", "id": rid,
                              "data": {"channel": channel, "event": "e", "payload": payload}}))


async def events(ws, n, timeout=10):
    """The next n events (responses to our own publishes are skipped)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        m = await recv_json(ws, max(0.01, deadline - time.monotonic()))
        if m.get("type") == "event":
            out.append(m)
        else:
            assert m.get("type") == "response", m
    return out


# ---- delivery ----

def test_three_nodes_exactly_once_in_order(start_engine, redis):
    nodes = [node(start_engine, redis.url) for _ in range(3)]
    per = 40  # per publisher; a WebSocket and an HTTP publisher on every node

    async def go():
        subs = []
        for i in range(6):
            ws, d = await sub(nodes[i % 3].url, "room:a")
            subs.append(ws)
        epochs = set()
        pubs = [(await connect(n.url))[0] for n in nodes]

        async def ws_pub(k):
            for j in range(per):
                await pub(pubs[k], "room:a", {"p": f"ws{k}", "j": j}, f"w{k}-{j}")
            acks = 0
            while acks < per:
                m = await recv_json(pubs[k], 10)
                if m.get("type") == "response" and m["event"] == "publish":
                    assert m["data"]["status"] == "published", m
                    epochs.add(m["data"]["epoch"])
                    acks += 1

        def http_pub(k):
            for j in range(per):
                st, body = http(nodes[k].port, "POST", "/api/publish",
                                {"channel": "room:a", "event": "e", "data": {"p": f"h{k}", "j": j}})
                assert st == 200, body

        loop = asyncio.get_running_loop()
        await asyncio.gather(*(ws_pub(k) for k in range(3)),
                             *(loop.run_in_executor(None, http_pub, k) for k in range(3)))
        total = 6 * per
        seen = [await events(ws, total, 20) for ws in subs]
        assert len(epochs) == 1
        ref = [(e["seq"], json.dumps(e["data"], sort_keys=True)) for e in seen[0]]
        # seq 1..total, in order, each publish exactly once, and the same on every node
        assert [s for s, _ in ref] == list(range(1, total + 1))
        assert len({d for _, d in ref}) == total
        for other in seen[1:]:
            assert [(e["seq"], json.dumps(e["data"], sort_keys=True)) for e in other] == ref
        # per publisher, its events arrive in the order it published them
        for k in range(3):
            for p in (f"ws{k}", f"h{k}"):
                js = [json.loads(d)["j"] for _, d in ref if json.loads(d)["p"] == p]
                assert js == list(range(per)), (p, js)
        for ws in subs + pubs:
            await ws.close()

    run(go(), 60)


def test_subscribes_only_rooms_with_local_subscribers(start_engine, redis):
    a, b = node(start_engine, redis.url), node(start_engine, redis.url)

    def redis_channels():
        with socket.create_connection(("127.0.0.1", redis.port)) as s:
            s.sendall(b"PUBSUB NUMSUB rc:c:only-a rc:c:nobody\r\n")
            time.sleep(0.1)
            return s.recv(4096).decode()

    async def go():
        ws, _ = await sub(a.url, "only-a")
        reply = redis_channels()
        assert "rc:c:only-a\r\n:1\r\n" in reply, reply  # one node: a
        assert "rc:c:nobody\r\n:0\r\n" in reply, reply
        # a publish on b (which subscribes nothing) reaches a's subscriber; b says 1 node got it
        st, body = http(b.port, "POST", "/api/publish", {"channel": "only-a", "data": 1})
        assert st == 200 and body["seq"] == 1 and body["subscribers"] == 1, body
        assert (await events(ws, 1))[0]["data"] == 1
        await ws.close()
        deadline = time.monotonic() + 5
        while "rc:c:only-a\r\n:0\r\n" not in redis_channels():
            assert time.monotonic() < deadline, "the node stayed subscribed after its last left"
            await asyncio.sleep(0.05)

    run(go(), 30)


# ---- resume across nodes ----

def test_node_killed_client_resumes_on_another(start_engine, redis):
    a, b, c = (node(start_engine, redis.url) for _ in range(3))

    async def go():
        ws, d = await sub(a.url, "room:r")
        epoch = d["epoch"]
        for i in range(5):
            assert http(b.port, "POST", "/api/publish", {"channel": "room:r", "data": i})[0] == 200
        got = await events(ws, 5)
        last = got[-1]["seq"]
        a.proc.send_signal(signal.SIGKILL)  # the node dies with its client's connection
        a.wait()
        a.returncode = 0  # killed on purpose: its exit code is not the test's concern
        for i in range(5, 12):
            assert http(b.port, "POST", "/api/publish", {"channel": "room:r", "data": i})[0] == 200
        # c has never seen the room: it reads the missed events from Redis's stream
        ws2, d2 = await sub(c.url, "room:r", since=last, epoch=epoch)
        assert d2["recovered"] is True and d2["epoch"] == epoch, d2
        missed = await events(ws2, 7)
        assert [e["seq"] for e in missed] == list(range(last + 1, last + 8))
        assert [e["data"] for e in missed] == list(range(5, 12))
        assert http(b.port, "POST", "/api/publish", {"channel": "room:r", "data": 12})[0] == 200
        live = await events(ws2, 1)
        assert live[0]["seq"] == last + 8 and live[0]["data"] == 12
        # a wrong epoch is told, not silently replayed
        ws3, d3 = await sub(b.url, "room:r", since=1, epoch="00000000000000aa")
        assert d3["recovered"] is False and d3["epoch"] == epoch
        await ws2.close()
        await ws3.close()

    run(go(), 40)


def test_resume_races_publishes_on_a_fresh_node(start_engine, redis):
    """Publishes keep coming while a client resumes on a node that must subscribe and sync the
    room first: no gap, no duplicate."""
    a, b = node(start_engine, redis.url), node(start_engine, redis.url)

    async def go():
        pws, _ = await connect(a.url)
        stop = asyncio.Event()
        sent = 0

        async def publisher():
            nonlocal sent
            while not stop.is_set():
                await pub(pws, "race", sent, f"r{sent}")
                sent += 1
                await asyncio.sleep(0.002)

        task = asyncio.create_task(publisher())
        await asyncio.sleep(0.2)
        ws, d = await sub(b.url, "race", since=0)
        assert d["recovered"] is True, d
        await asyncio.sleep(0.3)
        stop.set()
        await task
        await asyncio.sleep(0.5)
        got = []
        try:
            while True:
                m = await recv_json(ws, 1.0)
                if m.get("type") == "event":
                    got.append(m["seq"])
        except asyncio.TimeoutError:
            pass
        assert got == list(range(1, len(got) + 1)) and len(got) == sent, (sent, got[:5], got[-5:])
        await ws.close()
        await pws.close()

    run(go(), 30)


# ---- failures ----

def test_redis_restart(start_engine, redis):
    a, b = node(start_engine, redis.url), node(start_engine, redis.url)

    async def go():
        ws, d = await sub(a.url, "room:x")
        old_epoch = d["epoch"]
        for i in range(3):
            st, body = http(b.port, "POST", "/api/publish", {"channel": "room:x", "data": i})
            assert st == 200, (body, b.stderr())
        got = await events(ws, 3)
        redis.stop()
        wait_health(b.port, "down")
        # publishes fail at once with a clear code, over HTTP and WebSocket
        st, body = http(b.port, "POST", "/api/publish", {"channel": "room:x", "data": 9})
        assert st == 503 and body["error"]["code"] == "UNAVAILABLE", (st, body)
        pws, _ = await connect(b.url)
        r = await request(pws, "publish", {"channel": "room:x", "payload": 1})
        assert r["type"] == "error" and r["data"]["code"] == "UNAVAILABLE", r
        redis.start()  # same port, empty: every room's history is gone
        wait_health(a.port, "up")
        wait_health(b.port, "up")
        # a's subscriber is told its room lost its history (1013) and resumes: recovered false
        try:
            while True:
                await recv_json(ws, 10)
        except Exception:
            pass
        assert ws.close_code == 1013, ws.close_code
        ws2, d2 = await sub(a.url, "room:x", since=got[-1]["seq"], epoch=old_epoch)
        assert d2["recovered"] is False and d2["epoch"] != old_epoch, d2
        st, body = http(b.port, "POST", "/api/publish", {"channel": "room:x", "data": 42})
        assert st == 200 and body["seq"] == 1, body
        e = await events(ws2, 1)
        assert e[0]["data"] == 42 and e[0]["seq"] == 1
        with urllib.request.urlopen(f"http://127.0.0.1:{a.port}/metrics", timeout=5) as r:
            text = r.read().decode()
        assert "ringcast_redis_up 1" in text
        assert "ringcast_redis_history_lost_total 1" in text, text
        rc = [l for l in text.splitlines() if l.startswith("ringcast_redis_reconnects_total")]
        assert int(rc[0].split()[1]) >= 2, rc
        await ws2.close()
        await pws.close()

    run(go(), 60)


class FreezableProxy:
    """A TCP proxy to Redis that can stop forwarding while keeping every connection open: a
    Redis that accepts and never answers."""

    def __init__(self, target_port, freeze_after=None, hold_after=None):
        self.target = target_port
        self.frozen = False
        self.freeze_after = freeze_after  # bytes: freeze once the engine has sent them
        self.hold_after = hold_after  # bytes: hold that connection's answers while self.hold
        self.hold = False
        self.held = None
        self.clients = set()
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.pairs = []
        self.done = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        socks = {}
        while not self.done:
            rl = [self.lsock] + [x for x in socks if not (self.hold and x is self.held)]
            r, _, _ = select.select(rl, [], [], 0.05)
            for s in r:
                if s is self.lsock:
                    c, _ = s.accept()
                    u = socket.create_connection(("127.0.0.1", self.target))
                    socks[c], socks[u] = u, c
                    self.clients.add(c)
                    continue
                if self.frozen:
                    continue
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                peer = socks.get(s)
                if not data or peer is None:
                    for x in (s, peer):
                        if x in socks:
                            socks.pop(x)
                            x.close()
                    continue
                peer.sendall(data)
                if self.hold_after and s in self.clients and self.hold_after in data:
                    self.hold_after = None
                    self.held, self.hold = peer, True  # Redis's answers wait in the socket
                if self.freeze_after and s in self.clients and self.freeze_after in data:
                    self.freeze_after = None
                    self.frozen = True  # forwarded to Redis; its answer never comes back
            if self.frozen:
                time.sleep(0.01)
        for s in socks:
            s.close()
        self.lsock.close()

    def close(self):
        self.done = True
        self.t.join()


def test_redis_that_never_answers(start_engine, redis):
    proxy = FreezableProxy(redis.port)
    try:
        a = node(start_engine, f"redis://127.0.0.1:{proxy.port}", "--redis-down-503")
        wait_health(a.port, "up")
        proxy.frozen = True
        t0 = time.monotonic()
        st, body = http(a.port, "POST", "/api/publish", {"channel": "h", "data": 1}, timeout=10)
        # in flight when Redis froze: answered UNAVAILABLE once the timeout says it is down
        assert st == 503 and body["error"]["code"] == "UNAVAILABLE", (st, body)
        assert time.monotonic() - t0 < 5
        st, body = wait_health(a.port, "down")
        assert st == 503 and body["status"] == "degraded", body  # --redis-down-503
        st, body = http(a.port, "POST", "/api/publish", {"channel": "h", "data": 2})
        assert st == 503 and body["error"]["code"] == "UNAVAILABLE"
        proxy.frozen = False  # the engine's stalled connections are gone; new ones go through
        wait_health(a.port, "up")
        st, body = http(a.port, "POST", "/api/publish", {"channel": "h", "data": 3})
        assert st == 200, body
    finally:
        proxy.close()


def test_redis_lost_while_a_room_syncs(start_engine, redis):
    """Redis stops answering right after the node sent SUBSCRIBE for a new room: the subscribes
    waiting for that room's sync are answered UNAVAILABLE once the timeout says Redis is down
    (not left waiting for the whole outage), and once Redis is back the room can be joined."""
    proxy = FreezableProxy(redis.port, freeze_after=b"rc:c:frz")
    try:
        a = node(start_engine, f"redis://127.0.0.1:{proxy.port}")
        wait_health(a.port, "up")

        async def go():
            ws, _ = await connect(a.url)
            # several rooms: homed on this connection's worker and on the other one
            names = [f"frz{i}" for i in range(6)]
            t0 = time.monotonic()
            for i, name in enumerate(names):
                await ws.send(json.dumps({"type": "request", "event": "subscribe", "id": f"s{i}",
                                          "data": {"channel": name}}))
            got = {}
            while len(got) < len(names):
                try:
                    m = await recv_json(ws, 10)
                except asyncio.TimeoutError:
                    raise AssertionError(f"answered: {got}\n" + a.stderr()[-3000:])
                if m.get("type") in ("response", "error"):
                    got[m.get("correlation_id")] = m
            # --redis-timeout-ms 1000, plus a generous margin
            assert time.monotonic() - t0 < 6, time.monotonic() - t0
            for i in range(len(names)):
                m = got[f"s{i}"]
                assert m["type"] == "error" and m["data"]["code"] == "UNAVAILABLE", m
            await ws.close()
            assert proxy.frozen
            proxy.frozen = False
            wait_health(a.port, "up")
            ws, _ = await connect(a.url)
            for name in names:
                r = await request(ws, "subscribe", {"channel": name}, timeout=10)
                assert r["type"] == "response" and r["data"]["status"] == "subscribed", r
            for i, name in enumerate(names):
                st, body = http(a.port, "POST", "/api/publish", {"channel": name, "data": i})
                assert st == 200, (st, body)
            got = await events(ws, len(names))
            assert sorted(e["data"] for e in got) == list(range(len(names))), got
            await ws.close()

        run(go(), 60)
    finally:
        proxy.close()


def test_sync_restarted_when_its_buffer_overflows(start_engine, redis):
    """More events than the sync buffer (2048) arrive while a room's sync script is answered
    late: the node drops them and syncs again; the first sync's (stale) answer must not be used,
    or the events in between are missing and the subscriber is closed 1013 as if lost."""
    proxy = FreezableProxy(redis.port, hold_after=b"rc:s:bigsync")
    try:
        a = node(start_engine, f"redis://127.0.0.1:{proxy.port}", "--redis-timeout-ms", "20000")
        b = node(start_engine, redis.url)
        wait_health(a.port, "up")
        n = 2300

        async def go():
            ws = await connect(a.url)
            ws = ws[0]
            await ws.send(json.dumps({"type": "request", "event": "subscribe", "id": "s",
                                      "data": {"channel": "bigsync"}}))
            deadline = time.monotonic() + 10
            while not proxy.hold:  # the sync script was sent: its answer is held
                assert time.monotonic() < deadline
                await asyncio.sleep(0.01)
            p, _ = await connect(b.url)
            for i in range(n):
                await pub(p, "bigsync", i, f"p{i}")
            for _ in range(n):
                m = await recv_json(p, 30)
                assert m["type"] == "response", m
            await asyncio.sleep(0.5)  # node a reads them all from its subscription
            proxy.hold = False
            r = await reply_for(ws, "s", 20)
            assert r["type"] == "response" and r["data"]["status"] == "subscribed", r
            seq = r["data"]["seq"]
            assert 0 < seq <= n, r
            got = await events(ws, n - seq, 20)
            assert [e["seq"] for e in got] == list(range(seq + 1, n + 1))
            await pub(p, "bigsync", "last", "plast")
            last = await events(ws, 1)
            assert last[0]["seq"] == n + 1 and last[0]["data"] == "last", last
            await ws.close()
            await p.close()

        run(go(), 90)
        m = metrics(a.port)
        assert m.get("ringcast_redis_history_lost_total") == 0, m
    finally:
        proxy.close()


def test_startup_checks(start_engine, redis):
    # nobody listens: exit 2 with a clear message
    dead = free_port()
    p = subprocess.run([BINARY, "--port", str(free_port()), "--redis", f"redis://127.0.0.1:{dead}"],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 2
    assert "cannot use Redis at 127.0.0.1:%d" % dead in p.stderr, p.stderr
    assert "--redis-optional" in p.stderr
    # a server that accepts and never answers: exit 2 within the timeout, not a hang
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(4)
    t0 = time.monotonic()
    p = subprocess.run([BINARY, "--port", str(free_port()), "--redis-timeout-ms", "300",
                        "--redis", f"redis://127.0.0.1:{silent.getsockname()[1]}"],
                       capture_output=True, text=True, timeout=20)
    silent.close()
    assert p.returncode == 2 and "cannot use Redis" in p.stderr, p.stderr
    assert time.monotonic() - t0 < 10
    # a bad URL
    p = subprocess.run([BINARY, "--redis", "http://x"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 2 and "redis://" in p.stderr, p.stderr
    # --redis-optional: starts local-only, publishes work on this node
    e = start_engine("--threads", "2", "--api-key", KEY, "--redis", f"redis://127.0.0.1:{dead}",
                     "--redis-optional")
    st, body = health(e.port)
    assert st == 200 and "redis" not in body, body
    st, body = http(e.port, "POST", "/api/publish", {"channel": "x", "data": 1})
    assert st == 200, body
    assert "running local-only" in e.stderr()
    # and a good Redis over a unix socket URL is accepted too (parse only: unix path absent)
    p = subprocess.run([BINARY, "--port", str(free_port()), "--redis", "unix:/nonexistent.sock"],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 2 and "/nonexistent.sock" in p.stderr, p.stderr


def test_bounded_while_redis_is_down(start_engine, redis):
    """Memory does not grow while Redis is away: publishes fail at once, nothing queues."""
    a = node(start_engine, redis.url)
    redis.stop()
    wait_health(a.port, "down")

    async def go():
        ws, _ = await connect(a.url)
        for i in range(300):
            await pub(ws, "q", i, f"q{i}")
        codes = set()
        for _ in range(300):
            m = await recv_json(ws, 5)
            codes.add(m["data"].get("code"))
        assert codes == {"UNAVAILABLE"}, codes
        # a room this node does not follow yet cannot be joined now: told, not left waiting
        # (rooms homed on this connection's worker and on the other one alike)
        for i in range(8):
            r = await request(ws, "subscribe", {"channel": f"new{i}"}, timeout=5)
            assert r["type"] == "error" and r["data"]["code"] == "UNAVAILABLE", r
        await ws.close()

    run(go(), 30)
    with urllib.request.urlopen(f"http://127.0.0.1:{a.port}/metrics", timeout=5) as r:
        text = r.read().decode()
    assert "ringcast_redis_queue_depth 0" in text
    assert "ringcast_redis_up 0" in text
    # counted by code too, like every error answer
    n = sum(float(l.split()[1]) for l in text.splitlines()
            if l.startswith("ringcast_errors_total{") and 'code="UNAVAILABLE"' in l)
    assert n == 300 + 8, n


def test_subscribe_unsubscribe_churn(start_engine, redis):
    """A room joined and left over and over on one node (SUBSCRIBE/UNSUBSCRIBE racing in Redis)
    while another node publishes: every subscribe is answered, and the last subscriber still
    gets every event after its answer, in order."""
    a, b = node(start_engine, redis.url), node(start_engine, redis.url)

    async def go():
        pws, _ = await connect(a.url)
        stop = asyncio.Event()

        async def publisher():
            i = 0
            while not stop.is_set():
                await pub(pws, "churn", i, f"c{i}")
                i += 1
                await asyncio.sleep(0.003)

        task = asyncio.create_task(publisher())
        for i in range(40):
            ws, _ = await connect(b.url)
            r = await request(ws, "subscribe", {"channel": "churn"}, timeout=10)
            assert r["data"]["status"] == "subscribed", r
            if i % 2:
                r = await request(ws, "unsubscribe", {"channel": "churn"}, timeout=10)
            await ws.close()
        ws, d = await sub(b.url, "churn")
        await asyncio.sleep(0.3)
        stop.set()
        await task
        got = []
        try:
            while True:
                m = await recv_json(ws, 1.0)
                if m.get("type") == "event":
                    got.append(m["seq"])
        except asyncio.TimeoutError:
            pass
        assert got and got == list(range(got[0], got[0] + len(got))), got
        await ws.close()
        await pws.close()

    run(go(), 60)


def test_pending_publishes_are_bounded(start_engine, redis):
    """--redis-max-pending: with Redis stalled, the publish in flight holds the only place; the
    next one is refused at once, not queued."""
    proxy = FreezableProxy(redis.port)
    try:
        a = node(start_engine, f"redis://127.0.0.1:{proxy.port}", "--redis-max-pending", "1",
                 "--redis-timeout-ms", "3000")

        async def go():
            ws, _ = await connect(a.url)
            proxy.frozen = True
            await asyncio.sleep(0.1)
            await pub(ws, "b", 1, "first")
            await asyncio.sleep(0.2)
            await pub(ws, "b", 2, "second")
            await asyncio.sleep(0.3)
            m = metrics(a.port)  # before the timeout: Redis still "up", one place, taken
            assert m["ringcast_redis_up"] == 1 and m["ringcast_redis_queue_depth"] == 1, m
            assert m["ringcast_redis_publish_errors_total"] == 1, m
            # replies keep request order: "second" (refused at once) waits behind "first",
            # which fails when the timeout declares Redis down
            r1 = await recv_json(ws, 10)
            r2 = await recv_json(ws, 10)
            assert r1["correlation_id"] == "first" and r2["correlation_id"] == "second"
            assert r1["data"]["code"] == "UNAVAILABLE" and r2["data"]["code"] == "UNAVAILABLE"
            await ws.close()

        run(go(), 30)
        assert metrics(a.port)["ringcast_redis_publish_errors_total"] == 2
        proxy.frozen = False
        wait_health(a.port, "up")
    finally:
        proxy.close()


def test_loadgen_across_nodes(start_engine, redis):
    """ringcast-load with its publishers on one node and its subscribers spread over two others
    (--pub-url, --url repeated): every delivery crosses Redis, and the tool's loss, duplicate
    and order checks (on Redis's seq) all pass."""
    nodes = [node(start_engine, redis.url) for _ in range(3)]
    load = os.path.join(os.path.dirname(BINARY), "..", "loadgen", "ringcast-load")
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        p = subprocess.run([load, "--pub-url", nodes[0].url, "--url", nodes[1].url, "--url",
                            nodes[2].url, "--connections", "40", "--rooms", "4", "--publishers",
                            "2", "--rate", "200", "--duration", "2s", "--warmup", "500ms",
                            "--quiet", "--json", out.name],
                           capture_output=True, text=True, timeout=60)
        report = json.load(open(out.name))
    d = report["deliveries"]
    assert d["delivered"] == d["expected"] > 0, (d, p.stderr)
    assert d["lost"] == d["duplicate"] == d["out_of_order"] == 0, d
    # the publishers went to node 1, the 40 subscribers half to node 2, half to node 3
    def upgrades(port):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return sum(float(l.split()[1]) for l in r.read().decode().splitlines()
                       if l.startswith("ringcast_websocket_upgrades_total"))
    assert [upgrades(n.port) for n in nodes] == [2, 20, 20]


def test_password_and_database(start_engine):
    """redis://:password@host:port/db: a wrong password is exit 2 naming Redis's refusal (and
    never printing the password); the right one works, keys land in the database asked."""
    r = Redis.__new__(Redis)
    r.port = free_port()
    r.proc = subprocess.Popen([REDIS, "--port", str(r.port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--requirepass", "s3cret"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", r.port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        p = subprocess.run([BINARY, "--port", str(free_port()), "--redis",
                            f"redis://:wr0ng@127.0.0.1:{r.port}"],
                           capture_output=True, text=True, timeout=20)
        assert p.returncode == 2 and "AUTH" in p.stderr and "wr0ng" not in p.stderr, p.stderr
        e = node(start_engine, f"redis://:s3cret@127.0.0.1:{r.port}/3")
        assert "s3cret" not in e.stderr()
        st, body = http(e.port, "POST", "/api/publish", {"channel": "pw", "data": 1})
        assert st == 200 and body["seq"] == 1, body
        with socket.create_connection(("127.0.0.1", r.port)) as s:
            s.sendall(b"AUTH s3cret\r\nSELECT 3\r\nEXISTS rc:m:pw\r\n")
            time.sleep(0.2)
            assert s.recv(4096) == b"+OK\r\n+OK\r\n:1\r\n"
    finally:
        r.stop()


def test_poll_on_a_node_without_subscribers(start_engine, redis):
    """GET /api/poll on a node that follows nothing: the node syncs the room from Redis for the
    poll (the events, seq and epoch every node agrees on); a long poll is answered by an event
    published on another node; the node leaves the room afterwards."""
    a, b = node(start_engine, redis.url), node(start_engine, redis.url)
    for i in range(5):
        assert http(a.port, "POST", "/api/publish", {"channel": "polled", "data": i})[0] == 200
    st, body = http(b.port, "GET", "/api/poll/polled?since=0")
    assert st == 200 and body["recovered"] is True and body["seq"] == 5, body
    assert [e["data"] for e in body["events"]] == [0, 1, 2, 3, 4]
    epoch = body["epoch"]
    st, body = http(b.port, "GET", f"/api/poll/polled?since=3&epoch={epoch}")
    assert [e["seq"] for e in body["events"]] == [4, 5] and body["recovered"] is True, body
    st, body = http(b.port, "GET", "/api/poll/polled?since=2&epoch=00000000000000aa")
    assert body["recovered"] is False and body["epoch"] == epoch and body["seq"] == 5, body

    result = {}

    def long_poll():
        result["r"] = http(b.port, "GET", f"/api/poll/polled?since=5&epoch={epoch}&wait=10",
                           timeout=15)

    t = threading.Thread(target=long_poll)
    t0 = time.monotonic()
    t.start()
    time.sleep(0.5)
    assert http(a.port, "POST", "/api/publish", {"channel": "polled", "data": 5})[0] == 200
    t.join(15)
    st, body = result["r"]
    assert st == 200 and [e["data"] for e in body["events"]] == [5], body
    assert time.monotonic() - t0 < 5
    deadline = time.monotonic() + 5  # not followed once nobody waits (the next sweep)
    while metrics(b.port)["ringcast_redis_rooms"] != 0:
        assert time.monotonic() < deadline, "the node still follows a room nobody polls"
        time.sleep(0.05)
