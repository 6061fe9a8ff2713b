"""Issue 9: replies in request order, and cross-worker order that does not depend on the kernel.

A room's home worker is siphash(key, name) % threads with a per-process random key, so no test
can name a remote room in advance: every check below runs over many room names (with 2
workers about half of them are remote for any connection), and checks all of them.
"""

import json
import time

import pytest

from abuseutil import Peer, finish, publish_frame, pump, req_frame, worker_of
from wsraw import OP_TEXT, Conn, build_frame

NAMES = 16


def read_replies(c, n, timeout=5.0, extra_wait=0.25):
    """The next n non-event messages (events are skipped), or fewer if they stop coming, plus
    any surplus reply arriving within extra_wait after the n-th."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        try:
            m = c.recv_json(max(0.001, deadline - time.monotonic()), skip_events=True)
        except TimeoutError:
            break
        out.append(m)
    if len(out) == n:
        try:
            out.append(c.recv_json(extra_wait, skip_events=True))
        except TimeoutError:
            pass
    return out


def describe(m):
    if m.get("type") == "error":
        return ("error", m.get("data", {}).get("code"), m.get("correlation_id"))
    return (m.get("event"), m.get("data", {}).get("status"), m.get("correlation_id"))


@pytest.mark.parametrize("threads", [2, 3, 4])
def test_pipelined_replies_in_request_order(own, threads):
    """One write: subscribe R, ping, publish to another room, an invalid message, subscribe R
    again, unsubscribe R, subscribe R, publish to R. Exactly one reply per request, in request
    order, for 16 room names R (so that R is remote for many of them)."""
    e = own(["--threads", str(threads), "--rate-limit", "0"])
    failures = []
    for k in range(NAMES):
        room, other = f"ord-{threads}-{k}", f"loc-{threads}-{k}"
        c = Conn.open(e.port)
        batch = (req_frame("subscribe", {"channel": room}, f"s1-{k}")
                 + req_frame("ping", rid=f"p-{k}")
                 + req_frame("publish", {"channel": other, "event": "x", "payload": k}, f"pl-{k}")
                 + build_frame(OP_TEXT, b'{"type":"request",')  # not JSON: INVALID_MESSAGE
                 + req_frame("subscribe", {"channel": room}, f"s2-{k}")
                 + req_frame("unsubscribe", {"channel": room}, f"u-{k}")
                 + req_frame("subscribe", {"channel": room}, f"s3-{k}")
                 + req_frame("publish", {"channel": room, "event": "y", "payload": k}, f"pr-{k}"))
        c.send(batch)
        got = [describe(m) for m in read_replies(c, 8, timeout=1.5)]
        want = [("subscribe", "subscribed", f"s1-{k}"), ("pong", None, f"p-{k}"),
                ("publish", "published", f"pl-{k}"), ("error", "INVALID_MESSAGE", None),
                ("subscribe", "subscribed", f"s2-{k}"), ("unsubscribe", "unsubscribed", f"u-{k}"),
                ("subscribe", "subscribed", f"s3-{k}"), ("publish", "published", f"pr-{k}")]
        if got != want:
            failures.append((room, f"worker w{worker_of(c)}", got))
        c.close()
    assert not failures, \
        f"{len(failures)}/{NAMES} pipelines answered out of order or not once per request " \
        f"(want s1, ping, publish, INVALID_MESSAGE, s2, u, s3, publish):\n" + \
        "\n".join(map(str, failures[:6]))
    finish(e, "pipelined replies")


@pytest.mark.parametrize("threads", [2, 4])
def test_subscribe_twice_and_unsubscribe_before_confirmation(own, threads):
    """Subscribing twice before the confirmation answers twice; subscribe then unsubscribe
    before the confirmation answers both, in order (16 room names each)."""
    e = own(["--threads", str(threads), "--rate-limit", "0"])
    twice, subunsub = [], []
    for k in range(NAMES):
        c = Conn.open(e.port)
        c.send(req_frame("subscribe", {"channel": f"tw-{k}"}, "a")
               + req_frame("subscribe", {"channel": f"tw-{k}"}, "b"))
        got = [describe(m) for m in read_replies(c, 2, timeout=1.0)]
        if got != [("subscribe", "subscribed", "a"), ("subscribe", "subscribed", "b")]:
            twice.append((f"tw-{k}", got))
        c.send(req_frame("subscribe", {"channel": f"su-{k}"}, "c")
               + req_frame("unsubscribe", {"channel": f"su-{k}"}, "d"))
        got = [describe(m) for m in read_replies(c, 2, timeout=1.0)]
        if got != [("subscribe", "subscribed", "c"), ("unsubscribe", "unsubscribed", "d")]:
            subunsub.append((f"su-{k}", got))
        c.close()
    assert not twice, f"subscribe twice before the confirmation: {twice[:4]}"
    assert not subunsub, f"subscribe then unsubscribe before the confirmation: {subunsub[:4]}"
    finish(e, "subscribe twice / subscribe+unsubscribe")


def peers_per_worker(port, threads, per_worker, name):
    """Opens connections until every worker holds per_worker of them (SO_REUSEPORT spreads
    them by hash); the surplus is closed. Returns {worker: [Peer, ...]}."""
    got = {w: [] for w in range(threads)}
    extra = []
    for i in range(60 * threads * per_worker):
        if all(len(v) >= per_worker for v in got.values()):
            break
        c = Conn.open(port)
        w = worker_of(c)
        if len(got[w]) < per_worker:
            got[w].append(Peer(c, f"{name}{w}.{len(got[w])}"))
        else:
            extra.append(c)
    for c in extra:
        c.close()
    assert all(len(v) >= per_worker for v in got.values()), \
        f"could not place {per_worker} connections on each of {threads} workers"
    return got


@pytest.mark.parametrize("order", ["kernel", "reverse", "shuffle"])
@pytest.mark.parametrize("threads", [2, 3, 4])
def test_cross_worker_event_order(own, threads, order):
    """Several subscribers and publishers on every worker; publishers write 150 publishes back
    to back over 3 rooms. With RINGCAST_TEST_XMSG_ORDER=reverse/shuffle every worker handles
    each batch of cross-worker messages in that order; the engine must restore it. Every
    subscriber gets every event, seq 1, 2, 3, ... per room (no gap, no duplicate); every
    publisher's acks come in request order and their seqs are exactly the events' seqs."""
    env = {} if order == "kernel" else {"RINGCAST_TEST_XMSG_ORDER": order}
    e = own(["--threads", str(threads), "--rate-limit", "0"], env)
    rooms = [f"x-{threads}-{i}" for i in range(3)]
    subs_w = peers_per_worker(e.port, threads, 3, "sub")
    pubs_w = peers_per_worker(e.port, threads, 2, "pub")
    subs = [p for v in subs_w.values() for p in v]
    pubs = [p for v in pubs_w.values() for p in v]
    for p in subs:
        for r in rooms:
            p.subscribe(r)
    per_pub = 150
    sent = {}  # (publisher name, id) -> room, in order
    for j, p in enumerate(pubs):
        order_ids = []
        for k in range(per_pub):
            room = rooms[(j + k) % len(rooms)]
            rid = j * 100000 + k
            p.queue(publish_frame(room, '{"p":%d,"k":%d}' % (j, k), rid))
            order_ids.append((rid, room))
        sent[p.name] = order_ids
    total = {r: sum(1 for v in sent.values() for _, rr in v if rr == r) for r in rooms}

    def done():
        return all(len(p.msgs) >= per_pub for p in pubs) and \
            all(len(s.events(r)) >= total[r] for s in subs for r in rooms)

    pump(subs + pubs, 30.0, until=done)
    problems = []
    for s in subs:
        for r in rooms:
            seqs = s.events(r)
            if seqs != list(range(1, total[r] + 1)):
                bad = next((i for i in range(1, len(seqs)) if seqs[i] != seqs[i - 1] + 1), None)
                problems.append(f"{s.name} {r}: {len(seqs)}/{total[r]} events, first "
                                f"{seqs[:3]}, first break at {bad}: "
                                f"{seqs[max(0, (bad or 1) - 2):(bad or 1) + 2]}")
    ack_seqs = {r: [] for r in rooms}
    for p in pubs:
        want = sent[p.name]
        got_ids = [m.get("correlation_id") for m in p.msgs]
        if got_ids != [rid for rid, _ in want]:
            first = next((i for i, (a, b) in enumerate(zip(got_ids, want)) if a != b[0]), None)
            problems.append(f"{p.name}: {len(got_ids)} acks for {len(want)} publishes, not in "
                            f"request order: first mismatch at {first}: got "
                            f"{got_ids[max(0, (first or 0) - 1):(first or 0) + 3]}")
        by_id = {}
        for m in p.msgs:
            if m.get("type") != "response":
                problems.append(f"{p.name}: {json.dumps(m)[:200]}")
                continue
            by_id[m.get("correlation_id")] = m["data"]["seq"]
        last = {}
        for rid, room in want:  # one publisher's publishes to a room are sequenced in order
            seq = by_id.get(rid)
            if seq is None:
                problems.append(f"{p.name}: no ack for publish {rid}")
                continue
            ack_seqs[room].append(seq)
            if seq <= last.get(room, 0):
                problems.append(f"{p.name} {room}: publish {rid} got seq {seq} after {last[room]}")
            last[room] = seq
    for r in rooms:
        if sorted(ack_seqs[r]) != list(range(1, total[r] + 1)):
            problems.append(f"{r}: ack seqs are not exactly 1..{total[r]} "
                            f"({len(ack_seqs[r])} acks)")
    for p in subs + pubs:
        p.c.close()
    assert not problems, f"threads={threads} order={order}: {len(problems)} problems:\n" + \
        "\n".join(problems[:12])
    finish(e, f"cross-worker order threads={threads} {order}")
