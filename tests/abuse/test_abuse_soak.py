"""Issue 9: the soak. For RINGCAST_SOAK_S seconds (default 60), against --threads 2, 1000
ordinary subscribers (ringcast-load: loss, duplicates and order checked per recipient) receive a
steady stream while hostile clients of every kind of issue 9 run in a loop: non-readers that
trip the queue cap from inside handlers (long-id subscribe/unsubscribe, join-ack waiters,
fragmented publish echoed to itself), ping floods (unread, and rate-limited), pipelines,
half-closes, clients that vanish mid-request and mid-frame, room-name sprayers, and slow
consumers of 30 KB events.

The engine must survive with no sanitizer report and exit 0, the ordinary subscribers must lose
nothing and see every event in order (ringcast-load's integrity, disconnect and loss gates), and
RSS must come back within 8 MiB of its baseline once everyone is gone (release build only).
"""

import json
import os
import random
import socket
import subprocess
import threading
import time

import pytest

from abuseutil import (blast, engine_end_problems, read_stream, req_frame, rst_close, serving,
                       wait_rss_settle)
from wsraw import OP_PING, OP_TEXT, Conn, build_frame, build_dir, connect, frame_header

SOAK_S = float(os.environ.get("RINGCAST_SOAK_S", "60"))
ENGINE_ARGS = ["--threads", "2", "--max-queue-bytes", "128k"]
LONG_ID = "i" * 4096


# The warm-up runs only the kinds that do not trip the queue cap (those crash today's engine,
# and belong to the measured period).
WARM_KINDS = ["ping_flood_read", "pipeline", "half_close", "vanish", "room_sprayer"]


def died(e, when):
    rep = e.sanitizer_report()
    return f"engine died {when} (status {e.proc.returncode}):\n" + \
        (rep if rep else e.stderr()[-4000:])


def loadgen_path():
    return os.path.join(build_dir(), "loadgen", "ringcast-load")


def run_loadgen(port, duration, json_path, connections=1000):
    cmd = [loadgen_path(), "--url", f"ws://127.0.0.1:{port}/ws", "--connections",
           str(connections), "--rooms", "10", "--room-prefix", "soak-", "--publishers", "4",
           "--rate", "200", "--size", "128", "--duration", f"{duration:g}", "--warmup", "1",
           "--drain", "5", "--max-loss", "0", "--json", json_path, "--quiet", "--no-progress",
           "--connect-timeout", "60"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


class Hostiles:
    """One thread running every kind of hostile client in turn until stopped."""

    def __init__(self, port, seed):
        self.port = port
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.rounds = 0
        self.errors = []  # unexpected client-side exceptions (not resets: those are expected)
        self.n = 0

    def fresh(self, rcvbuf=None):
        return Conn.open(self.port, rcvbuf=rcvbuf, timeout=5.0)

    def name(self, kind):
        self.n += 1
        return f"h-{kind}-{self.n}"

    # -- the kinds ------------------------------------------------------------------------
    def sub_unsub_long_id(self):
        c = self.fresh(4096)
        rooms = [self.name("su") for _ in range(8)]
        b = b"".join(req_frame("subscribe", {"channel": r}, f"s{i}-{LONG_ID}")
                     + req_frame("unsubscribe", {"channel": r}, f"u{i}-{LONG_ID}")
                     for i in range(4) for r in rooms)
        blast(c.sock, b, timeout=1.0)
        read_stream(c, timeout=2.0, stop_at_close=True)  # the server has acted on it
        rst_close(c.sock)

    def join_ack_waiters(self):
        room = self.name("ack")
        cs = [self.fresh(4096) for _ in range(6)]
        for k, c in enumerate(cs):
            b = b"".join(req_frame("ping", rid=f"p{j}-{LONG_ID}") for j in range(26 + k % 3))
            b += req_frame("subscribe", {"channel": room}, "s-" + "j" * 60000)
            blast(c.sock, b, timeout=0.5)
        time.sleep(0.5)
        for c in cs:
            rst_close(c.sock)

    def frag_echo(self):
        room = self.name("frag")
        c = self.fresh(4096)
        c.request({"type": "request", "event": "subscribe", "data": {"channel": room}, "id": 1})
        b = b"".join(req_frame("publish", {"channel": room, "event": "e", "payload": "z" * 30000},
                               rid=f"p{j}-" + "k" * 1024, fragments=5) for j in range(8))
        blast(c.sock, b, timeout=1.0)
        read_stream(c, timeout=2.0, stop_at_close=True)
        rst_close(c.sock)

    def ping_flood_unread(self):
        c = self.fresh(4096)
        blast(c.sock, build_frame(OP_PING, b"") * 40000, timeout=1.0)
        time.sleep(0.3)
        c.close()

    def ping_flood_read(self):
        c = self.fresh()
        blast(c.sock, build_frame(OP_PING, b"p") * 1500, timeout=1.0)
        end = time.monotonic() + 1.0
        c.sock.setblocking(False)
        while time.monotonic() < end:
            try:
                if not c.sock.recv(1 << 20):
                    break
            except BlockingIOError:
                time.sleep(0.01)
            except OSError:
                break
        c.close()

    def pipeline(self):
        room = self.name("pipe")
        c = self.fresh()
        c.send(req_frame("subscribe", {"channel": room}, "s1") + req_frame("ping", rid="p")
               + req_frame("publish", {"channel": self.name("loc"), "payload": 1}, "pl")
               + build_frame(OP_TEXT, b"{nope") + req_frame("subscribe", {"channel": room}, "s2")
               + req_frame("unsubscribe", {"channel": room}, "u")
               + req_frame("subscribe", {"channel": room}, "s3")
               + req_frame("publish", {"channel": room, "payload": 2}, "pr"))
        got = 0
        try:
            while got < 8:
                c.recv_json(1.0, skip_events=True)
                got += 1
        except (TimeoutError, Exception):  # noqa: BLE001 - order is checked elsewhere
            pass
        c.close()

    def half_close(self):
        c = self.fresh()
        c.send(req_frame("ping", rid="hc") + req_frame("subscribe", {"channel": self.name("hc")},
                                                      "hs"))
        c.sock.shutdown(socket.SHUT_WR)
        c.sock.settimeout(2.0)
        try:
            while c.sock.recv(65536):
                pass
        except OSError:
            pass
        c.close()
        s = connect(self.port)
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")  # not an upgrade: 400
        s.shutdown(socket.SHUT_WR)
        s.settimeout(2.0)
        try:
            while s.recv(65536):
                pass
        except OSError:
            pass
        s.close()

    def vanish(self):
        # mid-request head, mid-frame header, mid-payload, mid-fragmented message
        s = connect(self.port)
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: web")
        rst_close(s)
        c = self.fresh()
        hdr, _ = frame_header(OP_TEXT, 3000)
        c.send(hdr + b"\x00" * 100)
        time.sleep(0.05)
        rst_close(c.sock)
        c = self.fresh()
        c.send(req_frame("publish", {"channel": self.name("v"), "payload": "q" * 5000}, "v",
                         fragments=4)[:3000])
        rst_close(c.sock)
        c = self.fresh()
        c.send(build_frame(OP_TEXT, b'{"type":"request","event":"subscribe"', fin=False))
        c.close()

    def room_sprayer(self):
        c = self.fresh()
        pad = "n" * 180
        b = b"".join(req_frame("publish", {"channel": f"spray-{pad}-{self.name('s')}",
                                           "payload": 1}, i) for i in range(150))
        c.send(b)
        got = 0
        try:
            while got < 150:
                c.recv_json(2.0, skip_events=True)
                got += 1
        except Exception:  # noqa: BLE001
            pass
        c.close()

    def slow_consumer_big(self):
        room = self.name("big")
        sub = self.fresh(4096)
        sub.request({"type": "request", "event": "subscribe", "data": {"channel": room}, "id": 1})
        pub = self.fresh()
        b = b"".join(req_frame("publish", {"channel": room, "payload": "b" * 30000}, i)
                     for i in range(15))
        blast(pub.sock, b, timeout=1.0)
        time.sleep(0.3)
        sub.sock.settimeout(6.0)
        try:  # read everything now: a valid stream ending in 4008 (checked elsewhere)
            while sub.sock.recv(1 << 20):
                pass
        except OSError:
            pass
        sub.close()
        pub.close()

    KINDS = ["sub_unsub_long_id", "join_ack_waiters", "frag_echo", "ping_flood_unread",
             "ping_flood_read", "pipeline", "half_close", "vanish", "room_sprayer",
             "slow_consumer_big"]

    def run(self):
        kinds = os.environ.get("RINGCAST_SOAK_KINDS")  # debugging: a comma-separated subset
        kinds = kinds.split(",") if kinds else self.KINDS
        while not self.stop.is_set():
            for kind in kinds:
                if self.stop.is_set():
                    break
                try:
                    getattr(self, kind)()
                except ConnectionRefusedError:  # the engine is gone: the test reports it
                    self.stop.set()
                except (ConnectionError, socket.timeout, TimeoutError, BrokenPipeError):
                    pass
                except Exception as exc:  # noqa: BLE001
                    if len(self.errors) < 20:
                        self.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
            self.rounds += 1


def test_soak_hostiles_and_1000_subscribers(own, tmp_path):
    if not os.path.exists(loadgen_path()):
        pytest.fail(f"ringcast-load not built at {loadgen_path()}")
    e = own(ENGINE_ARGS)
    # Warm-up: a short loadgen run and one round of every hostile kind, then the baseline.
    warm = run_loadgen(e.port, 2, str(tmp_path / "warm.json"))
    h0 = Hostiles(e.port, 1)
    for kind in WARM_KINDS:
        try:
            getattr(h0, kind)()
        except Exception:  # noqa: BLE001
            pass
    warm.communicate(timeout=120)
    assert e.alive(), died(e, "in the warm-up")
    time.sleep(3.0)
    base = wait_rss_settle(e, 3.0)

    lg = run_loadgen(e.port, SOAK_S, str(tmp_path / "soak.json"))
    time.sleep(3.0)  # let the 1000 subscribers connect before the hostiles start
    hs = [Hostiles(e.port, seed) for seed in (11, 12)]
    threads = [threading.Thread(target=h.run, daemon=True) for h in hs]
    for t in threads:
        t.start()
    peak = base
    deadline = time.monotonic() + SOAK_S + 120
    while lg.poll() is None and time.monotonic() < deadline:
        time.sleep(1.0)
        if not e.alive():
            break
        peak = max(peak, e.rss_kb())
    for h in hs:
        h.stop.set()
    for t in threads:
        t.join(timeout=30)
    if lg.poll() is None:
        lg.kill()
    out, err = lg.communicate(timeout=30)
    assert e.alive(), died(e, f"during the soak ({sum(h.rounds for h in hs)} hostile rounds)")
    rep = e.sanitizer_report()
    assert rep is None, f"sanitizer report during the soak:\n{rep}"
    assert serving(e.port) is None, serving(e.port)

    rounds = sum(h.rounds for h in hs)
    try:
        with open(tmp_path / "soak.json") as f:
            j = json.load(f)
    except (OSError, ValueError):
        j = None
    assert j is not None, f"ringcast-load wrote no report (exit {lg.returncode}):\n{err[-3000:]}"
    d = j["deliveries"]
    summary = (f"loadgen exit {lg.returncode}: delivered {d.get('delivered')}/{d.get('expected')}"
               f", lost {d.get('lost')}, dup {d.get('duplicate')}, out_of_order "
               f"{d.get('out_of_order')}, disconnects {j['connect'].get('disconnects')}, "
               f"refused {j['publishes'].get('refused')}; hostile rounds {rounds}")
    slow = e.stderr().count("slow consumer")
    summary += f"; server log: {slow} slow-consumer closes"
    print(summary)
    assert lg.returncode == 0 and d["lost"] == 0 and d["out_of_order"] == 0 and \
        d["duplicate"] == 0 and j["connect"]["disconnects"] == 0, \
        f"ordinary subscribers were affected: {summary}\n{err[-2000:]}"
    assert rounds >= 1, f"no hostile round completed; errors: {hs[0].errors[:5]}"

    time.sleep(5.0)  # everyone is gone; the engine trims after bursts
    after = wait_rss_settle(e, 5.0)
    print(f"soak RSS KiB: baseline {base}, peak {peak}, after {after}; hostile client errors: "
          f"{[x for h in hs for x in h.errors][:5]}")
    if not e.sanitized:
        assert after - base <= 8 * 1024, \
            f"RSS did not come back: baseline {base} KiB, peak {peak}, after {after} " \
            f"(+{after - base} KiB)"
    problems = engine_end_problems(e)
    assert not problems, "\n".join(problems)
