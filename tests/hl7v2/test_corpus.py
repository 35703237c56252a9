"""The SIU variation corpus, parsed (issue 11, items 1-4): every family, every variation of
every rule, gives the same times, contacts, department and provider."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openvisit.hl7v2 import SiuMessage, parse_siu

from .corpus import (
    FAMILIES,
    NEWLINES,
    OFFSET_STYLES,
    PRECISIONS,
    SETUP,
    Booking,
    Variation,
    expected,
    message,
    zone,
)
from .strategies import bookings, variations

CORPUS = settings(
    max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


def parse(family: str, raw: bytes) -> SiuMessage:
    return parse_siu(raw, default_tz=zone(family), default_region=SETUP[family][2])


def check(family: str, booking: Booking, variation: Variation) -> None:
    raw = message(family, booking, variation)
    msg = parse(family, raw)
    want = expected(family, booking)

    assert (msg.start, msg.end) == (want.start, want.end), (family, variation)
    assert msg.start.astimezone(UTC) == want.start
    assert msg.sms_number == want.sms
    assert msg.email == want.email
    assert msg.language == want.language
    assert (msg.department, msg.department_facility) == (want.department, want.facility)
    assert msg.provider_id == want.provider
    assert msg.visit_number == want.visit_number
    first = msg.patient_identifiers[0]
    assert f"{first.assigning_authority}|{first.id}" == want.patient_ref
    assert (msg.control_id, msg.filler_appointment_id) == (booking.control_id, booking.filler)


def booking_for(family: str) -> Booking:
    phone = {"uk24": "+447400123456", "v28": "+420601123456"}.get(family, "+12025550142")
    return Booking(phone=phone, facility="Clinique Été" if family == "uk24" else "MAIN CLINIC")


@pytest.mark.parametrize("family", FAMILIES)
def test_it_reads_each_family_as_it_is_written(family: str) -> None:
    check(family, booking_for(family), Variation())


@pytest.mark.parametrize("family", FAMILIES)
def test_it_reads_where_each_family_keeps_the_time(family: str) -> None:
    msg = parse(family, message(family, booking_for(family)))

    assert (str(msg.sources["start"]), str(msg.sources["end"])) == {
        "epic23": ("AIS-4", "SCH-11.5"),
        "uk24": ("SCH-11.4", "SCH-11.5"),
        "v251": ("TQ1-7", "TQ1-8"),
        "v28": ("AIS-4", "TQ1-8"),
    }[family]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("newline", NEWLINES, ids=["CR", "LF", "CRLF"])
@pytest.mark.parametrize("style", OFFSET_STYLES)
def test_it_reads_every_offset_style_and_line_end(family: str, newline: str, style: str) -> None:
    check(family, booking_for(family), Variation(newline=newline, offset_style=style))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("precision", PRECISIONS)
def test_it_reads_every_timestamp_precision(family: str, precision: str) -> None:
    check(family, booking_for(family), Variation(precision=precision, offset_style="none"))


@pytest.mark.parametrize("family", FAMILIES)
def test_it_reads_pid_and_pv1_before_sch_notes_and_z_segments_anywhere(family: str) -> None:
    variation = Variation(pid_first=True, notes=(0, 3, 7, 40), z_segments=(0, 2, 9))

    check(family, booking_for(family), variation)


@pytest.mark.parametrize("family", FAMILIES)
def test_it_reads_repeated_groups_and_missing_optional_segments(family: str) -> None:
    omit = frozenset({"RGS", "ZCH", "NTE", "SFT", "AIG", "PV2", "OBX", "DG1", "PD1"})

    check(family, booking_for(family), Variation(repeat_groups=True, omit=omit))


@pytest.mark.parametrize("family", FAMILIES)
def test_it_ignores_an_unreadable_msh_7_and_reads_escaped_names(family: str) -> None:
    booking = dataclasses.replace(booking_for(family), facility="North & South | Clinic é")

    check(family, booking, Variation(msh7_junk=True, escapes=True))


def test_it_reads_local_times_in_the_endpoint_zone_across_dst() -> None:
    # 09:30 local, no offset: New York is on EST in January and on EDT in July.
    winter = Booking(start=datetime(2030, 1, 15, 14, 30, tzinfo=UTC))
    summer = Booking(start=datetime(2030, 7, 15, 13, 30, tzinfo=UTC))

    for booking in (winter, summer):
        check("epic23", booking, Variation(offset_style="none"))
        local = parse("epic23", message("epic23", booking, Variation(offset_style="none")))
        assert local.start.astimezone(zone("epic23")).hour == 9


def test_it_applies_the_sent_offset_rather_than_the_endpoint_zone() -> None:
    booking = Booking(start=datetime(2030, 3, 12, 13, 30, tzinfo=UTC))
    msg = parse("epic23", message("epic23", booking, Variation(sender_offset=135)))

    assert msg.start == booking.start
    assert msg.start.utcoffset() == timedelta(hours=2, minutes=15)


@pytest.mark.parametrize("family", FAMILIES)
@CORPUS
@given(data=st.data())
def test_it_reads_every_generated_variation_of_every_family(
    family: str, data: st.DataObject
) -> None:
    check(family, data.draw(bookings(family)), data.draw(variations()))
