#!/usr/bin/env python3
"""Engine CPU per broadcast delivery, ws:// against wss:// (handshakes excluded).

    bench/tls_cost.py [--engine build/engine/ringcast] [--subs 50] [--events 2000]
                      [--size 512] [--threads 1]

Starts the engine twice (cleartext, then TLS with a throwaway self-signed certificate), connects
--subs subscribers to one room (their handshakes happen before the measurement), publishes
--events events of --size payload bytes from one more connection in paced bursts, and reads
the engine's user+system CPU time (/proc/PID/stat) around the publishing only. Subscribers read
and discard in one Python thread, so the engine is never the one waiting. Prints one JSON line
per mode and the ratio; a stopgap until ringcast-load speaks wss:// (docs/benchmarks.md).
"""

import argparse
import base64
import json
import os
import selectors
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time


def frame(obj):
    p = json.dumps(obj).encode()
    n = len(p)
    head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else
                            bytes([0x80 | 126]) + struct.pack("!H", n) if n < 65536 else
                            bytes([0x80 | 127]) + struct.pack("!Q", n))
    return head + b"\0\0\0\0" + p  # zero mask key: the payload stays as is


def connect(port, ctx):
    s = socket.create_connection(("127.0.0.1", port))
    if ctx:
        s = ctx.wrap_socket(s, server_hostname="127.0.0.1")
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    buf = b""
    while b"session.created" not in buf:
        buf += s.recv(65536)
    return s


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(args, tls, certdir):
    port = 20000 + os.getpid() % 20000 + (1 if tls else 0)
    cmd = [args.engine, "--port", str(port), "--threads", str(args.threads), "--rate-limit", "0",
           "--max-queue-bytes", "64M", "--max-connections", "100000", "--log-level", "warn"]
    ctx = None
    if tls:
        cmd += ["--tls-cert", f"{certdir}/c.pem", "--tls-key", f"{certdir}/k.pem"]
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    eng = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.05)
        subs = [connect(port, ctx) for _ in range(args.subs)]
        for s in subs:
            s.sendall(frame({"type": "request", "event": "subscribe", "id": "s",
                             "data": {"channel": "bench"}}))
            buf = b""
            while b'"subscribed"' not in buf:
                buf += s.recv(65536)
            s.setblocking(False)
        pub = connect(port, ctx)
        got = [0]
        stop = threading.Event()

        def reader():
            sel = selectors.DefaultSelector()
            for s in subs:
                sel.register(s, selectors.EVENT_READ)
            while not stop.is_set():
                for k, _ in sel.select(0.1):
                    try:
                        while True:
                            d = k.fileobj.recv(262144)
                            if not d:
                                break
                            got[0] += len(d)
                    except (BlockingIOError, ssl.SSLWantReadError):
                        pass

        t = threading.Thread(target=reader)
        t.start()
        payload = {"b": "x" * args.size}
        c0, t0 = cpu_s(eng.pid), time.monotonic()
        burst = 50
        for i in range(0, args.events, burst):
            pub.sendall(b"".join(frame({"type": "request", "event": "publish", "id": str(j),
                                        "data": {"channel": "bench", "payload": payload}})
                                 for j in range(i, i + burst)))
            buf = b""
            while buf.count(b'"published"') < burst:
                buf += pub.recv(262144)
        expect = args.events * args.subs * (args.size + 100)
        while got[0] < expect and time.monotonic() - t0 < 120:
            time.sleep(0.01)
        c1, t1 = cpu_s(eng.pid), time.monotonic()
        stop.set()
        t.join()
        deliveries = args.events * args.subs
        return {"mode": "wss" if tls else "ws", "subs": args.subs, "events": args.events,
                "payload_bytes": args.size, "engine_cpu_s": round(c1 - c0, 3),
                "wall_s": round(t1 - t0, 3), "bytes_received": got[0],
                "cpu_us_per_delivery": round((c1 - c0) * 1e6 / deliveries, 3)}
    finally:
        eng.terminate()
        eng.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--engine", default="build/engine/ringcast")
    ap.add_argument("--subs", type=int, default=50)
    ap.add_argument("--events", type=int, default=2000)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{d}/k.pem", "-out",
                        f"{d}/c.pem", "-days", "1", "-subj", "/CN=localhost"],
                       check=True, capture_output=True)
        ws = run(args, False, d)
        print(json.dumps(ws))
        wss = run(args, True, d)
        print(json.dumps(wss))
        print(json.dumps({"wss_over_ws_cpu": round(wss["engine_cpu_s"] / max(ws["engine_cpu_s"],
                                                                                1e-9), 2)}))


if __name__ == "__main__":
    main()
