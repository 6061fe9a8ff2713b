"""The dashboard page (GET /) and the reserved "$sys" room that feeds it: the page is served by
the engine itself (self-contained HTML; open unless --metrics-key), every worker publishes a
valid stats event there once a second, and clients may subscribe to '$' rooms but never publish
to them (RESERVED_CHANNEL over WebSocket, 403 over HTTP)."""

import asyncio
import json
import time

from engine_harness import RawWS, connect, publish, recv_json, request, run, subscribe
from test_http_api import KEY, api_engine, call, conn, req, Reader


def test_dashboard_page_served(start_engine):
    e = api_engine(start_engine)
    with conn(e.port) as s:
        r = Reader(s)
        s.sendall(req("GET", "/", key=None) + req("GET", "/health", key=None))
        st, h, body = r.response()
        assert st == 200 and h["content-type"] == "text/html; charset=utf-8"
        assert h["cache-control"] == "no-store" and h["connection"] == "keep-alive"
        page = body.decode()
        assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
        # Self-contained: nothing fetched from anywhere else, the feed is the engine's own.
        assert "<script src" not in page and "<link" not in page and "http://" not in page
        assert '"$sys"' in page and '"/ws"' in page
        st, _, _ = r.response()  # keep-alive: the next request on the same connection
        assert st == 200
    st, h, _ = call(e.port, "POST", "/", b"{}", key=None)
    assert st == 405 and h["allow"] == "GET"
    # A WebSocket upgrade to "/" is still a WebSocket.
    ws = RawWS(e.port, path="/")
    assert ws.welcome["event"] == "session.created"
    ws.close()


def test_dashboard_needs_metrics_key_when_set(start_engine):
    e = start_engine("--metrics-key", "mk-1234567890")
    assert call(e.port, "GET", "/", key=None)[0] == 401
    assert call(e.port, "GET", "/", key="mk-1234567890")[0] == 200


def test_sys_stats_events_every_second_per_worker(start_engine):
    e = start_engine("--threads", "3", "--rate-limit", "0")
    weird = 'q"uo\\te\u2028é'

    async def go():
        ws, _ = await connect(e.url, max_queue=None)
        await subscribe(ws, "$sys")
        subs = []
        for i in range(3):
            s, _ = await connect(e.url)
            await subscribe(s, weird)
            subs.append(s)
        p, _ = await connect(e.url)
        await publish(p, weird, {"x": 1})
        events = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < 2.6:
            m = await recv_json(ws, 3)  # each one must be valid JSON
            if m.get("room") == "$sys":
                events.append((time.monotonic() - t0, m))
        for s in subs + [p, ws]:
            await s.close()
        return events

    events = run(go())
    workers = {m["data"]["worker"] for _, m in events}
    assert workers == {0, 1, 2}
    for _, m in events:
        assert m["type"] == "event" and m["event"] == "stats" and m["seq"] >= 1
        d = m["data"]
        assert d["workers"] == 3 and d["connections_all"] >= 5
        assert {"deliveries", "publishes", "slow_consumers", "queued_bytes", "top"} <= d.keys()
    # About one per worker per second: 2.6 s hold 2 or 3 of each.
    for w in workers:
        n = sum(1 for _, m in events if m["data"]["worker"] == w)
        assert 2 <= n <= 4, (w, n)
    # The room with a hostile name is reported by its home, escaped correctly.
    tops = [r for _, m in events for r in m["data"]["top"]]
    assert {"name": weird, "subscribers": 3} in [{k: r[k] for k in ("name", "subscribers")}
                                                  for r in tops]
    assert not any(r["name"].startswith("$") for r in tops)
    # Top rooms by rate: the one publish shows once, as 1 event in its home's interval.
    rated = [(m["data"]["worker"], r) for _, m in events for r in m["data"]["top_rate"]]
    assert [r["published"] for _, r in rated if r["name"] == weird] == [1], rated
    assert not any(r["name"].startswith("$") for _, r in rated)
    # Publish latency over each worker's last interval: bucket counts for the 16 bounds and
    # +Inf; the publish to the 3 subscribers (and the stats events to this subscriber) are in.
    for _, m in events:
        d = m["data"]
        assert d["lat_bounds_us"][0] == 10 and d["lat_bounds_us"][-1] == 1000000
        assert len(d["lat_buckets"]) == len(d["lat_bounds_us"]) + 1
        assert 0 < d["interval_ms"] <= 5000  # the first one: since the start
        assert (d["lat_p50_us"] <= d["lat_p99_us"]) and (sum(d["lat_buckets"]) > 0) == \
            (d["lat_p99_us"] > 0)
    assert sum(sum(m["data"]["lat_buckets"]) for _, m in events) >= 2


def test_no_stats_while_nobody_watches(start_engine):
    """Taking a worker's stats walks all its connections and rooms: without a "$sys"
    subscriber no worker takes them. Once someone subscribes every worker reports again, the
    first event covering the whole quiet period, and they stop when the last one leaves."""
    e = start_engine("--threads", "2", "--rate-limit", "0", "--api-key", KEY)

    async def go():
        p, _ = await connect(e.url)  # a client that watches nothing
        await asyncio.sleep(2.5)
        ws, _ = await connect(e.url)
        r = await request(ws, "subscribe", {"channel": "$sys"})
        first = {}
        t0 = time.monotonic()
        while len(first) < 2 and time.monotonic() - t0 < 3:
            m = await recv_json(ws, 3)
            if m.get("room") == "$sys":
                first.setdefault(m["data"]["worker"], m)
        await ws.close()
        await asyncio.sleep(1.5)  # both workers have ticked since the watcher left
        s1 = call(e.port, "GET", "/api/rooms/%24sys")
        await asyncio.sleep(1.5)
        s2 = call(e.port, "GET", "/api/rooms/%24sys")
        await p.close()
        return r, first, s1, s2

    r, first, s1, s2 = run(go())
    assert r["type"] == "response" and r["data"]["seq"] == 0, r  # nothing was published
    assert set(first) == {0, 1}, first
    for m in first.values():
        assert m["data"]["interval_ms"] >= 2400, m["data"]["interval_ms"]
    assert s1[0] == 200 and s2[0] == 200, (s1, s2)
    assert s1[2]["seq"] == s2[2]["seq"], (s1[2], s2[2])


def test_clients_cannot_publish_to_dollar_rooms(start_engine):
    e = api_engine(start_engine)

    async def go():
        ws, _ = await connect(e.url)
        for ch in ("$sys", "$other"):
            r = await request(ws, "publish", {"channel": ch, "event": "x"}, rid="r-" + ch)
            assert r["type"] == "error" and r["data"]["code"] == "RESERVED_CHANNEL", r
        # Escaped, it is the same name: refused too.
        await ws.send('{"type":"request","event":"publish","data":{"channel":"\\u0024sys"},'
                      '"id":"esc"}')
        r = await recv_json(ws)
        assert r["correlation_id"] == "esc" and r["data"]["code"] == "RESERVED_CHANNEL", r
        # Subscribing is allowed: the stats arrive.
        await subscribe(ws, "$sys")
        m = await recv_json(ws, 3)
        assert m["room"] == "$sys" and m["event"] == "stats"
        # "a$b" is an ordinary room.
        r = await request(ws, "publish", {"channel": "a$b", "event": "x"}, rid="ok")
        assert r["data"]["status"] == "published"
        await ws.close()

    run(go())
    st, _, b = call(e.port, "POST", "/api/publish", json.dumps({"channel": "$sys"}).encode())
    assert st == 403 and b["error"]["code"] == "RESERVED_CHANNEL"
    st, _, b = call(e.port, "POST", "/api/broadcast",
                    json.dumps({"channels": ["fine", "$sys"], "event": "x"}).encode())
    assert st == 403 and b["error"]["code"] == "RESERVED_CHANNEL"
    # Nothing was published to "fine" either: a refused request publishes nothing.
    st, _, b = call(e.port, "GET", "/api/rooms/fine")
    assert st == 404
