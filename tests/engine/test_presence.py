"""Issue 11, presence: the presence list (members on several workers, gathered), opt-in
$presence.join/leave events in order with the room's other events (--presence-events 1 or
"presence":true per subscribe), leave on an abrupt disconnect, the --presence-max bound (count
only, no events), the JWT user, GET /api/rooms/{name}/presence, FORBIDDEN per the token's
channel patterns, and a re-subscribe with since on a room the connection is already in."""

import asyncio
import http.client
import json
import os
import socket
import struct
import sys
import time

import pytest

from engine_harness import (assert_silent, collect_events, connect, publish, recv_json,
                            request, run)

sys.path.insert(0, os.path.dirname(__file__))
from test_auth import SECRET, make_token  # noqa: E402

KEY = "pres-key"


async def sub(ws, channel, **opts):
    r = await request(ws, "subscribe", dict(channel=channel, **opts))
    assert r["type"] == "response" and r["data"]["status"] == "subscribed", r
    return r["data"]


async def presence(ws, channel):
    r = await request(ws, "presence", {"channel": channel})
    assert r["type"] == "response" and r["event"] == "presence", r
    return r["data"]


async def clients_on_workers(url, want_workers, at_least=1, cap=64, **kw):
    """Connects until at least `at_least` clients sit on each of `want_workers` workers (the
    kernel spreads connections over the SO_REUSEPORT sockets). Returns [(ws, id)], extra
    connections closed."""
    per = {}
    out = []
    for _ in range(cap):
        ws, welcome = await connect(url, **kw)
        cid = welcome["data"]["connection_id"]
        w = cid.split("-")[0]
        if len(per.get(w, [])) >= at_least:
            await ws.close()
        else:
            per.setdefault(w, []).append(cid)
            out.append((ws, cid))
        if len(per) >= want_workers and all(len(v) >= at_least for v in per.values()):
            return out
    raise AssertionError(f"connections did not spread over {want_workers} workers: {per}")


@pytest.mark.parametrize("threads", [2, 3])
def test_presence_list_across_workers(start_engine, threads):
    e = start_engine("--threads", str(threads), "--rate-limit", "0")

    async def go():
        clients = await clients_on_workers(e.url, threads, at_least=2)
        for ws, _ in clients:
            await sub(ws, "pr-list")
        asker, _ = await connect(e.url)  # not subscribed: presence is allowed without auth
        await request(asker, "ping")
        # The counts a remote worker posts leave at the end of its iteration: poll briefly.
        want = sorted(cid for _, cid in clients)
        d = await presence(asker, "pr-list")
        assert d["channel"] == "pr-list" and d["truncated"] is False
        assert d["count"] == len(want)
        assert sorted(m["connection_id"] for m in d["members"]) == want
        assert all("user" not in m for m in d["members"])  # no auth: no user
        # Someone leaves: the list follows.
        ws0, cid0 = clients[0]
        await ws0.close()
        for _ in range(50):
            d = await presence(asker, "pr-list")
            if d["count"] == len(want) - 1:
                break
            await asyncio.sleep(0.05)
        assert sorted(m["connection_id"] for m in d["members"]) == [c for c in want if c != cid0]
        # A room nobody is in.
        d = await presence(asker, "pr-nobody")
        assert d == {"channel": "pr-nobody", "count": 0, "members": [], "truncated": False}
        r = await request(asker, "presence", {"channel": ""})
        assert r["type"] == "error" and r["data"]["code"] == "INVALID_CHANNEL", r
        r = await request(asker, "presence", {})
        assert r["type"] == "error" and r["data"]["code"] == "INVALID_MESSAGE", r
        for ws, _ in clients[1:]:
            await ws.close()
        await asker.close()

    run(go())


def events_of(msgs, room):
    return [m for m in msgs if m.get("type") == "event" and m.get("room") == room]


async def read_until(ws, pred, timeout=5.0):
    """Reads messages until pred(list) is true; returns them all."""
    got = []
    deadline = time.monotonic() + timeout
    while not pred(got):
        got.append(await recv_json(ws, max(0.01, deadline - time.monotonic())))
    return got


@pytest.mark.parametrize("threads", [1, 3])
def test_join_leave_order_with_publishes(start_engine, threads):
    """A watcher that opted in sees, for a member on any worker: its join before anything it
    publishes after its subscribe answer, and its leave after everything it published before
    its unsubscribe; presence events carry no seq."""
    e = start_engine("--threads", str(threads), "--rate-limit", "0")

    async def go():
        clients = await clients_on_workers(e.url, threads, at_least=1)
        watcher, wid = clients[0]
        await sub(watcher, "pr-ord", presence=True)
        first = await recv_json(watcher)  # our own join
        assert first["event"] == "$presence.join", first
        assert first["data"] == {"channel": "pr-ord", "connection_id": wid}
        assert first["room"] == "pr-ord" and "seq" not in first
        for ws, cid in clients[1:] + [clients[0]]:
            if ws is not watcher:
                await sub(ws, "pr-ord")
            # published right after the subscribe answer, pipelined with the unsubscribe
            for k in range(3):
                await ws.send(json.dumps({"type": "request", "event": "publish", "id": f"{cid}{k}",
                                          "data": {"channel": "pr-ord",
                                                   "payload": {"from": cid, "k": k}}}))
            if ws is not watcher:
                await ws.send(json.dumps({"type": "request", "event": "unsubscribe",
                                          "id": "u", "data": {"channel": "pr-ord"}}))
            got = await read_until(watcher, lambda g: len([m for m in g if m.get("type") == "event"
                                                           and (m.get("data") or {}).get("k") == 2
                                                           ]) == 1)
            evs = events_of(got, "pr-ord")
            if ws is watcher:
                assert [m["data"]["k"] for m in evs] == [0, 1, 2]
                continue
            # the leave may still be on its way: read it
            if not any(m["event"] == "$presence.leave" for m in evs):
                evs += events_of(await read_until(
                    watcher, lambda g: any(m.get("event") == "$presence.leave" for m in g)),
                    "pr-ord")
            kinds = [m["event"] if m["event"].startswith("$") else m["data"]["k"] for m in evs]
            assert kinds == ["$presence.join", 0, 1, 2, "$presence.leave"], (cid, evs)
            assert evs[0]["data"]["connection_id"] == cid
            assert evs[-1]["data"]["connection_id"] == cid
        # a member that did not opt in gets no presence events
        quiet = clients[1][0] if len(clients) > 1 else (await connect(e.url))[0]
        await sub(quiet, "pr-ord")
        x, _ = await connect(e.url)
        await sub(x, "pr-ord")
        await x.close()
        skipped = []
        p = await publish(quiet, "pr-ord", {"k": "end"}, skipped=skipped)
        assert p["type"] == "response"
        got = skipped or await collect_events(quiet, 1)
        assert [m["data"] for m in got] == [{"k": "end"}]
        await assert_silent(quiet, 0.3)
        for ws, _ in clients:
            await ws.close()

    run(go())


@pytest.mark.parametrize("threads", [1, 2])
def test_leave_on_abrupt_disconnect_and_engine_wide_opt_in(start_engine, threads):
    e = start_engine("--threads", str(threads), "--rate-limit", "0", "--presence-events", "1")

    async def go():
        clients = await clients_on_workers(e.url, threads, at_least=1)
        watcher, wid = clients[0]
        await sub(watcher, "pr-rst")  # no "presence": the engine-wide option opts everyone in
        assert (await recv_json(watcher))["event"] == "$presence.join"
        # A raw client on the other worker (if any), reset without a close frame.
        victim = None
        for _ in range(32):
            s = socket.create_connection(("127.0.0.1", e.port))
            s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13"
                      b"\r\n\r\n")
            buf = b""
            while b"session.created" not in buf or not buf.rstrip().endswith(b"}"):
                buf += s.recv(4096)
            cid = json.loads(buf[buf.index(b"{"):])["data"]["connection_id"]
            if threads == 1 or cid.split("-")[0] != wid.split("-")[0]:
                victim = (s, cid)
                break
            s.close()
        s, vcid = victim
        msg = json.dumps({"type": "request", "event": "subscribe", "id": "s",
                          "data": {"channel": "pr-rst"}}).encode()
        mask = b"\x01\x02\x03\x04"
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(msg))
        s.sendall(bytes([0x81, 0x80 | len(msg)]) + mask + masked)
        ev = await recv_json(watcher)
        assert ev["event"] == "$presence.join" and ev["data"]["connection_id"] == vcid, ev
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # RST
        ev = await recv_json(watcher)
        assert ev["event"] == "$presence.leave" and ev["data"]["connection_id"] == vcid, ev
        d = await presence(watcher, "pr-rst")
        assert d["count"] == 1 and [m["connection_id"] for m in d["members"]] == [wid]
        for ws, _ in clients:
            await ws.close()

    run(go())


def test_presence_max_bound(start_engine):
    """Above --presence-max the list is a count and no join/leave events are sent."""
    e = start_engine("--threads", "2", "--rate-limit", "0", "--presence-max", "3",
                     "--api-key", KEY)

    async def go():
        a, aid = await connect(e.url)
        await sub(a, "pr-max", presence=True)
        assert (await recv_json(a))["event"] == "$presence.join"
        others = []
        for i in range(2):
            ws, _ = await connect(e.url)
            await sub(ws, "pr-max")
            others.append(ws)
            assert (await recv_json(a))["event"] == "$presence.join"
        d = await presence(a, "pr-max")
        assert d["count"] == 3 and len(d["members"]) == 3 and d["truncated"] is False
        # The fourth member passes the bound: no event, the list is a count.
        ws, _ = await connect(e.url)
        await sub(ws, "pr-max")
        others.append(ws)
        await assert_silent(a, 0.4)
        for _ in range(50):
            d = await presence(a, "pr-max")
            if d["count"] == 4:
                break
            await asyncio.sleep(0.05)
        assert d == {"channel": "pr-max", "count": 4, "members": None, "truncated": True}
        st, b = http_get(e.port, "/api/rooms/pr-max/presence")
        assert st == 200 and b == d
        # A publish still reaches a: only presence is bounded.
        await publish(others[0], "pr-max", {"k": 1})
        got = await collect_events(a, 1)
        assert got[0]["data"] == {"k": 1}
        # Back at the bound: leaves are announced again.
        await others.pop().close()
        await asyncio.sleep(0.2)
        await others.pop().close()
        ev = await recv_json(a)
        assert ev["event"] == "$presence.leave", ev
        for ws in others:
            await ws.close()
        await a.close()

    run(go())


def http_get(port, path, key=KEY):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", path, headers={"X-API-Key": key} if key else {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, (json.loads(body) if body else None)


@pytest.mark.parametrize("threads", [1, 3])
def test_http_presence_endpoint(start_engine, threads):
    e = start_engine("--threads", str(threads), "--rate-limit", "0", "--api-key", KEY)

    async def go():
        clients = await clients_on_workers(e.url, threads, at_least=1)
        for ws, _ in clients:
            await sub(ws, "pr/http x")
        st, b = http_get(e.port, "/api/rooms/pr%2Fhttp%20x/presence")
        assert st == 200, b
        assert b["channel"] == "pr/http x" and b["count"] == len(clients)
        assert sorted(m["connection_id"] for m in b["members"]) == sorted(c for _, c in clients)
        st, b = http_get(e.port, "/api/rooms/pr-none/presence")
        assert st == 404 and b["error"]["code"] == "NOT_FOUND"
        st, b = http_get(e.port, "/api/rooms/pr%2Fhttp%20x/presence", key=None)
        assert st == 401 and b["error"]["code"] == "UNAUTHORIZED"
        st, b = http_get(e.port, "/api/rooms/pr%2Fhttp%20x/presence", key="wrong")
        assert st == 401
        st, b = http_get(e.port, "/api/rooms/%FF/presence")
        assert st == 404
        c = http.client.HTTPConnection("127.0.0.1", e.port, timeout=5)
        c.request("GET", "/metrics")
        text = c.getresponse().read().decode()
        c.close()

        def total(name):
            return sum(float(line.split()[-1]) for line in text.splitlines()
                       if line.startswith(name + "{"))
        # the 200 and the 404 of a valid name; not the 401s, nor a name that does not decode
        assert total("ringcast_presence_requests_total") == 2
        assert "ringcast_presence_bytes{" in text
        for ws, _ in clients:
            await ws.close()

    run(go())


@pytest.fixture
def secret_file(tmp_path):
    p = tmp_path / "jwt.secret"
    p.write_bytes(SECRET + b"\n")
    return str(p)


def token(sub, channels):
    return make_token({"sub": sub, "exp": int(time.time()) + 300, "channels": channels,
                       "publish": channels})


def test_user_from_jwt_and_forbidden(start_engine, secret_file):
    e = start_engine("--threads", "2", "--rate-limit", "0", "--auth", "required",
                     "--jwt-secret-file", secret_file, "--log-level", "debug",
                     "--heartbeat-s", "0")

    async def go():
        hdr = lambda t: {"additional_headers": {"Authorization": f"Bearer {t}"}}  # noqa: E731
        try:
            alice, aid = await connect(e.url, **hdr(token("alice", ["team:*"])))
        except TypeError:  # websockets < 13
            alice, aid = await connect(e.url, extra_headers={
                "Authorization": f"Bearer {token('alice', ['team:*'])}"})
            hdr = lambda t: {"extra_headers": {"Authorization": f"Bearer {t}"}}  # noqa: E731
        bob, bid = await connect(e.url, **hdr(token('bob "the builder"', ["team:*"])))
        eve, _ = await connect(e.url, **hdr(token("eve", ["other:*"])))
        aid, bid = aid["data"]["connection_id"], bid["data"]["connection_id"]
        await sub(alice, "team:1", presence=True)
        assert (await recv_json(alice))["data"] == {"channel": "team:1", "connection_id": aid,
                                                    "user": "alice"}
        await sub(bob, "team:1")
        ev = await recv_json(alice)
        assert ev["event"] == "$presence.join"
        assert ev["data"] == {"channel": "team:1", "connection_id": bid,
                              "user": 'bob "the builder"'}
        d = await presence(bob, "team:1")
        assert sorted((m["connection_id"], m["user"]) for m in d["members"]) == sorted(
            [(aid, "alice"), (bid, 'bob "the builder"')])
        # eve may not subscribe to team:*, so she may not see who is there either.
        r = await request(eve, "presence", {"channel": "team:1"})
        assert r["type"] == "error" and r["data"]["code"] == "FORBIDDEN", r
        d = await presence(eve, "other:1")
        assert d["count"] == 0
        await bob.close()
        ev = await recv_json(alice)
        assert ev["event"] == "$presence.leave" and ev["data"]["user"] == 'bob "the builder"'
        await alice.close()
        await eve.close()

    run(go())
    e.stop()
    assert "user=alice" in e.stderr(), e.stderr()[-2000:]


def test_resubscribe_with_since_is_idempotent(start_engine):
    """A subscribe with since to a room the connection is already in replays nothing (it has
    had every event since it joined) and says recovered:false; live delivery stays single."""
    e = start_engine("--threads", "2", "--rate-limit", "0")

    async def go():
        a, _ = await connect(e.url)
        p, _ = await connect(e.url)
        d = await sub(a, "pr-re")
        await publish(p, "pr-re", {"k": 1})
        await collect_events(a, 1)
        d2 = await sub(a, "pr-re", since=0, epoch=d["epoch"])
        assert d2["recovered"] is False and d2["epoch"] == d["epoch"]
        await publish(p, "pr-re", {"k": 2})
        got = await collect_events(a, 1)
        assert got[0]["data"] == {"k": 2} and got[0]["seq"] == 2
        await assert_silent(a, 0.3)
        await a.close()
        await p.close()

    run(go())


def test_opt_in_with_a_second_subscribe(start_engine):
    e = start_engine("--threads", "2", "--rate-limit", "0")

    async def go():
        a, _ = await connect(e.url)
        await sub(a, "pr-late")
        b, bid = await connect(e.url)
        await sub(b, "pr-late")
        await assert_silent(a, 0.3)  # not opted in: no join
        await sub(a, "pr-late", presence=True)  # already in: answered again, events from now
        c, cid = await connect(e.url)
        await sub(c, "pr-late")
        ev = await recv_json(a)
        assert ev["event"] == "$presence.join" and ev["data"]["connection_id"] == \
            cid["data"]["connection_id"], ev
        await b.close()
        ev = await recv_json(a)
        assert ev["event"] == "$presence.leave" and ev["data"]["connection_id"] == \
            bid["data"]["connection_id"], ev
        r = await request(a, "subscribe", {"channel": "pr-late", "presence": 1})
        assert r["type"] == "error" and r["data"]["code"] == "INVALID_MESSAGE", r
        for ws in (a, c):
            await ws.close()

    run(go())


@pytest.mark.parametrize("threads", [1, 3])
def test_http_publish_answers_carry_the_epoch(start_engine, threads):
    e = start_engine("--threads", str(threads), "--rate-limit", "0", "--api-key", KEY)

    def post(path, body):
        c = http.client.HTTPConnection("127.0.0.1", e.port, timeout=5)
        c.request("POST", path, body=json.dumps(body), headers={"X-API-Key": KEY})
        r = c.getresponse()
        d = json.loads(r.read())
        c.close()
        return r.status, d

    async def go():
        ws, _ = await connect(e.url)
        rooms = [f"pr-ep-{i}" for i in range(6)]  # homed on several workers
        epochs = {r: (await sub(ws, r))["epoch"] for r in rooms}
        loop = asyncio.get_running_loop()
        for r in rooms:
            st, d = await loop.run_in_executor(None, post, "/api/publish",
                                               {"channel": r, "data": 1})
            assert st == 200 and d["epoch"] == epochs[r] and d["seq"] == 1, d
        st, d = await loop.run_in_executor(None, post, "/api/broadcast",
                                           {"channels": rooms + ["pr-ep-none"], "data": 2})
        assert st == 200
        for res in d["results"]:
            want = epochs.get(res["channel"])
            assert res["epoch"] == want if want else len(res["epoch"]) == 16, res
        await ws.close()

    run(go())


def test_join_storm_every_member_sees_the_later_joins(start_engine):
    """n opted-in members join at once across 3 workers: the home orders the joins, and each
    member gets every join sequenced after it was subscribed (its own included, none twice):
    its list is a suffix of one order, which the first joiner sees whole."""
    n = 60
    e = start_engine("--threads", "3", "--rate-limit", "0")

    async def go():
        # Unbounded client queues: each member gets up to n leaves while the others close, and
        # a bounded queue would stop the client reading before it sees its own close frame.
        conns = [await connect(e.url, max_queue=None) for _ in range(n)]
        ids = [w["data"]["connection_id"] for _, w in conns]

        async def join(ws):
            await ws.send(json.dumps({"type": "request", "event": "subscribe", "id": "s",
                                      "data": {"channel": "pr-storm", "presence": True}}))

        await asyncio.gather(*(join(ws) for ws, _ in conns))
        early = {}
        for (ws, _), cid in zip(conns, ids):  # every subscribe answered: its join is recorded
            early[cid] = await read_until(ws, lambda g: g and g[-1].get("type") == "response")
        # A publish after every answer is sequenced after every join: read up to it.
        await conns[0][0].send(json.dumps({"type": "request", "event": "publish",
                                           "data": {"channel": "pr-storm", "payload": "end"}}))
        seen = {}
        for (ws, _), cid in zip(conns, ids):
            msgs = early[cid] + await read_until(ws, lambda g: g and g[-1].get("data") == "end",
                                                 timeout=20)
            got = [m["data"]["connection_id"] for m in msgs if m.get("event") == "$presence.join"]
            assert cid in got, (cid, got)
            assert len(set(got)) == len(got)
            seen[cid] = got
        # one order for all: every member's list is a suffix of the first joiner's
        longest = max(seen.values(), key=len)
        assert sorted(longest) == sorted(ids)
        for v in seen.values():
            assert longest[len(longest) - len(v):] == v
        d = await presence(conns[0][0], "pr-storm")
        assert d["count"] == n and len(d["members"]) == n
        for ws, _ in conns:
            await ws.close()

    run(go(), timeout=60)
