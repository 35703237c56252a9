"""ACK messages (HL7 v2.5.1 Ch. 2 §2.9, MSA, ERR), read back with python-hl7."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import TypedDict

import hl7
import pytest

from openvisit.hl7v2 import (
    AckMode,
    DataTypeError,
    ErrorLocation,
    Hl7ApplicationError,
    Hl7ParseError,
    SegmentSequenceError,
    UnsupportedEvent,
    ack_mode,
    build_ack,
    build_fallback_ack,
    parse_msh,
)

from .support import epic, peer_sample, pkb, replace_field

NOW = datetime(2024, 3, 5, 15, 16, 17, tzinfo=UTC)


class Sender(TypedDict):
    sending_application: str
    sending_facility: str


OURS = Sender(sending_application="OPENVISIT", sending_facility="TELEHEALTH")


def read(ack: bytes) -> hl7.Message:
    text = ack.decode()
    assert text.endswith("\r") and "\n" not in text
    return hl7.parse(text)


def field(message: hl7.Message, segment: str, number: int) -> str:
    return str(message.segment(segment)(number))


def test_it_builds_an_aa_that_python_hl7_reads() -> None:
    ack = read(
        build_ack(peer_sample("SIU-S12-01.hl7"), code="AA", control_id="ACK-1", now=NOW, **OURS)
    )

    assert field(ack, "MSH", 3) == "OPENVISIT"
    assert field(ack, "MSH", 4) == "TELEHEALTH"
    # Receiver = original sender, universal ids included.
    assert field(ack, "MSH", 5) == "SCHApp"
    assert field(ack, "MSH", 6) == "GHHSFacility^2.16.840.1.122848.1.30^ISO"
    assert field(ack, "MSH", 7) == "20240305151617+0000"
    assert field(ack, "MSH", 9) == "ACK^S12^ACK"
    assert field(ack, "MSH", 10) == "ACK-1"
    assert field(ack, "MSH", 11) == "P"
    assert field(ack, "MSH", 12) == "2.8"
    assert field(ack, "MSA", 1) == "AA"
    assert field(ack, "MSA", 2) == "MSG00012"
    assert [str(s[0]) for s in ack] == ["MSH", "MSA"]


def test_it_writes_err_2_3_4_for_v25_and_later() -> None:
    error = DataTypeError(
        "SCH-11.4 is not an HL7 date/time",
        location=ErrorLocation("SCH", field=11, component=4),
    )
    ack = read(
        build_ack(
            parse_msh(peer_sample("SIU-S13-01.hl7")),
            code="AE",
            error=error,
            control_id="ACK-2",
            now=NOW,
            **OURS,
        )
    )

    assert field(ack, "MSA", 1) == "AE"
    assert field(ack, "MSA", 2) == "MSG00013"
    assert field(ack, "MSA", 3) == "SCH-11.4 is not an HL7 date/time"
    assert field(ack, "ERR", 1) == ""
    assert field(ack, "ERR", 2) == "SCH^1^11^1^4"
    assert field(ack, "ERR", 3) == "102^Data type error^HL70357"
    assert field(ack, "ERR", 4) == "E"
    assert field(ack, "ERR", 8) == "SCH-11.4 is not an HL7 date/time"


def test_it_writes_err_1_for_v23_and_v24() -> None:
    error = DataTypeError("AIS-4 is not an HL7 date/time", location=ErrorLocation("AIS", field=4))
    ack = read(build_ack(epic(), code="AE", error=error, control_id="ACK-3", now=NOW, **OURS))

    assert field(ack, "MSH", 12) == "2.3"
    assert field(ack, "MSA", 2) == "84726031"
    assert field(ack, "ERR", 1) == (
        "AIS^1^4^102&Data type error&HL70357&&AIS-4 is not an HL7 date/time"
    )
    assert ack.segment("ERR")(1)(1)(4)(1) == "102"


def test_it_writes_an_err_without_a_location() -> None:
    error = Hl7ApplicationError("the appointment store is unavailable", permanent=False)
    v25 = read(
        build_ack(
            peer_sample("SIU-S12-01.hl7"), code="AE", error=error, control_id="A", now=NOW, **OURS
        )
    )
    v23 = read(build_ack(epic(), code="AE", error=error, control_id="A", now=NOW, **OURS))

    assert field(v25, "ERR", 2) == ""
    assert field(v25, "ERR", 3) == "207^Application internal error^HL70357"
    assert field(v23, "ERR", 1) == (
        "^^^207&Application internal error&HL70357&&the appointment store is unavailable"
    )


def test_it_escapes_text_and_echoed_values() -> None:
    original = replace_field(epic(), "MSH", 10, "ID\\F\\7")
    ack = read(
        build_ack(
            original, code="AE", text="bad | ^ ~ \\ & text", control_id="A|B", now=NOW, **OURS
        )
    )

    assert ack.unescape(field(ack, "MSA", 3)) == "bad | ^ ~ \\ & text"
    assert ack.unescape(field(ack, "MSA", 2)) == "ID|7"
    assert ack.unescape(field(ack, "MSH", 10)) == "A|B"


def test_it_writes_local_time_with_its_offset() -> None:
    now = datetime(2024, 3, 5, 9, 30, tzinfo=timezone(-timedelta(hours=5, minutes=30)))
    ack = read(build_ack(epic(), code="AA", control_id="A", now=now, **OURS))

    assert field(ack, "MSH", 7) == "20240305093000-0530"


def test_it_answers_in_the_original_charset() -> None:
    original = replace_field(pkb(), "MSH", 4, "Hôpital Test")
    raw = build_ack(original, code="CA", control_id="A", now=NOW, **OURS)
    ack = hl7.parse(raw.decode("iso8859-1"))

    assert field(ack, "MSH", 6) == "Hôpital Test"
    assert field(ack, "MSH", 18) == "8859/1"


def test_it_marks_commit_acks_as_never_acknowledged() -> None:
    ack = read(build_ack(pkb(), code="CA", control_id="A", now=NOW, **OURS))

    assert (field(ack, "MSH", 15), field(ack, "MSH", 16)) == ("NE", "NE")
    assert field(ack, "MSA", 1) == "CA"


def test_it_cannot_build_an_ack_for_a_message_without_msh() -> None:
    with pytest.raises(Hl7ParseError):
        build_ack(b"garbage", code="AR", control_id="A", now=NOW, **OURS)


@pytest.mark.parametrize("raw", [b"", b"garbage", b"MSH", b"MSHA|B", b"\xff\xfe", b"PID|1"])
def test_it_builds_a_fallback_ack_when_no_msh_can_be_read(raw: bytes) -> None:
    error = SegmentSequenceError("the message does not start with an MSH segment")
    ack = read(build_fallback_ack(raw, error=error, control_id="N-1", now=NOW, **OURS))

    assert field(ack, "MSH", 9) == "ACK"
    assert field(ack, "MSH", 10) == "N-1"
    assert field(ack, "MSH", 11) == "P"
    assert field(ack, "MSH", 12) == "2.5.1"
    assert field(ack, "MSA", 1) == "AR"
    assert field(ack, "MSA", 2) == ""
    assert field(ack, "ERR", 3) == "100^Segment sequence error^HL70357"


def test_it_echoes_the_control_id_in_a_fallback_ack_when_msh_is_readable() -> None:
    error = UnsupportedEvent(
        "MSH-9.2 is 'S16'", location=ErrorLocation("MSH", field=9, component=2)
    )
    ack = read(
        build_fallback_ack(
            peer_sample("SIU-S16-01.hl7"), error=error, control_id="N-2", now=NOW, **OURS
        )
    )

    assert field(ack, "MSA", 2) == "MSG00016"
    assert field(ack, "MSH", 9) == "ACK^S16^ACK"
    assert field(ack, "ERR", 2) == "MSH^1^9^1^2"


def test_it_acknowledges_in_original_mode_when_msh_15_and_16_are_empty() -> None:
    mode = ack_mode(parse_msh(epic()))
    rejected = UnsupportedEvent("MSH-9.2 is 'S16'")
    broken = DataTypeError("AIS-4 is not a date/time")

    assert mode == AckMode(enhanced=False, accept="NE", application="AL")
    assert [mode.response_code(e) for e in (None, broken, rejected)] == ["AA", "AE", "AR"]
    assert all(mode.should_respond(e) for e in (None, broken, rejected))


@pytest.mark.parametrize(
    ("accept", "application", "respond_ok", "respond_error", "app_ok", "app_error"),
    [
        ("AL", "NE", True, True, False, False),
        ("NE", "AL", False, False, True, True),
        ("ER", "SU", False, True, True, False),
        ("SU", "ER", True, False, False, True),
        ("", "AL", True, True, True, True),
        ("AL", "", True, True, False, False),
    ],
)
def test_it_follows_enhanced_mode_conditions(
    accept: str,
    application: str,
    respond_ok: bool,
    respond_error: bool,
    app_ok: bool,
    app_error: bool,
) -> None:
    message = replace_field(replace_field(epic(), "MSH", 15, accept), "MSH", 16, application)
    mode = ack_mode(parse_msh(message))
    broken = DataTypeError("AIS-4 is not a date/time")

    assert mode.enhanced
    assert (mode.should_respond(None), mode.should_respond(broken)) == (respond_ok, respond_error)
    assert (mode.wants_application_ack(None), mode.wants_application_ack(broken)) == (
        app_ok,
        app_error,
    )
    assert [mode.response_code(e) for e in (None, broken, UnsupportedEvent("x"))] == [
        "CA",
        "CE",
        "CR",
    ]


LONG = (
    "AIL-3 (department) is 300 characters long; OpenVisit keeps at most 255, so shorten it "
    "in the sending system"
)
VERSIONS = ["2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8"]


def _err_text(ack: hl7.Message, version: str) -> str:
    """Where each version carries the person-readable text of an error."""
    if version < "2.5":
        # ERR-1 (ELD) component 4 is a CE: the full text is its alternate text (CE.5).
        return str(ack.segment("ERR")(1)(1)(4)(5))
    return field(ack, "ERR", 8)


@pytest.mark.parametrize("version", VERSIONS)
def test_it_cuts_msa_3_at_a_word_and_puts_the_full_text_in_err(version: str) -> None:
    error = DataTypeError(LONG, location=ErrorLocation("AIL", field=3))
    original = replace_field(epic(), "MSH", 12, version)

    ack = read(build_ack(original, code="AE", error=error, control_id="A", now=NOW, **OURS))

    msa_3 = field(ack, "MSA", 3)
    assert len(msa_3) <= 80
    assert msa_3.endswith("...")
    assert LONG.startswith(msa_3[:-3].rstrip())
    assert LONG[len(msa_3[:-3].rstrip())] in " ,;"  # cut between words, not inside one
    assert _err_text(ack, version) == LONG


def test_it_cuts_a_single_long_word_where_it_must() -> None:
    error = DataTypeError("x" * 120, location=ErrorLocation("SCH", field=2))

    ack = read(build_ack(epic(), code="AE", error=error, control_id="A", now=NOW, **OURS))

    assert field(ack, "MSA", 3) == "x" * 77 + "..."


def test_it_keeps_a_short_text_whole_in_msa_3() -> None:
    error = DataTypeError("SCH-2 is empty", location=ErrorLocation("SCH", field=2))

    ack = read(build_ack(epic(), code="AE", error=error, control_id="A", now=NOW, **OURS))

    assert field(ack, "MSA", 3) == "SCH-2 is empty"
    assert _err_text(ack, "2.3") == "SCH-2 is empty"
