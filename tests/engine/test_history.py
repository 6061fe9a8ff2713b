"""Issue 11, engine side: room history, epochs, resume with since/epoch (one worker and racing
publishes across 2-4 workers), eviction at history-size, TTL expiry, --max-rooms pressure on
idle rooms, and the polling endpoint (with and without wait)."""

import asyncio
import http.client
import json
import threading
import time

import pytest

from engine_harness import (collect_events, connect, flood_while, publish, publish_k, recv_json,
                            reply_for, request, run, subscribe_data)

KEY = "hist-key"


def test_epoch_in_subscribe_and_publish_responses(start_engine):
    e = start_engine("--threads", "1", "--rate-limit", "0")

    async def go():
        ws, _ = await connect(e.url)
        d = await subscribe_data(ws, "h-epoch")
        assert len(d["epoch"]) == 16 and "recovered" not in d
        p = await publish_k(ws, "h-epoch", 1)
        assert p["epoch"] == d["epoch"] and p["seq"] == 1
        await ws.close()

    run(go())


def test_resume_after_gap_single_worker(start_engine):
    e = start_engine("--threads", "1", "--rate-limit", "0")

    async def go():
        p, _ = await connect(e.url)
        a, _ = await connect(e.url)
        d = await subscribe_data(a, "h-gap")
        epoch = d["epoch"]
        for k in range(1, 4):
            await publish_k(p, "h-gap", k)
        got = await collect_events(a, 3)
        assert [m["seq"] for m in got] == [1, 2, 3]
        raw_live = [json.dumps(m, sort_keys=True) for m in got]
        await a.close()
        for k in range(4, 7):
            await publish_k(p, "h-gap", k)
        b, _ = await connect(e.url)
        d = await subscribe_data(b, "h-gap", since=3, epoch=epoch)
        assert d["recovered"] is True and d["epoch"] == epoch
        got = await collect_events(b, 3)
        assert [m["seq"] for m in got] == [4, 5, 6]
        assert [m["data"]["k"] for m in got] == [4, 5, 6]
        await publish_k(p, "h-gap", 7)
        got = await collect_events(b, 1)
        assert got[0]["seq"] == 7
        # Nothing twice: the replay is exactly the gap.
        try:
            extra = await asyncio.wait_for(b.recv(), 0.3)
            raise AssertionError(f"unexpected {extra}")
        except asyncio.TimeoutError:
            pass
        # A replayed event is the same bytes as the live one: same timestamp and seq.
        c, _ = await connect(e.url)
        d = await subscribe_data(c, "h-gap", since=0, epoch=epoch)
        assert d["recovered"] is True
        again = await collect_events(c, 7)
        assert [json.dumps(m, sort_keys=True) for m in again[:3]] == raw_live
        for ws in (p, b, c):
            await ws.close()

    run(go())


def test_resume_across_epoch_change_is_not_recovered(start_engine):
    e = start_engine("--threads", "1", "--rate-limit", "0", "--history-size", "0")

    async def go():
        a, _ = await connect(e.url)
        d = await subscribe_data(a, "h-ep")
        old = d["epoch"]
        skipped = []
        await publish(a, "h-ep", 1, skipped=skipped)
        if not skipped:
            await collect_events(a, 1)
        await a.close()  # the room is empty and has no history: it is freed, its epoch gone
        await asyncio.sleep(0.1)
        b, _ = await connect(e.url)
        d = await subscribe_data(b, "h-ep", since=1, epoch=old)
        assert d["recovered"] is False and d["epoch"] != old
        d = await subscribe_data(b, "h-ep2", since=5, epoch="00000000000000ff")
        assert d["recovered"] is False
        r = await request(b, "subscribe", {"channel": "h-ep3", "since": -1})
        assert r["type"] == "error" and r["data"]["code"] == "INVALID_MESSAGE"
        r = await request(b, "subscribe", {"channel": "h-ep3", "since": 1, "epoch": "xyz"})
        assert r["type"] == "error" and r["data"]["code"] == "INVALID_MESSAGE"
        await b.close()

    run(go())


@pytest.mark.parametrize("threads", [2, 3, 4])
def test_resume_racing_publishes(start_engine, threads):
    """Publishers flood three rooms while clients (spread over every worker) resume from a point
    in the past: each must see since+1 .. N exactly once, in order, replay then live."""
    e = start_engine("--threads", str(threads), "--rate-limit", "0", "--history-size", "1000")
    rooms = ["race-0", "race-1", "race-2"]
    per_room = 300

    async def go():
        pubs = [(await connect(e.url))[0] for _ in range(3)]
        first = {}
        for i, r in enumerate(rooms):
            d = await publish_k(pubs[i], r, 0)
            first[r] = d["epoch"]

        async def resumer(i):
            room = rooms[i % 3]
            await asyncio.sleep(0.002 * i)
            ws, _ = await connect(e.url, max_queue=None)
            since = (i * 7) % 40
            rid = f"s{i}"
            await ws.send(json.dumps({"type": "request", "event": "subscribe", "id": rid,
                                      "data": {"channel": room, "since": since,
                                               "epoch": first[room]}}))
            m = await recv_json(ws, 10)
            assert m["type"] == "response" and m["correlation_id"] == rid, m
            assert m["data"]["recovered"] is True, m
            seqs = []
            while not seqs or seqs[-1] < per_room:
                ev = await recv_json(ws, 10)
                assert ev["type"] == "event" and ev["room"] == room, ev
                seqs.append(ev["seq"])
            assert seqs == list(range(since + 1, per_room + 1)), (i, since, seqs[:20])
            await ws.close()

        await flood_while([(pubs[i], rooms[i], range(1, per_room)) for i in range(3)],
                          [resumer(i) for i in range(24)], every=20, pause=0.001)

    run(go(), timeout=60)


def test_history_eviction_at_k(start_engine):
    e = start_engine("--threads", "2", "--rate-limit", "0", "--history-size", "5")

    async def go():
        p, _ = await connect(e.url)
        for k in range(1, 11):
            d = await publish_k(p, "h-k", k)
        epoch = d["epoch"]
        b, _ = await connect(e.url)
        d = await subscribe_data(b, "h-k", since=5, epoch=epoch)  # 6..10 are the 5 kept
        assert d["recovered"] is True
        got = await collect_events(b, 5)
        assert [m["seq"] for m in got] == [6, 7, 8, 9, 10]
        c, _ = await connect(e.url)
        d = await subscribe_data(c, "h-k", since=4, epoch=epoch)  # seq 5 was pushed out
        assert d["recovered"] is False and d["epoch"] == epoch
        try:
            m = await asyncio.wait_for(c.recv(), 0.3)
            raise AssertionError(f"no replay expected, got {m}")
        except asyncio.TimeoutError:
            pass
        for ws in (p, b, c):
            await ws.close()

    run(go())


def test_history_ttl_expiry(start_engine):
    e = start_engine("--threads", "1", "--rate-limit", "0", "--history-ttl", "1")

    async def go():
        p, _ = await connect(e.url)
        holder, _ = await connect(e.url)
        await subscribe_data(holder, "h-ttl-held")
        for k in range(1, 4):
            d1 = await publish_k(p, "h-ttl-held", k)
            d2 = await publish_k(p, "h-ttl-idle", k)
        await collect_events(holder, 3)
        await asyncio.sleep(2.3)
        b, _ = await connect(e.url)
        # The held room keeps its epoch but its events expired.
        d = await subscribe_data(b, "h-ttl-held", since=0, epoch=d1["epoch"])
        assert d["recovered"] is False and d["epoch"] == d1["epoch"]
        d = await subscribe_data(b, "h-ttl-held", since=3, epoch=d1["epoch"])  # nothing missed
        # The idle room was freed with its history: a new epoch.
        d = await subscribe_data(b, "h-ttl-idle", since=3, epoch=d2["epoch"])
        assert d["recovered"] is False and d["epoch"] != d2["epoch"]
        for ws in (p, holder, b):
            await ws.close()

    run(go())


def test_idle_history_rooms_give_way_under_max_rooms(start_engine):
    e = start_engine("--threads", "1", "--rate-limit", "0", "--max-rooms", "2")

    async def go():
        p, _ = await connect(e.url)
        a = await publish_k(p, "idle-a", 1)
        await publish_k(p, "idle-b", 1)
        ws, _ = await connect(e.url)
        await subscribe_data(ws, "idle-c")  # evicts idle-a, the oldest idle room
        d = await subscribe_data(ws, "idle-a", since=1, epoch=a["epoch"])  # evicts idle-b
        assert d["recovered"] is False and d["epoch"] != a["epoch"]
        r = await request(ws, "subscribe", {"channel": "idle-d"})  # nothing idle left
        assert r["type"] == "error" and r["data"]["code"] == "TOO_MANY_ROOMS", r
        m = await request(ws, "ping")  # flush: the metrics below are read over HTTP
        import urllib.request
        text = urllib.request.urlopen(f"http://127.0.0.1:{e.port}/metrics", timeout=5).read()
        text = text.decode()
        assert 'ringcast_history_evicted_total{worker="0"} 2' in text, text
        assert 'ringcast_resumes_unrecovered_total{worker="0"} 1' in text
        await p.close()
        await ws.close()

    run(go())


# ---- polling ----

def poll(port, channel, query="", timeout=10.0):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("GET", f"/api/poll/{channel}{'?' + query if query else ''}",
              headers={"X-API-Key": KEY})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, r.getheader("X-Poll-Interval"), (json.loads(body) if body else None)


@pytest.mark.parametrize("threads", [1, 3])
def test_poll_without_wait(start_engine, threads):
    e = start_engine("--threads", str(threads), "--rate-limit", "0", "--api-key", KEY)
    st, iv, b = poll(e.port, "poll-a")
    assert st == 200 and iv == "1" and b == {"events": [], "seq": 0,
                                               "epoch": "0" * 16, "recovered": True}

    async def go():
        p, _ = await connect(e.url)
        s, _ = await connect(e.url)
        await subscribe_data(s, "poll-a")
        for k in range(1, 4):
            d = await publish_k(p, "poll-a", k)
        live = await collect_events(s, 3)
        await p.close()
        await s.close()
        return d["epoch"], live

    epoch, live = run(go())
    st, iv, b = poll(e.port, "poll-a", "since=0")
    assert st == 200 and b["recovered"] is True and b["epoch"] == epoch and b["seq"] == 3
    assert b["events"] == live
    st, _, b = poll(e.port, "poll-a", f"since=2&epoch={epoch}")
    assert [m["seq"] for m in b["events"]] == [3] and b["recovered"] is True
    st, _, b = poll(e.port, "poll-a", "since=2&epoch=1234")
    assert b["recovered"] is False and b["events"] == []
    assert poll(e.port, "poll-a", "since=x")[0] == 400
    assert poll(e.port, "poll-a", "epoch=zz")[0] == 400
    c = http.client.HTTPConnection("127.0.0.1", e.port, timeout=5)
    c.request("GET", "/api/poll/poll-a")
    assert c.getresponse().status == 401


@pytest.mark.parametrize("threads", [1, 3])
def test_long_poll_answered_when_an_event_arrives(start_engine, threads):
    e = start_engine("--threads", str(threads), "--rate-limit", "0", "--api-key", KEY)
    res = {}

    def waiter():
        t0 = time.monotonic()
        res["r"] = poll(e.port, "lp-a", "since=0&wait=10")
        res["t"] = time.monotonic() - t0

    th = threading.Thread(target=waiter)
    th.start()
    time.sleep(0.5)

    async def go():
        p, _ = await connect(e.url)
        await publish_k(p, "lp-a", 42)
        await p.close()

    t_pub = time.monotonic()
    run(go())
    th.join(10)
    st, iv, b = res["r"]
    assert st == 200 and iv == "0" and b["recovered"] is True
    assert [m["data"]["k"] for m in b["events"]] == [42] and b["seq"] == 1
    assert 0.4 < res["t"] < 3.0, res["t"]  # answered at the event, not at the 10 s deadline
    # A wait with nothing published ends at its deadline with no events.
    t0 = time.monotonic()
    st, _, b = poll(e.port, "lp-a", f"since=1&epoch={b['epoch']}&wait=1")
    assert st == 200 and b["events"] == [] and b["recovered"] is True
    assert 0.8 < time.monotonic() - t0 < 3.0


def _read_responses(s, n, timeout):
    """Reads until n HTTP responses (by their status lines) arrived or timeout; returns the
    count seen."""
    import socket as _socket
    buf = b""
    deadline = time.monotonic() + timeout
    while buf.count(b"HTTP/1.1 200") < n and time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = s.recv(1 << 20)
        except (_socket.timeout, BlockingIOError):
            break
        if not chunk:
            break
        buf += chunk
    return buf.count(b"HTTP/1.1 200")


def test_parked_long_polls_are_bounded_and_answered_at_drain(start_engine):
    """1024 long polls wait per worker (HISTORY_POLL_MAX_WAITING); the next is answered at once;
    an event answers its room's waiters; SIGTERM answers the rest (clean exit)."""
    import socket as _socket
    e = start_engine("--threads", "1", "--rate-limit", "0", "--api-key", KEY,
                     "--max-connections", "100")
    socks = []
    for i in range(16):
        s = _socket.create_connection(("127.0.0.1", e.port))
        room = "pb-a" if i < 8 else "pb-b"
        req = (f"GET /api/poll/{room}?since=0&wait=20 HTTP/1.1\r\nHost: x\r\n"
               f"X-API-Key: {KEY}\r\n\r\n").encode()
        s.sendall(req * 64)
        socks.append(s)
    time.sleep(1.0)
    t0 = time.monotonic()
    st, iv, b = poll(e.port, "pb-c", "since=0&wait=20", timeout=5)
    assert st == 200 and b["events"] == [] and time.monotonic() - t0 < 2.0
    assert _read_responses(socks[0], 1, 0.2) == 0  # still parked

    async def go():
        p, _ = await connect(e.url)
        await publish_k(p, "pb-a", 1)
        await p.close()

    run(go())
    for s in socks[:8]:
        assert _read_responses(s, 64, 5.0) == 64
    e.signal()
    for s in socks[8:]:
        assert _read_responses(s, 64, 5.0) == 64
        s.close()
    for s in socks[:8]:
        s.close()
    assert e.wait(10) == 0


def test_replay_bounded_by_half_the_queue_and_polls_page(start_engine):
    """A replay larger than half of max-queue-bytes is refused (recovered:false, nothing sent);
    a poll answers a page of at most that much and says where it stopped."""
    e = start_engine("--threads", "2", "--rate-limit", "0", "--api-key", KEY,
                     "--max-message-bytes", "16384", "--max-queue-bytes", "65536")
    blob = "x" * 8000

    async def go():
        p, _ = await connect(e.url)
        for k in range(1, 11):
            r = await publish(p, "big", blob)
            assert r["type"] == "response", r
        epoch = r["data"]["epoch"]
        b, _ = await connect(e.url)
        d = await subscribe_data(b, "big", since=0, epoch=epoch)  # ~80 KB > 32 KB
        assert d["recovered"] is False
        c, _ = await connect(e.url)
        d = await subscribe_data(c, "big", since=8, epoch=epoch)  # ~16 KB
        assert d["recovered"] is True
        assert [m["seq"] for m in await collect_events(c, 2)] == [9, 10]
        for ws in (p, b, c):
            await ws.close()
        return epoch

    epoch = run(go())
    st, _, b = poll(e.port, "big", f"since=0&epoch={epoch}")
    n = len(b["events"])
    assert st == 200 and b["recovered"] is True and 0 < n < 10 and b["seq"] == n
    st, _, b2 = poll(e.port, "big", f"since={n}&epoch={epoch}")
    assert b2["events"][0]["seq"] == n + 1 and b2["recovered"] is True
