"""Synthetic Epic-style (v2.3) and Patients Know Best-style (v2.4) SIU messages.

Both follow EHR-SPEC §4: Epic sends v2.3 with a ZCH segment and the CSN in SCH-2 and PV1-19;
PKB's SIU^S12 carries PID-13 repetitions with PRN/PRS and a NET e-mail. All data is synthetic.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone

import pytest

from openvisit.hl7v2 import (
    CodedValue,
    PatientIdentifier,
    SiuEvent,
    ack_mode,
    parse_siu,
)

from .support import LONDON, NEW_YORK, epic, parse_us, pkb, replace_field

CSN = "4000123456"


@pytest.mark.parametrize("newline", [b"\r", b"\n", b"\r\n"], ids=["CR", "LF", "CRLF"])
def test_it_parses_an_epic_style_v23_message(newline: bytes) -> None:
    msg = parse_us(epic(newline))

    assert msg.event is SiuEvent.S12
    assert msg.version == "2.3"
    assert msg.control_id == "84726031"
    assert (msg.sending_application, msg.sending_facility) == ("EPIC", "EPICADT")
    assert msg.placer_appointment_id is None
    assert msg.filler_appointment_id == CSN
    assert msg.visit_number == CSN
    # No offset in the message: read in the endpoint's zone, which is on EDT since 10 March.
    assert msg.start == datetime(2024, 3, 12, 9, 30, tzinfo=NEW_YORK)
    assert msg.start.utcoffset() == timedelta(hours=-4)
    assert msg.end == datetime(2024, 3, 12, 10, 0, tzinfo=NEW_YORK)
    assert msg.duration_minutes == 30
    assert msg.message_datetime == datetime(2024, 3, 5, 10, 15, tzinfo=NEW_YORK)
    assert msg.filler_status == CodedValue("Booked", "Booked")
    assert msg.patient_identifiers == (
        PatientIdentifier("E1234567", "EPI", "MR"),
        PatientIdentifier("900000001", "SSA", "SS"),
    )
    # The CP repetition wins over the PRN landline listed before it; XTN-6/7 build it.
    assert msg.sms_number == "+12025550142"
    assert msg.email == "test.patient@example.org"
    assert msg.language == "en"
    assert (msg.department_point_of_care, msg.department_facility) == (
        "10501",
        "OPENVISIT CLINIC",
    )
    assert msg.provider_id == "1001"


def test_it_ignores_the_zch_segment_wherever_epic_puts_it() -> None:
    lines = epic().split(b"\r")
    zch = next(ln for ln in lines if ln.startswith(b"ZCH"))
    without = [ln for ln in lines if ln != zch]
    moved = [without[0], zch, *without[1:-1], zch, without[-1]]

    assert parse_us(b"\r".join(moved)) == parse_us(epic())


def test_it_uses_the_ais_duration_when_sch_11_has_no_end() -> None:
    msg = parse_us(replace_field(epic(), "SCH", 11, "^^30^20240312093000"))

    assert msg.end == datetime(2024, 3, 12, 10, 0, tzinfo=NEW_YORK)


def test_it_uses_sch_9_and_10_when_nothing_else_gives_an_end() -> None:
    message = replace_field(epic(), "SCH", 11, "^^^20240312093000")
    message = replace_field(message, "AIS", 7, "")
    message = replace_field(message, "SCH", 9, "1.5")
    message = replace_field(message, "SCH", 10, "h^hours")

    assert parse_us(message).duration_minutes == 90


def test_it_reads_duration_without_units_as_minutes() -> None:
    message = replace_field(epic(), "SCH", 11, "^^^20240312093000")
    message = replace_field(message, "AIS", 8, "")

    assert parse_us(message).duration_minutes == 30


def test_it_leaves_the_end_open_when_the_message_gives_none() -> None:
    message = replace_field(epic(), "SCH", 11, "^^^20240312093000")
    message = replace_field(message, "AIS", 7, "")
    message = replace_field(message, "SCH", 9, "")

    msg = parse_us(message)

    assert msg.end is None
    assert msg.duration_minutes is None


def test_it_parses_a_pkb_style_v24_message() -> None:
    msg = parse_siu(pkb(), default_tz=LONDON, default_region="GB")
    plus_one = timezone(timedelta(hours=1))

    assert msg.event is SiuEvent.S12
    assert msg.version == "2.4"
    assert msg.control_id == "PKB-000123"
    assert (msg.accept_ack_type, msg.application_ack_type) == ("AL", "NE")
    assert msg.placer_appointment_id == msg.filler_appointment_id == "APT-5551"
    assert msg.start == datetime(2024, 4, 10, 9, 15, tzinfo=plus_one)
    assert msg.end == datetime(2024, 4, 10, 9, 35, tzinfo=plus_one)
    assert msg.duration_minutes == 20
    assert msg.filler_status == CodedValue("BOOKED", "Booked")
    assert msg.patient_identifiers[0] == PatientIdentifier("9990000018", "NHS", "NH")
    assert msg.email == "test.patient@example.org"
    assert msg.language == "en"
    assert msg.visit_number == "V0001"
    # MSH-18 says ISO 8859-1, and the facility name decodes accordingly.
    assert msg.department_facility == "Clinique Été"
    assert msg.department == "VIRTUAL"
    assert msg.provider_id == "C1234567"
    assert ack_mode(msg.header).enhanced


def test_it_finds_no_sms_number_among_ofcom_drama_numbers() -> None:
    # PRN is a London landline (020 7946 0xxx: fixed line, cannot take texts) and PRS the
    # drama mobile range 07700 900xxx, which libphonenumber deems unallocated: no text is tried.
    msg = parse_siu(pkb(), default_tz=LONDON, default_region="GB")

    assert msg.sms_number is None


def test_it_prefers_the_prs_number_to_the_prn_number_listed_first() -> None:
    message = replace_field(
        pkb(),
        "PID",
        13,
        "+1 202-555-0100^PRN^PH~+1 202-555-0199^PRS^PH~^NET^Internet^test.patient@example.org",
    )

    assert parse_siu(message, default_tz=LONDON, default_region="GB").sms_number == ("+12025550199")


def test_it_exposes_no_patient_names_or_birth_dates() -> None:
    msg = parse_us(epic())
    values = [str(getattr(msg, f.name)) for f in dataclasses.fields(msg)]
    names = {f.name for f in dataclasses.fields(msg)}

    assert not any("TEST" in v or "PATIENT" in v or "19800101" in v for v in values)
    assert not any("name" in n or "birth" in n or "dob" in n for n in names)


def test_it_keeps_phi_out_of_repr_and_log_dict() -> None:
    msg = parse_us(epic())
    shown = repr(msg) + repr(msg.to_log_dict())

    for secret in ("5550142", "example.org", "E1234567", "900000001", "visit_number"):
        assert secret not in shown
    assert msg.to_log_dict() == {
        "event": "S12",
        "control_id": "84726031",
        "version": "2.3",
        "processing_id": "P",
        "sending_application": "EPIC",
        "sending_facility": "EPICADT",
        "placer_appointment_id": None,
        "filler_appointment_id": CSN,
        "filler_status": "Booked",
        "department": "10501",
        "provider_id": "1001",
        "start_source": "AIS-4",
        "has_sms_number": True,
        "has_email": True,
    }


def test_it_honours_custom_encoding_characters() -> None:
    table = str.maketrans({"|": "!", "^": "$", "~": "*", "\\": "%", "&": "?"})
    custom = epic().decode().translate(table)
    assert custom.startswith("MSH!$*%?!EPIC")

    mine, standard = parse_us(custom), parse_us(epic())

    assert dataclasses.replace(mine, header=standard.header) == standard
    assert mine.sms_number == "+12025550142"


@pytest.mark.parametrize(
    ("event", "cancellation", "no_show"),
    [
        ("S12", False, False),
        ("S13", False, False),
        ("S14", False, False),
        ("S15", True, False),
        ("S17", True, False),
        ("S26", False, True),
    ],
)
def test_it_flags_cancellations_and_no_shows(event: str, cancellation: bool, no_show: bool) -> None:
    msg = parse_us(replace_field(epic(), "MSH", 9, f"SIU^{event}"))

    assert (msg.is_cancellation, msg.is_no_show) == (cancellation, no_show)


def test_it_accepts_a_v25_message_with_tq1_only() -> None:
    message = replace_field(epic(), "MSH", 12, "2.5.1")
    message = replace_field(message, "SCH", 11, "")
    message = replace_field(message, "AIS", 4, "")
    lines = message.split(b"\r")
    lines.insert(2, b"TQ1|||||||20240312093000-0400|20240312094500-0400")

    msg = parse_us(b"\r".join(lines))

    assert msg.start == datetime(2024, 3, 12, 13, 30, tzinfo=UTC)
    assert msg.duration_minutes == 15


def test_it_falls_back_to_sch_11_in_a_v25_message_with_no_other_timing() -> None:
    """SCH-11 is deprecated from v2.5, but a v2.5+ message with no resource start and no TQ1
    is still read from it (the last resort of issue 11 item 3) rather than refused."""
    message = _without_resource_starts(replace_field(epic(), "MSH", 12, "2.5.1"))

    msg = parse_us(message)
    v23 = parse_us(_without_resource_starts(epic()))

    assert msg.start == v23.start == datetime(2024, 3, 12, 13, 30, tzinfo=UTC)


def test_it_prefers_tq1_to_a_stale_sch_11_from_v25_on() -> None:
    """From v2.5 on, TQ1-7 wins over SCH-11 (which a v2.8 feed may leave stale)."""
    message = _without_resource_starts(replace_field(epic(), "MSH", 12, "2.5.1"))
    lines = message.split(b"\r")
    lines.insert(2, b"TQ1|||||||20240312153000-0400|20240312154500-0400")

    msg = parse_us(b"\r".join(lines))

    assert msg.start == datetime(2024, 3, 12, 19, 30, tzinfo=UTC)


def _without_resource_starts(message: bytes) -> bytes:
    """The Epic sample with no start in AIS-4, AIL-6 or AIP-6 (SCH-11 and TQ1 remain)."""
    message = replace_field(message, "AIS", 4, "")
    message = replace_field(message, "AIL", 6, "")
    return replace_field(message, "AIP", 6, "")


def test_it_takes_the_start_from_ais_then_aig_then_ail_then_aip() -> None:
    """Issue 11 item 3: the resource segments' start wins, in the order AIS, AIG, AIL, AIP;
    each is read only when the ones before it have no start."""
    base = replace_field(epic(), "MSH", 12, "2.5.1")
    base = replace_field(base, "AIS", 4, "")
    base = replace_field(base, "AIL", 6, "20240312110000-0400")
    base = replace_field(base, "AIP", 6, "20240312120000-0400")
    lines = base.split(b"\r")
    at = next(i for i, line in enumerate(lines) if line.startswith(b"AIL|"))
    with_aig = [*lines[:at], b"AIG|1|||DR^Room^L||||20240312100000-0400", *lines[at:]]
    lines.insert(2, b"TQ1|||||||20240312090000-0400|20240312091500-0400")
    with_aig.insert(2, b"TQ1|||||||20240312090000-0400|20240312091500-0400")

    assert parse_us(b"\r".join(with_aig)).start == datetime(2024, 3, 12, 14, 0, tzinfo=UTC)
    assert parse_us(b"\r".join(lines)).start == datetime(2024, 3, 12, 15, 0, tzinfo=UTC)  # AIL
    no_ail = replace_field(b"\r".join(lines), "AIL", 6, "")
    assert parse_us(no_ail).start == datetime(2024, 3, 12, 16, 0, tzinfo=UTC)  # AIP
    only_tq1 = replace_field(no_ail, "AIP", 6, "")
    assert parse_us(only_tq1).start == datetime(2024, 3, 12, 13, 0, tzinfo=UTC)  # TQ1-7
