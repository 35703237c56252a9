"""MLLP framing fed raw bytes, split at every position (MLLP Release 1)."""

from __future__ import annotations

import itertools

import pytest

from openvisit.errors import ConfigurationError
from openvisit.hl7v2 import MllpDecoder, MllpError, MllpFrameTooLarge, encode_frame

VT, FS, CR = b"\x0b", b"\x1c", b"\r"
FIRST = b"MSH|^~\\&|A|B|C|D|20240101||SIU^S12|1|P|2.3\rSCH|1|2\r"
SECOND = b"MSH|^~\\&|A|B|C|D|20240101||SIU^S15|2|P|2.3\rSCH|1|2\r"
STREAM = b"noise" + VT + FIRST + FS + CR + b"\r\n\x00" + VT + SECOND + FS + CR


def feed_split(data: bytes, *cuts: int, decoder: MllpDecoder | None = None) -> list[bytes]:
    decoder = decoder or MllpDecoder()
    bounds = [0, *cuts, len(data)]
    out: list[bytes] = []
    for start, end in itertools.pairwise(bounds):
        out += decoder.feed(data[start:end])
    return out


def test_it_encodes_a_frame() -> None:
    assert encode_frame(FIRST) == VT + FIRST + FS + CR


@pytest.mark.parametrize("bad", [b"a\x0bb", b"a\x1cb"])
def test_it_refuses_to_encode_framing_bytes(bad: bytes) -> None:
    with pytest.raises(MllpError):
        encode_frame(bad)


def test_it_decodes_a_stream_split_at_every_position() -> None:
    for cut in range(len(STREAM) + 1):
        assert feed_split(STREAM, cut) == [FIRST, SECOND], cut


def test_it_decodes_a_stream_split_at_every_pair_of_positions() -> None:
    frame = encode_frame(FIRST) + encode_frame(SECOND)
    for first in range(len(frame) + 1):
        for second in range(first, len(frame) + 1):
            assert feed_split(frame, first, second) == [FIRST, SECOND], (first, second)


def test_it_decodes_a_stream_fed_byte_by_byte() -> None:
    decoder = MllpDecoder()
    out: list[bytes] = []
    for i in range(len(STREAM)):
        out += decoder.feed(STREAM[i : i + 1])

    assert out == [FIRST, SECOND]


def test_it_returns_a_message_as_soon_as_its_end_block_arrives() -> None:
    decoder = MllpDecoder()

    assert decoder.feed(VT + FIRST) == []
    assert decoder.in_frame
    assert decoder.feed(FS) == [FIRST]
    assert not decoder.in_frame
    assert decoder.feed(CR) == []


def test_it_counts_the_garbage_it_discards() -> None:
    decoder = MllpDecoder()

    assert decoder.feed(STREAM) == [FIRST, SECOND]
    # "noise", CR after the first end block, then CR LF NUL, then CR after the second.
    assert decoder.discarded_bytes == len(b"noise") + 1 + 3 + 1


def test_it_accepts_an_end_block_without_carriage_return() -> None:
    assert feed_split(VT + FIRST + FS + VT + SECOND + FS) == [FIRST, SECOND]


def test_it_drops_a_frame_the_sender_restarted() -> None:
    decoder = MllpDecoder()

    assert decoder.feed(VT + b"MSH|half a mess" + encode_frame(SECOND)) == [SECOND]
    assert decoder.discarded_bytes == len(b"MSH|half a mess") + 1


def test_it_skips_empty_frames() -> None:
    assert feed_split(VT + FS + CR + encode_frame(FIRST) + VT + FS) == [FIRST]


def test_it_reports_an_oversize_frame_and_recovers() -> None:
    decoder = MllpDecoder(max_frame_bytes=len(FIRST))
    big = FIRST + b"NTE|1||more\r"

    assert decoder.feed(encode_frame(FIRST) + encode_frame(big) + encode_frame(SECOND)) == [FIRST]
    with pytest.raises(MllpFrameTooLarge) as caught:
        decoder.feed(b"")
    assert caught.value.limit == len(FIRST)
    assert "limit" in str(caught.value)
    assert decoder.feed(b"") == [SECOND]
    assert decoder.feed(b"") == []


def test_it_reports_an_oversize_frame_whatever_the_split() -> None:
    big = FIRST + b"NTE|1||more\r"
    stream = encode_frame(big) + encode_frame(SECOND)
    for cut in range(len(stream) + 1):
        decoder = MllpDecoder(max_frame_bytes=len(SECOND))
        out: list[bytes] = []
        errors = 0
        for chunk in (stream[:cut], stream[cut:], b""):
            try:
                out += decoder.feed(chunk)
            except MllpFrameTooLarge:
                errors += 1
        out += decoder.feed(b"")
        assert (out, errors) == ([SECOND], 1), cut


def test_it_accepts_a_frame_exactly_at_the_limit() -> None:
    assert feed_split(encode_frame(FIRST), 3, decoder=MllpDecoder(max_frame_bytes=len(FIRST))) == [
        FIRST
    ]


def test_it_keeps_memory_bounded_while_skipping_an_oversize_frame() -> None:
    decoder = MllpDecoder(max_frame_bytes=100)
    with pytest.raises(MllpFrameTooLarge):
        decoder.feed(VT + b"x" * 1000)
    for _ in range(100):
        assert decoder.feed(b"y" * 10_000) == []

    assert decoder.feed(FS + encode_frame(FIRST)) == [FIRST]


def test_it_refuses_a_limit_below_one_byte() -> None:
    with pytest.raises(ConfigurationError):
        MllpDecoder(max_frame_bytes=0)
