#!/usr/bin/python3
"""python-websockets: a broadcast server on Python `websockets` (asyncio), written the way that
library's own users write one, speaking the subset of ringcast's protocol (docs/protocol.md) that
ringcast-load uses. It is a peer in bench/run's side-by-side benchmark: one process, one event
loop, json.dumps once per publish and websockets.broadcast() to the room, as the websockets docs
recommend for fan-out.

    /usr/bin/python3 server.py [--host 127.0.0.1] [--port 8765]

Run it with Debian's /usr/bin/python3 (python3-websockets 10.4). Prints "listening on HOST:PORT"
on stderr once the socket accepts.
"""

import argparse
import asyncio
import json
import resource
import signal
import sys
import time
import uuid

import websockets

# The same limits ringcast ships with, so that both refuse the same things.
MAX_MESSAGE_BYTES = 65536
MAX_CHANNEL_BYTES = 255
HEARTBEAT_S = 25
HEARTBEAT_TIMEOUT_S = 10
# ringcast listens with a deep backlog; asyncio's default (100) would turn a 10k-connection ramp
# into SYN retransmits and measure the kernel rather than the server.
BACKLOG = 4096

rooms = {}  # channel -> set of connections
room_seq = {}  # channel -> last seq published; kept when the room empties, so seq only grows


def now():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % (int(t * 1000) % 1000)


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"))


def envelope(kind, event, data, cid):
    msg = {"type": kind, "event": event, "data": data}
    if cid is not None:
        msg["correlation_id"] = cid
    msg["timestamp"] = now()
    return dumps(msg)


def error(code, message, cid=None):
    return envelope("error", "error", {"code": code, "message": message}, cid)


def channel_error(ch):
    """Returns why ch is not a valid channel name, or None."""
    if not isinstance(ch, str):
        return "channel must be a string"
    if not ch:
        return "channel is empty"
    if len(ch.encode("utf-8", "surrogatepass")) > MAX_CHANNEL_BYTES:
        return "channel is longer than 255 bytes"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in ch):
        return "channel holds a control character"
    return None


def subscribe(ws, subs, ch):
    rooms.setdefault(ch, set()).add(ws)
    subs.add(ch)


def unsubscribe(ws, subs, ch):
    members = rooms.get(ch)
    if members is not None:
        members.discard(ws)
        if not members:
            del rooms[ch]
    subs.discard(ch)


def publish(data, cid):
    ch = data.get("channel")
    err = channel_error(ch)
    if err:
        return error("INVALID_CHANNEL", err, cid)
    event = data.get("event")
    if not isinstance(event, str):
        event = "message"
    seq = room_seq.get(ch, 0) + 1
    room_seq[ch] = seq
    members = rooms.get(ch, ())
    count = 0
    if members:
        msg = dumps(
            {
                "type": "event",
                "event": event,
                "room": ch,
                "data": data.get("payload"),
                "timestamp": now(),
                "seq": seq,
            }
        )
        # broadcast() skips connections that are closing; count the ones it writes to.
        count = sum(1 for m in members if m.open)
        websockets.broadcast(members, msg)
    return envelope(
        "response",
        "publish",
        {"status": "published", "channel": ch, "seq": seq, "subscribers": count},
        cid,
    )


def handle(ws, subs, raw):
    """Returns the reply to one text message (every request gets exactly one)."""
    try:
        msg = json.loads(raw)
    except ValueError:
        return error("INVALID_MESSAGE", "not JSON")
    if not isinstance(msg, dict):
        return error("INVALID_MESSAGE", "not a JSON object")
    kind = msg.get("type")
    if kind == "ping":
        return '{"type":"pong"}'
    if kind in ("subscribe", "unsubscribe"):
        ch = msg.get("channel")
        err = channel_error(ch)
        if err:
            return error("INVALID_CHANNEL", err)
        (subscribe if kind == "subscribe" else unsubscribe)(ws, subs, ch)
        return envelope("response", kind, {"status": kind + "d", "channel": ch}, None)
    if kind != "request":
        return error("INVALID_MESSAGE", "unknown type")
    cid = msg["id"] if "id" in msg else msg.get("correlation_id")
    if cid is not None and (isinstance(cid, bool) or not isinstance(cid, (str, int, float))):
        return error("INVALID_MESSAGE", "id must be a string or a number")
    event = msg.get("event")
    if not isinstance(event, str):
        return error("INVALID_MESSAGE", "no event", cid)
    data = msg.get("data", {})
    if not isinstance(data, dict):
        return error("INVALID_MESSAGE", "data must be an object", cid)
    if event == "ping":
        return envelope("response", "pong", {}, cid)
    if event in ("subscribe", "unsubscribe"):
        ch = data.get("channel")
        err = channel_error(ch)
        if err:
            return error("INVALID_CHANNEL", err, cid)
        (subscribe if event == "subscribe" else unsubscribe)(ws, subs, ch)
        return envelope("response", event, {"status": event + "d", "channel": ch}, cid)
    if event == "publish":
        return publish(data, cid)
    return error("UNKNOWN_REQUEST", "unknown request " + event, cid)


async def session(ws):
    subs = set()
    try:
        await ws.send(
            envelope(
                "event",
                "session.created",
                {
                    "connection_id": str(uuid.uuid4()),
                    "server": "python-websockets",
                    "heartbeat_s": HEARTBEAT_S,
                    "max_message_bytes": MAX_MESSAGE_BYTES,
                },
                None,
            )
        )
        async for raw in ws:
            if not isinstance(raw, str):
                await ws.close(1003, "binary messages are not supported")
                break
            await ws.send(handle(ws, subs, raw))
    except websockets.ConnectionClosed:
        pass
    finally:
        for ch in list(subs):
            unsubscribe(ws, subs, ch)


def raise_nofile():
    # 10,000 connections need 10,000 descriptors; the soft limit is often 1024.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def main(args):
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda s=sig: stop.done() or stop.set_result(s))
    async with websockets.serve(
        session,
        args.host,
        args.port,
        backlog=BACKLOG,
        max_size=MAX_MESSAGE_BYTES,  # closes with 1009 above it
        compression=None,  # ringcast-load does not negotiate it; say so for the comparison
        ping_interval=HEARTBEAT_S,
        ping_timeout=HEARTBEAT_TIMEOUT_S,
        close_timeout=2,
    ) as server:
        host, port = server.sockets[0].getsockname()[:2]
        print(
            f"python-websockets (websockets {websockets.__version__}) listening on {host}:{port}",
            file=sys.stderr,
            flush=True,
        )
        sig = await stop
        # Said on stderr so that a server stopped by someone else's signal is told from a crash.
        print("python-websockets: %s, closing %d connections" % (signal.Signals(sig).name,
                                                               len(server.websockets)),
              file=sys.stderr, flush=True)
    # Leaving the context closes every connection with 1001 and waits for them.


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", "--bind", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8765)
    args = p.parse_args()
    raise_nofile()
    try:
        asyncio.run(main(args))
    except KeyboardInterrupt:
        pass
