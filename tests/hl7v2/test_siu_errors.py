"""Malformed or unsupported SIU messages give an Hl7ParseError with the right 0357 code."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from openvisit.errors import ConfigurationError, OpenVisitError
from openvisit.hl7v2 import (
    DataTypeError,
    Hl7ParseError,
    RequiredFieldMissing,
    SegmentSequenceError,
    TableValueNotFound,
    UnsupportedEvent,
    UnsupportedMessageType,
    UnsupportedProcessingId,
    UnsupportedVersion,
    parse_siu,
)

from .support import NEW_YORK, drop_segments, epic, parse_us, replace_field


def field(segment: str, number: int, value: str) -> Callable[[bytes], bytes]:
    return lambda m: replace_field(m, segment, number, value)


def no_start(message: bytes) -> bytes:
    for segment, number in (("AIS", 4), ("AIL", 6), ("AIP", 6), ("SCH", 11)):
        message = replace_field(message, segment, number, "")
    return message


def other_patient(message: bytes) -> bytes:
    lines = message.split(b"\r")
    pid = next(ln for ln in lines if ln.startswith(b"PID"))
    return b"\r".join([*lines, pid.replace(b"E1234567", b"E7654321").replace(b"900000001", b"9")])


def other_visit(message: bytes) -> bytes:
    """A second PV1 naming another encounter (PV1-19) of the same patient (issue 11 item 2:
    "reject only what is really ambiguous")."""
    lines = message.split(b"\r")
    pv1 = next(ln for ln in lines if ln.startswith(b"PV1")).split(b"|")
    pv1 += [b""] * (20 - len(pv1))
    pv1[19] = b"ANOTHER-ENCOUNTER"
    return b"\r".join([*lines, b"|".join(pv1)])


def duplicate(name: str) -> Callable[[bytes], bytes]:
    def change(message: bytes) -> bytes:
        lines = message.split(b"\r")
        segment = next(ln for ln in lines if ln.startswith(name.encode()))
        return b"\r".join([*lines, segment])

    return change


CASES: list[tuple[str, Callable[[bytes], bytes], type[Hl7ParseError], int, str | None]] = [
    ("empty", lambda m: b"", SegmentSequenceError, 100, "MSH"),
    ("no MSH", lambda m: m[m.index(b"\rSCH") + 1 :], SegmentSequenceError, 100, "MSH"),
    ("no SCH", lambda m: drop_segments(m, "SCH"), SegmentSequenceError, 100, "SCH"),
    ("two SCH", duplicate("SCH"), SegmentSequenceError, 100, "SCH[2]"),
    ("two MSH", duplicate("MSH"), SegmentSequenceError, 100, "MSH[2]"),
    ("two patients", other_patient, SegmentSequenceError, 100, "PID[2]"),
    ("two encounters", other_visit, SegmentSequenceError, 100, "PV1[2]-19"),
    ("not a segment", lambda m: m + b"\rhello world", SegmentSequenceError, 100, None),
    ("MSH-1 letter", lambda m: b"MSHX" + m[4:], DataTypeError, 102, "MSH-1"),
    ("MSH-2 empty", lambda m: b"MSH||" + m[9:], DataTypeError, 102, "MSH-2"),
    ("MSH-2 repeats", lambda m: b"MSH|^^\\&" + m[8:], DataTypeError, 102, "MSH-2"),
    ("ADT", field("MSH", 9, "ADT^A04"), UnsupportedMessageType, 200, "MSH-9.1"),
    ("MSH-9 empty", field("MSH", 9, ""), RequiredFieldMissing, 101, "MSH-9.1"),
    ("S18", field("MSH", 9, "SIU^S18^SIU_S12"), UnsupportedEvent, 201, "MSH-9.2"),
    ("no event", field("MSH", 9, "SIU"), UnsupportedEvent, 201, "MSH-9.2"),
    ("MSH-10 empty", field("MSH", 10, ""), RequiredFieldMissing, 101, "MSH-10"),
    ("MSH-11 X", field("MSH", 11, "X"), UnsupportedProcessingId, 202, "MSH-11"),
    ("MSH-11 empty", field("MSH", 11, ""), RequiredFieldMissing, 101, "MSH-11"),
    ("v2.2", field("MSH", 12, "2.2"), UnsupportedVersion, 203, "MSH-12"),
    ("v2.9", field("MSH", 12, "2.9"), UnsupportedVersion, 203, "MSH-12"),
    ("MSH-12 empty", field("MSH", 12, ""), RequiredFieldMissing, 101, "MSH-12"),
    ("MSH-15 XX", field("MSH", 15, "XX"), TableValueNotFound, 103, "MSH-15"),
    ("MSH-16 XX", field("MSH", 16, "always"), TableValueNotFound, 103, "MSH-16"),
    ("no ids", lambda m: field("SCH", 2, "")(m), RequiredFieldMissing, 101, "SCH-2"),
    ("no start", no_start, RequiredFieldMissing, 101, "AIS-4"),
    ("AIS-4 month 13", field("AIS", 4, "20241312093000"), DataTypeError, 102, "AIS-4"),
    ("AIS-4 ISO month 13", field("AIS", 4, "2024-13-12T09:30"), DataTypeError, 102, "AIS-4"),
    ("AIS-4 year 1", field("AIS", 4, "00010101000000+0215"), DataTypeError, 102, "AIS-4"),
    ("AIS-4 offset", field("AIS", 4, "202403120930+0175"), DataTypeError, 102, "AIS-4"),
    ("SCH-11.4 alone", lambda m: field("SCH", 11, "^^30^2024031209300")(no_start(m)),
     DataTypeError, 102, "SCH-11.4"),
    ("SCH-11.5", field("SCH", 11, "^^30^20240312093000^soon"), DataTypeError, 102, "SCH-11.5"),
]


@pytest.mark.parametrize(
    ("change", "error", "hl7_code", "location"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_it_reports_malformed_messages_with_the_hl7_code_and_location(
    change: Callable[[bytes], bytes],
    error: type[Hl7ParseError],
    hl7_code: int,
    location: str | None,
) -> None:
    with pytest.raises(error) as caught:
        parse_us(change(epic()))

    assert caught.value.hl7_code == hl7_code
    assert (str(caught.value.location) if caught.value.location else None) == location
    assert isinstance(caught.value, OpenVisitError)
    assert caught.value.status_code == 422
    assert caught.value.details["hl7_code"] == hl7_code


def test_it_rejects_a_bad_duration_only_when_it_needs_it() -> None:
    open_end = replace_field(epic(), "SCH", 11, "^^^20240312093000")

    assert parse_us(replace_field(epic(), "AIS", 7, "thirty")).duration_minutes == 30
    with pytest.raises(DataTypeError) as caught:
        parse_us(replace_field(open_end, "AIS", 7, "thirty"))
    assert str(caught.value.location) == "AIS-7"


def test_it_rejects_unknown_duration_units() -> None:
    open_end = replace_field(epic(), "SCH", 11, "^^^20240312093000")

    with pytest.raises(TableValueNotFound) as caught:
        parse_us(replace_field(open_end, "AIS", 8, "fortnights"))

    assert caught.value.hl7_code == 103
    assert str(caught.value.location) == "AIS-8"


def test_it_names_fields_but_never_echoes_their_values() -> None:
    with pytest.raises(DataTypeError) as caught:
        parse_us(replace_field(epic(), "AIS", 4, "1985x0612"))

    assert "1985x0612" not in str(caught.value)
    assert "AIS-4" in str(caught.value)


def test_it_echoes_a_code_only_when_it_looks_like_one() -> None:
    with pytest.raises(UnsupportedMessageType) as code:
        parse_us(replace_field(epic(), "MSH", 9, "ADT^A04"))
    with pytest.raises(UnsupportedMessageType) as junk:
        parse_us(replace_field(epic(), "MSH", 9, "TEST PATIENT 202-555-0142"))

    assert "'ADT'" in str(code.value)
    assert "555" not in str(junk.value) and "PATIENT" not in str(junk.value)


def test_it_reads_a_message_whose_unused_bytes_do_not_match_the_declared_charset() -> None:
    # Issue 11, item 1: a note nobody reads must not refuse the booking. The bytes become
    # U+FFFD, and the feed refuses the message only when one is in a value it keeps.
    message = replace_field(epic(), "MSH", 18, "UNICODE UTF-8") + b"\rNTE|1||caf\xe9"

    msg = parse_us(message)

    assert msg.control_id == "84726031" and msg.header.charset == "UNICODE UTF-8"


def test_it_reads_undeclared_latin1_bytes() -> None:
    assert parse_us(epic() + b"\rNTE|1||caf\xe9").control_id == "84726031"


def test_it_refuses_an_unknown_default_region() -> None:
    with pytest.raises(ConfigurationError):
        parse_siu(epic(), default_tz=NEW_YORK, default_region="XX")
