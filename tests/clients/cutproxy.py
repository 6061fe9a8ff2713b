"""A TCP forwarder between a client under test and the engine that the test can cut.

The reconnect tests (test_examples.py) need the connection to die while the engine lives on,
keeping its room history, so that the client's resume is what brings the missed events back:

    with CutProxy(engine.port) as proxy:      # listens on 127.0.0.1:proxy.port
        ...point the client at proxy.port...
        proxy.cut()                           # resets every current connection (RST, no close frame)
        proxy.cut(refuse_s=1.0)               # ... and resets new ones for a second: backoff runs
        proxy.cut(refuse_s=None); proxy.allow()  # ... resets new ones until allow()

The proxy runs its own asyncio loop on a thread, so a plain test function can drive it while it
reads a subprocess. `accepted` counts the connections it took; `client_bytes(i)` is what the
i-th client sent (the last frames a client sent before closing are checked there).
"""

import asyncio
import socket
import struct
import threading
import time


class CutProxy:
    def __init__(self, target_port, target_host="127.0.0.1"):
        self.target = (target_host, target_port)
        self.port = None
        self.accepted = 0
        self._sent = []  # per accepted connection: bytearray of client -> server bytes
        self._writers = set()
        self._refuse_until = 0.0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    # ---- the test's side (any thread) ----

    def __enter__(self):
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("cut proxy did not start")
        return self

    def __exit__(self, *exc):
        self._call(self._shutdown)
        self._thread.join(5)

    def cut(self, refuse_s=0.0):
        """Resets every connection open now; for refuse_s seconds (None: until allow()), resets
        new ones as they come."""
        self._call(self._cut, float("inf") if refuse_s is None else refuse_s)

    def allow(self):
        """Ends a refusal started by cut(): new connections are forwarded again."""
        self._call(setattr, self, "_refuse_until", 0.0)

    def client_bytes(self, i):
        return bytes(self._sent[i])

    def _call(self, fn, *args):
        done = threading.Event()

        def run():
            try:
                fn(*args)
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(5)

    # ---- the proxy's loop ----

    def _run(self):
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    def _shutdown(self):
        self._server.close()
        self._cut(0)
        self._loop.call_soon(self._loop.stop)

    def _cut(self, refuse_s):
        self._refuse_until = time.monotonic() + refuse_s
        for w in list(self._writers):
            _reset(w)
        self._writers.clear()

    async def _handle(self, creader, cwriter):
        self.accepted += 1
        sent = bytearray()
        self._sent.append(sent)
        if time.monotonic() < self._refuse_until:
            _reset(cwriter)
            return
        try:
            sreader, swriter = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(cwriter)
            return
        self._writers.update((cwriter, swriter))

        async def pump(reader, writer, record):
            try:
                while True:
                    data = await reader.read(65536)
                    if not data:
                        break
                    if record is not None:
                        record += data
                    writer.write(data)
                    await writer.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                # An orderly end on one side ends the other the same way (the close handshake
                # passes through); a cut has already reset both.
                if writer in self._writers:
                    self._writers.discard(writer)
                    writer.close()

        await asyncio.gather(pump(creader, swriter, sent), pump(sreader, cwriter, None))


def _reset(writer):
    """Closes with RST: SO_LINGER 0 makes close() drop the connection, as a dead network would."""
    sock = writer.get_extra_info("socket")
    try:
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    writer.transport.abort()


def client_frames(raw):
    """Parses what a WebSocket client sent (HTTP upgrade head, then masked frames) into a list of
    (opcode, payload) with payloads unmasked. A truncated last frame is left out."""
    head_end = raw.find(b"\r\n\r\n")
    if head_end < 0:
        return []
    buf, i, out = raw[head_end + 4:], 0, []
    while i + 2 <= len(buf):
        op, n = buf[i] & 0x0F, buf[i + 1] & 0x7F
        j = i + 2
        if n == 126:
            if j + 2 > len(buf):
                break
            n, j = struct.unpack("!H", buf[j:j + 2])[0], j + 2
        elif n == 127:
            if j + 8 > len(buf):
                break
            n, j = struct.unpack("!Q", buf[j:j + 8])[0], j + 8
        masked = buf[i + 1] & 0x80
        key = buf[j:j + 4] if masked else b"\0\0\0\0"
        j += 4 if masked else 0
        if j + n > len(buf):
            break
        out.append((op, bytes(c ^ key[k & 3] for k, c in enumerate(buf[j:j + n]))))
        i = j + n
    return out
