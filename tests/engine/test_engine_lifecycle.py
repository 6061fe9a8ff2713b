"""Connection lifecycle under time and pressure: slow consumers, heartbeats, graceful drain."""

import asyncio
import json
import select
import signal
import struct
import time

from engine_harness import (OP_CLOSE, OP_PING, OP_TEXT, Closed, RawWS, close_code_of, connect,
                            http_exchange, recv_json, reply_for, request, run, small_window_socket,
                            subscribe, upgrade_request)


async def read_room(ws, room, n, timeout, got=None):
    """Reads until n events of room have arrived; returns their (seq, payload) list (got, when
    given, is filled as they arrive, so others can watch the progress)."""
    got = [] if got is None else got
    deadline = time.monotonic() + timeout
    while len(got) < n:
        m = await recv_json(ws, max(0.01, deadline - time.monotonic()))
        if m.get("type") == "event" and m.get("room") == room:
            got.append((m["seq"], m["data"]))
    return got


def test_slow_consumer_is_closed_and_others_get_everything(start_engine):
    e = start_engine("--threads", "2", "--rate-limit", "0", "--max-queue-bytes", "65536",
                     "--max-message-bytes", "32k")
    n_events = 3000
    blob = "z" * 1000

    # The slow one: a tiny receive window and it never reads after subscribing.
    slow = RawWS(e.port, rcvbuf=4096)
    slow.send_json({"type": "subscribe", "channel": "firehose"})
    assert slow.recv_json()["data"]["status"] == "subscribed"

    async def go():
        fast = [(await connect(e.url, max_queue=None))[0] for _ in range(2)]
        for f in fast:
            await subscribe(f, "firehose")
        pub, _ = await connect(e.url)
        progress = [[] for _ in fast]
        readers = [asyncio.create_task(read_room(f, "firehose", n_events, 40, got))
                   for f, got in zip(fast, progress)]
        # Pipelined publishes, 25 in flight at most, and never more than 50 events ahead of
        # the fast readers: ~50 KiB, under the 64 KiB bound even if no kernel buffer helped,
        # so a fast subscriber can never look slow because this one process lagged.
        sent = 0
        deadline = time.monotonic() + 40
        while sent < n_events:
            while min(len(g) for g in progress) < sent - 25 and time.monotonic() < deadline:
                await asyncio.sleep(0.001)
            batch = min(25, n_events - sent)
            for i in range(batch):
                await pub.send(json.dumps({"type": "request", "event": "publish",
                                           "id": sent + i,
                                           "data": {"channel": "firehose", "event": "bench",
                                                    "payload": {"i": sent + i, "blob": blob}}}))
            await reply_for(pub, sent + batch - 1, timeout=20)
            sent += batch
        results = await asyncio.gather(*readers)
        for f in fast + [pub]:
            await f.close()
        return results

    results = run(go(), timeout=60)
    for got in results:
        seqs = [s for s, _ in got]
        assert seqs == list(range(1, n_events + 1)), "a fast subscriber missed or reordered events"
        assert [p["i"] for _, p in got] == list(range(n_events))

    # Now drain the slow socket: some events, then a 4008 close, or the stream simply ends.
    events = 0
    outcome = None
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            op, payload = slow.recv_frame(timeout=max(0.01, deadline - time.monotonic()))
        except Closed:
            outcome = "eof"
            break
        except TimeoutError:
            break
        if op == OP_TEXT:
            events += 1
        elif op == OP_CLOSE:
            outcome = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            break
    slow.close()
    assert outcome in (4008, "eof"), f"slow consumer not closed (outcome {outcome}, {events} events)"
    assert events < n_events, "the slow consumer was never cut off"


def test_heartbeat_keeps_responsive_client(start_engine):
    e = start_engine("--threads", "1", "--heartbeat-s", "1", "--heartbeat-timeout-s", "1")

    async def go():
        # websockets answers the server's pings by itself; it sends none of its own here.
        ws, _ = await connect(e.url)
        await asyncio.sleep(4)
        r = await request(ws, "ping", rid="still-here")
        await ws.close()
        return r

    r = run(go())
    assert r["type"] == "response" and r["correlation_id"] == "still-here"


def test_heartbeat_pings_idle_connection(start_engine):
    e = start_engine("--threads", "1", "--heartbeat-s", "1", "--heartbeat-timeout-s", "1")
    ws = RawWS(e.port)
    t0 = time.monotonic()
    op, payload = ws.recv_frame(timeout=3)
    assert op == OP_PING, f"expected a server ping, got opcode {op}"
    assert time.monotonic() - t0 <= 2.5
    ws.close()


def test_heartbeat_pings_of_a_connection_burst_are_spread(start_engine):
    """Connections accepted together are not pinged in the same tick: each is pinged after a
    silence of its own between half the heartbeat and the whole of it (a thousand pings and
    pongs in one iteration would delay the publish that shares it)."""
    e = start_engine("--threads", "1", "--heartbeat-s", "2", "--heartbeat-timeout-s", "5")
    t0 = time.monotonic()
    conns = [RawWS(e.port) for _ in range(20)]
    first = []  # seconds from the burst to each connection's first ping
    pending = set(range(len(conns)))
    while pending and time.monotonic() - t0 < 4:
        ready, _, _ = select.select([conns[i].sock for i in pending], [], [], 0.05)
        for i in [i for i in pending if conns[i].sock in ready]:
            op, _ = conns[i].recv_frame(timeout=1)
            assert op == OP_PING, f"expected a server ping, got opcode {op}"
            first.append(time.monotonic() - t0)
            pending.discard(i)
    for ws in conns:
        ws.close()
    assert not pending, f"{len(pending)} connections were never pinged"
    assert min(first) >= 0.8 and max(first) <= 3.0, sorted(first)
    assert max(first) - min(first) >= 0.5, f"pings bunched: {sorted(first)}"


def test_heartbeat_closes_unresponsive_client(start_engine):
    e = start_engine("--threads", "1", "--heartbeat-s", "1", "--heartbeat-timeout-s", "1")
    ws = RawWS(e.port)
    t0 = time.monotonic()
    outcome = ws.expect_close(timeout=5)  # skips the pings, never answers them
    elapsed = time.monotonic() - t0
    ws.close()
    assert outcome in (4000, "eof"), f"got {outcome}"
    assert 1.0 <= elapsed <= 3.5, f"closed after {elapsed:.2f} s, expected ~2-3 s"


def test_heartbeat_traffic_counts_as_alive(start_engine):
    # A raw client that never answers pings but keeps sending requests is not idle.
    e = start_engine("--threads", "1", "--heartbeat-s", "1", "--heartbeat-timeout-s", "1",
                     "--rate-limit", "0")
    ws = RawWS(e.port)
    t_end = time.monotonic() + 4
    i = 0
    while time.monotonic() < t_end:
        ws.send_json({"type": "request", "event": "ping", "id": i})
        r = ws.recv_json(timeout=2)
        assert r["correlation_id"] == i
        i += 1
        time.sleep(0.3)
    ws.close()


def test_sigterm_drains_every_event_then_closes_1001(start_engine):
    # 6 MB per subscriber, whose receive window is small: loopback's send buffer autotunes up to
    # 4 MB (tcp_wmem), so at SIGTERM megabytes are still in the engine's own queues (bound raised
    # to hold them), and must all be delivered before the 1001.
    e = start_engine("--threads", "2", "--rate-limit", "0", "--drain-timeout-s", "5",
                     "--max-queue-bytes", str(16 << 20))
    n = 1500
    blob = "d" * 4000

    async def go():
        subs = [(await connect(e.url, sock=small_window_socket(e.port)))[0] for _ in range(4)]
        for s in subs:
            await subscribe(s, "drain")
        pub, _ = await connect(e.url)
        for i in range(n):
            await pub.send(json.dumps({"type": "request", "event": "publish", "id": i,
                                       "data": {"channel": "drain", "event": "bench",
                                                "payload": {"i": i, "blob": blob}}}))
        # Every publish is accepted (the last response read means all were sequenced), then
        # SIGTERM at once: the subscribers have read nothing yet, so much is still queued.
        await reply_for(pub, n - 1, timeout=15)
        e.signal(signal.SIGTERM)
        async def drain(s):
            texts = []
            code = await close_code_of(s, timeout=10, collected=texts)
            evs = [json.loads(t) for t in texts]
            return [m["seq"] for m in evs if m.get("type") == "event"], code

        results = await asyncio.gather(*(drain(s) for s in subs))
        pub_code = await close_code_of(pub, timeout=10)
        return results, pub_code

    results, pub_code = run(go(), timeout=60)
    for seqs, code in results:
        assert seqs == list(range(1, n + 1)), f"subscriber got {len(seqs)} of {n} events"
        assert code == 1001
    assert pub_code == 1001
    assert e.wait(10) == 0, "engine did not exit 0 after draining"


def test_sigterm_stops_accepting_new_connections(start_engine):
    e = start_engine("--threads", "1", "--drain-timeout-s", "3")
    # A raw client that does not answer the server's close keeps the drain going for a while.
    ws = RawWS(e.port)
    e.signal(signal.SIGTERM)
    assert ws.expect_close(timeout=5) == 1001
    try:
        status, _, _ = http_exchange(e.port, upgrade_request("/ws"), timeout=2)
    except OSError:
        status = None  # refused or reset: the listener is gone
    assert status != 101, "a new connection was upgraded during the drain"
    ws.send_frame(OP_CLOSE, struct.pack("!H", 1001))
    assert ws.wait_eof(3)
    ws.close()
    assert e.wait(10) == 0


def test_sigint_is_graceful_too(start_engine):
    e = start_engine("--threads", "1")

    async def go():
        ws, _ = await connect(e.url)
        e.signal(signal.SIGINT)
        return await close_code_of(ws, timeout=5)

    assert run(go()) == 1001
    assert e.wait(10) == 0
