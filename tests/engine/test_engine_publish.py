"""Publish and fan-out: who receives what, exactly once, verbatim, in seq order."""

import asyncio
import json
import time

import pytest

from engine_harness import (TS_RE, assert_silent, collect_events, connect, publish, recv_json,
                            reply_for, run, subscribe)


async def publish_raw(ws, channel, payload_text, rid, event="bench"):
    """Publishes a payload given as JSON text, so its exact bytes are under the test's control."""
    msg = ('{"type":"request","event":"publish","data":{"channel":%s,"event":%s,"payload":%s},'
           '"id":%s}' % (json.dumps(channel), json.dumps(event), payload_text, json.dumps(rid)))
    await ws.send(msg)


PAYLOADS = {
    "object": '{"a":1,"b":"two"}',
    "array": '[1,2,3,"four",null,true,false]',
    "string": '"just a string"',
    "integer": "12345",
    "negative_float": "-1.5e3",
    "null": "null",
    "true": "true",
    "nested": '{"a":{"b":{"c":[1,{"d":[[],{}]}]}},"e":[{"f":null}]}',
    "unicode": '{"text":"h\u00e9llo w\u00f6rld \u2713 \U0001F600 \u4e2d\u6587"}',
    "escapes": r'{"esc":"quote\" backslash\\ slash\/ nl\n tab\t \u00e9 \ud83d\ude00 \u0000"}',
    "whitespace_inside": '{ "a" : [ 1 , 2 ] ,\n "b" : { } }',
    "empty_object": "{}",
    "empty_string": '""',
    "big": json.dumps({"blob": "x" * 20000}),
}


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_event_carries_payload_verbatim(engine, name):
    payload_text = PAYLOADS[name]

    async def go():
        sub, _ = await connect(engine.url)
        pub, _ = await connect(engine.url)
        await subscribe(sub, "verbatim")
        await publish_raw(pub, "verbatim", payload_text, "p1", event="chat.message")
        resp = await reply_for(pub, "p1")
        raw = await asyncio.wait_for(sub.recv(), 5)
        await sub.close()
        await pub.close()
        return resp, raw

    resp, raw = run(go())
    assert resp["type"] == "response", resp
    ev = json.loads(raw)
    assert ev["type"] == "event"
    assert ev["event"] == "chat.message"
    assert ev["room"] == "verbatim"
    assert ev["seq"] == 1
    assert TS_RE.match(ev["timestamp"]), ev["timestamp"]
    assert ev["data"] == json.loads(payload_text)
    # Verbatim means the bytes as sent: escapes and inner whitespace are not re-serialized.
    assert payload_text in raw, f"payload not embedded verbatim:\n{raw[:400]}"


def test_every_subscriber_gets_exactly_one_event(engine):
    async def go():
        subs = [(await connect(engine.url))[0] for _ in range(5)]
        for s in subs:
            await subscribe(s, "fan")
        pub, _ = await connect(engine.url)
        resp = await publish(pub, "fan", {"n": 1})
        got = []
        for s in subs:
            got.append(await collect_events(s, 1))
            await assert_silent(s, 0.2)
        for s in subs + [pub]:
            await s.close()
        return resp, got

    resp, got = run(go())
    assert resp["data"]["subscribers"] == 5
    for evs in got:
        assert len(evs) == 1
        assert evs[0]["data"] == {"n": 1}
        assert evs[0]["seq"] == resp["data"]["seq"]


def test_publish_response_fields(engine):
    async def go():
        a, _ = await connect(engine.url)
        b, _ = await connect(engine.url)
        await subscribe(a, "resp-room")
        await subscribe(b, "resp-room")
        pub, _ = await connect(engine.url)
        await pub.send(json.dumps({"type": "request", "event": "publish", "id": 7,
                                   "data": {"channel": "resp-room", "event": "bench",
                                            "payload": {"x": 1}}}))
        r = await reply_for(pub, 7)
        for s in (a, b, pub):
            await s.close()
        return r

    r = run(go())
    assert r["type"] == "response"
    assert r["event"] == "publish"
    assert r["correlation_id"] == 7
    assert len(r["data"].pop("epoch")) == 16  # the room's epoch (history, issue 11)
    assert r["data"] == {"status": "published", "channel": "resp-room", "seq": 1, "subscribers": 2}
    assert TS_RE.match(r["timestamp"])


def test_seq_starts_at_one_and_increases_per_room(engine):
    async def go():
        sub, _ = await connect(engine.url)
        await subscribe(sub, "seq-a")
        await subscribe(sub, "seq-b")
        pub, _ = await connect(engine.url)
        order = ["seq-a", "seq-a", "seq-b", "seq-a", "seq-b", "seq-b", "seq-b", "seq-a"]
        resp_seqs = []
        for i, room in enumerate(order):
            r = await publish(pub, room, {"i": i})
            resp_seqs.append((room, r["data"]["seq"]))
        evs = await collect_events(sub, len(order))
        await sub.close()
        await pub.close()
        return order, resp_seqs, evs

    order, resp_seqs, evs = run(go())
    per_room = {}
    for ev in evs:
        per_room.setdefault(ev["room"], []).append(ev["seq"])
    assert per_room["seq-a"] == [1, 2, 3, 4]
    assert per_room["seq-b"] == [1, 2, 3, 4]
    assert [s for _, s in resp_seqs] == [1, 2, 1, 3, 2, 3, 4, 4]
    # Within a connection, events of one room arrive in publish order.
    assert [ev["data"]["i"] for ev in evs if ev["room"] == "seq-a"] == [0, 1, 3, 7]


def test_publisher_subscribed_receives_its_own_event(engine):
    async def go():
        pub, _ = await connect(engine.url)
        await subscribe(pub, "self")
        await pub.send(json.dumps({"type": "request", "event": "publish", "id": "me",
                                   "data": {"channel": "self", "event": "echo",
                                            "payload": [1, 2]}}))
        msgs = [await recv_json(pub), await recv_json(pub)]
        await assert_silent(pub, 0.2)
        await pub.close()
        return msgs

    msgs = run(go())
    events = [m for m in msgs if m["type"] == "event"]
    resps = [m for m in msgs if m["type"] == "response"]
    assert len(events) == 1 and len(resps) == 1, msgs
    assert events[0]["data"] == [1, 2] and events[0]["room"] == "self"
    assert resps[0]["data"]["subscribers"] == 1
    assert resps[0]["data"]["seq"] == events[0]["seq"] == 1


def test_unsubscribed_publisher_gets_no_event(engine):
    async def go():
        sub, _ = await connect(engine.url)
        await subscribe(sub, "other")
        pub, _ = await connect(engine.url)
        skipped = []
        r = await publish(pub, "other", 1, skipped=skipped)
        await collect_events(sub, 1)
        await assert_silent(pub, 0.3)
        await sub.close()
        await pub.close()
        return r, skipped

    r, skipped = run(go())
    assert r["data"]["subscribers"] == 1
    assert skipped == []


def test_publish_to_empty_room_reports_zero_subscribers(engine):
    async def go():
        pub, _ = await connect(engine.url)
        r = await publish(pub, "nobody-here", {"x": 1})
        await pub.close()
        return r

    r = run(go())
    assert r["type"] == "response" and r["data"]["status"] == "published"
    assert r["data"]["subscribers"] == 0


def test_rooms_are_isolated(engine):
    async def go():
        a, _ = await connect(engine.url)
        b, _ = await connect(engine.url)
        await subscribe(a, "iso-a")
        await subscribe(b, "iso-b")
        pub, _ = await connect(engine.url)
        await publish(pub, "iso-a", "for-a")
        ea = await collect_events(a, 1)
        await assert_silent(b, 0.3)
        for s in (a, b, pub):
            await s.close()
        return ea

    ea = run(go())
    assert ea[0]["data"] == "for-a"


def test_unsubscribed_client_stops_receiving(engine):
    async def go():
        sub, _ = await connect(engine.url)
        stay, _ = await connect(engine.url)
        await subscribe(sub, "leave")
        await subscribe(stay, "leave")
        pub, _ = await connect(engine.url)
        await publish(pub, "leave", 1)
        first = await collect_events(sub, 1)
        await collect_events(stay, 1)
        r = await reply_for_unsub(sub, "leave")
        r2 = await publish(pub, "leave", 2)
        await collect_events(stay, 1)
        await assert_silent(sub, 0.4)
        for s in (sub, stay, pub):
            await s.close()
        return first, r, r2

    first, r, r2 = run(go())
    assert first[0]["data"] == 1
    assert r["data"]["status"] == "unsubscribed"
    assert r2["data"]["subscribers"] == 1


async def reply_for_unsub(ws, channel):
    await ws.send(json.dumps({"type": "request", "event": "unsubscribe",
                              "data": {"channel": channel}, "id": "unsub"}))
    return await reply_for(ws, "unsub")


def test_disconnect_removes_from_rooms(engine):
    async def go():
        subs = [(await connect(engine.url))[0] for _ in range(3)]
        for s in subs:
            await subscribe(s, "gone")
        pub, _ = await connect(engine.url)
        before = (await publish(pub, "gone", 1))["data"]["subscribers"]
        await subs[0].close()
        # The close is processed asynchronously: poll until the count drops (bounded).
        deadline = time.monotonic() + 3
        after = before
        while time.monotonic() < deadline:
            after = (await publish(pub, "gone", 2))["data"]["subscribers"]
            if after != before:
                break
            await asyncio.sleep(0.05)
        # An abrupt TCP close (no close frame) must be cleaned up too.
        subs[1].transport.abort()
        deadline = time.monotonic() + 3
        after_abort = after
        while time.monotonic() < deadline:
            after_abort = (await publish(pub, "gone", 3))["data"]["subscribers"]
            if after_abort != after:
                break
            await asyncio.sleep(0.05)
        await subs[2].close()
        await pub.close()
        return before, after, after_abort

    before, after, after_abort = run(go())
    assert before == 3
    assert after == 2
    assert after_abort == 1


def test_subscribe_twice_delivers_once(engine):
    async def go():
        sub, _ = await connect(engine.url)
        await subscribe(sub, "twice")
        r2 = await subscribe(sub, "twice")
        pub, _ = await connect(engine.url)
        r = await publish(pub, "twice", 1)
        evs = await collect_events(sub, 1)
        await assert_silent(sub, 0.3)
        await sub.close()
        await pub.close()
        return r2, r, evs

    r2, r, evs = run(go())
    assert r2["data"]["status"] == "subscribed"
    assert r["data"]["subscribers"] == 1
    assert len(evs) == 1
