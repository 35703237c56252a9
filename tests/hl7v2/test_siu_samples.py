"""Every public SIU sample (Microsoft FHIR-Converter, v2.8) parses to the values it carries."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from openvisit.hl7v2 import (
    CodedValue,
    PatientIdentifier,
    SiuEvent,
    parse_siu,
)

from .support import NEW_YORK, PEER_SAMPLES, parse_us, peer_sample

PLUS_0215 = timezone(timedelta(hours=2, minutes=15))


def at(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=PLUS_0215)


# file, event, MSH-10, MSH-7, status, point of care, PV1-19
SAMPLES = [
    ("SIU-S12-01.hl7", SiuEvent.S12, "MSG00012", at(2021, 9, 14, 11, 20), "Booked", "5001"),
    ("SIU-S13-01.hl7", SiuEvent.S13, "MSG00013", at(2021, 9, 20, 11, 26), "Booked", None),
    ("SIU-S14-01.hl7", SiuEvent.S14, "MSG00014", at(2021, 9, 20, 11, 26), "Booked", None),
    ("SIU-S15-01.hl7", SiuEvent.S15, "MSG00015", at(2021, 9, 23, 11, 26), "Cancelled", None),
    ("SIU-S17-01.hl7", SiuEvent.S17, "MSG00017", at(2021, 9, 23, 11, 26), "Deleted", None),
    ("SIU-S26-01.hl7", SiuEvent.S26, "MSG00026", at(2021, 9, 24, 10, 0), "Noshow", None),
]


@pytest.mark.parametrize(("name", "event", "control_id", "sent", "status", "visit"), SAMPLES)
def test_it_parses_the_fhir_converter_samples(
    name: str,
    event: SiuEvent,
    control_id: str,
    sent: datetime,
    status: str,
    visit: str | None,
) -> None:
    msg = parse_us(peer_sample(name))

    assert msg.event is event
    assert msg.control_id == control_id
    assert msg.version == "2.8"
    assert msg.processing_id == "P"
    assert (msg.sending_application, msg.sending_facility) == ("SCHApp", "GHHSFacility")
    assert (msg.receiving_application, msg.receiving_facility) == ("EHRApp", "GHHRFacility")
    assert (msg.accept_ack_type, msg.application_ack_type) == (None, None)
    assert msg.message_datetime == sent
    assert msg.placer_appointment_id == "12345"
    assert msg.filler_appointment_id == "36996"
    # AIS-4 wins; SCH-11 names another slot (2020-10-01), so the end comes from TQ1-8.
    assert msg.start == at(2021, 9, 24, 9, 30)
    assert msg.start.utcoffset() == timedelta(hours=2, minutes=15)
    assert msg.end == at(2021, 9, 24, 10, 20)
    assert msg.duration_minutes == 50
    assert msg.filler_status == CodedValue(status, None)
    assert msg.patient_identifiers == (
        PatientIdentifier("PATID1234", "test1", "MR"),
        PatientIdentifier("123456789", "USSSA", "SS"),
    )
    assert msg.language == "ar"  # PID-15 "ara^^HL70296^eng^English-us"
    assert msg.visit_number == visit
    assert (msg.department_point_of_care, msg.department_facility) == ("055", "GH Clinic")
    assert msg.department == "055"
    assert msg.provider_id == "1210"
    assert msg.is_cancellation is (event in (SiuEvent.S15, SiuEvent.S17))
    assert msg.is_no_show is (event is SiuEvent.S26)


@pytest.mark.parametrize("name", [s[0] for s in SAMPLES] + ["SIU-S12_1.hl7"])
def test_it_finds_no_sms_number_or_email_in_the_fhir_converter_samples(name: str) -> None:
    # PID-13 holds CP numbers "78788788" (XTN-7 "1111", XTN-12 "2222") and PID-14 "7777":
    # none is a valid US number. PID-40 "89898989^WPN^Internet" has no address in XTN-4.
    msg = parse_us(peer_sample(name))

    assert msg.sms_number is None
    assert msg.email is None


def test_it_reads_the_cp_number_of_a_sample_in_a_region_where_it_is_valid() -> None:
    # The same CP repetition read with Denmark as the default region: XTN-7 "1111" is not a
    # number there either, so XTN-1 is used.
    msg = parse_siu(peer_sample("SIU-S12-01.hl7"), default_tz=NEW_YORK, default_region="DK")

    assert msg.sms_number == "+4578788788"


def test_it_takes_tq1_over_the_deprecated_sch_11_when_no_resource_has_a_start() -> None:
    # SIU-S12_1 (v2.8) has three resource groups whose AIS-4 are all empty. SCH-11 names
    # 2020-10-01 to 10-09 but is withdrawn from v2.7: TQ1-7/8 (10-04 to 10-08) carry the
    # appointment's timing (issue 11, item 3).
    msg = parse_us(peer_sample("SIU-S12_1.hl7"))

    assert msg.control_id == "MSG00001"
    assert msg.sending_application == "ADTApp"
    assert msg.message_datetime == at(1989, 8, 18, 11, 26)
    assert msg.start == at(2020, 10, 4, 11, 26)
    assert msg.end == at(2020, 10, 8, 11, 26)
    assert (str(msg.sources["start"]), str(msg.sources["end"])) == ("TQ1-7", "TQ1-8")
    assert msg.duration_minutes == 4 * 24 * 60
    assert msg.visit_number is None
    assert (msg.department_point_of_care, msg.department_facility) == ("4E", "CommunityHospital")
    assert msg.provider_id == "400"


def test_it_reads_the_s16_sample_as_a_discontinuation() -> None:
    msg = parse_us(peer_sample("SIU-S16-01.hl7"))

    assert msg.event is SiuEvent.S16
    assert msg.is_discontinuation and not msg.is_cancellation
    assert msg.filler_status == CodedValue("Dc", None)
    assert msg.start == at(2021, 9, 24, 9, 30)


def test_it_covers_every_public_sample() -> None:
    if PEER_SAMPLES is None:
        pytest.skip("peers/hl7 samples not found")
    covered = {s[0] for s in SAMPLES} | {"SIU-S12_1.hl7", "SIU-S16-01.hl7"}

    assert {p.name for p in PEER_SAMPLES.glob("*.hl7")} == covered
