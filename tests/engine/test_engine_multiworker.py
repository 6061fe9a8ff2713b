"""Correctness across workers: rooms are shared by connections that the kernel's SO_REUSEPORT
spreads over every worker, so each event crosses workers. Every subscriber must get every event
of its rooms exactly once, in seq order, without gaps, and a subscription that the client saw
confirmed must not miss any event published after that."""

import asyncio
import json
import time

import pytest

from engine_harness import connect, recv_json, reply_for, run, subscribe

ROOMS = ["mw-0", "mw-1", "mw-2"]
N_SUBSCRIBERS = 40
N_PUBLISHERS = 3
PER_PUBLISHER = 45  # 15 to each room from each publisher: 45 events per room
N_LATE = 4


def rooms_of(i):
    """Subscriber i's rooms: one, some two, a few all three."""
    rooms = {ROOMS[i % 3]}
    if i % 4 == 0:
        rooms.add(ROOMS[(i + 1) % 3])
    if i % 10 == 0:
        rooms.update(ROOMS)
    return sorted(rooms)


async def read_until(ws, want_last, timeout, rooms=None):
    """Reads events until, for every room in want_last, the event with that seq arrived.
    Events of rooms (default: those of want_last) are accepted. Returns {room: [(seq, data),
    ...]} in arrival order."""
    got = {r: [] for r in (rooms or want_last)}
    done = set()
    deadline = time.monotonic() + timeout
    while len(done) < len(want_last):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            m = await recv_json(ws, left)
        except asyncio.TimeoutError:
            break
        assert m.get("type") == "event", f"unexpected message {m}"
        room = m["room"]
        assert room in got, f"event of a room not subscribed: {room}"
        got[room].append((m["seq"], m["data"]))
        if room in want_last and m["seq"] >= want_last[room]:
            done.add(room)
    return got


@pytest.mark.parametrize("threads", [2, 3, 4])
def test_fanout_exactly_once_in_order_across_workers(start_engine, threads):
    e = start_engine("--threads", str(threads), "--rate-limit", "0")

    async def go():
        subs = []
        for i in range(N_SUBSCRIBERS):
            ws, _ = await connect(e.url, max_queue=None)
            for r in rooms_of(i):
                await subscribe(ws, r)
            subs.append(ws)
        expected_count = {r: sum(r in rooms_of(i) for i in range(N_SUBSCRIBERS)) for r in ROOMS}
        pubs = [(await connect(e.url))[0] for _ in range(N_PUBLISHERS)]
        late = [(await connect(e.url, max_queue=None))[0] for _ in range(N_LATE)]

        published = []  # (room, seq, payload, monotonic time the publish was sent)

        async def publisher(p, ws):
            for k in range(PER_PUBLISHER):
                room = ROOMS[(k + p) % 3]
                payload = {"p": p, "k": k}
                rid = f"{p}-{k}"
                t_sent = time.monotonic()
                await ws.send(json.dumps({"type": "request", "event": "publish", "id": rid,
                                          "data": {"channel": room, "event": "mw",
                                                   "payload": payload}}))
                r = await reply_for(ws, rid, timeout=10)
                assert r["type"] == "response", r
                published.append((room, r["data"]["seq"], payload, t_sent,
                                  r["data"]["subscribers"]))
                if p == 0 and k % 10 == 5 and k // 10 < N_LATE:
                    go_late[k // 10].set()  # the next late joiner subscribes mid-stream
                if k % 5 == 4:
                    await asyncio.sleep(0.005)

        confirmed = {}  # late index -> {room: monotonic time its subscribe was confirmed}

        go_late = [asyncio.Event() for _ in range(N_LATE)]

        async def late_joiner(j, ws):
            await go_late[j].wait()
            confirmed[j] = {}
            for r in ROOMS:
                await ws.send(json.dumps({"type": "request", "event": "subscribe",
                                          "data": {"channel": r}, "id": f"late-{r}"}))
                early = []
                resp = await reply_for(ws, f"late-{r}", timeout=10, skipped=early)
                confirmed[j][r] = time.monotonic()
                assert resp["data"]["status"] == "subscribed", resp
                # Events of rooms joined a moment ago may already be flowing: keep them.
                late_early[j].extend(early)

        late_early = {j: [] for j in range(N_LATE)}
        await asyncio.gather(*(publisher(p, ws) for p, ws in enumerate(pubs)),
                             *(late_joiner(j, ws) for j, ws in enumerate(late)))

        last = {r: max(s for room, s, *_ in published if room == r) for r in ROOMS}
        sub_results = await asyncio.gather(
            *(read_until(ws, {r: last[r] for r in rooms_of(i)}, 15) for i, ws in enumerate(subs)))
        # A late joiner waits for the last event of a room only where something was published
        # after its confirmation; the rest may or may not have reached it.
        late_want = [{r: last[r] for r in ROOMS
                      if any(room == r and t > confirmed[j][r] for room, _, _, t, _ in published)}
                     for j in range(N_LATE)]
        late_results = await asyncio.gather(
            *(read_until(ws, late_want[j], 15, ROOMS) for j, ws in enumerate(late)))
        for j, pre in late_early.items():
            for m in reversed(pre):
                late_results[j][m["room"]].insert(0, (m["seq"], m["data"]))
        for ws in subs + pubs + late:
            await ws.close()
        return published, expected_count, sub_results, late_results, confirmed

    published, expected_count, sub_results, late_results, confirmed = run(go(), timeout=80)

    by_room = {r: {} for r in ROOMS}
    for room, seq, payload, _, _ in published:
        assert seq not in by_room[room], f"seq {seq} of {room} assigned twice"
        by_room[room][seq] = payload
    per_room = N_PUBLISHERS * PER_PUBLISHER // 3
    for r in ROOMS:
        assert sorted(by_room[r]) == list(range(1, per_room + 1)), f"{r}: seqs not 1..{per_room}"
    for room, _, _, _, nsubs in published:
        # The late joiners may or may not be counted yet; the 40 early ones always are.
        assert expected_count[room] <= nsubs <= expected_count[room] + N_LATE, (room, nsubs)

    for i, got in enumerate(sub_results):
        for r in rooms_of(i):
            seqs = [s for s, _ in got[r]]
            assert seqs == list(range(1, per_room + 1)), \
                f"subscriber {i} room {r}: got {len(seqs)} events, seqs {seqs[:60]}"
            assert all(d == by_room[r][s] for s, d in got[r]), f"subscriber {i}: wrong payloads"

    mid_stream = 0
    for j, got in enumerate(late_results):
        for r in ROOMS:
            seqs = [s for s, _ in got[r]]
            must = [s for room, s, _, t_sent, _ in published
                    if room == r and t_sent > confirmed[j][r]]
            if seqs:
                assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), \
                    f"late joiner {j} room {r}: gap, duplicate or disorder in {seqs}"
                assert all(d == by_room[r][s] for s, d in got[r])
            mid_stream += bool(must)
            missed = sorted(set(must) - set(seqs))
            assert not missed, f"late joiner {j} room {r} missed seqs {missed} published after " \
                               "its subscription was confirmed"
    assert mid_stream, "no late joiner subscribed while publishing was still going on"
