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

import json
import os
import socket
import time

from abuseutil import blast, finish, read_stream, req_frame, serving, worker_of
from wsraw import Conn, connect

# Twice the default max-message-bytes: the smallest queue cap the engine accepts with it.
QUEUE_CAP = 131072
CRASH_ARGS = ["--threads", "2", "--max-queue-bytes", str(QUEUE_CAP), "--rate-limit", "0"]
RCVBUF = 4096
LONG_ID = "i" * 4096
ROUNDS_PARTIAL = int(os.environ.get("RINGCAST_PARTIAL_ROUNDS", "6"))


def check_hostile_closed(ends, what, complete=None):
    """Every hostile client was closed with 4008, or its TCP connection reset/closed without a
    close frame; never a framing violation. complete: a frame count that, received in full
    with no close, is fine too: the kernel's socket buffers (the sender's autotunes up to
    tcp_wmem's maximum) held all of it, so the engine's own queue never reached its cap."""
    bad = []
    for i, r in enumerate(ends):
        if r.violation or r.frames_after_close:
            bad.append((i, r))
        elif complete is not None and not r.got_close and len(r.frames) == complete:
            continue
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
    cap: each writes, in one go, 28 pings with a 4 KB id (~118 KB of pongs queued) and a
    subscribe with a 60 KB id, so that the "subscribed" reply pushed from the ack's walk over
    the room's waiting members crosses the cap (for a local room it crosses it at once)."""
    e = own(CRASH_ARGS)
    for rnd in range(3):
        rooms = [f"ack-{rnd}-{i}" for i in range(4)]
        assert e.alive(), f"engine died before round {rnd}:\n{e.stderr()[-3000:]}"
        clients = [Conn.open(e.port, rcvbuf=RCVBUF) for _ in range(32)]
        for k, c in enumerate(clients):
            b = b"".join(req_frame("ping", rid=f"p{j}-{LONG_ID}") for j in range(28))
            b += req_frame("subscribe", {"channel": rooms[k % 4]}, f"s{k}-" + "j" * 60000)
            blast(c.sock, b, timeout=1.0)
        time.sleep(0.5)
        assert e.alive(), f"engine died in round {rnd} of the join-ack walk " \
                          f"(status {e.proc.returncode}):\n{e.stderr()[-3000:]}"
        rep = e.sanitizer_report()
        assert rep is None, f"round {rnd}: sanitizer report:\n{rep}"
        assert serving(e.port) is None, f"round {rnd}: {serving(e.port)}"
        # A client whose reply did not cross the cap (the kernel took enough of its pongs) got
        # all 29 replies; every other one must be closed cleanly with 4008 (or reset).
        for i, c in enumerate(clients[:4]):
            r = read_stream(c, timeout=2.0, stop_at_close=True)
            if r.end == "timeout" and not r.got_close and len(r.frames) >= 29 and \
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
                                   rid=f"pub{j}-" + "k" * 1024, fragments=5) for j in range(24))
        blast(c.sock, batch, timeout=3.0)
        if not e.alive():
            break
        ends.append(read_stream(c, timeout=10.0, stop_at_close=True))
        c.close()
    assert e.alive(), f"engine died on a fragmented publish echoed to its publisher " \
                      f"(status {e.proc.returncode}):\n{e.stderr()[-3000:]}"
    assert serving(e.port) is None, serving(e.port)
    # 24 responses and 24 echoed events, when the kernel took them all.
    check_hostile_closed(ends, "fragmented publish echo", complete=48)
    finish(e, "fragmented publish echoed to a non-reading publisher")


def partial_send_round(e, room):
    """One round of item 5 (see the test); returns (publishes, [StreamEnd per subscriber])."""
    subs = []
    for _ in range(30):
        c = Conn.open(e.port, rcvbuf=RCVBUF)
        r = c.request({"type": "request", "event": "subscribe", "data": {"channel": room},
                       "id": 1})
        assert r.get("data", {}).get("status") == "subscribed", r
        subs.append(c)
    w0 = worker_of(subs[0])
    for c in subs[1:]:
        if worker_of(c) != w0:
            c.close()
    subs = [c for c in subs if worker_of(c) == w0]
    pub = None
    for _ in range(50):
        pub = Conn.open(e.port)
        if worker_of(pub) != w0:
            break
        pub.close()
    assert worker_of(pub) != w0, "could not place the publisher on the other worker"
    for c in subs:
        c.sock.setblocking(False)
    raw = {id(c): bytearray() for c in subs}
    frame = req_frame("publish", {"channel": room, "event": "big", "payload": "p" * 30000}, 1)
    slow0 = e.stderr().count("slow consumer")
    t0 = time.monotonic()
    n = 0
    while time.monotonic() - t0 < 6.0 and e.stderr().count("slow consumer") - slow0 < len(subs):
        pub.send(frame)
        n += 1
        for c in subs:  # a trickle: 4 KB per pass
            try:
                raw[id(c)] += c.sock.recv(4096)
            except (BlockingIOError, OSError):
                pass
        time.sleep(0.001)
    time.sleep(0.3)
    assert e.alive(), e.stderr()[-3000:]
    ends = []
    for c in subs:
        c.sock.setblocking(True)
        c.buf = raw[id(c)] + c.buf
        ends.append(read_stream(c, timeout=8.0, stop_at_close=True))
        c.close()
    pub.close()
    return n, ends


def test_partial_send_then_slow_consumer_close_keeps_framing(own):
    """5: subscribers that read only a trickle (4 KB per pass, small SO_RCVBUF, so that sends
    complete partially) get 30 KB events from a publisher on the other worker until the cap
    closes them with 4008, sometimes while a frame is partly sent and nothing is in flight.
    When they finally read everything, the byte stream must be valid WebSocket framing end to
    end (no truncated frame followed by the close frame) and end with a close frame 4008.
    The window is timing-dependent (2 of ~40 standalone tries hit it on today's engine), so the
    test runs ROUNDS_PARTIAL rounds (env RINGCAST_PARTIAL_ROUNDS, default 6)."""
    for rnd in range(ROUNDS_PARTIAL):  # a fresh engine each round: hits are per process
        e = own(["--threads", "2", "--max-queue-bytes", str(QUEUE_CAP), "--rate-limit", "0"])
        n, ends = partial_send_round(e, f"partial-{rnd}")
        bad = [(i, r) for i, r in enumerate(ends)
               if r.violation or r.close_code != 4008 or r.frames_after_close or r.leftover]
        assert not bad, f"round {rnd}: {len(bad)}/{len(ends)} slow consumers (after {n} " \
                        f"publishes) got a broken stream or no 4008 close: {bad[:3]}"
        finish(e, f"partial send + slow consumer close, round {rnd}")


def read_all(sock, timeout):
    """Everything until EOF/reset; returns (bytes, how it ended)."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return data, "timeout"
        except OSError:
            return data, "reset"
        if not chunk:
            return data, "eof"
        data += chunk
    return data, "timeout"


def test_half_close_still_gets_replies(own):
    """6: a client sends requests and at once shuts its side down (FIN): it still receives every
    reply (and the server's close, if any) before the TCP close."""
    e = own(["--threads", "2"])
    failures = []
    for k in range(16):
        c = Conn.open(e.port)
        c.send(req_frame("ping", rid=f"hp{k}")
               + req_frame("subscribe", {"channel": f"half-{k}"}, f"hs{k}"))
        c.sock.shutdown(socket.SHUT_WR)
        r = read_stream(c, timeout=8.0)
        ids = [json.loads(t).get("correlation_id") for t in r.texts()]
        if ids != [f"hp{k}", f"hs{k}"] or r.violation or r.end not in ("eof", "reset") \
                or r.frames_after_close:
            failures.append((k, ids, r))
        c.close()
    assert not failures, f"{len(failures)}/16 half-closed clients lost replies: {failures[:4]}"
    finish(e, "half-close")


def test_half_close_still_gets_http_400(own):
    """6: an HTTP request that gets a 400, immediately followed by FIN: the 400 is received."""
    e = own(["--threads", "2"])
    bad400 = []
    for k in range(8):
        s = connect(e.port)
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        data, how = read_all(s, 8.0)
        if not data.startswith(b"HTTP/1.1 400"):
            bad400.append((k, data[:40], how))
        s.close()
    assert not bad400, f"half-closed HTTP clients did not get their 400: {bad400[:4]}"
    finish(e, "half-close after an HTTP 400")


def test_pending_upgrades_count_towards_max_connections(own):
    """7: with --max-connections 10, 20 TCP connections that never send the upgrade: those
    beyond the cap are closed by the server within ~1 s (not left to the 5 s handshake
    timeout), and once they are gone a real client can connect."""
    e = own(["--threads", "2", "--max-connections", "10"])
    socks = [connect(e.port) for _ in range(20)]
    time.sleep(1.2)
    closed = 0
    for s in socks:
        s.setblocking(False)
        try:
            if s.recv(1) == b"":
                closed += 1
        except BlockingIOError:
            pass
        except OSError:
            closed += 1
    for s in socks:
        s.close()
    assert closed >= 10, f"only {closed} of 20 never-upgrading connections (10 over " \
                         f"--max-connections 10) were closed within 1.2 s"
    time.sleep(0.5)
    c = Conn.open(e.port)
    assert c.request({"type": "ping"})["type"] == "pong"
    c.close()
    finish(e, "pending upgrades and --max-connections")
