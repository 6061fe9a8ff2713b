"""Issue 9: memory that only grows.

* rooms without subscribers are freed (a room-name sprayer leaves RSS near the baseline);
* --max-rooms bounds the rooms, with TOO_MANY_ROOMS, and frees up again;
* a non-reading client's ping flood costs at most a few MB (pongs coalesced, queued memory
  counted at its real cost);
* pings count towards the rate limit (a ping flood is closed with 1008).

The RSS checks are skipped on an ASan build (freed memory sits in ASan's quarantine); the
rest runs on both.
"""

import time

import pytest

from abuseutil import (Peer, blast, finish, publish_frame, pump, read_stream, serving,
                       wait_rss_settle)
from wsraw import OP_PING, Conn, build_frame


def spray_rooms(port, prefix, n, per_conn=150):
    """Publishes once to each of n new room names, reconnecting every per_conn publishes (a new
    connection has a full rate-limit bucket). Names are ~200 bytes, as a sprayer would pick
    them to cost the most. Every publish must be acknowledged."""
    pad = "n" * 180
    done = 0
    while done < n:
        c = Peer(Conn.open(port), "spray")
        k = min(per_conn, n - done)
        for i in range(k):
            c.queue(publish_frame(f"{prefix}-{pad}-{done + i}", "1", done + i))
        pump([c], 10.0, until=lambda: len(c.msgs) >= k)
        bad = [m for m in c.msgs if m.get("type") != "response"]
        assert len(c.msgs) == k and not bad, \
            f"spray: {len(c.msgs)}/{k} acks at {done}, e.g. {bad[:2]}"
        c.c.close()
        done += k


def test_room_name_spray_is_freed(own):
    """2a: publishing to 20,000 new room names (no subscribers) must not keep them: RSS comes
    back within 4 MiB of the baseline (today ~600 B per name stays: ~12 MB). Without history:
    with --history-size a publish keeps its room for its events, bounded by --max-rooms
    (idle rooms give way, tests/engine/test_history.py)."""
    e = own(["--threads", "2", "--history-size", "0"])
    if e.sanitized:
        pytest.skip("ASan build: RSS says little (quarantine); the release build runs this")
    spray_rooms(e.port, "warm", 2000)  # warm the allocator and the paths first
    time.sleep(1.0)
    base = wait_rss_settle(e, 3.0)
    t0 = time.monotonic()
    spray_rooms(e.port, "spray", 20000)
    took = time.monotonic() - t0
    time.sleep(2.0)
    after = wait_rss_settle(e, 3.0)
    print(f"room spray: 20000 names in {took:.1f}s, RSS {base} -> {after} KiB")
    assert serving(e.port) is None
    assert after - base <= 4 * 1024, \
        f"20,000 subscriber-less rooms kept {after - base} KiB (RSS {base} -> {after} KiB)"
    finish(e, "room spray")


def subscribe_ok(c, room, rid):
    r = c.request({"type": "request", "event": "subscribe", "data": {"channel": room}, "id": rid})
    return r


def test_max_rooms(own):
    """2b: --max-rooms N: N rooms (distinct names, over several connections) can be joined; the
    next is refused with TOO_MANY_ROOMS and the request's correlation_id; once rooms are left
    (unsubscribe, or the connection closes) new rooms can be created again."""
    n = 40
    e = own(["--threads", "1", "--max-rooms", str(n)])
    conns = [Conn.open(e.port) for _ in range(4)]
    for i in range(n):
        r = subscribe_ok(conns[i % 4], f"mr-{i}", f"s{i}")
        assert r.get("data", {}).get("status") == "subscribed", (i, r)
    for c, room in ((conns[0], "mr-extra-0"), (conns[3], "mr-extra-1")):
        r = subscribe_ok(c, room, f"over-{room}")
        assert r.get("type") == "error" and r["data"].get("code") == "TOO_MANY_ROOMS", r
        assert r.get("correlation_id") == f"over-{room}", r
    # An existing room can still be joined by another connection.
    r = subscribe_ok(conns[1], "mr-0", "again")
    assert r.get("data", {}).get("status") == "subscribed", r
    # Leave rooms: unsubscribe one connection's rooms, close another one.
    for i in range(0, n, 4):
        r = conns[0].request({"type": "request", "event": "unsubscribe",
                              "data": {"channel": f"mr-{i}"}, "id": f"u{i}"})
        assert r.get("data", {}).get("status") == "unsubscribed", r
    conns[2].close()
    time.sleep(0.5)
    # mr-0 is still held by conns[1]; the rest of conns[0]'s (9) and conns[2]'s (10) are free.
    for j in range(15):
        r = subscribe_ok(conns[3], f"mr-new-{j}", f"n{j}")
        assert r.get("data", {}).get("status") == "subscribed", \
            f"room {j} after leaving 19 rooms: {r}"
    for c in conns:
        c.close()
    assert serving(e.port) is None
    finish(e, "--max-rooms")


def test_ping_flood_nonreader_memory(own):
    """2c: a client that never reads sends 480,000 empty pings (rate limit off): the server's
    RSS grows by at most 4 MiB (pongs are coalesced; queued memory is counted at its real
    cost, so the cap would close it with 4008 rather than let it grow)."""
    e = own(["--threads", "2", "--rate-limit", "0"])
    c0 = Conn.open(e.port)  # warm up
    c0.request({"type": "ping"})
    c0.close()
    time.sleep(0.5)
    base = e.rss_kb()
    c = Conn.open(e.port, rcvbuf=4096)
    one = build_frame(OP_PING, b"")
    chunk = one * 20000
    peak = base
    for _ in range(24):
        blast(c.sock, chunk, timeout=5.0)
        peak = max(peak, e.rss_kb())
    time.sleep(1.0)
    peak = max(peak, e.rss_kb())
    assert e.alive(), e.stderr()[-3000:]
    print(f"ping flood: RSS {base} -> peak {peak} KiB")
    if not e.sanitized:  # ASan's shadow and quarantine make RSS meaningless here
        assert peak - base <= 4 * 1024, \
            f"480,000 unread pings grew the server by {peak - base} KiB (RSS {base} -> {peak})"
    # The flooder is either still connected (coalesced pongs) or closed with 4008.
    r = read_stream(c, timeout=3.0, stop_at_close=True)
    assert r.violation is None and not r.leftover, r
    assert (not r.got_close) or r.close_code == 4008, r
    c.close()
    assert serving(e.port) is None
    finish(e, "ping flood")


def test_ping_flood_counts_towards_rate_limit(own):
    """2d: with the default rate limit, WebSocket pings count like messages: a client flooding
    pings (5,000/s, reading everything) is closed with 1008."""
    e = own(["--threads", "2"])
    p = Peer(Conn.open(e.port), "pinger")
    sent = [0]

    def tick():
        if not p.got_close and not p.eof and len(p.outbox) < 65536:
            p.queue(build_frame(OP_PING, b"x") * 50)
            sent[0] += 50

    pump([p], 10.0, until=lambda: p.eof, on_tick=tick)
    assert p.got_close and p.close_code == 1008, \
        f"ping flooder not closed with 1008 after {sent[0]} pings (close {p.close_code}, " \
        f"eof {p.eof})"
    p.c.close()
    assert serving(e.port) is None
    finish(e, "ping rate limit")
