"""Helpers for the engine's integration tests: start the real binary, talk to it.

Shared by tests/engine and tests/clients (the latter adds this directory to sys.path). The module
name is unique across the pytest directories that tests/run collects together, because pytest
imports test-support modules by basename.

Three layers:
  Engine      the ringcast process: free port, readiness poll, SIGTERM teardown that asserts a
              clean exit and no sanitizer report (so the ASan run catches leaks and UB).
  RawWS       a blocking socket client that builds frames by hand, for the inputs a conforming
              library refuses to send (unmasked frames, bad UTF-8, RSV bits, ...).
  async helpers over websockets 10.4 for the protocol-level tests.
"""

import asyncio
import base64
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import tempfile
import time

import websockets

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("RINGCAST_BUILD", os.path.join(REPO, "build"))
BINARY = os.path.join(BUILD, "engine", "ringcast")

# Lines a sanitizer prints when it finds something; any of them fails the test that owned the
# engine, even when the process still exited 0 (UBSan without halt_on_error does).
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")

TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def free_port():
    """A port nobody listens on right now. The engine binds it a moment later: a tiny race that
    a loopback-only test machine never loses in practice."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Engine:
    """One running ringcast process. stop() is idempotent and returns the exit code."""

    def __init__(self, args=(), env=None, ready_timeout=5.0):
        if not os.access(BINARY, os.X_OK):
            raise RuntimeError(f"engine binary not found: {BINARY} (build it or set RINGCAST_BUILD)")
        self.host = "127.0.0.1"
        self.returncode = None
        penv = dict(os.environ)
        if env:
            penv.update(env)
        for attempt in range(3):
            self.port = free_port()
            self.url = f"ws://{self.host}:{self.port}/ws"
            # stderr goes to a file, not a pipe: a chatty engine must never block on a full pipe.
            self._err = tempfile.NamedTemporaryFile(prefix="ringcast-it-", suffix=".log",
                                                    delete=False)
            self.args = ([BINARY, "--bind", self.host, "--port", str(self.port)]
                         + [str(a) for a in args])
            self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=self._err,
                                         stderr=self._err, env=penv)
            self.pid = self.proc.pid
            try:
                self._wait_ready(ready_timeout)
                return
            except RuntimeError as e:
                # Someone took the free port between free_port() and the engine's bind: retry.
                if attempt == 2 or "in use" not in str(e).lower():
                    raise

    def _wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"engine exited with {self.proc.returncode} before accepting:\n"
                                   + self.stderr())
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)
        self.proc.kill()
        self.proc.wait()
        raise RuntimeError(f"engine not accepting on {self.port} within {timeout}s:\n" + self.stderr())

    def stderr(self):
        with open(self._err.name, "r", errors="replace") as f:
            return f.read()

    def wait_log(self, text, timeout=5.0):
        """True once `text` is in the engine's log. The engine accepts as soon as its workers
        run; its own "listening on" line comes a moment later, from the main thread."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.stderr():
                return True
            time.sleep(0.05)
        return False

    def signal(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)

    def wait(self, timeout=10.0):
        """Waits for exit; kills (and reports -9) when it does not exit in time."""
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.returncode = -9
        return self.returncode

    def stop(self, timeout=10.0):
        if self.returncode is None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
            self.wait(timeout)
        return self.returncode

    def sanitizer_lines(self):
        return [l for l in self.stderr().splitlines() if any(m in l for m in SANITIZER_MARKERS)]

    def check_clean_exit(self):
        """Stops the engine, then asserts exit 0 and a stderr free of sanitizer reports."""
        rc = self.stop()
        text = self.stderr()
        bad = self.sanitizer_lines()
        try:
            os.unlink(self._err.name)
        except OSError:
            pass
        assert not bad, "sanitizer report in engine stderr:\n" + text[-6000:]
        assert rc == 0, f"engine exited with {rc} after SIGTERM; stderr tail:\n{text[-4000:]}"


# --------------------------------------------------------------------------------------------
# Raw sockets: hand-built HTTP and WebSocket frames.
# --------------------------------------------------------------------------------------------

OP_CONT, OP_TEXT, OP_BIN, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def ws_key():
    return base64.b64encode(os.urandom(16)).decode()


def upgrade_request(path="/ws", key=None, version="13", method="GET", extra=()):
    key = ws_key() if key is None else key
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", f"Sec-WebSocket-Version: {version}"]
    lines += list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def build_frame(opcode, payload=b"", fin=True, mask=True, rsv=0, mask_key=None):
    """One frame exactly as given: the caller decides on FIN, RSV bits and masking."""
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4) if mask_key is None else mask_key
    masked = bytes(c ^ key[i & 3] for i, c in enumerate(payload))
    return head + key + masked


def parse_http_response(raw):
    """(status, {lower-name: value}) from a raw response head."""
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    parts = lines[0].split(" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
    headers = {}
    for l in lines[1:]:
        if ":" in l:
            k, v = l.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    return status, headers


def read_http_head(sock, timeout=3.0):
    """Reads until the blank line ending a response head, EOF, reset or timeout; returns bytes
    (possibly empty)."""
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, ConnectionResetError):
            break
        if not chunk:
            break
        buf += chunk
    return buf


def http_exchange(port, request, timeout=3.0):
    """Sends a raw request, returns (status, headers, raw bytes)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass
        raw = read_http_head(s, timeout)
    status, headers = parse_http_response(raw) if raw else (None, {})
    return status, headers, raw


class Closed(Exception):
    """The peer ended the TCP stream (EOF or reset) before a whole frame arrived."""


class RawWS:
    """A blocking WebSocket client with hand-made frames."""

    def __init__(self, port, path="/ws", rcvbuf=None, handshake=True, timeout=5.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            # Before connect(), so the advertised window is small from the first segment.
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""
        self.status = None
        self.welcome = None
        if handshake:
            self.handshake(path)

    def handshake(self, path="/ws"):
        self.sock.sendall(upgrade_request(path))
        raw = read_http_head(self.sock, 5.0)
        self.status, _ = parse_http_response(raw) if raw else (None, {})
        assert self.status == 101, f"upgrade refused: {raw[:200]!r}"
        self.buf = raw.split(b"\r\n\r\n", 1)[1]
        op, payload = self.recv_frame()
        assert op == OP_TEXT, f"expected the welcome text frame, got opcode {op}"
        self.welcome = json.loads(payload)

    def send_raw(self, data):
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", **kw):
        self.sock.sendall(build_frame(opcode, payload, **kw))

    def send_json(self, obj):
        self.send_frame(OP_TEXT, json.dumps(obj))

    def _fill(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("frame not complete in time")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError as e:
                raise Closed("reset") from e
            if not chunk:
                raise Closed("eof")
            self.buf += chunk

    def recv_frame_full(self, timeout=5.0):
        """(fin, opcode, payload) of the next frame. Server frames must not be masked."""
        deadline = time.monotonic() + timeout
        self._fill(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        assert not b1 & 0x80, "server frame is masked"
        n = b1 & 0x7F
        off = 2
        if n == 126:
            self._fill(4, deadline)
            n = struct.unpack("!H", self.buf[2:4])[0]
            off = 4
        elif n == 127:
            self._fill(10, deadline)
            n = struct.unpack("!Q", self.buf[2:10])[0]
            off = 10
        self._fill(off + n, deadline)
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def recv_frame(self, timeout=5.0):
        _, op, payload = self.recv_frame_full(timeout)
        return op, payload

    def recv_json(self, timeout=5.0, skip_control=True):
        """Next text message as a dict; control frames are skipped (pings answered never)."""
        deadline = time.monotonic() + timeout
        while True:
            op, payload = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if op == OP_TEXT:
                return json.loads(payload)
            if op == OP_CLOSE or not skip_control:
                raise AssertionError(f"expected a text frame, got opcode {op} {payload[:80]!r}")

    def expect_close(self, timeout=5.0):
        """Reads until a close frame (returns its code, or None for an empty close) or until the
        stream ends (returns "eof"). Text frames before it are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                op, payload = self.recv_frame(max(0.01, deadline - time.monotonic()))
            except Closed:
                return "eof"
            if op == OP_CLOSE:
                return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None

    def wait_eof(self, timeout=5.0):
        """True when the server ends the TCP stream within timeout (after any frames)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except ConnectionResetError:
                return True
            if not chunk:
                return True

    def readable_now(self):
        r, _, _ = select.select([self.sock], [], [], 0)
        return bool(r)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


# --------------------------------------------------------------------------------------------
# websockets 10.4 helpers (asyncio).
# --------------------------------------------------------------------------------------------

def run(coro, timeout=30.0):
    """Runs one test coroutine with a hard time bound, so a hung engine fails, never hangs."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def connect(url, **kw):
    """Connects and consumes the welcome event; returns (ws, welcome dict)."""
    kw.setdefault("max_size", None)
    kw.setdefault("ping_interval", None)  # only the server's heartbeat, never the library's
    kw.setdefault("open_timeout", 5)
    ws = await websockets.connect(url, **kw)
    welcome = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert welcome.get("event") == "session.created", welcome
    return ws, welcome


def small_window_socket(port, rcvbuf=4096):
    """A connected TCP socket whose receive buffer is set small before connect(): pass it as
    websockets.connect(..., sock=...) so that whatever such a client has not read stays queued in
    the engine rather than in loopback's generous kernel buffers."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(("127.0.0.1", port))
    s.setblocking(False)
    return s


async def recv_json(ws, timeout=5.0):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def request(ws, event, data=None, rid=None, timeout=5.0):
    """Sends a request-form message and returns the first reply carrying its id."""
    msg = {"type": "request", "event": event}
    if data is not None:
        msg["data"] = data
    if rid is None:
        request.counter += 1
        rid = f"r{request.counter}"
    msg["id"] = rid
    await ws.send(json.dumps(msg))
    return await reply_for(ws, rid, timeout)


request.counter = 0


async def reply_for(ws, rid, timeout=5.0, skipped=None):
    """Reads until a response/error whose correlation_id is rid; other messages go to skipped."""
    deadline = time.monotonic() + timeout
    while True:
        m = await recv_json(ws, max(0.01, deadline - time.monotonic()))
        if m.get("type") in ("response", "error") and m.get("correlation_id") == rid:
            return m
        if skipped is not None:
            skipped.append(m)


async def subscribe(ws, channel):
    r = await request(ws, "subscribe", {"channel": channel})
    assert r["type"] == "response" and r["data"]["status"] == "subscribed", r
    return r


async def publish(ws, channel, payload, event="bench", skipped=None):
    request.counter += 1
    rid = f"p{request.counter}"
    await ws.send(json.dumps({"type": "request", "event": "publish", "id": rid,
                              "data": {"channel": channel, "event": event, "payload": payload}}))
    return await reply_for(ws, rid, 5.0, skipped)


async def subscribe_data(ws, channel, **opts):
    """Subscribes with opts (since, epoch, ...), asserts it was accepted; the response's data."""
    r = await request(ws, "subscribe", dict(channel=channel, **opts))
    assert r["type"] == "response" and r["data"]["status"] == "subscribed", r
    return r["data"]


async def publish_k(ws, channel, k):
    """Publishes {"k": k}, asserts it was accepted; the response's data (seq, epoch, ...)."""
    r = await publish(ws, channel, {"k": k})
    assert r["type"] == "response", r
    return r["data"]


async def drain(ws):
    """Reads and drops whatever ws receives until it closes (run it as a task; cancel it)."""
    try:
        while True:
            await ws.recv()
    except Exception:
        pass


async def flood(ws, channel, ks, every, pause):
    """Publishes {"k": k} to channel for each k in ks without waiting for the replies (drain()
    reads them), sleeping pause seconds after each k that is a multiple of every."""
    for k in ks:
        await ws.send(json.dumps({"type": "request", "event": "publish", "id": f"f{k}",
                                  "data": {"channel": channel, "payload": {"k": k}}}))
        if k % every == 0:
            await asyncio.sleep(pause)


async def flood_while(floods, clients, idle=(), every=10, pause=0.002):
    """Runs the client coroutines while each (ws, channel, ks) of floods floods channel (see
    flood()); what reaches the publishers and the idle connections is drained. Once every flood
    and client is done, closes the publishers and the idle connections and returns the clients'
    results in order."""
    conns = [f[0] for f in floods] + list(idle)
    drains = [asyncio.ensure_future(drain(w)) for w in conns]
    tasks = [asyncio.ensure_future(c) for c in clients]
    await asyncio.gather(*[flood(ws, ch, ks, every, pause) for ws, ch, ks in floods])
    results = await asyncio.gather(*tasks)
    for w in conns:
        await w.close()
    for d in drains:
        d.cancel()
    return results


async def collect_events(ws, n, timeout=5.0):
    """Exactly the next n messages of type event (other messages are an error)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        m = await recv_json(ws, max(0.01, deadline - time.monotonic()))
        assert m.get("type") == "event", f"unexpected message while waiting for events: {m}"
        out.append(m)
    return out


async def assert_silent(ws, seconds=0.3):
    """Nothing arrives within seconds."""
    try:
        m = await asyncio.wait_for(ws.recv(), seconds)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"unexpected message: {m}")


async def close_code_of(ws, timeout=5.0, collected=None):
    """Waits for the server to close, returns the close code it sent (1006 when the TCP stream
    ended without a close frame). Messages read meanwhile go to collected (a list) if given."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            m = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
            if collected is not None:
                collected.append(m)
    except websockets.ConnectionClosed:
        pass
    except asyncio.TimeoutError:
        raise AssertionError("server did not close the connection in time") from None
    await ws.wait_closed()
    return ws.close_code
