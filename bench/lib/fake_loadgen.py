#!/usr/bin/python3
"""A stand-in for ringcast-load, to exercise bench/run end to end without it:

    bench/run --loadgen bench/lib/fake_loadgen.py --servers node,python,lws --out -

It accepts ringcast-load's flags, checks the server with one real connection (welcome,
subscribe, publish, receive), reads the server's RSS and CPU time from /proc/PID, and writes a
--json result in ringcast-load's schema with made-up latency figures. Its numbers mean nothing;
it only proves that bench/run starts, measures, stops and tabulates every server. FAKE_LOADGEN_RC
makes it exit with that status (2 = "connection error") and FAKE_LOADGEN_CRASH_SERVER=1 sends
the server SIGSEGV, to test failure rows.
"""

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import time

import websockets


def proc_stats(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu_s = (int(fields[11]) + int(fields[12])) / ticks
    rss_kb = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") // 1024
    return cpu_s, rss_kb


async def probe(url, n):
    async with websockets.connect(url, compression=None) as sub, \
            websockets.connect(url, compression=None) as pub:
        await sub.recv()
        await pub.recv()
        await sub.send(json.dumps({"type": "subscribe", "channel": "fake"}))
        await sub.recv()
        t0 = time.monotonic()
        lat = []
        for i in range(n):
            s = time.monotonic()
            await pub.send(json.dumps({"type": "request", "event": "publish", "id": i,
                                       "data": {"channel": "fake", "event": "bench",
                                                "payload": {"q": i}}}))
            ev = json.loads(await sub.recv())
            assert ev["data"] == {"q": i}, ev
            lat.append((time.monotonic() - s) * 1e6)
            await pub.recv()
        return n / (time.monotonic() - t0), sorted(lat)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--scenario")
    p.add_argument("--url", required=True)
    p.add_argument("--server-pid", type=int, default=0)
    p.add_argument("--json", required=True)
    args, _ = p.parse_known_args()
    rc = int(os.environ.get("FAKE_LOADGEN_RC", "0"))
    if os.environ.get("FAKE_LOADGEN_CRASH_SERVER"):
        os.kill(args.server_pid, signal.SIGSEGV)  # what a crashing server looks like
        time.sleep(0.5)
    if rc == 2:
        print("ringcast-load: fake connection error", file=sys.stderr)
        return 2
    cpu0, _ = proc_stats(args.server_pid)
    rate, lat = asyncio.run(probe(args.url, 300))
    cpu1, rss = proc_stats(args.server_pid)

    def pct(q):
        return lat[min(len(lat) - 1, int(q * len(lat)))]

    hist = {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "p999": pct(0.999),
            "p9999": lat[-1], "max": lat[-1], "mean": sum(lat) / len(lat), "count": len(lat)}
    res = {
        "tool": "ringcast-load", "version": "0.1.0", "ok": True,
        "scenario": {"url": args.url, "connections": 2, "rooms": 1, "subs_per_conn": 1,
                     "publishers": 1, "rate": 0, "window": 1, "size": 16, "duration_s": 1,
                     "warmup_s": 0, "threads": 1},
        "connect": {"attempted": 2, "established": 2, "failed": 0, "rate_per_s": 100.0,
                    "ms": {"p50": 1, "p99": 2, "max": 2}},
        "deliveries": {"expected": 300, "delivered": 300, "lost": 0, "duplicate": 0,
                       "out_of_order": 0, "corrupt": 0, "misrouted": 0, "per_s": rate},
        "publishes": {"sent": 300, "acked": 300, "per_s": rate,
                      "lag_ms": {"p50": 0, "p99": 0, "max": 0}, "behind_schedule": False},
        "latency_us": hist, "latency_corrected_us": hist,
        "loadgen": {"cpu_pct": random.uniform(10, 50), "threads": 1, "saturated": False},
        "server": {"pid": args.server_pid, "cpu_s": cpu1 - cpu0, "rss_kb": rss,
                   "rss_bytes_per_conn": rss * 1024 / 2,
                   "cpu_us_per_1000_deliveries": (cpu1 - cpu0) * 1e9 / 300},
        "gates": [],
    }
    with open(args.json, "w") as f:
        json.dump(res, f, indent=1)
    return rc


if __name__ == "__main__":
    sys.exit(main())
