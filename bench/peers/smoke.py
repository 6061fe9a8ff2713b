#!/usr/bin/python3
"""Checks that a server speaks the part of ringcast's protocol that ringcast-load and bench/run
rely on: welcome event, subscribe/unsubscribe (request and short forms), publish with per-room
seq and the payload intact, ping/pong, error envelopes, binary and oversized messages refused,
and fan-out to many idle connections.

    /usr/bin/python3 bench/peers/smoke.py --server node|python|lws|ringcast [--conns N]
    /usr/bin/python3 bench/peers/smoke.py --url ws://127.0.0.1:8765/ws

With --server it starts the server itself (as bench/run does) on a free port and stops it
afterwards. Prints one line per check and a summary; exits 1 if any check failed. Kept out of
the test suite on purpose (it starts peer servers and is slow with --conns 10000): run it by hand
after changing a peer.
"""

import argparse
import asyncio
import json
import os
import socket
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
import servers  # noqa: E402

import websockets  # noqa: E402

TIMEOUT = 5.0


class CheckFailed(Exception):
    pass


def expect(cond, what):
    if not cond:
        raise CheckFailed(what)


async def connect(url):
    ws = await websockets.connect(url, compression=None, max_size=None, open_timeout=TIMEOUT,
                                  ping_interval=None, close_timeout=1)
    welcome = await recv(ws)
    expect(welcome.get("type") == "event" and welcome.get("event") == "session.created",
           "first message is not session.created: %r" % welcome)
    return ws


async def recv(ws, timeout=TIMEOUT):
    raw = await asyncio.wait_for(ws.recv(), timeout)
    expect(isinstance(raw, str), "binary message from server")
    try:
        return json.loads(raw)
    except ValueError:
        raise CheckFailed("server sent invalid JSON: %r" % raw[:200])


async def request(ws, msg):
    await ws.send(json.dumps(msg))
    return await recv(ws)


def room():
    return "smoke:" + uuid.uuid4().hex[:8]


# ---- checks: each takes the URL and raises CheckFailed ----

async def check_welcome(url):
    ws = await websockets.connect(url, compression=None, open_timeout=TIMEOUT)
    w = await recv(ws)
    await ws.close()
    expect(w.get("type") == "event" and w.get("event") == "session.created", repr(w))
    d = w.get("data", {})
    expect(isinstance(d.get("connection_id"), str) and d["connection_id"], "no connection_id")
    expect(isinstance(w.get("timestamp"), str) and w["timestamp"].endswith("Z"), "timestamp")


async def check_subscribe_forms(url):
    ws = await connect(url)
    r1, r2 = room(), room()
    res = await request(ws, {"type": "request", "event": "subscribe", "data": {"channel": r1},
                             "id": "s1"})
    expect(res.get("type") == "response" and res.get("event") == "subscribe", repr(res))
    expect(res.get("data") == {"status": "subscribed", "channel": r1}, repr(res))
    expect(res.get("correlation_id") == "s1" and "timestamp" in res, repr(res))
    res = await request(ws, {"type": "subscribe", "channel": r2})
    expect(res.get("event") == "subscribe" and res["data"]["status"] == "subscribed", repr(res))
    expect("correlation_id" not in res, "short form answered with a correlation_id")
    res = await request(ws, {"type": "request", "event": "unsubscribe", "data": {"channel": r1},
                             "correlation_id": 42})
    expect(res.get("data") == {"status": "unsubscribed", "channel": r1}, repr(res))
    expect(res.get("correlation_id") == 42, "numeric correlation_id not echoed: %r" % res)
    res = await request(ws, {"type": "unsubscribe", "channel": r2})
    expect(res.get("data") == {"status": "unsubscribed", "channel": r2}, repr(res))
    await ws.close()


async def check_ping(url):
    ws = await connect(url)
    res = await request(ws, {"type": "ping"})
    expect(res.get("type") == "pong", repr(res))
    res = await request(ws, {"type": "request", "event": "ping", "id": 3})
    expect(res.get("type") == "response" and res.get("event") == "pong", repr(res))
    expect(res.get("correlation_id") == 3, repr(res))
    pong = await ws.ping(b"abc")
    await asyncio.wait_for(pong, TIMEOUT)
    await ws.close()


async def check_publish(url, n=200):
    r, other = room(), room()
    a, b, pub = await connect(url), await connect(url), await connect(url)
    for ws in (a, b):
        await request(ws, {"type": "subscribe", "channel": r})
    await request(b, {"type": "subscribe", "channel": other})
    payloads = []
    for i in range(n):
        p = {"q": i + 1, "x": "p" * (i % 50), "nested": [1, 2.5, {"a": None, "b": True}],
             "u": "é\u2028\"\\"}
        payloads.append(p)
        await pub.send(json.dumps({"type": "request", "event": "publish", "id": i,
                                   "data": {"channel": r, "event": "bench", "payload": p}}))
    # The publisher is not subscribed: it gets exactly n responses, in order.
    for i in range(n):
        res = await recv(pub)
        expect(res.get("type") == "response" and res.get("event") == "publish", repr(res))
        expect(res.get("correlation_id") == i, "response %d has id %r" % (i, res))
        d = res["data"]
        expect(d.get("status") == "published" and d.get("channel") == r, repr(res))
        expect(d.get("seq") == i + 1, "publish %d acked with seq %r" % (i, d.get("seq")))
        expect(d.get("subscribers") == 2, "subscribers %r, want 2" % d.get("subscribers"))
    for who, ws in (("a", a), ("b", b)):
        for i in range(n):
            ev = await recv(ws)
            expect(ev.get("type") == "event" and ev.get("event") == "bench", repr(ev)[:200])
            expect(ev.get("room") == r, "room %r" % ev.get("room"))
            expect(ev.get("seq") == i + 1, "%s: event %d has seq %r" % (who, i, ev.get("seq")))
            expect(ev.get("data") == payloads[i], "%s: payload %d altered" % (who, i))
            expect(isinstance(ev.get("timestamp"), str), "no timestamp")
    # A second room has its own seq, starting at 1; the publisher gets it too when subscribed.
    await request(pub, {"type": "subscribe", "channel": other})
    await pub.send(json.dumps({"type": "request", "event": "publish", "id": "o",
                               "data": {"channel": other, "event": "e2", "payload": "s"}}))
    got = [await recv(pub), await recv(pub)]
    kinds = sorted(m["type"] for m in got)
    expect(kinds == ["event", "response"], "publisher-subscriber got %r" % got)
    ev = next(m for m in got if m["type"] == "event")
    res = next(m for m in got if m["type"] == "response")
    expect(ev["seq"] == 1 and ev["data"] == "s" and ev["room"] == other, repr(ev))
    expect(res["data"]["seq"] == 1 and res["data"]["subscribers"] == 2, repr(res))
    ev = await recv(b)
    expect(ev["seq"] == 1 and ev["room"] == other, repr(ev))
    # After unsubscribing, a no longer hears the room (a ping sent after the publish is
    # answered first: the servers handle one connection's messages in order).
    await request(a, {"type": "unsubscribe", "channel": r})
    res = await request(pub, {"type": "request", "event": "publish", "id": "z",
                              "data": {"channel": r, "event": "bench", "payload": 1}})
    expect(res["data"]["subscribers"] == 1 and res["data"]["seq"] == n + 1, repr(res))
    res = await request(a, {"type": "ping"})
    expect(res.get("type") == "pong", "unsubscribed connection still got %r" % res)
    ev = await recv(b)
    expect(ev["seq"] == n + 1, repr(ev))
    for ws in (a, b, pub):
        await ws.close()


async def check_errors(url):
    ws = await connect(url)
    res = await request(ws, "this is not json")  # json.dumps makes it a JSON string: wrong shape
    expect(res.get("type") == "error" and res["data"]["code"] == "INVALID_MESSAGE", repr(res))
    await ws.send("{not json")
    res = await recv(ws)
    expect(res.get("type") == "error" and res["data"]["code"] == "INVALID_MESSAGE", repr(res))
    res = await request(ws, {"type": "request", "event": "frobnicate", "id": "f"})
    expect(res.get("type") == "error" and res["data"]["code"] == "UNKNOWN_REQUEST", repr(res))
    expect(res.get("correlation_id") == "f", repr(res))
    for bad in ("", "x" * 256, "a\u0001b"):
        res = await request(ws, {"type": "request", "event": "subscribe", "id": 1,
                                 "data": {"channel": bad}})
        expect(res.get("type") == "error" and res["data"]["code"] == "INVALID_CHANNEL",
               "channel %r: %r" % (bad[:10], res))
    res = await request(ws, {"type": "subscribe", "channel": "x" * 255})
    expect(res.get("type") == "response", "255-byte channel refused: %r" % res)
    res = await request(ws, {"type": "ping"})
    expect(res.get("type") == "pong", "connection unusable after errors")
    await ws.close()


async def expect_close(ws, code, what):
    try:
        while True:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    except websockets.ConnectionClosed as e:
        expect(e.code == code, "%s: closed with %s, want %d" % (what, e.code, code))
        return
    except asyncio.TimeoutError:
        raise CheckFailed("%s: not closed" % what)


async def check_binary(url):
    ws = await connect(url)
    await ws.send(b"\x01\x02")
    await expect_close(ws, 1003, "binary message")


async def check_too_big(url):
    ws = await connect(url)
    await ws.send(json.dumps({"type": "request", "event": "ping", "id": "x" * 70000}))
    await expect_close(ws, 1009, "70000-byte message")


async def check_many(url, conns):
    """conns idle subscribers of one room, then one publish that all of them must receive."""
    r = room()
    clients = []
    sem = asyncio.Semaphore(200)  # bound the ramp so that it measures nothing but correctness

    async def one():
        async with sem:
            ws = await connect(url)
            await request(ws, {"type": "subscribe", "channel": r})
            clients.append(ws)

    t0 = time.monotonic()
    results = await asyncio.gather(*(one() for _ in range(conns)), return_exceptions=True)
    errs = [e for e in results if isinstance(e, BaseException)]
    expect(not errs, "%d of %d connections failed, first: %r" % (len(errs), conns,
                                                                   errs[0] if errs else None))
    ramp = time.monotonic() - t0
    pub = await connect(url)
    res = await request(pub, {"type": "request", "event": "publish", "id": 1,
                              "data": {"channel": r, "event": "bench", "payload": {"k": 1}}})
    expect(res["data"]["subscribers"] == conns, "subscribers %r, want %d" %
           (res["data"]["subscribers"], conns))
    evs = await asyncio.gather(*(recv(ws, 30) for ws in clients))
    expect(all(e["seq"] == 1 and e["data"] == {"k": 1} for e in evs), "a subscriber missed it")
    await asyncio.gather(*(ws.close() for ws in clients + [pub]), return_exceptions=True)
    return "%d connections in %.1f s" % (conns, ramp)


async def run_checks(url, conns):
    checks = [
        ("welcome", check_welcome(url)),
        ("subscribe/unsubscribe forms", check_subscribe_forms(url)),
        ("ping/pong", check_ping(url)),
        ("publish, seq, payload, fan-out", check_publish(url)),
        ("error envelopes", check_errors(url)),
        ("binary -> 1003", check_binary(url)),
        ("too big -> 1009", check_too_big(url)),
        ("%d idle subscribers" % conns, check_many(url, conns)),
    ]
    failed = 0
    for name, coro in checks:
        try:
            note = await asyncio.wait_for(coro, 300)
            print("PASS  %s%s" % (name, "  (%s)" % note if note else ""), flush=True)
        except (CheckFailed, asyncio.TimeoutError, OSError, websockets.WebSocketException) as e:
            failed += 1
            print("FAIL  %s: %s" % (name, str(e) or type(e).__name__), flush=True)
    return failed


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--server", choices=sorted(servers.SPECS), help="start this server")
    g.add_argument("--url", help="test a server that is already running")
    p.add_argument("--build", default=os.environ.get("RINGCAST_BUILD",
                                                     os.path.join(servers.REPO, "build")),
                   help="build dir for ringcast and lws-broadcast (default $RINGCAST_BUILD or build)")
    p.add_argument("--conns", type=int, default=1000, help="idle subscribers (default 1000)")
    args = p.parse_args()

    srv = None
    url = args.url
    if args.server:
        spec = servers.SPECS[args.server]
        port = free_port()
        log = os.path.join(tempfile.gettempdir(), "smoke-%s-%d.log" % (args.server, port))
        try:
            srv = servers.start(spec, os.path.abspath(args.build), port, log)
        except servers.ServerError as e:
            print("FAIL  start %s: %s" % (spec.label, e))
            return 1
        url = "ws://127.0.0.1:%d/ws" % port
        print("server %s pid %d on %s (log %s)" % (spec.label, srv.pid, url, log))
    try:
        failed = asyncio.run(run_checks(url, args.conns))
    finally:
        if srv:
            alive = srv.alive()
            rc = servers.stop(srv)
            if not alive:
                print("FAIL  server died during the checks (%s): %s" % (rc, srv.log_tail()))
                failed = (failed or 0) + 1
            else:
                print("server stopped: %s" % rc)
    print("%s: %d failed" % ("OK" if not failed else "FAILED", failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
