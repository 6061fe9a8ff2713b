#!/usr/bin/env python3
"""A ringcast subscriber that survives reconnects without losing or repeating an event.

Needs python3-websockets (Debian 12's 10.4, or any later release). Copy the Subscriber class into
a service; the main() below is the demo the tests run:

    subscriber.py --url ws://127.0.0.1:8765/ws [--token JWT] ROOM [ROOM...]

prints every event of the ROOMs as one JSON line on stdout (the envelope as the server sent it)
and what the connection does on stderr. Ctrl-C (SIGINT) or SIGTERM closes with 1000 and exits 0.

What it does (docs/integration.md, "Subscribers: reconnect and resume"):
- reconnects after any failure with exponential backoff and full jitter: the n-th retry waits a
  random time in [0, min(cap, base * 2**n)], so a thousand clients cut off together do not come
  back together; the count resets once a connection has all its rooms subscribed again;
- remembers, per room, the epoch and the last seq it handled (the subscribe response's seq until
  an event comes), and resubscribes with
  {"since": seq, "epoch": epoch}: the engine replays what was missed from the room's history,
  then live events follow, each exactly once and in order (docs/protocol.md, "Resume");
- when the answer is "recovered": false (history gone: the engine restarted, or the outage
  outlasted --history-size / --history-ttl), it calls the resync hook, where a real client
  refetches state from the service that owns it;
- dispatches each event to the handlers registered for its name (@sub.on("workflow.failed")),
  or to the "*" handlers;
- keeps the connection alive with WebSocket pings (a dead network is noticed within about
  ping_interval + ping_timeout seconds), on top of the engine's own heartbeat.

tests/clients/test_examples.py runs this file against the engine through a proxy it cuts.
"""

import argparse
import asyncio
import inspect
import json
import logging
import random
import signal
import sys

import websockets
from websockets.version import version as _ws_version

log = logging.getLogger("ringcast.subscriber")

# websockets 14 renamed the header argument of connect().
_HEADERS_ARG = "additional_headers" if int(_ws_version.split(".")[0]) >= 14 else "extra_headers"


class Fatal(Exception):
    """A refusal that retrying will not fix (a 401/403/404 upgrade answer)."""


class Subscriber:
    def __init__(self, url, rooms, token=None, backoff_base=0.5, backoff_cap=30.0,
                 ping_interval=20.0, ping_timeout=20.0):
        self.url = url
        self.token = token
        self.backoff_base, self.backoff_cap = backoff_base, backoff_cap
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        # room -> {"epoch": str or None, "seq": last seq handled or None}
        self.rooms = {r: {"epoch": None, "seq": None} for r in rooms}
        self._handlers = {}
        self._resync = []
        self._stop = None
        self.connects = 0

    # ---- registration ----

    def on(self, event):
        """Decorator: handler(envelope) for events named `event` ("*": every event without a
        handler of its own). A handler may be a coroutine function."""
        def register(fn):
            self._handlers.setdefault(event, []).append(fn)
            return fn
        return register

    def on_resync(self, fn):
        """Decorator: fn(room, reason) when events of room may have been lost for good."""
        self._resync.append(fn)
        return fn

    # ---- running ----

    def stop(self):
        """Ends run(): the connection is closed with 1000. Safe from a signal handler."""
        if self._stop is not None:
            self._stop.set()

    async def run(self):
        """Connects, subscribes and dispatches until stop(); reconnects on any failure."""
        self._stop = asyncio.Event()
        attempt = 0
        while not self._stop.is_set():
            try:
                healthy = await self._session()
            except Fatal:
                raise
            except (OSError, asyncio.TimeoutError, websockets.WebSocketException) as e:
                log.warning("connection lost: %s", _why(e))
                healthy = False
            if self._stop.is_set():
                break
            attempt = 0 if healthy else attempt + 1
            delay = random.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** attempt))
            log.info("reconnecting in %.2f s", delay)
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
            except asyncio.TimeoutError:
                pass

    async def _session(self):
        """One connection: returns True if it got as far as having every room subscribed."""
        kw = {}
        if self.token:
            kw[_HEADERS_ARG] = {"Authorization": f"Bearer {self.token}"}
        try:
            ws = await websockets.connect(self.url, open_timeout=10, ping_interval=self.ping_interval,
                                          ping_timeout=self.ping_timeout, max_size=1 << 24, **kw)
        except websockets.InvalidHandshake as e:
            # InvalidStatusCode (websockets < 14) has .status_code, InvalidStatus has .response
            status = getattr(e, "status_code", None) or getattr(getattr(e, "response", None),
                                                                   "status_code", None)
            if status in (401, 403, 404):
                raise Fatal(f"upgrade refused: HTTP {status}") from e
            raise
        self.connects += 1
        log.info("connected to %s", self.url)
        pending = {}  # request id -> room, for the subscribes not answered yet
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            for i, (room, st) in enumerate(self.rooms.items()):
                data = {"channel": room}
                if st["epoch"] is not None:
                    # Resume: everything after the last seq we handled in this epoch (or, when
                    # no event came yet, the subscribe response's seq: where our live ones began).
                    data.update(since=st["seq"] or 0, epoch=st["epoch"])
                rid = f"sub-{self.connects}-{i}"
                pending[rid] = room
                await ws.send(json.dumps({"type": "request", "event": "subscribe", "data": data,
                                          "id": rid}))
            healthy = False
            while True:
                recv = asyncio.ensure_future(ws.recv())
                done, _ = await asyncio.wait({recv, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if stopper in done:
                    recv.cancel()
                    await ws.close(1000, "bye")
                    log.info("closed (1000)")
                    return healthy
                try:
                    msg = json.loads(recv.result())
                except websockets.ConnectionClosed as e:
                    log.warning("connection closed: %s", _why(e))
                    return healthy
                await self._dispatch(msg, pending)
                if not healthy and not pending:
                    healthy = True
        finally:
            stopper.cancel()
            await ws.close()  # no-op when already closed; releases the socket otherwise

    async def _dispatch(self, msg, pending):
        kind = msg.get("type")
        if kind == "event" and msg.get("room") in self.rooms:
            room, seq = msg["room"], msg.get("seq")
            st = self.rooms[room]
            if isinstance(seq, int) and st["seq"] is not None:
                if seq <= st["seq"]:
                    return  # already handled: cannot happen with recovered:true, costs nothing
                if seq != st["seq"] + 1:
                    await self._call_resync(room, f"gap: seq {st['seq']} -> {seq}")
            if isinstance(seq, int):
                st["seq"] = seq
            for fn in self._handlers.get(msg.get("event"), self._handlers.get("*", [])):
                try:
                    r = fn(msg)
                    if inspect.isawaitable(r):
                        await r
                except Exception:  # a handler's bug must not drop the connection
                    log.exception("handler for %s failed", msg.get("event"))
        elif kind == "response" and msg.get("event") == "subscribe":
            room = pending.pop(msg.get("correlation_id"), None)
            if room is None:
                return
            data = msg.get("data", {})
            st = self.rooms[room]
            old = st["epoch"]
            st["epoch"] = data.get("epoch")
            if data.get("recovered") is not True:
                # A first subscribe or lost history: the live events follow the response's seq
                # (None from an engine that does not send it: the next event starts the count).
                st["seq"] = data.get("seq")
            if data.get("recovered") is False:
                await self._call_resync(room, f"history lost (epoch {old} -> {st['epoch']})")
            log.info("subscribed %s%s", room, "" if old is None else
                     f" (resumed after seq {st['seq']}, recovered {data.get('recovered')})")
        elif kind == "error":
            room = pending.pop(msg.get("correlation_id"), None)
            err = msg.get("data", {})
            log.error("error %s: %s%s", err.get("code"), err.get("message"),
                      f" (subscribe {room}: dropped)" if room else "")
            if room is not None:
                del self.rooms[room]  # FORBIDDEN, INVALID_CHANNEL...: retrying will not help

    async def _call_resync(self, room, reason):
        log.warning("resync %s: %s", room, reason)
        for fn in self._resync:
            r = fn(room, reason)
            if inspect.isawaitable(r):
                await r


def _why(e):
    if isinstance(e, websockets.ConnectionClosed):
        return f"close code {e.code} {e.reason!r}".rstrip(" '")
    return f"{type(e).__name__}: {e}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="ws://127.0.0.1:8765/ws")
    ap.add_argument("--token", help="JWT whose channels claim covers the rooms (--auth)")
    ap.add_argument("--backoff-base", type=float, default=0.5, help="seconds (0.5)")
    ap.add_argument("--backoff-cap", type=float, default=30.0, help="seconds (30)")
    ap.add_argument("rooms", nargs="+", metavar="ROOM")
    a = ap.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="subscriber: %(levelname)s %(message)s")

    sub = Subscriber(a.url, a.rooms, token=a.token, backoff_base=a.backoff_base,
                     backoff_cap=a.backoff_cap)

    @sub.on("*")
    def print_event(ev):
        print(json.dumps(ev, separators=(",", ":")), flush=True)

    @sub.on("workflow.failed")
    def workflow_failed(ev):  # a handler of its own: this one also says so on stderr
        log.warning("workflow %s failed: %s", ev["data"].get("workflow_id"), ev["data"].get("error"))
        print_event(ev)

    @sub.on_resync
    def resync(room, reason):
        # A real client refetches the room's state from its service here (ringcast is not a
        # database); the demo only says so.
        log.warning("RESYNC %s", room)

    async def run():
        loop = asyncio.get_running_loop()
        for s in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(s, sub.stop)
        await sub.run()

    try:
        asyncio.run(run())
    except Fatal as e:
        log.error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
