"""Property tests: hostile input gives Hl7ParseError (never anything else); framing never breaks."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import hl7
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openvisit.hl7v2 import (
    Hl7ParseError,
    MllpDecoder,
    MllpFrameTooLarge,
    SegmentSequenceError,
    build_fallback_ack,
    encode_frame,
    er7,
    parse_siu,
)

from .support import NEW_YORK, epic, pkb

# No example database: it would write .hypothesis/ into the work tree.
PROPERTY = settings(max_examples=400, deadline=None, database=None)
SEEDS = [epic(), epic(b"\n"), pkb()]
HL7ISH = st.text(alphabet='|^~\\&\r\n0123456789+-.ASCHMPIDTQ1L "', max_size=40)


def parse(message: bytes | str) -> None:
    try:
        parse_siu(message, default_tz=NEW_YORK, default_region="US")
    except Hl7ParseError:
        pass


@PROPERTY
@given(st.text(max_size=2000))
def test_it_raises_only_hl7_parse_errors_for_any_text(text: str) -> None:
    parse(text)
    parse("MSH|^~\\&|" + text)


@PROPERTY
@given(st.binary(max_size=2000))
def test_it_raises_only_hl7_parse_errors_for_any_bytes(data: bytes) -> None:
    parse(data)
    parse(b"MSH|^~\\&|" + data)


@PROPERTY
@given(
    seed=st.sampled_from(SEEDS),
    edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 30), HL7ISH), max_size=6),
)
def test_it_raises_only_hl7_parse_errors_for_mutated_samples(
    seed: bytes, edits: list[tuple[float, int, str]]
) -> None:
    # Overwrite random stretches of real messages with delimiter-heavy text, which reaches far
    # deeper into the field parsing than random bytes do.
    text = seed.decode("iso8859-1")
    for where, length, replacement in edits:
        at = int(where * len(text))
        text = text[:at] + replacement + text[at + length :]
    parse(text)


FIELD = st.text(alphabet="^~\\&0123456789+-.ABCPRSTNLEINU@ ", max_size=25)


@PROPERTY
@given(
    names=st.lists(st.sampled_from(["SCH", "PID", "PV1", "AIS", "AIL", "AIP", "TQ1", "ZCH"])),
    fields=st.lists(st.lists(FIELD, max_size=30), max_size=8),
    header=st.lists(FIELD, min_size=10, max_size=18),
)
def test_it_raises_only_hl7_parse_errors_for_random_siu_shapes(
    names: list[str], fields: list[list[str]], header: list[str]
) -> None:
    header[6:10] = ["SIU^S12", "1", "P", "2.5"]  # MSH-9 to MSH-12: get past the header checks
    segments = ["MSH|^~\\&|" + "|".join(header)]
    segments += [f"{name}|" + "|".join(f) for name, f in zip(names, fields, strict=False)]
    parse("\r".join(segments))


@PROPERTY
@given(st.binary(max_size=500))
def test_it_builds_a_readable_fallback_ack_for_anything(data: bytes) -> None:
    ack = build_fallback_ack(
        data,
        error=SegmentSequenceError("unreadable"),
        control_id="N",
        now=datetime(2024, 1, 1, tzinfo=UTC),
        sending_application="OPENVISIT",
        sending_facility="TELEHEALTH",
    )

    assert str(hl7.parse(ack.decode("iso8859-1")).segment("MSA")(1)) == "AR"


@PROPERTY
@given(chunks=st.lists(st.binary(max_size=64), max_size=40), limit=st.integers(1, 64))
def test_it_never_crashes_on_arbitrary_bytes(chunks: list[bytes], limit: int) -> None:
    decoder = MllpDecoder(max_frame_bytes=limit)
    for chunk in [*chunks, b""]:
        try:
            messages = decoder.feed(chunk)
        except MllpFrameTooLarge:
            continue
        for message in messages:
            assert message
            assert len(message) <= limit
            assert b"\x0b" not in message and b"\x1c" not in message


MESSAGE = st.binary(min_size=1, max_size=80).filter(lambda b: b"\x0b" not in b and b"\x1c" not in b)
NOISE = st.binary(max_size=8).filter(lambda b: b"\x0b" not in b)


@settings(PROPERTY, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(
    frames=st.lists(st.tuples(NOISE, MESSAGE), max_size=8),
    cuts=st.lists(st.integers(0, 2000), max_size=10),
)
def test_it_decodes_whatever_was_encoded_however_it_is_chunked(
    frames: list[tuple[bytes, bytes]], cuts: list[int]
) -> None:
    stream = b"".join(noise + encode_frame(message) for noise, message in frames)
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    decoder = MllpDecoder()
    out: list[bytes] = []
    for start, end in itertools.pairwise(bounds):
        out += decoder.feed(stream[start:end])

    assert out == [message for _, message in frames]


@PROPERTY
@given(st.text(max_size=200))
def test_it_unescapes_what_it_escapes(text: str) -> None:
    delimiters = er7.STANDARD_DELIMITERS

    assert er7.unescape(er7.escape(text), delimiters=delimiters) == text
