"""LineFramer: NDJSON framing and the streaming size cap."""

from __future__ import annotations

import pytest

from sync_queue.protocol import OVERSIZED, LineFramer


def feed_all(framer: LineFramer, chunks: list[bytes]) -> list[object]:
    out: list[object] = []
    for chunk in chunks:
        out += framer.feed(chunk)
    return out


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([b"a\n"], [b"a"]),
        ([b"a\nb\n"], [b"a", b"b"]),
        ([b"a", b"b\n"], [b"ab"]),
        ([b"a", b"", b"b", b"\nc\n"], [b"ab", b"c"]),
        ([b"a\r\n"], [b"a\r"]),  # the reader treats the \r as JSON whitespace
        ([b"\n\n\na\n\n"], [b"a"]),  # empty lines never reach the reader
        ([b"a"], []),  # no newline yet
        ([b"a\nb"], [b"a"]),
        ([b"\n"], []),
    ],
)
def test_LineFramer_splits_lines(chunks: list[bytes], expected: list[bytes]) -> None:
    assert feed_all(LineFramer(100), chunks) == expected


def test_LineFramer_every_split_point_gives_the_same_lines() -> None:
    data = b'{"a":1}\n\n{"b":2}\r\n[1,2]\n'
    for cut in range(len(data) + 1):
        framer = LineFramer(100)
        assert feed_all(framer, [data[:cut], data[cut:]]) == [b'{"a":1}', b'{"b":2}\r', b"[1,2]"]


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        # exactly at the limit is fine; one more byte is not (the \r counts)
        ([b"12345\n"], [b"12345"]),
        ([b"123456\n"], [OVERSIZED]),
        ([b"1234\r\n"], [b"1234\r"]),
        ([b"12345\r\n"], [OVERSIZED]),
        # the rest of an oversized line is dropped, the next line is served
        ([b"123456789\nok\n"], [OVERSIZED, b"ok"]),
        ([b"123", b"456", b"789", b"\nok\n"], [OVERSIZED, b"ok"]),
        ([b"12345", b"6", b"7\n", b"ok\n"], [OVERSIZED, b"ok"]),
        ([b"ok\n1234567", b"89\nok2\n"], [b"ok", OVERSIZED, b"ok2"]),
        ([b"123", b"45\n"], [b"12345"]),
        ([b"123", b"456\n"], [OVERSIZED]),
    ],
)
def test_LineFramer_size_cap(chunks: list[bytes], expected: list[object]) -> None:
    assert feed_all(LineFramer(5), chunks) == expected


def test_LineFramer_reports_oversized_as_soon_as_the_cap_is_crossed() -> None:
    framer = LineFramer(10)
    assert framer.feed(b"0123456789") == []  # at the cap, could still end here
    assert framer.feed(b"x") == [OVERSIZED]  # crossed: told at once, no newline needed
    assert framer.buffered == 0
    for _ in range(1000):
        assert framer.feed(b"y" * 4096) == []  # streamed away, never held
        assert framer.buffered == 0
    assert framer.feed(b"yyy\nnext\n") == [b"next"]


def test_LineFramer_eof_takes_a_last_line_without_newline() -> None:
    framer = LineFramer(10)
    assert framer.feed(b"a\nlast") == [b"a"]
    assert framer.feed_eof() == [b"last"]
    assert framer.feed_eof() == []


def test_LineFramer_eof_in_the_middle_of_an_oversized_line() -> None:
    framer = LineFramer(3)
    assert framer.feed(b"abcdef") == [OVERSIZED]
    assert framer.feed_eof() == []


def test_LineFramer_refuses_a_zero_limit() -> None:
    with pytest.raises(ValueError):
        LineFramer(0)
