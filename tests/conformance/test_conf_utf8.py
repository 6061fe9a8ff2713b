"""RFC 6455 §8.1 UTF-8 handling (Autobahn 6.x): valid multi-byte text split anywhere across
fragments is accepted; invalid sequences fail the connection with 1007, as soon as the frame
holding the bad bytes has been read (fail-fast), without waiting for the rest of the message."""

import pytest

from wsraw import OP_CONT, OP_TEXT, build_frame

ENGINE_ARGS = ["--rate-limit", "0"]

ID = "é€😀"  # 2-, 3- and 4-byte sequences; echoed as sent in correlation_id
MSG = ('{"type":"request","event":"ping","id":"%s"}' % ID).encode()
CHAR_STARTS = {n: MSG.index(c.encode()) for n, c in ((2, "é"), (3, "€"), (4, "😀"))}


def check_pong(conn):
    m = conn.recv_json()
    assert m.get("event") == "pong" and m.get("correlation_id") == ID, m


def test_valid_multibyte_single_frame(conn):
    conn.send_text(MSG)
    check_pong(conn)


@pytest.mark.parametrize("width,k", [(w, k) for w in (2, 3, 4) for k in range(0, w + 1)])
def test_split_inside_multibyte_char(conn, width, k):
    """Two fragments split k bytes into a width-byte character (k=0 and k=width are the
    boundaries; the others cut the character)."""
    cut = CHAR_STARTS[width] + k
    conn.send(build_frame(OP_TEXT, MSG[:cut], fin=False) + build_frame(OP_CONT, MSG[cut:]))
    check_pong(conn)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_split_4byte_char_sent_separately(conn, k):
    """The first fragment ends mid-character and is sent alone: the server must wait, not fail."""
    cut = CHAR_STARTS[4] + k
    conn.send_frame(OP_TEXT, MSG[:cut], fin=False)
    conn.expect_silence(0.15)
    conn.send_frame(OP_CONT, MSG[cut:])
    check_pong(conn)


def test_4byte_char_one_byte_per_fragment(conn):
    s = CHAR_STARTS[4]
    parts = [MSG[:s]] + [MSG[i: i + 1] for i in range(s, s + 4)] + [MSG[s + 4:]]
    frames = [build_frame(OP_TEXT if i == 0 else OP_CONT, p, fin=(i == len(parts) - 1))
              for i, p in enumerate(parts)]
    conn.send(b"".join(frames))
    check_pong(conn)


def test_every_split_position(conn):
    """Every cut point of the whole message, on one connection (one request per cut)."""
    for cut in range(1, len(MSG)):
        conn.send(build_frame(OP_TEXT, MSG[:cut], fin=False) + build_frame(OP_CONT, MSG[cut:]))
        check_pong(conn)


def test_boundary_code_points(conn):
    for ch in ("\u0080", "\u07ff", "\u0800", "\ud7ff", "\ue000", "\uffff", "\U00010000",
               "\U0010ffff"):
        m = ('{"type":"request","event":"ping","id":"%s"}' % ch).encode()
        conn.send_text(m)
        r = conn.recv_json()
        assert r.get("correlation_id") == ch, (ch, r)


INVALID = {
    "overlong-2": b"\xc0\xaf",
    "overlong-2-c1": b"\xc1\xbf",
    "overlong-3": b"\xe0\x80\xaf",
    "overlong-4": b"\xf0\x80\x80\xaf",
    "overlong-nul": b"\xc0\x80",
    "surrogate-high": b"\xed\xa0\x80",
    "surrogate-low": b"\xed\xbf\xbf",
    "surrogate-pair": b"\xed\xa0\x80\xed\xb0\x80",
    "above-10ffff": b"\xf4\x90\x80\x80",
    "f5-lead": b"\xf5\x80\x80\x80",
    "5-byte-form": b"\xf8\x88\x80\x80\x80",
    "fe": b"\xfe",
    "ff": b"\xff",
    "lone-continuation": b"\x80",
    "bad-continuation": b"\xe2\x28\xa1",
}
TRUNCATED = {"2-of-2": b"\xc3", "2-of-3": b"\xe2\x82", "3-of-4": b"\xf0\x9f\x98", "1-of-4": b"\xf0"}


def bad_request(seq):
    return b'{"type":"request","event":"ping","id":"' + seq + b'"}'


@pytest.mark.parametrize("seq", list(INVALID.values()), ids=list(INVALID))
def test_invalid_utf8_single_frame(conn, seq):
    conn.send_text(bad_request(seq))
    conn.expect_close(1007)


@pytest.mark.parametrize("seq", list(INVALID.values()), ids=list(INVALID))
def test_invalid_utf8_fail_fast(conn, seq):
    """The bad bytes are in the first fragment; the rest of the message is never sent."""
    conn.send_frame(OP_TEXT, b'{"type":"request","event":"ping","id":"' + seq, fin=False)
    conn.expect_close(1007)


@pytest.mark.parametrize("seq", list(TRUNCATED.values()), ids=list(TRUNCATED))
def test_truncated_at_message_end(conn, seq):
    conn.send_text(b'{"type":"request","event":"ping","id":"x"}' + seq)
    conn.expect_close(1007)


@pytest.mark.parametrize("seq", list(TRUNCATED.values()), ids=list(TRUNCATED))
def test_truncated_at_fragmented_message_end(conn, seq):
    """The message ends (FIN on an empty continuation) with a character still open."""
    conn.send(build_frame(OP_TEXT, b'{"type":"ping"}' + seq, fin=False)
              + build_frame(OP_CONT, b"", fin=True))
    conn.expect_close(1007)


def test_invalid_utf8_in_continuation(conn):
    conn.send_frame(OP_TEXT, b'{"type":"request","event":"ping","id":"ok', fin=False)
    conn.send_frame(OP_CONT, b"\xed\xa0\x80", fin=False)
    conn.expect_close(1007)


def test_invalid_after_valid_messages(conn):
    """Earlier valid messages are answered; the invalid one then fails the connection."""
    conn.send(build_frame(OP_TEXT, MSG) + build_frame(OP_TEXT, bad_request(b"\xff")))
    _, before = conn.expect_close(1007)
    assert len(before) == 1
