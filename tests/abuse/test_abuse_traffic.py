"""Traffic abuse after the handshake: random bytes from many clients, and publish floods past the
rate limit. Each offender must be closed with the right code; everyone else is unaffected."""

import collections
import random
import time

import pytest

from abuseutil import contiguous, open_peers, ping_roundtrip, publish_frame, pump, wait_rss_settle

RATE, BURST = 100, 200
ENGINE_ARGS = ["--rate-limit", str(RATE), "--rate-burst", str(BURST)]

# Close codes a garbage stream can legitimately end with: a framing error, binary, bad UTF-8, too
# big, or (if the garbage happened to hold a well-formed close frame) the echo of its code.
PROTOCOL_CODES = {1002, 1003, 1007, 1009}


def test_random_garbage_after_handshake(engine):
    base_rss = engine.rss_kb()
    rng = random.Random(6455)
    bad = open_peers(engine.port, 60, name="garbage")
    good_sub = open_peers(engine.port, 1, channel="calm", name="sub")[0]
    good_pub = open_peers(engine.port, 1, name="pub")[0]
    sent = collections.Counter()
    streams = {p.name: random.Random(rng.random()) for p in bad}
    published = [0]

    def misbehave():
        for p in bad:
            # Stop at the close frame: bytes after it are ignored by the server anyway, and
            # 200 KiB is more than any frame can hold before the 64 KiB limit trips.
            if p.got_close or p.eof or sent[p.name] > 200_000 or len(p.outbox) > 65536:
                continue
            r = streams[p.name]
            chunk = r.randbytes(r.randint(1, 2048))
            p.queue(chunk)
            sent[p.name] += len(chunk)
        if published[0] < 50:
            published[0] += 1
            good_pub.queue(publish_frame("calm", '{"n":%d}' % published[0], published[0]))

    everyone = bad + [good_sub, good_pub]
    pump(everyone, 20.0, until=lambda: all(p.eof for p in bad) and
         len(good_sub.events("calm")) == 50, on_tick=misbehave)

    hung = [p.name for p in bad if not p.eof]
    assert not hung, f"{len(hung)} garbage connections were never closed: {hung[:5]}"
    no_close = [p.name for p in bad if not p.got_close]
    assert not no_close, f"closed without a close frame: {no_close[:5]}"
    codes = collections.Counter(p.close_code for p in bad)
    odd = {c: n for c, n in codes.items() if c not in PROTOCOL_CODES}
    # An echoed close is fine only when the stream could have held a valid close frame; those
    # are rare, so more than a few is a sign the server answers garbage with a normal close.
    assert sum(odd.values()) <= 3, f"unexpected close codes {odd} (all: {dict(codes)})"
    assert contiguous(good_sub.events("calm"), 50), good_sub.events("calm")[:10]
    assert ping_roundtrip(engine.port) < 1.5
    print(f"garbage: close codes {dict(codes)}, bytes sent {sum(sent.values())}")
    good_sub.c.close()
    good_pub.c.close()
    after = wait_rss_settle(engine)
    if not engine.sanitized:  # ASan's quarantine keeps freed memory resident
        assert after - base_rss < 16 * 1024, (base_rss, after)


@pytest.mark.parametrize("per_tick", [50, 10], ids=["burst-5000-per-s", "paced-1000-per-s"])
def test_publish_flood_rate_limited_then_closed(engine, per_tick):
    """A flood is refused (RATE_LIMITED) and, persisting, closed with 1008: written in big
    bursts, or evenly at 10x the limit (so that a token trickles in every 10 ms throughout)."""
    room = f"flood-{per_tick}"
    flood_sub = open_peers(engine.port, 1, channel=room, name="fsub")[0]
    calm_room = f"calm-{per_tick}"
    calm_sub = open_peers(engine.port, 1, channel=calm_room, name="csub")[0]
    calm_pub = open_peers(engine.port, 1, name="cpub")[0]
    flooder = open_peers(engine.port, 1, name="flooder")[0]
    state = {"sent": 0, "calm": 0, "t_calm": 0.0}
    t0 = time.monotonic()

    def tick():
        # The flooder writes per_tick publishes every 10 ms tick.
        if not flooder.got_close and not flooder.eof and len(flooder.outbox) < 65536:
            batch = b"".join(publish_frame(room, "%d" % (state["sent"] + i), state["sent"] + i)
                             for i in range(per_tick))
            flooder.queue(batch)
            state["sent"] += per_tick
        # A well-behaved publisher at 20/s in another room.
        now = time.monotonic()
        if state["calm"] < 60 and now >= state["t_calm"]:
            state["calm"] += 1
            calm_pub.queue(publish_frame(calm_room, '{"c":%d}' % state["calm"], state["calm"]))
            state["t_calm"] = now + 0.05

    peers = [flood_sub, calm_sub, calm_pub, flooder]
    pump(peers, 10.0, until=lambda: flooder.eof and state["calm"] >= 60 and
         len(calm_sub.events(calm_room)) == 60, on_tick=tick)
    elapsed = time.monotonic() - t0

    errors = [m for m in flooder.msgs if m.get("type") == "error"]
    published = [m for m in flooder.msgs if m.get("type") == "response"
                 and m.get("data", {}).get("status") == "published"]
    assert any(m["data"]["code"] == "RATE_LIMITED" for m in errors), \
        f"no RATE_LIMITED error after {state['sent']} publishes; errors {errors[:3]}"
    assert flooder.got_close and flooder.close_code == 1008, \
        f"flooder not closed with 1008 (close code {flooder.close_code}, got_close=" \
        f"{flooder.got_close}) after {state['sent']} publishes in {elapsed:.1f}s, " \
        f"{len(errors)} RATE_LIMITED, {len(published)} published"
    assert flooder.eof
    # What got through is exactly what was acknowledged, in order, and within the bucket:
    # the burst plus the refill rate over the flood's duration.
    seqs = flood_sub.events(room)
    assert contiguous(seqs), seqs[:20]
    assert len(seqs) >= len(published), (len(seqs), len(published))
    assert len(seqs) <= BURST + RATE * (elapsed + 1), (len(seqs), elapsed)
    # The others were not affected.
    assert contiguous(calm_sub.events(calm_room), 60)
    assert not [m for m in calm_pub.msgs if m.get("type") == "error"], calm_pub.msgs[:3]
    print(f"flood: sent {state['sent']}, delivered {len(seqs)}, {len(errors)} errors, "
          f"closed 1008 after {elapsed:.2f}s")
    for p in peers:
        p.c.close()


def test_rate_limit_recovers_for_a_well_behaved_burst(engine):
    """A client that bursts to the limit, backs off, and bursts again is never closed."""
    sub = open_peers(engine.port, 1, channel="burst", name="bsub")[0]
    pub = open_peers(engine.port, 1, name="bpub")[0]
    for round_ in range(2):
        for i in range(150):
            pub.queue(publish_frame("burst", "%d" % i, round_ * 1000 + i))
        pump([sub, pub], 5.0, until=lambda: len(sub.events("burst")) == 150 * (round_ + 1))
        time.sleep(1.2)  # refill: 50 tokens left + 100/s
    assert contiguous(sub.events("burst"), 300)
    assert not [m for m in pub.msgs if m.get("type") == "error"], pub.msgs[:3]
    assert not pub.got_close
    sub.c.close()
    pub.c.close()
