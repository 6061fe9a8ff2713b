"""Error envelopes: bad requests are answered with a coded error and the connection survives;
limits (subscriptions, rate) are enforced."""

import asyncio
import json
import time

import pytest
import websockets

from engine_harness import (TS_RE, close_code_of, connect, publish, recv_json, request, run,
                            subscribe)


def assert_error(m, code, rid=None):
    assert m["type"] == "error", m
    assert m["event"] == "error", m
    assert m["data"]["code"] == code, m
    assert isinstance(m["data"]["message"], str) and m["data"]["message"], m
    assert TS_RE.match(m["timestamp"]), m
    if rid is not None:
        assert m["correlation_id"] == rid, m


async def still_works(ws):
    """The connection is usable: a request round-trips."""
    r = await request(ws, "ping", rid="alive")
    assert r["type"] == "response" and r["event"] == "pong", r


@pytest.mark.parametrize("text", [
    "not json at all",
    '{"type":"request","event":"ping"',  # truncated
    "{'single':'quotes'}",
    "",
])
def test_invalid_json_is_invalid_message_and_connection_stays_open(engine, text):
    async def go():
        ws, _ = await connect(engine.url)
        await ws.send(text)
        m = await recv_json(ws)
        await still_works(ws)
        await subscribe(ws, "after-error")
        await ws.close()
        return m

    assert_error(run(go()), "INVALID_MESSAGE")


@pytest.mark.parametrize("obj", [
    [1, 2, 3],
    "a string",
    42,
    {"no_type": True},
    {"type": "bogus"},
    {"type": 5},
    {"type": "request"},  # no event
    {"type": "request", "event": "subscribe", "data": "not-an-object", "id": 1},
    {"type": "request", "event": "ping", "id": {"obj": 1}},
    {"type": "subscribe"},  # short form without channel
])
def test_wrong_shape_is_invalid_message(engine, obj):
    async def go():
        ws, _ = await connect(engine.url)
        await ws.send(json.dumps(obj))
        m = await recv_json(ws)
        await still_works(ws)
        await ws.close()
        return m

    assert_error(run(go()), "INVALID_MESSAGE")


def test_unknown_event_is_unknown_request(engine):
    async def go():
        ws, _ = await connect(engine.url)
        m = await request(ws, "frobnicate", {"x": 1}, rid="u1")
        await still_works(ws)
        await ws.close()
        return m

    assert_error(run(go()), "UNKNOWN_REQUEST", "u1")


@pytest.mark.parametrize("channel", [
    "",
    "x" * 256,
    "bad\u0001chan",
    "new\nline",
    "tab\there",
    "del\u007f",
])
def test_bad_channel_is_invalid_channel(engine, channel):
    async def go():
        ws, _ = await connect(engine.url)
        a = await request(ws, "subscribe", {"channel": channel}, rid="c1")
        pub, _ = await connect(engine.url)
        b = await request(pub, "publish", {"channel": channel, "event": "e", "payload": 1},
                          rid="c2")
        await ws.send(json.dumps({"type": "subscribe", "channel": channel}))
        c = await recv_json(ws)
        await still_works(ws)
        await ws.close()
        await pub.close()
        return a, b, c

    a, b, c = run(go())
    assert_error(a, "INVALID_CHANNEL", "c1")
    assert_error(b, "INVALID_CHANNEL", "c2")
    assert_error(c, "INVALID_CHANNEL")


@pytest.mark.parametrize("channel", ["x" * 255, "room:with/punct.-_~", "\u00e9t\u00e9-\u4e2d"])
def test_valid_channel_edge_cases_accepted(engine, channel):
    async def go():
        ws, _ = await connect(engine.url)
        r = await subscribe(ws, channel)
        pub, _ = await connect(engine.url)
        p = await publish(pub, channel, "hi")
        ev = await recv_json(ws)
        await ws.close()
        await pub.close()
        return r, p, ev

    r, p, ev = run(go())
    assert r["data"]["channel"] == channel
    assert p["data"]["subscribers"] == 1
    assert ev["room"] == channel


def test_publish_without_channel_is_an_error(engine):
    async def go():
        ws, _ = await connect(engine.url)
        m = await request(ws, "publish", {"event": "e", "payload": 1}, rid="nochan")
        await still_works(ws)
        await ws.close()
        return m

    m = run(go())
    assert m["type"] == "error"
    assert m["data"]["code"] in ("INVALID_MESSAGE", "INVALID_CHANNEL"), m
    assert m["correlation_id"] == "nochan"


def test_too_many_subscriptions(start_engine):
    e = start_engine("--threads", "1", "--rate-limit", "0", "--max-subscriptions", "3")

    async def go():
        ws, _ = await connect(e.url)
        for i in range(3):
            await subscribe(ws, f"lim-{i}")
        over = await request(ws, "subscribe", {"channel": "lim-3"}, rid="over")
        await ws.send(json.dumps({"type": "subscribe", "channel": "lim-4"}))
        over_short = await recv_json(ws)
        # Freeing a slot makes room for another subscription.
        r = await request(ws, "unsubscribe", {"channel": "lim-0"})
        assert r["data"]["status"] == "unsubscribed"
        again = await request(ws, "subscribe", {"channel": "lim-3"})
        await ws.close()
        return over, over_short, again

    over, over_short, again = run(go())
    assert_error(over, "TOO_MANY_SUBSCRIPTIONS", "over")
    assert_error(over_short, "TOO_MANY_SUBSCRIPTIONS")
    assert again["type"] == "response" and again["data"]["status"] == "subscribed", again


def test_rate_limit_answers_rate_limited_after_burst(start_engine):
    e = start_engine("--threads", "1", "--rate-limit", "5", "--rate-burst", "5")

    async def go():
        ws, _ = await connect(e.url)
        for i in range(8):
            await ws.send(json.dumps({"type": "request", "event": "ping", "id": i}))
        replies = [await recv_json(ws) for _ in range(8)]
        await ws.close()
        return replies

    replies = run(go())
    ok = [m for m in replies if m["type"] == "response"]
    limited = [m for m in replies if m["type"] == "error"]
    # The bucket starts full (5 tokens); eight back-to-back messages leave at least two over.
    assert len(ok) >= 5, replies
    assert len(limited) >= 2, replies
    for m in limited:
        assert_error(m, "RATE_LIMITED")
    assert [m["correlation_id"] for m in ok[:5]] == [0, 1, 2, 3, 4]


def test_rate_limit_recovers_after_pause(start_engine):
    e = start_engine("--threads", "1", "--rate-limit", "5", "--rate-burst", "5")

    async def go():
        ws, _ = await connect(e.url)
        for i in range(7):
            await ws.send(json.dumps({"type": "request", "event": "ping", "id": i}))
        first = [await recv_json(ws) for _ in range(7)]
        await asyncio.sleep(1.2)  # refills 5 tokens at 5/s
        r = await request(ws, "ping", rid="later")
        await ws.close()
        return first, r

    first, r = run(go())
    assert any(m["type"] == "error" for m in first), first
    assert r["type"] == "response" and r["event"] == "pong", r


def test_persistent_rate_limit_violation_closes_1008(start_engine):
    e = start_engine("--threads", "1", "--rate-limit", "5", "--rate-burst", "5")

    async def go():
        ws, _ = await connect(e.url)
        limited = 0
        deadline = time.monotonic() + 8
        try:
            # Keep flooding (bounded: 8 s, 4000 messages) while reading whatever comes back.
            for i in range(4000):
                if time.monotonic() > deadline:
                    break
                await ws.send(json.dumps({"type": "request", "event": "ping", "id": i}))
                while True:
                    try:
                        m = json.loads(await asyncio.wait_for(ws.recv(), 0.001))
                    except asyncio.TimeoutError:
                        break
                    if m.get("type") == "error" and m["data"]["code"] == "RATE_LIMITED":
                        limited += 1
                if i % 50 == 49:
                    await asyncio.sleep(0.01)
        except websockets.ConnectionClosed:
            pass
        rest = []
        code = await close_code_of(ws, max(0.5, deadline - time.monotonic()), rest)
        for text in rest:
            m = json.loads(text)
            if m.get("type") == "error" and m["data"]["code"] == "RATE_LIMITED":
                limited += 1
        return limited, code

    limited, code = run(go())
    assert limited >= 1, "no RATE_LIMITED error before the close"
    assert code == 1008, f"expected close 1008, got {code}"


def test_publish_whose_event_would_exceed_max_message_is_too_large(start_engine):
    """The request fits in max-message-bytes, but the event it would broadcast does not: a
    channel of U+2028 is 3 bytes per character as sent, and 6 (\\u2028) once escaped in the
    event. Nothing is broadcast, the publisher gets TOO_LARGE and stays connected; the same
    payload to a plain channel is published."""
    e = start_engine("--max-message-bytes", "1024", "--rate-limit", "0")
    room = "\u2028" * 80

    def publish_text(channel, payload, rid):
        return json.dumps({"type": "request", "event": "publish", "id": rid,
                           "data": {"channel": channel, "event": "e", "payload": payload}},
                          ensure_ascii=False, separators=(",", ":"))

    payload = "x" * 600
    wide = publish_text(room, payload, "big")
    assert len(wide.encode()) <= 1024  # the request itself is within the limit

    async def go():
        sub, _ = await connect(e.url)
        await subscribe(sub, room)
        pub, _ = await connect(e.url)
        await pub.send(wide)
        refused = await recv_json(pub)
        await still_works(pub)
        ok = await publish(pub, "plain", payload)
        with pytest.raises(asyncio.TimeoutError):
            await recv_json(sub, timeout=0.5)  # nothing reached the subscriber
        await sub.close()
        await pub.close()
        return refused, ok

    refused, ok = run(go())
    assert_error(refused, "TOO_LARGE", "big")
    assert ok["type"] == "response" and ok["data"]["status"] == "published", ok
