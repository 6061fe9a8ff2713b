"""The subscribe response's "seq" (docs/protocol.md, "Resume"): the seq of the last event before
the subscriber's first live one. Its live events are exactly seq+1, seq+2, ... with no gap, also
when the room is homed on another worker and publishes race the subscribe (one worker, three,
and three with cross-worker arrivals shuffled), and in cluster mode; a resume from it after a
disconnect that saw no event gets exactly what was published meanwhile."""

import asyncio
import json

import pytest

from engine_harness import (assert_silent, collect_events, connect, flood_while, publish_k,
                            recv_json, run, subscribe_data)
from test_cluster import node, redis  # noqa: F401  (redis: the fixture)

MODES = [("1", None), ("3", None), ("3", {"RINGCAST_TEST_XMSG_ORDER": "shuffle"})]
MODE_IDS = ["one-worker", "three-workers", "three-workers-shuffled"]


def engine_for(start_engine, threads, env, *extra):
    return start_engine("--threads", threads, "--rate-limit", "0", *extra, env=env)


@pytest.mark.parametrize("threads,env", MODES, ids=MODE_IDS)
def test_response_seq_is_the_last_published(start_engine, threads, env):
    """Quiet room: every new subscriber (spread over the workers: some join the room on their
    worker, some find it joined) is told the last published seq, then gets seq+1 first."""
    e = engine_for(start_engine, threads, env)

    async def go():
        p, _ = await connect(e.url)
        anchor, _ = await connect(e.url)
        d0 = await subscribe_data(anchor, "sq-quiet")
        assert d0["seq"] == 0, d0
        for k in range(1, 6):
            assert (await publish_k(p, "sq-quiet", k))["seq"] == k
        await collect_events(anchor, 5)
        subs = []
        for i in range(9):
            ws, _ = await connect(e.url)
            d = await subscribe_data(ws, "sq-quiet")
            assert d["seq"] == 5 and d["epoch"] == d0["epoch"] and "recovered" not in d, (i, d)
            # Subscribing again (idempotent) says the same.
            assert (await subscribe_data(ws, "sq-quiet"))["seq"] == 5
            subs.append(ws)
        assert (await publish_k(p, "sq-quiet", 6))["seq"] == 6
        for ws in subs:
            got = await collect_events(ws, 1)
            assert got[0]["seq"] == 6, got
            # already in: the last one it got
            assert (await subscribe_data(ws, "sq-quiet"))["seq"] == 6
            await ws.close()
        await anchor.close()
        await p.close()

    run(go())


@pytest.mark.parametrize("threads,env", MODES, ids=MODE_IDS)
def test_first_live_event_follows_response_seq_under_racing_publishes(start_engine, threads, env):
    """Publishers hammer two rooms while clients subscribe (plain, and resuming): each client's
    events are exactly seq+1 .. the last one (live), or since+1 .. the last one (replay then
    live) with the response's seq inside that range."""
    e = engine_for(start_engine, threads, env, "--history-size", "2000")
    rooms = ["sq-race-0", "sq-race-1"]
    per_room = 400

    async def go():
        pubs = [(await connect(e.url))[0] for _ in rooms]
        anchors = [(await connect(e.url))[0] for _ in rooms]
        epochs = {}
        for a, r in zip(anchors, rooms):
            epochs[r] = (await subscribe_data(a, r))["epoch"]

        async def subscriber(i):
            room = rooms[i % 2]
            await asyncio.sleep(0.004 * i)
            ws, _ = await connect(e.url, max_queue=None)
            resume = i % 3 == 2
            data = {"channel": room}
            if resume:
                data.update(since=0, epoch=epochs[room])
            await ws.send(json.dumps({"type": "request", "event": "subscribe", "id": f"s{i}",
                                      "data": data}))
            m = await recv_json(ws, 10)
            assert m["type"] == "response" and m["correlation_id"] == f"s{i}", m
            n = m["data"]["seq"]
            seqs = []
            last = 0 if resume else n  # a resume from 0 replays up to n, then goes live
            while last < per_room:
                ev = await recv_json(ws, 10)
                assert ev["type"] == "event" and ev["room"] == room, ev
                seqs.append(ev["seq"])
                last = ev["seq"]
            if resume:
                assert m["data"]["recovered"] is True, m
                assert seqs == list(range(1, per_room + 1)), (i, n, seqs[:10])
                assert 0 <= n <= per_room
            else:
                assert seqs == list(range(n + 1, per_room + 1)), (i, n, seqs[:10])
            await ws.close()
            return n

        ns = await flood_while([(pubs[i], rooms[i], range(1, per_room + 1)) for i in range(2)],
                               [subscriber(i) for i in range(30)], idle=anchors)
        # The race happened: some subscribers came in mid-stream.
        assert any(0 < n < per_room for n in ns), ns

    run(go(), timeout=90)


@pytest.mark.parametrize("threads,env", MODES, ids=MODE_IDS)
def test_resume_from_response_seq_gets_only_what_was_missed(start_engine, threads, env):
    """A client that saw no event before its connection dropped resumes from the response's seq:
    it gets exactly the events published while it was away, none of the older kept ones."""
    e = engine_for(start_engine, threads, env)

    async def go():
        p, _ = await connect(e.url)
        anchor, _ = await connect(e.url)
        await subscribe_data(anchor, "sq-away")
        for k in range(1, 5):
            await publish_k(p, "sq-away", k)
        for i in range(6):  # spread over the workers
            ws, _ = await connect(e.url)
            d = await subscribe_data(ws, "sq-away")
            await ws.close()
            n, epoch = d["seq"], d["epoch"]
            sent = [(await publish_k(p, "sq-away", 100 + j))["seq"] for j in range(3)]
            assert sent == [n + 1, n + 2, n + 3], (n, sent)
            ws, _ = await connect(e.url)
            d = await subscribe_data(ws, "sq-away", since=n, epoch=epoch)
            assert d["recovered"] is True and d["seq"] == n + 3, d
            got = await collect_events(ws, 3)
            assert [m["seq"] for m in got] == sent
            assert [m["data"]["k"] for m in got] == [100, 101, 102]
            await assert_silent(ws, 0.2)
            await ws.close()
        await anchor.close()
        await p.close()

    run(go())


def test_cluster_response_seq_is_redis_seq(start_engine, redis):  # noqa: F811
    """Cluster mode: the seq is the room's seq in Redis; a subscriber on another node, joining
    while a publisher on the first node keeps going, gets seq+1 first and no gap."""
    a, b = node(start_engine, redis.url), node(start_engine, redis.url)

    async def go():
        pws, _ = await connect(a.url)
        anchor, _ = await connect(a.url)
        await subscribe_data(anchor, "sq-cl")
        for k in range(1, 4):
            await publish_k(pws, "sq-cl", k)
        ws, _ = await connect(b.url)
        d = await subscribe_data(ws, "sq-cl")
        assert d["seq"] == 3, d
        stop = asyncio.Event()
        sent = [3]

        async def publisher():
            while not stop.is_set():
                sent.append((await publish_k(pws, "sq-cl", 0))["seq"])
                await asyncio.sleep(0.002)

        task = asyncio.create_task(publisher())
        late = []
        for _ in range(4):
            await asyncio.sleep(0.05)
            w, _ = await connect(b.url)
            late.append((w, (await subscribe_data(w, "sq-cl"))["seq"]))
        await asyncio.sleep(0.1)
        stop.set()
        await task
        last = sent[-1]
        for w, n in [(ws, 3)] + late:
            seqs = [m["seq"] for m in await collect_events(w, last - n)]
            assert seqs == list(range(n + 1, last + 1)), (n, seqs[:5])
            await w.close()
        await anchor.close()
        await pws.close()

    run(go(), 30)
