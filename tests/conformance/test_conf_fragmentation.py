"""RFC 6455 §5.4 fragmentation (Autobahn 5.x): a text message in many frames, control frames
between fragments, sequencing errors, and the message size limit over all fragments (§10.4)."""

import pytest

from wsraw import (OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, assert_pong, build_frame,
                   close_payload, frame_header, ping_request)

MAX = 65536
ENGINE_ARGS = ["--rate-limit", "0", "--max-message-bytes", str(MAX)]


def fragments(msg, sizes):
    """Splits msg into frames of the given sizes (the last takes the rest)."""
    out, pos = [], 0
    for n in sizes:
        out.append(msg[pos: pos + n])
        pos += n
    out.append(msg[pos:])
    return out


def send_fragmented(conn, parts, between=None):
    frames = []
    for i, part in enumerate(parts):
        op = OP_TEXT if i == 0 else OP_CONT
        frames.append(build_frame(op, part, fin=(i == len(parts) - 1)))
        if between is not None and i < len(parts) - 1:
            frames.append(between(i))
    return frames


@pytest.mark.parametrize("nparts", [2, 3, 7, 64])
def test_text_in_n_fragments(conn, nparts):
    msg = ping_request(640)
    step = len(msg) // nparts
    parts = [msg[i * step: (i + 1) * step] for i in range(nparts - 1)] + [msg[(nparts - 1) * step:]]
    conn.send(b"".join(send_fragmented(conn, parts)))
    assert_pong(conn.recv_json())


def test_one_byte_fragments(conn):
    msg = ping_request(200)
    conn.send(b"".join(send_fragmented(conn, [msg[i: i + 1] for i in range(len(msg))])))
    assert_pong(conn.recv_json())


def test_one_byte_fragments_sent_separately(conn):
    msg = ping_request(100)
    for f in send_fragmented(conn, [msg[i: i + 1] for i in range(len(msg))]):
        conn.send(f)
    assert_pong(conn.recv_json())


@pytest.mark.parametrize("where", ["first", "middle", "last", "all-around"])
def test_empty_fragments(conn, where):
    msg = ping_request(120)
    a, b = msg[:60], msg[60:]
    parts = {"first": [b"", a, b], "middle": [a, b"", b], "last": [a, b, b""],
             "all-around": [b"", a, b"", b"", b, b""]}[where]
    conn.send(b"".join(send_fragmented(conn, parts)))
    assert_pong(conn.recv_json())


def test_empty_message_in_fragments(conn):
    """An empty message split into empty frames is still one (non-JSON) message."""
    conn.send(build_frame(OP_TEXT, b"", fin=False) + build_frame(OP_CONT, b"", fin=True))
    m = conn.recv_json()
    assert m["type"] == "error" and m["data"]["code"] == "INVALID_MESSAGE", m


def test_ping_between_fragments(conn):
    msg = ping_request(300)
    parts = [msg[:100], msg[100:200], msg[200:]]
    conn.send(b"".join(send_fragmented(conn, parts, lambda i: build_frame(OP_PING, b"mid%d" % i))))
    got = [conn.recv_message() for _ in range(3)]
    assert [d for op, d in got if op == OP_PONG] == [b"mid0", b"mid1"], got
    assert got[-1][0] == OP_TEXT, "the pongs must not wait for the end of the message"


def test_ping_between_fragments_answered_before_message_ends(conn):
    conn.send(build_frame(OP_TEXT, ping_request(100)[:50], fin=False))
    conn.send_frame(OP_PING, b"now")
    op, data = conn.recv_message()
    assert (op, data) == (OP_PONG, b"now")
    conn.send_frame(OP_CONT, ping_request(100)[50:])
    assert_pong(conn.recv_json())


def test_pong_between_fragments(conn):
    msg = ping_request(100)
    conn.send(build_frame(OP_TEXT, msg[:40], fin=False) + build_frame(OP_PONG, b"x")
              + build_frame(OP_CONT, msg[40:]))
    assert_pong(conn.recv_json())


def test_two_fragmented_messages_back_to_back(conn):
    a, b = ping_request(100, rid="a"), ping_request(100, rid="b")
    conn.send(b"".join(send_fragmented(conn, [a[:10], a[10:]])
                       + send_fragmented(conn, [b[:50], b[50:70], b[70:]])))
    assert_pong(conn.recv_json(), rid="a")
    assert_pong(conn.recv_json(), rid="b")


@pytest.mark.parametrize("fin", [True, False])
def test_continuation_without_start(conn, fin):
    conn.send_frame(OP_CONT, b'{"type":"ping"}', fin=fin)
    conn.expect_close(1002)


def test_continuation_after_complete_message(conn):
    conn.send(build_frame(OP_TEXT, ping_request(90)) + build_frame(OP_CONT, b"x"))
    _, before = conn.expect_close(1002)
    assert len(before) == 1


def test_new_text_while_fragmented(conn):
    conn.send_frame(OP_TEXT, b'{"type":', fin=False)
    conn.send_frame(OP_TEXT, b'{"type":"ping"}')
    conn.expect_close(1002)


def test_new_text_fragment_while_fragmented(conn):
    conn.send_frame(OP_TEXT, b'{"type":', fin=False)
    conn.send_frame(OP_TEXT, b'"ping"', fin=False)
    conn.expect_close(1002)


def test_close_between_fragments_discards_message(conn):
    conn.send(build_frame(OP_TEXT, ping_request(100)[:30], fin=False)
              + build_frame(OP_CLOSE, close_payload(1000)))
    _, before = conn.expect_close(1000, echo=False)
    assert before == []


# ---- size limit -------------------------------------------------------------------------------

def test_max_message_in_fragments_accepted(conn):
    msg = ping_request(MAX)
    parts = [msg[i: i + 4096] for i in range(0, len(msg), 4096)]
    conn.send(b"".join(send_fragmented(conn, parts)))
    assert_pong(conn.recv_json())


def test_fragments_summing_over_max(conn):
    """17 fragments of 4 KiB = 68 KiB > 64 KiB: 1009 once the sum crosses the limit (the last
    fragment's header already says so; nothing after it needs to arrive)."""
    for i in range(16):
        conn.send_frame(OP_TEXT if i == 0 else OP_CONT, b"a" * 4096, fin=False)
    hdr, _ = frame_header(OP_CONT, 4096, fin=False)
    conn.send(hdr)  # header only
    conn.expect_close(1009)


def test_many_small_fragments_over_max(conn):
    """Seventy 1000-byte fragments with no FIN: the running total must be enforced."""
    data = b"".join(build_frame(OP_TEXT if i == 0 else OP_CONT, b"b" * 1000, fin=False)
                    for i in range(70))
    try:
        conn.send(data)
    except OSError:
        pass
    conn.expect_close(1009)


def test_single_frame_over_max_detected_from_header(conn):
    """§10.4: refuse an over-size message from its header, before the payload is sent."""
    hdr, _ = frame_header(OP_TEXT, MAX + 1)
    conn.send(hdr)
    conn.expect_close(1009)


def test_huge_declared_length_detected_from_header(conn):
    hdr, _ = frame_header(OP_TEXT, (1 << 62) + 5)
    conn.send(hdr)
    conn.expect_close(1009)


def test_over_max_in_continuation_header(conn):
    conn.send_frame(OP_TEXT, b"{", fin=False)
    hdr, _ = frame_header(OP_CONT, MAX)
    conn.send(hdr)
    conn.expect_close(1009)
