"""Memory after a storm: the engine's RSS (/proc/PID/status VmRSS) must come back near its baseline
once the abusers are gone, and a second identical storm must not add to it (a leak grows with
every storm; allocator retention does not).

Bounds, and why:
  * after storm 1 <= baseline + 24 MiB: the storm peaks at ~1400 connections; freed per-connection
    buffers and queued frames may stay in malloc's per-thread arenas (glibc returns only the top
    of a heap and whole mmapped chunks), so RSS may keep part of the high-water mark, but not a
    storm's worth of queued data (200 subscribers x up to --max-queue-bytes would be 50 MiB).
  * after storm 2 <= after storm 1 + 4 MiB: the same storm again reuses the retained memory; a
    leak of even 3 KiB per connection would add more than that.
"""

import random
import time

import pytest

from abuseutil import (close_all, open_peers, ping_roundtrip, publish_frame, pump, rst_close,
                       wait_rss_settle)
from wsraw import connect

MAX_QUEUE = 256 * 1024
ENGINE_ARGS = ["--handshake-timeout-s", "1", "--rate-limit", "0",
               "--max-queue-bytes", str(MAX_QUEUE)]


def storm(engine, seed):
    rng = random.Random(seed)
    port = engine.port
    # 600 handshakes that never finish (closed by the 1 s handshake timeout) ...
    partial = []
    for i in range(600):
        s = connect(port)
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n"[: rng.randint(1, 26)])
        partial.append(s)
    # ... 200 subscribers over 10 rooms, a third of which stop reading ...
    subs = []
    for i in range(200):
        subs += open_peers(port, 1, channel=f"storm-{i % 10}", name=f"s{i}", rcvbuf=4096 if i % 3 == 0 else None)
    for p in subs[::3]:
        p.paused = True
    # ... 50 clients sending garbage, and a publisher broadcasting 1 KiB events to every room.
    garbage = open_peers(port, 50, name="g")
    pub = open_peers(port, 1, name="pub")[0]
    sent = [0]

    def tick():
        for g in garbage:
            if not g.got_close and not g.eof and len(g.outbox) < 8192:
                g.queue(rng.randbytes(512))
        inflight = sent[0] - len(pub.msgs)
        while sent[0] < 2000 and inflight < 40:
            sent[0] += 1
            inflight += 1
            pub.queue(publish_frame(f"storm-{sent[0] % 10}", '"%s"' % ("m" * 1000), sent[0]))

    pump(subs + garbage + [pub], 30.0, on_tick=tick,
         until=lambda: sent[0] == 2000 and len(pub.msgs) >= 2000 and all(g.eof for g in garbage))
    peak = engine.rss_kb()
    assert len(pub.msgs) >= 2000, f"publisher got {len(pub.msgs)}/2000 responses"
    # Everyone leaves: half politely, half with a TCP reset.
    for i, p in enumerate(subs):
        if i % 2:
            rst_close(p.sock)
        else:
            p.c.close()
    close_all(garbage)
    pub.c.close()
    time.sleep(1.5)  # the handshake timeout (1 s) sweeps the partial ones
    for s in partial:
        s.close()
    assert ping_roundtrip(port) < 1.5
    return peak


def test_rss_returns_near_baseline_after_storms(engine):
    if engine.sanitized:
        pytest.skip("ASan build: freed memory sits in ASan's quarantine, so RSS does not come "
                    "back; LeakSanitizer checks for leaks at exit instead")
    # Warm up (first connections, first room, first publish), then take the baseline.
    warm = open_peers(engine.port, 1, channel="warm", name="w")
    pub = open_peers(engine.port, 1, name="wp")[0]
    pub.queue(publish_frame("warm", "1", 1))
    pump(warm + [pub], 3.0, until=lambda: len(warm[0].events("warm")) == 1)
    close_all(warm + [pub])
    base = wait_rss_settle(engine)

    peak1 = storm(engine, 1)
    after1 = wait_rss_settle(engine, 3.0)
    peak2 = storm(engine, 2)
    after2 = wait_rss_settle(engine, 3.0)
    print(f"RSS KiB: baseline {base}, storm 1 peak {peak1} -> {after1}, "
          f"storm 2 peak {peak2} -> {after2}")
    assert after1 - base <= 24 * 1024, f"after storm 1: +{after1 - base} KiB over baseline {base}"
    assert after2 - after1 <= 4 * 1024, f"storm 2 added {after2 - after1} KiB (leak?)"
