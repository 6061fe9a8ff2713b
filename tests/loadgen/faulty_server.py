#!/usr/bin/python3
"""A deliberately faulty ringcast-protocol server, for testing ringcast-load.

It speaks the protocol of docs/protocol.md (session.created, subscribe/unsubscribe/ping/publish
in request and short forms, per-room seq, publish responses) and, with --fault, breaks exactly
--count subscriber deliveries in one way, so a test can check that ringcast-load reports each
fault with the exact count:

  drop       the delivery is not sent                      -> lost += 1
  duplicate  the delivery is sent twice                    -> duplicate += 1
  reorder    the delivery is held back and sent right after the next one to the same
             subscriber                                    -> out_of_order += 1
  misroute   an extra copy goes to a connection that is not subscribed to the room
                                                           -> misrouted += 1
  corrupt    one padding byte of the payload is changed    -> corrupt += 1
  utf8       one padding byte becomes 0xFF, which is not UTF-8 (a raw text frame): the
             client must close that connection              -> disconnects += 1
  rsv        the delivery goes out as a text frame with RSV1 set (no extension was agreed):
             the client must close that connection          -> disconnects += 1

Faulted deliveries are number --start, --start + --every, ... (counting every delivery to a
subscriber from 0). Deliveries to one connection are queued and written by one task per
connection, so a connection sees events in seq order unless a fault says otherwise.

Adversarial faults (issue 16), each breaking --count deliveries chosen as above unless said:

  swap       a subscriber of room B gets the last event of another room, labelled "room":B
             with B's seq, instead of B's own event  -> misrouted += 1, lost += 1
  truncate   the payload is cut to its first 118 bytes and closed ('"}')  -> corrupt += 1
  rename     the event name is changed                                   -> wrong_event += 1
  noroom     the "room" key is left out                                  -> no_room += 1
  noseq      every event goes out without "seq" (--count is ignored)

and publish-level misbehaviour, combinable with any fault:

  --refuse-every N      every Nth publish is answered with an error (--refuse-code) and not
                        delivered
  --error-after N       publish number N (from 1) is delivered, then answered with an error
  --no-ack              publishes are never answered
  --stall-at N --stall-ms M
                        the first publisher's Nth publish is held M ms before it is handled
                        (that connection's later messages wait behind it)
  --close-publisher-after N
                        the first publisher's connection is closed after its Nth publish
  --hold-replies-ms M   the first publisher's publishes are delivered at once, but their replies
                        are held until M ms after its first publish (then sent, in order, and
                        later ones at once); --unanswered-log FILE gets the most publishes that
                        connection had sent and not yet been answered (rewritten as it grows)

--close-log FILE appends the close code of every client that leaves (1006: no close frame).

--layout ringcast writes events exactly as ringcast does (the load generator's fast path);
--layout spaced uses json.dumps's default separators (its fallback parser).
"""
import argparse
import asyncio
import itertools
import json
import signal
import sys
import time

import websockets


def ts():
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%03dZ" % (int(t * 1000) % 1000)


class Server:
    def __init__(self, args):
        self.args = args
        self.rooms = {}  # name -> list of Conn (subscription order)
        self.seq = {}
        self.conns = []
        self.delivery = 0
        self.applied = 0
        self.ids = itertools.count(1)
        self.sep = (",", ":") if args.layout == "ringcast" else (", ", ": ")
        self.publishes = 0
        self.last_raw = {}  # room -> the last payload published to it
        self.first_pub = None

    def dumps(self, obj):
        return json.dumps(obj, separators=self.sep)

    def faulted(self):
        """True when the current delivery is one of those to break."""
        a = self.args
        d = self.delivery
        self.delivery += 1
        if a.fault == "none" or self.applied >= a.count or d < a.start:
            return False
        if (d - a.start) % a.every:
            return False
        self.applied += 1
        return True

    def event_text(self, room, event, payload_raw, seq, with_room=True):
        if self.args.fault == "noseq" or not with_room:
            obj = '{"type":"event","event":%s,' % json.dumps(event)
            if with_room:
                obj += '"room":%s,' % json.dumps(room)
            obj += '"data":%s,"timestamp":"%s"' % (payload_raw, ts())
            if self.args.fault != "noseq":
                obj += ',"seq":%d' % seq
            return obj + "}"
        if self.args.layout == "ringcast":
            return ('{"type":"event","event":%s,"room":%s,"data":%s,"timestamp":"%s","seq":%d}'
                    % (json.dumps(event), json.dumps(room), payload_raw, ts(), seq))
        return ('{"type": "event", "event": %s, "room": %s, "data": %s, "timestamp": "%s", '
                '"seq": %d}' % (json.dumps(event), json.dumps(room), payload_raw, ts(), seq))

    def publish(self, conn, room, event, payload):
        self.seq[room] = self.seq.get(room, 0) + 1
        seq = self.seq[room]
        raw = json.dumps(payload, separators=(",", ":"))
        text = self.event_text(room, event, raw, seq)
        subs = self.rooms.get(room, [])
        other = [r for r in self.last_raw if r != room]
        swap_raw = self.last_raw[other[0]] if other else None
        self.last_raw[room] = raw
        for sub in subs:
            if self.args.fault == "swap" and swap_raw is None:
                sub.push(text)  # nothing to swap in yet: not a faulted delivery
                continue
            if not self.faulted():
                sub.push(text)
                continue
            f = self.args.fault
            if f == "drop":
                continue
            if f == "duplicate":
                sub.push(text)
                sub.push(text)
            elif f == "reorder":
                sub.hold(text)
            elif f == "misroute":
                sub.push(text)
                others = [c for c in self.conns if room not in c.rooms and c.rooms]
                others = others or [c for c in self.conns if room not in c.rooms]
                if others:
                    others[0].push(text)
            elif f == "corrupt":
                i = text.index('"x":"') + 6
                sub.push(text[:i] + "#" + text[i + 1:])
            elif f == "utf8":
                raw = text.encode()
                i = raw.index(b'"x":"') + 6
                sub.push(raw[:i] + b"\xff" + raw[i + 1:])
            elif f == "rsv":
                sub.push(RawFrame(0xC1, text.encode()))  # FIN | RSV1 | text
            elif f == "swap":
                sub.push(self.event_text(room, event, swap_raw, seq))
            elif f == "truncate":
                sub.push(self.event_text(room, event, raw[:118] + '"}', seq))
            elif f == "rename":
                sub.push(self.event_text(room, event + "-renamed", raw, seq))
            elif f == "noroom":
                sub.push(self.event_text(room, event, raw, seq, with_room=False))
            else:  # noseq: every event already lacks seq
                sub.push(text)
        return seq, len(subs)


class RawFrame:
    """A frame whose first byte is given (websockets refuses to write bad ones)."""

    def __init__(self, byte0, payload):
        n = len(payload)
        head = bytes([byte0, n]) if n < 126 else bytes([byte0, 126]) + n.to_bytes(2, "big")
        self.bytes = head + payload


class Conn:
    def __init__(self, ws):
        self.ws = ws
        self.rooms = set()
        self.queue = asyncio.Queue()
        self.held = None
        self.publishes = 0
        self.unanswered = 0  # --hold-replies-ms: publishes received, reply not yet sent
        self.max_unanswered = 0
        self.withheld = None  # replies held back, in order, until the hold ends
        self.hold_done = False

    def push(self, text):
        self.queue.put_nowait(text)
        if self.held is not None:
            self.queue.put_nowait(self.held)
            self.held = None

    def hold(self, text):
        if self.held is not None:  # never hold two: release the older one first
            self.queue.put_nowait(self.held)
        self.held = text

    async def writer(self):
        while True:
            text = await self.queue.get()
            if isinstance(text, RawFrame):
                # whole frames are written one at a time, so this cannot split another one
                self.ws.transport.write(text.bytes)
            elif isinstance(text, bytes):  # a text frame whose bytes are not valid UTF-8
                await self.ws.write_frame(True, 0x1, text)
            else:
                await self.ws.send(text)


def hold_reply(server, conn, cid, resp):
    """--hold-replies-ms: the reply goes out when the hold (from the first publish) ends."""
    a = server.args
    if cid is not None:
        resp["correlation_id"] = cid
    resp["timestamp"] = ts()
    conn.unanswered += 1
    if conn.unanswered > conn.max_unanswered:
        conn.max_unanswered = conn.unanswered
        if a.unanswered_log:
            with open(a.unanswered_log, "w") as f:
                f.write("%d\n" % conn.max_unanswered)

    def release():
        for text in conn.withheld:
            conn.push(text)
        conn.unanswered -= len(conn.withheld)
        conn.withheld = []
        conn.hold_done = True

    if conn.withheld is None:  # the first publish: the hold starts
        conn.withheld = []
        asyncio.get_running_loop().call_later(a.hold_replies_ms / 1000.0, release)
    text = server.dumps(resp)
    if conn.hold_done:
        conn.push(text)
        conn.unanswered -= 1
    else:
        conn.withheld.append(text)


async def handle(server, ws, path=None):
    conn = Conn(ws)
    server.conns.append(conn)
    writer = asyncio.ensure_future(conn.writer())
    conn.push(server.dumps({"type": "event", "event": "session.created",
                            "data": {"connection_id": "c%d" % next(server.ids),
                                     "server": "faulty", "heartbeat_s": 25,
                                     "max_message_bytes": 65536},
                            "timestamp": ts()}))
    try:
        async for msg in ws:
            try:
                m = json.loads(msg)
            except ValueError:
                conn.push(server.dumps({"type": "error", "event": "error",
                                        "data": {"code": "INVALID_MESSAGE", "message": "bad"},
                                        "timestamp": ts()}))
                continue
            typ = m.get("type")
            data = m.get("data") or {}
            cid = m.get("id", m.get("correlation_id"))
            if typ in ("subscribe", "unsubscribe"):
                event, channel = typ, m.get("channel")
            elif typ == "ping":
                conn.push('{"type":"pong"}')
                continue
            elif typ == "request":
                event, channel = m.get("event"), data.get("channel")
            else:
                continue
            resp = {"type": "response", "event": event}
            if event == "subscribe":
                if channel not in conn.rooms:
                    conn.rooms.add(channel)
                    server.rooms.setdefault(channel, []).append(conn)
                resp["data"] = {"status": "subscribed", "channel": channel}
            elif event == "unsubscribe":
                if channel in conn.rooms:
                    conn.rooms.discard(channel)
                    server.rooms[channel].remove(conn)
                resp["data"] = {"status": "unsubscribed", "channel": channel}
            elif event == "ping":
                resp["event"] = "pong"
                resp["data"] = {}
            elif event == "publish":
                a = server.args
                server.publishes += 1
                conn.publishes += 1
                if server.first_pub is None:
                    server.first_pub = conn
                if conn is server.first_pub and conn.publishes == a.stall_at:
                    await asyncio.sleep(a.stall_ms / 1000.0)
                if a.refuse_every and server.publishes % a.refuse_every == 0:
                    resp = {"type": "error", "event": "error",
                            "data": {"code": a.refuse_code, "message": "refused"}}
                else:
                    seq, n = server.publish(conn, channel, data.get("event", "message"),
                                            data.get("payload"))
                    resp["data"] = {"status": "published", "channel": channel, "seq": seq,
                                    "subscribers": n}
                    if server.publishes == a.error_after:
                        resp = {"type": "error", "event": "error",
                                "data": {"code": "INTERNAL", "message": "after delivery"}}
                if (conn is server.first_pub and a.close_publisher_after
                        and conn.publishes >= a.close_publisher_after):
                    await ws.close(1011, "closing the publisher")
                    break
                if a.no_ack:
                    continue
                if conn is server.first_pub and a.hold_replies_ms:
                    hold_reply(server, conn, cid, resp)
                    continue
            else:
                resp = {"type": "error", "event": "error",
                        "data": {"code": "UNKNOWN_REQUEST", "message": "unknown"}}
            if cid is not None:
                resp["correlation_id"] = cid
            resp["timestamp"] = ts()
            conn.push(server.dumps(resp))
    except websockets.ConnectionClosed:
        pass
    finally:
        for r in conn.rooms:
            server.rooms[r].remove(conn)
        server.conns.remove(conn)
        if server.args.close_log:
            # the code of the client's close frame; 1006 when it closed TCP without one
            await ws.wait_closed()
            with open(server.args.close_log, "a") as f:
                f.write("%s\n" % ws.close_code)
        # let queued messages go out before the writer stops
        while not conn.queue.empty() and ws.open:
            await asyncio.sleep(0.01)
        writer.cancel()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--fault", default="none",
                    choices=["none", "drop", "duplicate", "reorder", "misroute", "corrupt",
                             "utf8", "rsv", "swap", "truncate", "rename", "noroom", "noseq"])
    ap.add_argument("--refuse-every", type=int, default=0)
    ap.add_argument("--refuse-code", default="RATE_LIMITED")
    ap.add_argument("--error-after", type=int, default=0)
    ap.add_argument("--no-ack", action="store_true")
    ap.add_argument("--stall-at", type=int, default=0)
    ap.add_argument("--stall-ms", type=int, default=0)
    ap.add_argument("--close-publisher-after", type=int, default=0)
    ap.add_argument("--hold-replies-ms", type=int, default=0)
    ap.add_argument("--unanswered-log")
    ap.add_argument("--count", type=int, default=5)
    ap.add_argument("--start", type=int, default=50)
    ap.add_argument("--every", type=int, default=37)
    ap.add_argument("--layout", default="ringcast", choices=["ringcast", "spaced"])
    ap.add_argument("--close-log", help="append the close code each client sent, one a line")
    args = ap.parse_args()
    server = Server(args)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with websockets.serve(lambda ws, path=None: handle(server, ws, path), "127.0.0.1",
                                args.port, ping_interval=None, max_size=1 << 24,
                                compression=None) as srv:
        port = srv.sockets[0].getsockname()[1]
        print("faulty_server listening on 127.0.0.1:%d" % port, file=sys.stderr, flush=True)
        await stop
        print("faulty_server: %d deliveries, %d faults applied" % (server.delivery, server.applied),
              file=sys.stderr, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
