"""Session basics: the welcome event, the request and short forms, correlation ids."""

import datetime
import json

import pytest

from engine_harness import TS_RE, connect, recv_json, run


def parse_ts(ts):
    assert TS_RE.match(ts), f"timestamp not ISO-8601 UTC with milliseconds: {ts!r}"
    return datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc)


def assert_recent(ts):
    now = datetime.datetime.now(datetime.timezone.utc)
    delta = abs((now - parse_ts(ts)).total_seconds())
    assert delta < 5, f"timestamp {ts} is {delta:.1f} s away from now"


def test_welcome_has_session_fields_with_defaults(engine):
    async def go():
        ws, w = await connect(engine.url)
        await ws.close()
        return w

    w = run(go())
    assert w["type"] == "event"
    assert w["event"] == "session.created"
    d = w["data"]
    assert isinstance(d["connection_id"], str) and d["connection_id"]
    assert d["server"] == "ringcast"
    assert d["heartbeat_s"] == 25
    assert d["max_message_bytes"] == 65536
    assert_recent(w["timestamp"])


def test_welcome_reports_configured_limits(start_engine):
    e = start_engine("--threads", "1", "--heartbeat-s", "7", "--max-message-bytes", "4096")

    async def go():
        ws, w = await connect(e.url)
        await ws.close()
        return w

    d = run(go())["data"]
    assert d["heartbeat_s"] == 7
    assert d["max_message_bytes"] == 4096


def test_connection_ids_are_unique(engine):
    async def go():
        conns = [await connect(engine.url) for _ in range(6)]
        ids = [w["data"]["connection_id"] for _, w in conns]
        for ws, _ in conns:
            await ws.close()
        return ids

    ids = run(go())
    assert len(set(ids)) == len(ids), ids


@pytest.mark.parametrize("path", ["/ws", "/ws/session-abc123", "/"])
def test_upgrade_accepted_on_each_documented_path(engine, path):
    async def go():
        ws, w = await connect(f"ws://127.0.0.1:{engine.port}{path}")
        await ws.send(json.dumps({"type": "ping"}))
        r = await recv_json(ws)
        await ws.close()
        return w, r

    w, r = run(go())
    assert w["event"] == "session.created"
    assert r["type"] == "pong"


def test_subscribe_request_form(engine):
    async def go():
        ws, _ = await connect(engine.url)
        await ws.send(json.dumps({"type": "request", "event": "subscribe",
                                  "data": {"channel": "room-1"}, "id": "s1"}))
        r = await recv_json(ws)
        await ws.close()
        return r

    r = run(go())
    assert r["type"] == "response"
    assert r["event"] == "subscribe"
    assert len(r["data"].pop("epoch")) == 16
    assert r["data"].pop("seq") == 0  # a new room: no event yet
    assert r["data"] == {"status": "subscribed", "channel": "room-1"}
    assert r["correlation_id"] == "s1"
    assert_recent(r["timestamp"])


def test_unsubscribe_request_form(engine):
    async def go():
        ws, _ = await connect(engine.url)
        await ws.send(json.dumps({"type": "request", "event": "subscribe",
                                  "data": {"channel": "room-1"}, "id": "s1"}))
        await recv_json(ws)
        await ws.send(json.dumps({"type": "request", "event": "unsubscribe",
                                  "data": {"channel": "room-1"}, "id": "u1"}))
        r = await recv_json(ws)
        await ws.close()
        return r

    r = run(go())
    assert r["type"] == "response"
    assert r["event"] == "unsubscribe"
    assert r["data"] == {"status": "unsubscribed", "channel": "room-1"}
    assert r["correlation_id"] == "u1"


def test_ping_request_form_answers_pong_response(engine):
    async def go():
        ws, _ = await connect(engine.url)
        await ws.send(json.dumps({"type": "request", "event": "ping", "id": 3}))
        r = await recv_json(ws)
        await ws.close()
        return r

    r = run(go())
    assert r["type"] == "response"
    assert r["event"] == "pong"
    assert r["correlation_id"] == 3
    assert_recent(r["timestamp"])


def test_ping_short_form_answers_pong(engine):
    async def go():
        ws, _ = await connect(engine.url)
        await ws.send(json.dumps({"type": "ping"}))
        r = await recv_json(ws)
        await ws.close()
        return r

    r = run(go())
    assert r["type"] == "pong"
    assert "correlation_id" not in r


def test_subscribe_and_unsubscribe_short_forms(engine):
    async def go():
        ws, _ = await connect(engine.url)
        await ws.send(json.dumps({"type": "subscribe", "channel": "short-room"}))
        a = await recv_json(ws)
        await ws.send(json.dumps({"type": "unsubscribe", "channel": "short-room"}))
        b = await recv_json(ws)
        await ws.close()
        return a, b

    a, b = run(go())
    assert a["type"] == "response" and a["event"] == "subscribe"
    assert len(a["data"].pop("epoch")) == 16
    assert a["data"].pop("seq") == 0  # a new room: no event yet
    assert a["data"] == {"status": "subscribed", "channel": "short-room"}
    assert "correlation_id" not in a
    assert_recent(a["timestamp"])
    assert b["type"] == "response" and b["event"] == "unsubscribe"
    assert b["data"] == {"status": "unsubscribed", "channel": "short-room"}
    assert "correlation_id" not in b


def test_short_form_subscribe_really_subscribes(engine):
    async def go():
        sub, _ = await connect(engine.url)
        pub, _ = await connect(engine.url)
        await sub.send(json.dumps({"type": "subscribe", "channel": "sf"}))
        await recv_json(sub)
        await pub.send(json.dumps({"type": "request", "event": "publish", "id": 1,
                                   "data": {"channel": "sf", "event": "e", "payload": 5}}))
        ev = await recv_json(sub)
        await sub.close()
        await pub.close()
        return ev

    ev = run(go())
    assert ev["type"] == "event" and ev["room"] == "sf" and ev["data"] == 5


@pytest.mark.parametrize("key,value,raw", [
    ("id", "abc-1", '"correlation_id":"abc-1"'),
    ("id", 42, '"correlation_id":42'),
    ("correlation_id", "corr-7", '"correlation_id":"corr-7"'),
    ("correlation_id", 1234567, '"correlation_id":1234567'),
])
def test_request_id_echoed_as_sent(engine, key, value, raw):
    async def go():
        ws, _ = await connect(engine.url)
        await ws.send(json.dumps({"type": "request", "event": "ping", key: value}))
        text = await ws.recv()
        await ws.close()
        return text

    text = run(go())
    r = json.loads(text)
    assert r["correlation_id"] == value
    assert type(r["correlation_id"]) is type(value)
    assert raw in text.replace(" ", "")


def test_error_carries_request_id(engine):
    async def go():
        ws, _ = await connect(engine.url)
        await ws.send(json.dumps({"type": "request", "event": "subscribe",
                                  "data": {"channel": ""}, "correlation_id": 99}))
        r = await recv_json(ws)
        await ws.close()
        return r

    r = run(go())
    assert r["type"] == "error"
    assert r["correlation_id"] == 99
