#!/usr/bin/python3
"""A TCP proxy in front of ringcast's HTTP API that holds the answers back, for testing that
ringcast-load's pipelined HTTP publisher (--publish-via http) bounds its unanswered requests.

Each client connection is forwarded to 127.0.0.1:--to at once (requests reach the engine, which
delivers them to its subscribers), but what the engine answers is held until --hold-ms after the
connection's first bytes, then released in order (later answers pass at once). Requests are
counted by their request line ("POST /api/publish HTTP/1.1"), answers by their status line
("HTTP/1.1 "); --unanswered-log FILE gets the most requests one connection had sent and not yet
been given an answer for (rewritten as it grows).
"""
import argparse
import asyncio
import signal
import sys

REQ = b"POST /api/publish HTTP/1.1\r\n"
RES = b"HTTP/1.1 "


class Counter:
    """Occurrences of a marker in a byte stream that arrives in pieces."""

    def __init__(self, marker):
        self.marker = marker
        self.tail = b""

    def feed(self, data):
        buf = self.tail + data
        n = buf.count(self.marker)
        self.tail = buf[-(len(self.marker) - 1):]
        # a marker wholly inside the kept tail was counted already: it is shorter than one
        return n


class Proxy:
    def __init__(self, args):
        self.args = args
        self.max_unanswered = 0

    def note(self, unanswered):
        if unanswered > self.max_unanswered:
            self.max_unanswered = unanswered
            if self.args.unanswered_log:
                with open(self.args.unanswered_log, "w") as f:
                    f.write("%d\n" % unanswered)

    async def handle(self, cr, cw):
        try:
            sr, sw = await asyncio.open_connection("127.0.0.1", self.args.to)
        except OSError:
            cw.close()
            return
        state = {"sent": 0, "answered": 0, "held": [], "hold_done": False, "started": False}
        reqs, ress = Counter(REQ), Counter(RES)

        def release():
            for data in state["held"]:
                state["answered"] += ress.feed(data)
                cw.write(data)
            state["held"] = []
            state["hold_done"] = True

        async def up():
            while True:
                data = await cr.read(65536)
                if not data:
                    break
                if not state["started"]:
                    state["started"] = True
                    asyncio.get_running_loop().call_later(self.args.hold_ms / 1000.0, release)
                state["sent"] += reqs.feed(data)
                self.note(state["sent"] - state["answered"])
                sw.write(data)
                await sw.drain()
            sw.close()

        async def down():
            while True:
                data = await sr.read(65536)
                if not data:
                    break
                if state["hold_done"]:
                    state["answered"] += ress.feed(data)
                    cw.write(data)
                    await cw.drain()
                else:
                    state["held"].append(data)
            cw.close()

        try:
            await asyncio.gather(up(), down())
        except (ConnectionError, OSError):
            pass
        finally:
            cw.close()
            sw.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--to", type=int, required=True)
    ap.add_argument("--hold-ms", type=int, default=500)
    ap.add_argument("--unanswered-log")
    args = ap.parse_args()
    proxy = Proxy(args)
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    srv = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    print("hold_proxy listening on 127.0.0.1:%d" % port, file=sys.stderr, flush=True)
    await stop
    srv.close()


if __name__ == "__main__":
    asyncio.run(main())
