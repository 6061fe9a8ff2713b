"""Many-connection helpers for the abuse suite: a single-threaded selector loop that reads every
peer at once (so the well-behaved ones keep up while someone misbehaves), publishing helpers and
RSS sampling."""

import json
import re
import selectors
import socket
import struct
import time

from wsraw import (OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, Closed, Conn, build_frame, close_payload,
                   connect, handshake_request, parse_server_frame)

SEQ_RE = re.compile(rb'"seq":(\d+)')
ROOM_RE = re.compile(rb'"room":"([^"]*)"')


class Peer:
    """A connected WebSocket client driven by pump(): events are recorded per room as seq lists,
    other messages kept whole."""

    def __init__(self, conn, name=""):
        self.c = conn
        self.name = name
        self.seqs = {}  # room -> [seq, ...] in arrival order
        self.msgs = []  # non-event JSON messages
        self.close_code = None  # set when a close frame arrives (None code: empty close)
        self.got_close = False
        self.eof = False
        self.paused = False  # not read by pump (a slow consumer)
        self.outbox = bytearray()
        self.rx_bytes = 0

    @property
    def sock(self):
        return self.c.sock

    def done(self):
        return self.eof

    def events(self, room):
        return self.seqs.get(room, [])

    def queue(self, data):
        self.outbox += data

    def subscribe(self, channel, timeout=5.0):
        r = self.c.request({"type": "subscribe", "channel": channel}, timeout)
        assert r.get("type") == "response" and r["data"]["status"] == "subscribed", r
        return r

    def handle_frame(self, f):
        if f.opcode == OP_TEXT:
            p = f.payload
            if p.startswith(b'{"type":"event"'):
                m, r = SEQ_RE.search(p), ROOM_RE.search(p)
                if m and r:
                    self.seqs.setdefault(r.group(1).decode(), []).append(int(m.group(1)))
                    return
            self.msgs.append(json.loads(p))
        elif f.opcode == OP_CLOSE:
            self.got_close = True
            self.close_code = f.close_code
        elif f.opcode == OP_PING:
            self.queue(build_frame(OP_PONG, f.payload))


def open_peers(port, n, channel=None, name="peer", rcvbuf=None):
    peers = []
    for i in range(n):
        p = Peer(Conn.open(port, rcvbuf=rcvbuf), f"{name}{i}")
        if channel is not None:
            p.subscribe(channel)
        peers.append(p)
    return peers


def pump(peers, duration, until=None, on_tick=None):
    """Reads (and writes queued bytes to) every unpaused peer for up to duration seconds, or until
    until() is true. on_tick() is called about every 10 ms (to publish, misbehave, ...).
    Frames are parsed with the conformance checks of wsraw: a malformed server frame raises."""
    sel = selectors.DefaultSelector()
    registered = set()

    def sync():
        # A peer can be paused, resumed or reset from on_tick: follow it.
        for p in peers:
            want = not p.eof and not p.paused
            if want and p not in registered:
                p.sock.setblocking(False)
                sel.register(p.sock, selectors.EVENT_READ, p)
                registered.add(p)
            elif not want and p in registered:
                sel.unregister(p.sock)
                registered.discard(p)

    deadline = time.monotonic() + duration
    next_tick = 0.0
    try:
        while time.monotonic() < deadline:
            if until is not None and until():
                return True
            now = time.monotonic()
            if on_tick is not None and now >= next_tick:
                on_tick()
                next_tick = now + 0.01
            sync()
            for p in registered:
                if p.outbox:
                    try:
                        n = p.sock.send(p.outbox)
                        del p.outbox[:n]
                    except BlockingIOError:
                        pass
                    except OSError:
                        p.outbox.clear()
            for key, _ in sel.select(0.005):
                p = key.data
                try:
                    chunk = p.sock.recv(1 << 20)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    p.eof = True
                    sel.unregister(p.sock)
                    registered.discard(p)
                    continue
                p.rx_bytes += len(chunk)
                buf = p.c.buf
                buf += chunk
                pos = 0
                mv = memoryview(buf)
                try:
                    while True:
                        f, size = parse_server_frame(mv[pos:])
                        if f is None:
                            break
                        pos += size
                        p.handle_frame(f)
                finally:
                    mv.release()
                if pos:
                    del buf[:pos]
        return until is None or until()
    finally:
        sel.close()
        for p in peers:
            if not p.eof:
                try:
                    p.sock.setblocking(True)
                    p.sock.settimeout(5)
                except OSError:
                    pass


def publish_frame(channel, payload_json, rid, event="bench"):
    body = ('{"type":"request","event":"publish","data":{"channel":"%s","event":"%s","payload":%s},'
            '"id":%d}' % (channel, event, payload_json, rid)).encode()
    return build_frame(OP_TEXT, body)


def contiguous(seqs, n=None):
    """True when seqs is exactly 1..len (or 1..n)."""
    want = n if n is not None else len(seqs)
    return seqs == list(range(1, want + 1))


def rst_close(sock):
    """Closes with SO_LINGER 0: the kernel sends a TCP RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def close_all(peers):
    for p in peers:
        p.c.close()


def wait_rss_settle(engine, seconds=1.5):
    """RSS after the dust settles: samples until two readings 0.3 s apart agree within 64 KiB."""
    deadline = time.monotonic() + seconds
    last = engine.rss_kb()
    while time.monotonic() < deadline:
        time.sleep(0.3)
        cur = engine.rss_kb()
        if abs(cur - last) < 64:
            return cur
        last = cur
    return last


def ping_roundtrip(port, timeout=3.0):
    """A fresh client connects and gets a pong: the server is serving. Returns seconds taken."""
    t0 = time.monotonic()
    c = Conn.open(port, timeout=timeout)
    try:
        r = c.request({"type": "request", "event": "ping", "id": 1}, timeout)
        assert r.get("event") == "pong", r
    finally:
        c.close()
    return time.monotonic() - t0



# ---- hostile clients (issue 9) ------------------------------------------------------------------


def req_frame(event, data=None, rid=None, fragments=1):
    """A masked request frame (or, with fragments > 1, a text frame and fragments-1 continuation
    frames carrying the same message)."""
    msg = {"type": "request", "event": event}
    if data is not None:
        msg["data"] = data
    if rid is not None:
        msg["id"] = rid
    body = json.dumps(msg, separators=(",", ":")).encode()
    if fragments <= 1:
        return build_frame(OP_TEXT, body)
    step = max(1, -(-len(body) // fragments))
    parts = [body[i: i + step] for i in range(0, len(body), step)]
    out = bytearray()
    for i, part in enumerate(parts):
        out += build_frame(OP_TEXT if i == 0 else 0x0, part, fin=(i == len(parts) - 1))
    return bytes(out)


def worker_of(conn):
    """The worker index a connection lives on, from its connection_id ("w1-7")."""
    cid = conn.hello["data"]["connection_id"]
    return int(cid[1: cid.index("-")])


def blast(sock, data, timeout=5.0):
    """Writes data without ever reading, giving up (without an error) when the peer stops taking
    it for `timeout` seconds or resets. Returns the bytes written."""
    sock.setblocking(False)
    sent, view = 0, memoryview(data)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_WRITE)
    try:
        while sent < len(data):
            try:
                sent += sock.send(view[sent: sent + 262144])
                continue
            except BlockingIOError:
                pass
            except OSError:
                break
            if not sel.select(timeout):
                break
    finally:
        sel.close()
        view.release()
    return sent


class StreamEnd:
    """How a server byte stream ended: the frames, the close code (None if no close frame),
    how the TCP side ended ('eof', 'reset', 'timeout'), any framing violation, and bytes left
    over after the last complete frame (a truncated frame)."""

    def __init__(self):
        self.frames = []
        self.close_code = None
        self.got_close = False
        self.end = None
        self.violation = None
        self.leftover = b""
        self.frames_after_close = 0
        self.nbytes = 0

    def texts(self):
        return [f.payload for f in self.frames if f.opcode in (OP_TEXT, 0x0)]

    def __repr__(self):
        return (f"StreamEnd(frames={len(self.frames)}, close={self.close_code}, got_close="
                f"{self.got_close}, end={self.end}, violation={self.violation!r}, leftover="
                f"{len(self.leftover)}B, after_close={self.frames_after_close}, bytes={self.nbytes})")


def read_stream(conn, timeout=10.0, stop_at_close=False):
    """Reads everything the server sends on conn (a wsraw.Conn whose buffer holds what was
    already received) until EOF/reset (or, with stop_at_close, the close frame), checking every
    frame. Returns a StreamEnd."""
    res = StreamEnd()
    buf = bytearray(conn.buf)
    conn.buf = bytearray()
    sock = conn.sock
    deadline = time.monotonic() + timeout

    def parse():
        pos = 0
        while True:
            try:
                f, size = parse_server_frame(buf[pos:])
            except AssertionError as e:  # ServerViolation
                res.violation = str(e)
                del buf[:]
                return
            if f is None:
                break
            pos += size
            if res.got_close:
                res.frames_after_close += 1
            res.frames.append(f)
            if f.opcode == OP_CLOSE and not res.got_close:
                res.got_close = True
                res.close_code = f.close_code
        del buf[:pos]

    parse()
    while res.violation is None and not (stop_at_close and res.got_close):
        left = deadline - time.monotonic()
        if left <= 0:
            res.end = "timeout"
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(1 << 20)
        except socket.timeout:
            res.end = "timeout"
            break
        except (ConnectionResetError, BrokenPipeError):
            res.end = "reset"
            break
        except OSError as e:
            res.end = f"error {e}"
            break
        if not chunk:
            res.end = "eof"
            break
        res.nbytes += len(chunk)
        buf += chunk
        parse()
    res.leftover = bytes(buf)
    return res


def engine_end_problems(e):
    """Stops the engine (SIGTERM) and returns what went wrong: not alive before the stop,
    a sanitizer report, a non-zero exit. Leaves e cleaned up."""
    problems = []
    try:
        if not e.alive():
            problems.append(f"engine died (status {e.proc.returncode}); stderr tail:\n"
                            f"{e.stderr()[-3000:]}")
        rc, err = e.stop()
        rep = e.sanitizer_report()
        if rep:
            problems.append(f"sanitizer report:\n{rep}")
        if rc != 0 and not problems:
            problems.append(f"exit status {rc} after SIGTERM; stderr tail:\n{err[-3000:]}")
    finally:
        e.cleanup()
    return problems


def serving(port, timeout=3.0):
    """None when a fresh client gets a pong within timeout, else why not."""
    try:
        ping_roundtrip(port, timeout)
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not serving"
        return f"{type(exc).__name__}: {exc}"


def start_own_engine(args, env=None):
    """An engine with its own flags (and extra environment variables): the caller ends it with
    engine_end_problems. Raises AssertionError when it does not start."""
    import os
    from wsraw import Engine
    saved = {}
    for k, v in (env or {}).items():
        saved[k] = os.environ.get(k)
        os.environ[k] = v
    try:
        e = Engine(args)
        try:
            e.start()
        except RuntimeError as exc:
            e.cleanup()
            raise AssertionError(f"engine {' '.join(args)} did not start: {exc}")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return e


def kill_engine(e):
    if e.proc is not None and e.proc.poll() is None:
        e.proc.kill()
        e.proc.wait()
    e.cleanup()


__all__ = ["Peer", "open_peers", "pump", "publish_frame", "contiguous", "rst_close", "close_all",
           "wait_rss_settle", "ping_roundtrip", "connect", "handshake_request", "Closed",
           "close_payload", "req_frame", "worker_of", "blast", "read_stream", "StreamEnd",
           "engine_end_problems", "serving", "start_own_engine", "kill_engine"]


def finish(e, what):
    """Fails with what went wrong at the end of an own engine's life (exit status, sanitizer)."""
    problems = engine_end_problems(e)
    assert not problems, f"{what}: " + "\n".join(problems)
