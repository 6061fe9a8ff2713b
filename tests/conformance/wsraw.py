"""wsraw - a deliberately low-level WebSocket client and engine launcher for the conformance and
abuse suites.

Everything is hand-built so that a test can break any rule on purpose: arbitrary FIN/RSV bits,
opcodes, masking, non-minimal length encodings, a header without its payload. The reader, in
turn, checks every frame the *server* sends (unmasked, no RSV bits, known opcode, minimal length,
valid UTF-8 in text, a legal close payload), so every test is also a conformance test of the
server's output.

Shared by tests/abuse (its conftest puts this directory on sys.path).
"""

import base64
import hashlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import tempfile
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
KNOWN_OPS = {OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG}


def build_dir():
    return os.environ.get("RINGCAST_BUILD", os.path.join(REPO, "build"))


def engine_path():
    return os.path.join(build_dir(), "engine", "ringcast")


# ---------------------------------------------------------------------------------------------
# Engine process
# ---------------------------------------------------------------------------------------------

SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Engine:
    """One ringcast process on a free port, stderr captured to a file (a pipe could fill up and
    stall the server mid-test)."""

    def __init__(self, args=(), drain_timeout_s=2):
        self.args = list(args)
        self.drain_timeout_s = drain_timeout_s
        self.proc = None
        self.port = None
        self.errfile = None

    def start(self, ready_timeout=20.0):
        exe = engine_path()
        if not os.path.exists(exe):
            raise RuntimeError(f"engine binary not found: {exe} (set RINGCAST_BUILD)")
        last = ""
        for _attempt in range(3):  # the free port can be taken between probe and bind: retry
            self.port = free_port()
            self.errfile = tempfile.NamedTemporaryFile(prefix="ringcast-", suffix=".log", delete=False)
            cmd = [exe, "--bind", "127.0.0.1", "--port", str(self.port),
                   "--drain-timeout-s", str(self.drain_timeout_s)] + self.args
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=self.errfile)
            want = f"listening on 127.0.0.1:{self.port}"
            deadline = time.monotonic() + ready_timeout
            while time.monotonic() < deadline:
                last = self.stderr()
                if want in last:
                    return self
                if self.proc.poll() is not None:
                    break
                time.sleep(0.02)
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
                raise RuntimeError(f"engine never logged '{want}' in {ready_timeout}s:\n{last[-3000:]}")
            if "in use" not in last.lower():
                break
        raise RuntimeError(f"engine exited with {self.proc.returncode} at start:\n{last[-3000:]}")

    @property
    def sanitized(self):
        """True for an ASan build: its RSS says little (freed memory sits in ASan's quarantine;
        LeakSanitizer checks for leaks at exit instead)."""
        with open(engine_path(), "rb") as f:
            return b"__asan_init" in f.read()

    def stderr(self):
        with open(self.errfile.name, "r", errors="replace") as f:
            return f.read()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def pid(self):
        return self.proc.pid

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def sanitizer_report(self):
        err = self.stderr()
        for m in SANITIZER_MARKERS:
            i = err.find(m)
            if i >= 0:
                return err[max(0, i - 200): i + 4000]
        return None

    def stop(self):
        """SIGTERM, wait for the graceful drain; returns (exit code, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.drain_timeout_s + 15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return "hung after SIGTERM (killed)", self.stderr()
        return self.proc.returncode, self.stderr()

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.errfile:
            try:
                os.unlink(self.errfile.name)
            except OSError:
                pass


# ---------------------------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------------------------


# ---- engine lifecycle shared by the conformance and abuse fixtures ----------------------------


def start_engine(args, fail):
    """Starts an Engine with args; calls fail(message) (pytest.fail) if it does not come up."""
    e = Engine(args)
    try:
        e.start()
    except RuntimeError as exc:
        e.cleanup()
        fail(str(exc))
    return e


def stop_engine(e):
    """SIGTERM; asserts a graceful exit 0 and a stderr free of sanitizer reports."""
    try:
        rc, err = e.stop()
        report = e.sanitizer_report()
        assert report is None, f"sanitizer report in engine stderr:\n{report}"
        assert rc == 0, f"engine exit status {rc} after SIGTERM; stderr tail:\n{err[-3000:]}"
    finally:
        e.cleanup()


def survival_problem(e):
    """After a test: None if the engine is alive and clean; else what went wrong, with the
    engine restarted so that the module's following tests still run against a live one."""
    problem = None
    if not e.alive():
        problem = f"engine died (status {e.proc.returncode}) during this test; stderr tail:\n" \
                  f"{e.stderr()[-4000:]}"
    elif e.sanitizer_report():
        problem = f"sanitizer report during this test:\n{e.sanitizer_report()}"
        e.stop()
    if problem:
        e.cleanup()
        try:
            e.start()
        except RuntimeError as exc:
            problem += f"\n(restart failed: {exc})"
    return problem


def mask_bytes(data, key):
    if not data:
        return b""
    # XOR with the key repeated: done on big integers, fast enough for 64 KiB payloads.
    k = (key * (len(data) // 4 + 1))[: len(data)]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(len(data), "big")


def frame_header(opcode, length, fin=True, rsv=0, mask=True, key=None, len_form=None):
    """Header bytes (including the mask key when masked). len_form forces the length encoding:
    7, 16 or 64 (None: the minimal one). Returns (header, key)."""
    b0 = (0x80 if fin else 0) | ((rsv & 7) << 4) | (opcode & 0xF)
    mbit = 0x80 if mask else 0
    if len_form is None:
        len_form = 7 if length <= 125 else 16 if length <= 0xFFFF else 64
    if len_form == 7:
        hdr = bytes([b0, mbit | length])
    elif len_form == 16:
        hdr = bytes([b0, mbit | 126]) + struct.pack(">H", length)
    else:
        hdr = bytes([b0, mbit | 127]) + struct.pack(">Q", length)
    if mask:
        if key is None:
            key = os.urandom(4)
        hdr += key
    return hdr, key


def build_frame(opcode, payload=b"", fin=True, rsv=0, mask=True, key=None, len_form=None):
    if isinstance(payload, str):
        payload = payload.encode()
    hdr, key = frame_header(opcode, len(payload), fin, rsv, mask, key, len_form)
    return hdr + (mask_bytes(payload, key) if mask else payload)


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode()
    return struct.pack(">H", code) + reason


class Frame:
    __slots__ = ("fin", "rsv", "opcode", "payload")

    def __init__(self, fin, rsv, opcode, payload):
        self.fin, self.rsv, self.opcode, self.payload = fin, rsv, opcode, payload

    @property
    def close_code(self):
        return struct.unpack(">H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def close_reason(self):
        return self.payload[2:]

    def __repr__(self):
        p = self.payload if len(self.payload) <= 80 else self.payload[:80] + b"..."
        return f"Frame(fin={self.fin}, rsv={self.rsv}, op={self.opcode:#x}, len={len(self.payload)}, {p!r})"


class ServerViolation(AssertionError):
    """The server sent something RFC 6455 forbids."""


def parse_server_frame(buf):
    """Parses one server frame from the start of buf (bytearray). Returns (Frame, size) or
    (None, 0) when incomplete. Raises ServerViolation for anything a server must not send."""
    if len(buf) < 2:
        return None, 0
    b0, b1 = buf[0], buf[1]
    fin, rsv, op = bool(b0 & 0x80), (b0 >> 4) & 7, b0 & 0xF
    if b1 & 0x80:
        raise ServerViolation(f"server frame is masked: {bytes(buf[:2])!r}")
    n, pos = b1 & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None, 0
        n, pos = struct.unpack(">H", buf[2:4])[0], 4
        if n < 126:
            raise ServerViolation(f"non-minimal 16-bit length {n}")
    elif n == 127:
        if len(buf) < 10:
            return None, 0
        n, pos = struct.unpack(">Q", buf[2:10])[0], 10
        if n <= 0xFFFF or n >> 63:
            raise ServerViolation(f"bad 64-bit length {n}")
    if len(buf) < pos + n:
        return None, 0
    payload = bytes(buf[pos: pos + n])
    if rsv:
        raise ServerViolation(f"server frame has RSV bits {rsv}")
    if op not in KNOWN_OPS:
        raise ServerViolation(f"server frame has reserved opcode {op:#x}")
    if op >= 8 and (not fin or n > 125):
        raise ServerViolation(f"bad server control frame fin={fin} len={n}")
    if op == OP_CLOSE:
        if n == 1:
            raise ServerViolation("server close payload of 1 byte")
        if n >= 2:
            code = struct.unpack(">H", payload[:2])[0]
            if not (1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
                raise ServerViolation(f"server sent close code {code}")
            try:
                payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                raise ServerViolation("server close reason is not UTF-8")
    return Frame(fin, rsv, op, payload), pos + n


class Closed(Exception):
    """The TCP connection ended (EOF or reset)."""


# ---------------------------------------------------------------------------------------------
# Connection
# ---------------------------------------------------------------------------------------------


def handshake_request(port, path="/ws", key=None, version="13", extra=(), method="GET",
                      http="HTTP/1.1", upgrade="websocket", connection="Upgrade", host=True):
    key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
    lines = [f"{method} {path} {http}"]
    if host:
        lines.append(f"Host: 127.0.0.1:{port}")
    if upgrade is not None:
        lines.append(f"Upgrade: {upgrade}")
    if connection is not None:
        lines.append(f"Connection: {connection}")
    if key is not False:
        lines.append(f"Sec-WebSocket-Key: {key}")
    if version is not None:
        lines.append(f"Sec-WebSocket-Version: {version}")
    lines.extend(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), key


def accept_for(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def parse_http_head(head):
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    if not m:
        raise AssertionError(f"bad status line {lines[0]!r}")
    headers = {}
    for ln in lines[1:]:
        if ln:
            k, _, v = ln.partition(":")
            headers[k.strip().lower()] = v.strip()
    return int(m.group(1)), headers


def connect(port, timeout=5.0, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def http_exchange(port, raw, timeout=5.0, expect_close=True):
    """Sends raw bytes, reads one HTTP response. Returns (status, headers, body). When
    expect_close, also checks that the server closes the connection afterwards."""
    s = connect(port, timeout)
    try:
        s.sendall(raw)
        buf = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in buf:
            if time.monotonic() > deadline:
                raise AssertionError(f"no HTTP response head within {timeout}s; got {buf!r}")
            chunk = s.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed before a response head; got {buf!r}")
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        status, headers = parse_http_head(head)
        if expect_close:
            while True:
                if time.monotonic() > deadline:
                    raise AssertionError("server kept the connection open after an error response")
                try:
                    chunk = s.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                body += chunk
        return status, headers, body
    finally:
        s.close()


class Conn:
    def __init__(self, sock, port):
        self.sock = sock
        self.port = port
        self.buf = bytearray()
        self.hello = None
        self.frag = None  # (opcode, [payloads]) of a server message being reassembled

    @classmethod
    def open(cls, port, path="/ws", timeout=5.0, read_hello=True, pipelined=b"", rcvbuf=None):
        """Connects and completes the opening handshake (optionally with frame bytes sent in
        the same write as the request). read_hello: consume and check session.created."""
        sock = connect(port, timeout, rcvbuf)
        c = cls(sock, port)
        req, key = handshake_request(port, path)
        sock.sendall(req + pipelined)
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in c.buf:
            if time.monotonic() > deadline:
                raise AssertionError("no handshake response")
            chunk = sock.recv(65536)
            if not chunk:
                raise Closed(f"closed during handshake; got {bytes(c.buf)!r}")
            c.buf += chunk
        head, _, rest = bytes(c.buf).partition(b"\r\n\r\n")
        status, headers = parse_http_head(head)
        assert status == 101, f"handshake got {status}: {head!r}"
        assert headers.get("sec-websocket-accept") == accept_for(key), headers
        assert headers.get("upgrade", "").lower() == "websocket", headers
        assert "upgrade" in headers.get("connection", "").lower(), headers
        c.buf = bytearray(rest)
        if read_hello:
            c.hello = c.recv_json()
            assert c.hello.get("type") == "event" and c.hello.get("event") == "session.created", c.hello
        return c

    # -- sending --------------------------------------------------------------------------
    def send(self, data):
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", **kw):
        self.sock.sendall(build_frame(opcode, payload, **kw))

    def send_text(self, text, **kw):
        self.send_frame(OP_TEXT, text, **kw)

    def send_json(self, obj):
        self.send_text(json.dumps(obj, separators=(",", ":")))

    def send_close(self, code=None, reason=b""):
        self.send_frame(OP_CLOSE, close_payload(code, reason))

    # -- receiving ------------------------------------------------------------------------
    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out waiting for the server")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(262144)
        except socket.timeout:
            raise TimeoutError("timed out waiting for the server")
        except (ConnectionResetError, BrokenPipeError) as e:
            raise Closed(f"reset: {e}")
        if not chunk:
            raise Closed("EOF")
        self.buf += chunk

    def recv_frame(self, timeout=3.0):
        deadline = time.monotonic() + timeout
        while True:
            f, size = parse_server_frame(self.buf)
            if f is not None:
                del self.buf[:size]
                return f
            self._fill(deadline)

    def recv_message(self, timeout=3.0):
        """Next complete data message or control frame, as (opcode, payload). Server text is
        checked to be valid UTF-8 and fragments to be sequenced correctly."""
        deadline = time.monotonic() + timeout
        while True:
            f = self.recv_frame(max(0.001, deadline - time.monotonic()))
            if f.opcode >= 8:
                return f.opcode, f.payload
            if f.opcode == OP_CONT:
                if self.frag is None:
                    raise ServerViolation("server continuation frame without a message")
                self.frag[1].append(f.payload)
            else:
                if self.frag is not None:
                    raise ServerViolation("server started a message inside another")
                self.frag = (f.opcode, [f.payload])
            if f.fin:
                op, parts = self.frag
                self.frag = None
                data = b"".join(parts)
                if op == OP_TEXT:
                    try:
                        data.decode("utf-8")
                    except UnicodeDecodeError:
                        raise ServerViolation(f"server text is not UTF-8: {data[:80]!r}")
                return op, data

    def recv_json(self, timeout=3.0, skip_events=False):
        """Next text message parsed as JSON. Pongs to our pings are skipped; a server ping
        (heartbeat) is answered with its pong, as every real client does, and skipped; a close
        or any other frame is an error here."""
        deadline = time.monotonic() + timeout
        while True:
            op, data = self.recv_message(max(0.001, deadline - time.monotonic()))
            if op == OP_PONG:
                continue
            if op == OP_PING:
                self.send_frame(OP_PONG, data)
                continue
            if op != OP_TEXT:
                raise AssertionError(f"expected a text message, got opcode {op:#x} {data[:125]!r}")
            msg = json.loads(data)
            if skip_events and msg.get("type") == "event":
                continue
            return msg

    def request(self, obj, timeout=3.0):
        self.send_json(obj)
        return self.recv_json(timeout, skip_events=True)

    def expect_close(self, codes, timeout=3.0, echo=True):
        """Reads until the server's close frame; its code must be in codes (None = no code).
        Data messages before it are allowed and returned. Then (echo) answers the close and
        checks that the server closes the TCP connection."""
        if isinstance(codes, int) or codes is None:
            codes = {codes}
        before = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                op, data = self.recv_message(max(0.001, deadline - time.monotonic()))
            except Closed as e:
                raise AssertionError(f"TCP closed without a close frame (wanted {codes}); "
                                     f"got before: {before!r}: {e}")
            except TimeoutError:
                raise AssertionError(f"no close frame within {timeout}s (wanted {codes}); "
                                     f"got before: {before!r}")
            if op == OP_CLOSE:
                f = Frame(True, 0, OP_CLOSE, data)
                assert f.close_code in codes, \
                    f"close code {f.close_code} ({f.close_reason!r}), wanted {codes}"
                break
            before.append((op, data))
        if echo:
            try:
                self.send_close(f.close_code)
            except OSError:
                pass
        self.expect_eof()
        return f, before

    def expect_eof(self, timeout=3.0):
        """The server must close the TCP connection; anything it still sends must be nothing
        but (already checked) frames."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._fill(deadline)
            except Closed:
                return
            except TimeoutError:
                raise AssertionError(f"server did not close the TCP connection within {timeout}s")

    def expect_silence(self, timeout=0.3):
        """Nothing arrives for timeout seconds (and the connection stays up)."""
        try:
            f = self.recv_frame(timeout)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected frame {f!r}")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def ping_request(size, rid="f"):
    """A ping request of exactly size bytes (padded inside data.pad), so the response proves the
    whole message arrived intact."""
    base = '{"type":"request","event":"ping","id":"%s","data":{"pad":"' % rid
    tail = '"}}'
    pad = size - len(base) - len(tail)
    assert pad >= 0, f"ping request cannot be {size} bytes"
    return (base + "x" * pad + tail).encode()


def assert_pong(msg, rid="f"):
    assert msg.get("type") == "response", msg
    assert msg.get("event") == "pong", msg
    assert msg.get("correlation_id") == rid, msg
    assert isinstance(msg.get("timestamp"), str), msg


def assert_error(msg, code):
    assert msg.get("type") == "error", msg
    assert msg.get("event") == "error", msg
    assert msg.get("data", {}).get("code") == code, msg
