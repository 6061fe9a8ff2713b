"""Abuse during broadcasts: a subscriber that stops reading (backpressure policy: its queue is
capped by --max-queue-bytes and it is closed with 4008) and clients that reset their TCP
connection mid-stream. The other subscribers must receive every event, in order."""

import time

from abuseutil import contiguous, open_peers, publish_frame, pump, rst_close, wait_rss_settle

MAX_QUEUE = 256 * 1024
with open("/proc/sys/net/ipv4/tcp_wmem") as _f:
    WMEM_MAX = int(_f.read().split()[2])
ENGINE_ARGS = ["--rate-limit", "0", "--max-queue-bytes", str(MAX_QUEUE)]


class Publisher:
    """Publishes numbered events from pump ticks, keeping at most `window` unacknowledged, and
    tracks the subscriber count reported in each response."""

    def __init__(self, peer, channel, payload, total, window=50):
        self.p, self.channel, self.payload = peer, channel, payload
        self.total, self.window = total, window
        self.sent = 0

    def acked(self):
        return [m for m in self.p.msgs if m.get("type") == "response" and m.get("event") == "publish"]

    def tick(self):
        inflight = self.sent - len(self.p.msgs)
        while self.sent < self.total and inflight < self.window:
            self.sent += 1
            inflight += 1
            self.p.queue(publish_frame(self.channel, self.payload, self.sent))


def room_count(pub_peer, room, want, timeout=3.0):
    """The subscriber count a publish to room reports, polled until it equals want or timeout."""
    deadline = time.monotonic() + timeout
    while True:
        r = pub_peer.c.request({"type": "request", "event": "publish",
                                "data": {"channel": room, "event": "count", "payload": 0},
                                "id": "count"})
        count = r["data"]["subscribers"]
        if count == want or time.monotonic() > deadline:
            return count
        time.sleep(0.1)


def test_slow_consumer_closed_4008_others_get_everything(engine):
    """100 subscribers share a room of small events; one of them, the slow one, also gets 60 KB
    events in a second room (so that it overflows fast without the other 99 having to read
    megabytes). It stops reading. Its queue must stay capped: it is closed with 4008, while the
    99 get every event of their room, in order."""
    base_rss = engine.rss_kb()
    fast = open_peers(engine.port, 99, channel="slow-room", name="fast")
    slow = open_peers(engine.port, 1, channel="slow-room", name="slow", rcvbuf=4096)[0]
    slow.subscribe("big-room")
    observer = open_peers(engine.port, 1, channel="big-room", name="observer")[0]
    slow.paused = True  # from now on nobody reads it
    small = Publisher(open_peers(engine.port, 1, name="pub")[0], "slow-room",
                      '"%s"' % ("s" * 300), total=2000)
    big_payload = '"%s"' % ("B" * 60000)
    big = Publisher(open_peers(engine.port, 1, name="bigpub")[0], "big-room", big_payload,
                    total=10_000, window=4)
    # Once the engine has accepted this many bytes for the slow one, its queue must have
    # overflowed: the cap plus the most the kernel can buffer for it (the server socket's send
    # buffer autotunes up to tcp_wmem[2]) plus a margin.
    overflow_bytes = MAX_QUEUE + WMEM_MAX + (2 << 20)
    peak = [base_rss]
    state = {"resumed_at": None, "t": time.monotonic()}

    def tick():
        small.tick()
        if state["resumed_at"] is None:
            big.tick()
            if len(big.acked()) * len(big_payload) > overflow_bytes:
                # It wakes up and reads again: what the kernel held, then the close frame
                # (a closing peer has a couple of seconds to read it).
                state["resumed_at"] = len(big.acked())
                big.total = big.sent
                slow.paused = False
        if time.monotonic() - state["t"] > 0.2:
            state["t"] = time.monotonic()
            peak[0] = max(peak[0], engine.rss_kb())

    everyone = fast + [slow, observer, small.p, big.p]
    pump(everyone, 30.0, on_tick=tick,
         until=lambda: len(small.acked()) == small.total and slow.eof
         and all(len(f.events("slow-room")) == small.total for f in fast))
    assert state["resumed_at"] is not None, f"big publishes stalled at {len(big.acked())}"
    for f in fast:
        assert contiguous(f.events("slow-room"), small.total), \
            f"{f.name} got {len(f.events('slow-room'))}/{small.total}"
        assert not f.got_close, f"{f.name} was closed with {f.close_code}"
    assert contiguous(observer.events("big-room"), big.total)

    # What the slow consumer read: a prefix of each room's events, then close 4008.
    assert slow.eof, "the slow consumer was never disconnected"
    assert slow.got_close and slow.close_code == 4008, \
        f"slow consumer close code {slow.close_code}, got_close={slow.got_close}; it read " \
        f"{slow.rx_bytes // 1024} KiB"
    big_seqs, small_seqs = slow.events("big-room"), slow.events("slow-room")
    assert contiguous(big_seqs) and len(big_seqs) < big.total, (len(big_seqs), big.total)
    assert contiguous(small_seqs), small_seqs[:20]
    # Everything it was sent fits in the queue cap plus the kernel's socket buffers.
    assert slow.rx_bytes <= MAX_QUEUE + WMEM_MAX + 65536, slow.rx_bytes
    # And it leaves both rooms (a closing connection may linger while the server waits for
    # the peer's close frame, WORKER_CLOSE_WAIT_MS = 2 s; allow 3 s).
    assert room_count(small.p, "slow-room", 99) == 99
    assert room_count(big.p, "big-room", 1) == 1
    print(f"slow consumer: read {len(big_seqs)}/{big.total} big and {len(small_seqs)}/"
          f"{small.total} small events ({slow.rx_bytes // 1024} KiB) before 4008; "
          f"RSS base {base_rss} peak {peak[0]} KiB")
    for p in everyone:
        p.c.close()
    after = wait_rss_settle(engine)
    if not engine.sanitized:  # ASan's quarantine keeps freed memory resident
        assert after - base_rss < 16 * 1024, (base_rss, peak[0], after)


def test_tcp_resets_mid_broadcast(engine):
    steady = open_peers(engine.port, 40, channel="rst-room", name="steady")
    resetters = open_peers(engine.port, 40, channel="rst-room", name="rst")
    # Half of the resetters never read: their RST comes with unread data queued on both sides.
    for r in resetters[::2]:
        r.paused = True
    pub_peer = open_peers(engine.port, 1, name="pub")[0]
    pub = Publisher(pub_peer, "rst-room", '"%s"' % ("r" * 1500), total=600, window=20)
    live = list(resetters)

    def tick():
        pub.tick()
        # Every 60 publishes, 4 resetters reset their connection.
        while 40 - len(live) < min(40, pub.sent // 60 * 4):
            r = live.pop()
            r.eof = True  # pump must not touch it any more
            rst_close(r.sock)

    everyone = steady + resetters + [pub_peer]
    pump(everyone, 30.0, on_tick=tick,
         until=lambda: len(pub.acked()) == 600 and all(len(s.events("rst-room")) == 600 for s in steady))
    for s in steady:
        assert contiguous(s.events("rst-room"), 600), f"{s.name}: {len(s.events('rst-room'))}/600"
        assert not s.got_close
    assert not live, f"{len(live)} resetters never reset"
    errors = [m for m in pub_peer.msgs if m.get("type") == "error"]
    assert not errors, errors[:3]
    # Once the resets are processed, only the steady subscribers are left in the room.
    count = room_count(pub_peer, "rst-room", 40)
    assert count == 40, f"room still counts {count} subscribers after 40 resets"
    for p in steady + [pub_peer]:
        p.c.close()
