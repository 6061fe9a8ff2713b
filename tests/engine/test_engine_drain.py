"""Graceful shutdown keeps its promise across workers: every publish acked before SIGTERM reaches
every subscriber, on every worker, before that subscriber's 1001 close (docs/operations.md,
"Stopping"; docs/architecture.md, "Shutdown")."""

import json
import signal

import pytest

from engine_harness import OP_CLOSE, OP_TEXT, Closed, RawWS, build_frame

N_PUBLISHES = 200


def subscribers_on_every_worker(port, threads, per_worker, room):
    """Opens connections until each worker holds per_worker of them (SO_REUSEPORT spreads them
    by hash; the welcome's connection id names the worker), each subscribed to room."""
    per, subs, spare = {}, [], []
    for _ in range(threads * per_worker * 20):
        if len(subs) == threads * per_worker:
            break
        ws = RawWS(port)
        worker = ws.welcome["data"]["connection_id"].split("-")[0]
        if per.get(worker, 0) >= per_worker:
            spare.append(ws)
            continue
        per[worker] = per.get(worker, 0) + 1
        ws.send_json({"type": "subscribe", "channel": room})
        assert ws.recv_json()["data"]["status"] == "subscribed"
        subs.append(ws)
    for ws in spare:
        ws.close()
    assert len(subs) == threads * per_worker, f"connections landed on workers {per}"
    return subs


def events_until_close(ws, timeout=10.0):
    """The events read before the server's close frame, and that close's code."""
    events = []
    while True:
        try:
            op, payload = ws.recv_frame(timeout)
        except Closed:
            return events, "eof"
        if op == OP_TEXT:
            m = json.loads(payload)
            if m.get("type") == "event":
                events.append(m["seq"])
        elif op == OP_CLOSE:
            return events, int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None


@pytest.mark.parametrize("threads", [2, 3, 4])
def test_sigterm_delivers_every_acked_publish_before_1001(start_engine, threads):
    for attempt in range(2):
        e = start_engine("--threads", str(threads), "--rate-limit", "0")
        subs = subscribers_on_every_worker(e.port, threads, 2, "drain")
        pub = RawWS(e.port)
        pub.send_raw(b"".join(
            build_frame(OP_TEXT, json.dumps({"type": "request", "event": "publish", "id": i,
                                             "data": {"channel": "drain", "payload": i}}))
            for i in range(N_PUBLISHES)))
        acks = [pub.recv_json(10.0) for _ in range(N_PUBLISHES)]
        assert [a.get("correlation_id") for a in acks] == list(range(N_PUBLISHES))
        assert all(a["data"]["subscribers"] == 2 * threads for a in acks), acks[-1]
        e.signal(signal.SIGTERM)  # right after the last ack: fan-out may still be in flight
        for i, ws in enumerate(subs):
            events, code = events_until_close(ws)
            assert code == 1001, f"subscriber {i}: close {code} after {len(events)} events"
            assert events == list(range(1, N_PUBLISHES + 1)), (
                f"subscriber {i} ({ws.welcome['data']['connection_id']}): {len(events)} of "
                f"{N_PUBLISHES} events before its 1001")
        assert e.wait(15.0) == 0  # the fixture checks the log for sanitizer reports
