"""Parse HL7 v2 SIU (schedule information unsolicited) messages into :class:`SiuMessage`.

HL7 v2.5.1 Ch. 10 §10.4 (SIU_S12 structure), §10.6.2 (SCH), §10.6.4 (AIS), §10.6.6 (AIL),
§10.6.7 (AIP); Ch. 3 §3.4.2 (PID), §3.4.3 (PV1); EHR-SPEC §4. Versions 2.3 to 2.8 are accepted.
Patient names and birth dates are never read, so they cannot leak from here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from enum import StrEnum
from typing import NamedTuple

import phonenumbers

from openvisit.errors import ConfigurationError
from openvisit.hl7v2 import contact, er7
from openvisit.hl7v2.errors import (
    DataTypeError,
    ErrorLocation,
    RequiredFieldMissing,
    SegmentSequenceError,
    TableValueNotFound,
    UnsupportedEvent,
    UnsupportedMessageType,
    UnsupportedProcessingId,
    UnsupportedVersion,
)
from openvisit.hl7v2.msh import MshHeader, header_of

SUPPORTED_VERSIONS = frozenset(
    {"2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2"}
)
PROCESSING_IDS = frozenset({"P", "T", "D"})
ACK_CONDITIONS = frozenset({"AL", "NE", "ER", "SU"})
# Segments allowed between MSH and SCH (v2.5+ SFT, v2.7+ UAC, and site Z-segments).
_BEFORE_SCH = frozenset({"SFT", "UAC"})
_UNITS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), timedelta(seconds=1)),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), timedelta(minutes=1)),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), timedelta(hours=1)),
    **dict.fromkeys(("d", "day", "days"), timedelta(days=1)),
}
_SAFE_CODE = re.compile(r"[A-Za-z0-9_.]{1,12}")
_LONGEST = timedelta(days=366)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


class SiuEvent(StrEnum):
    """The SIU trigger events OpenVisit handles (MSH-9.2; EHR-SPEC §4)."""

    S12 = "S12"  # new booking
    S13 = "S13"  # rescheduled
    S14 = "S14"  # modified
    S15 = "S15"  # cancelled
    S17 = "S17"  # deleted
    S26 = "S26"  # no-show


class PatientIdentifier(NamedTuple):
    """One PID-3 repetition (CX): the id, its assigning authority (CX-4) and type (CX-5)."""

    id: str
    assigning_authority: str | None
    type_code: str | None


class CodedValue(NamedTuple):
    """A CE/CWE reduced to its identifier and text (components 1 and 2)."""

    identifier: str | None
    text: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SiuMessage:
    """One SIU message, reduced to what a video visit needs; no names or birth dates.

    Contact details and patient identifiers are PHI: they are left out of ``repr`` and
    :meth:`to_log_dict`. ``end`` and ``duration_minutes`` are ``None`` when the message gives
    no end time and no duration.
    """

    header: MshHeader = field(repr=False)
    event: SiuEvent
    control_id: str
    version: str
    sending_application: str | None
    sending_facility: str | None
    receiving_application: str | None
    receiving_facility: str | None
    processing_id: str
    accept_ack_type: str | None
    application_ack_type: str | None
    message_datetime: datetime | None
    placer_appointment_id: str | None
    filler_appointment_id: str | None
    start: datetime
    end: datetime | None
    duration_minutes: int | None
    filler_status: CodedValue | None
    patient_identifiers: tuple[PatientIdentifier, ...] = field(repr=False)
    sms_number: str | None = field(repr=False)
    email: str | None = field(repr=False)
    language: str | None
    visit_number: str | None = field(repr=False)
    department_point_of_care: str | None
    department_facility: str | None
    provider_id: str | None

    @property
    def department(self) -> str | None:
        """AIL-3 point of care, else AIL-3 facility."""
        return self.department_point_of_care or self.department_facility

    @property
    def is_cancellation(self) -> bool:
        """True for S15 (cancelled) and S17 (deleted)."""
        return self.event in (SiuEvent.S15, SiuEvent.S17)

    @property
    def is_no_show(self) -> bool:
        """True for S26 (patient did not arrive)."""
        return self.event is SiuEvent.S26

    def to_log_dict(self) -> dict[str, str | bool | None]:
        """Return the ids and event names that may be logged: no PHI, no patient ids."""
        return {
            "event": str(self.event),
            "control_id": self.control_id,
            "version": self.version,
            "processing_id": self.processing_id,
            "sending_application": self.sending_application,
            "sending_facility": self.sending_facility,
            "placer_appointment_id": self.placer_appointment_id,
            "filler_appointment_id": self.filler_appointment_id,
            "filler_status": self.filler_status.identifier if self.filler_status else None,
            "department": self.department,
            "provider_id": self.provider_id,
            "has_sms_number": self.sms_number is not None,
            "has_email": self.email is not None,
        }


def parse_siu(message: bytes | str, *, default_tz: tzinfo, default_region: str) -> SiuMessage:
    """Parse one SIU message (v2.3-v2.8; segments ended by CR, LF or CRLF).

    ``default_tz`` reads times sent without a UTC offset; ``default_region`` (ISO 3166
    alpha-2) reads phone numbers sent without a country code.

    Returns the :class:`SiuMessage`. Raises an :class:`~openvisit.hl7v2.errors.Hl7ParseError`
    subclass naming the segment/field for anything malformed or unsupported (0357 codes
    100-103, 200-203), and :class:`~openvisit.errors.ConfigurationError` for an unknown
    ``default_region``.
    """
    if default_region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigurationError(f"unknown default phone region {default_region!r}")
    tokens = er7.parse(er7.decode(message))
    header = header_of(tokens)
    event = _check_header(header)
    msh = tokens.segments[0]
    sch = _check_structure(tokens)
    raw_msh_ts = msh.get(7)
    message_dt = (
        er7.parse_ts(raw_msh_ts, default_tz=default_tz, location=msh.at(7)) if raw_msh_ts else None
    )
    placer, filler = sch.get(1) or None, sch.get(2) or None
    if placer is None and filler is None:
        raise RequiredFieldMissing(
            "SCH-1 (placer appointment id) and SCH-2 (filler appointment id) are both empty; "
            "one is needed to identify the appointment",
            location=sch.at(2),
        )
    start, end = _times(tokens, sch, default_tz)
    pid = tokens.first("PID")
    ail = next((s for s in tokens.all("AIL") if s.get(3)), None)
    aip = next((s for s in tokens.all("AIP") if s.get(3)), None)
    pv1 = tokens.first("PV1")
    status = CodedValue(sch.get(25, 1) or None, sch.get(25, 2) or None)
    return SiuMessage(
        header=header,
        event=event,
        control_id=header.control_id,
        version=header.version,
        sending_application=header.sending_application.name,
        sending_facility=header.sending_facility.name,
        receiving_application=header.receiving_application.name,
        receiving_facility=header.receiving_facility.name,
        processing_id=header.processing_id,
        accept_ack_type=header.accept_ack_type,
        application_ack_type=header.application_ack_type,
        message_datetime=message_dt,
        placer_appointment_id=placer,
        filler_appointment_id=filler,
        start=start,
        end=end,
        duration_minutes=int((end - start).total_seconds() // 60) if end else None,
        filler_status=status if any(status) else None,
        patient_identifiers=_identifiers(pid),
        sms_number=contact.sms_number(pid, default_region=default_region.upper()),
        email=contact.email(pid),
        language=contact.language(pid),
        visit_number=(pv1.get(19) or None) if pv1 else None,
        department_point_of_care=(ail.get(3, 1) or None) if ail else None,
        department_facility=(ail.get(3, 4) or ail.get(3, 4, 2) or None) if ail else None,
        provider_id=(aip.get(3) or None) if aip else None,
    )


def _shown(value: str) -> str:
    # Codes are echoed to help the sender, but only when they look like codes, so that a
    # message with shifted fields cannot copy PHI into our logs through an error text.
    return repr(value) if _SAFE_CODE.fullmatch(value) else "a value"


def _check_header(header: MshHeader) -> SiuEvent:
    if not header.message_type:
        raise RequiredFieldMissing(
            "MSH-9.1 (message type) is empty", location=ErrorLocation("MSH", field=9, component=1)
        )
    if header.message_type != "SIU":
        raise UnsupportedMessageType(
            f"MSH-9.1 (message type) is {_shown(header.message_type)}; only SIU is accepted",
            location=ErrorLocation("MSH", field=9, component=1),
        )
    try:
        event = SiuEvent(header.trigger_event)
    except ValueError:
        raise UnsupportedEvent(
            f"MSH-9.2 (trigger event) is {_shown(header.trigger_event)}; accepted events are "
            + ", ".join(SiuEvent),
            location=ErrorLocation("MSH", field=9, component=2),
        ) from None
    if not header.control_id:
        raise RequiredFieldMissing(
            "MSH-10 (message control id) is empty", location=ErrorLocation("MSH", field=10)
        )
    if not header.processing_id:
        raise RequiredFieldMissing(
            "MSH-11 (processing id) is empty", location=ErrorLocation("MSH", field=11)
        )
    if header.processing_id not in PROCESSING_IDS:
        raise UnsupportedProcessingId(
            f"MSH-11 (processing id) is {_shown(header.processing_id)}; use P, T or D",
            location=ErrorLocation("MSH", field=11),
        )
    if not header.version:
        raise RequiredFieldMissing(
            "MSH-12 (version id) is empty", location=ErrorLocation("MSH", field=12)
        )
    if header.version not in SUPPORTED_VERSIONS:
        raise UnsupportedVersion(
            f"MSH-12 (version id) is {_shown(header.version)}; versions 2.3 to 2.8 are accepted",
            location=ErrorLocation("MSH", field=12),
        )
    for number, value in ((15, header.accept_ack_type), (16, header.application_ack_type)):
        if value is not None and value not in ACK_CONDITIONS:
            raise TableValueNotFound(
                f"MSH-{number} (acknowledgment type) is {_shown(value)}; "
                "use AL, NE, ER or SU (HL7 table 0155)",
                location=ErrorLocation("MSH", field=number),
            )
    return event


def _check_structure(tokens: er7.Er7Message) -> er7.Segment:
    """Return the one SCH, checking it follows MSH as SIU requires (§10.4)."""
    extra_msh = tokens.all("MSH")[1:]
    if extra_msh:
        raise SegmentSequenceError(
            "the message holds more than one MSH; send one message per MLLP frame",
            location=extra_msh[0].at(),
        )
    schs = tokens.all("SCH")
    if not schs:
        raise SegmentSequenceError(
            "the SIU message has no SCH (schedule activity) segment", location=ErrorLocation("SCH")
        )
    if len(schs) > 1:
        raise SegmentSequenceError(
            "the SIU message holds more than one SCH segment", location=schs[1].at()
        )
    for segment in tokens.segments[1:]:
        if segment.name == "SCH":
            break
        if segment.name not in _BEFORE_SCH and not segment.name.startswith("Z"):
            raise SegmentSequenceError(
                f"{segment.name} comes before SCH; SIU puts SCH right after MSH",
                location=segment.at(),
            )
    return schs[0]


def _times(
    tokens: er7.Er7Message, sch: er7.Segment, default_tz: tzinfo
) -> tuple[datetime, datetime | None]:
    """Return (start, end): start from AIS-4, else SCH-11.4, else TQ1-7 (v2.5+).

    The end comes from the same source as the start where it can: SCH-11.5 or TQ1-8 when their
    start matches ours, else AIS-4 + AIS-7/8, else SCH-9/10. Ends not after the start are
    skipped, so an SCH-11 for another slot cannot give a visit that ends before it begins.
    """

    def ts(segment: er7.Segment, number: int, component: int = 1) -> datetime | None:
        # SCH-11 is a TQ, whose TS components arrive as subcomponents: take the first.
        raw = segment.get(number, component)
        if not raw:
            return None
        location = segment.at(number, component if component > 1 else None)
        return er7.parse_ts(raw, default_tz=default_tz, location=location)

    ais = next((s for s in tokens.all("AIS") if s.get(4)), None)
    tq1 = next((s for s in tokens.all("TQ1") if s.get(7)), None)
    sch_start = ts(sch, 11, 4)
    start = ts(ais, 4) if ais else sch_start or (ts(tq1, 7) if tq1 else None)
    if start is None:
        raise RequiredFieldMissing(
            "the appointment has no start time: AIS-4, SCH-11.4 and TQ1-7 are all empty",
            location=ErrorLocation("AIS", field=4),
        )
    # (window start, segment, end field, end component): SCH-11 is TQ, TQ1 is v2.5+.
    windows: list[tuple[datetime | None, er7.Segment, int, int]] = [(sch_start, sch, 11, 5)]
    if tq1 is not None:
        windows.append((ts(tq1, 7), tq1, 8, 1))
    for window_start, segment, number, component in windows:
        if window_start in (None, start):
            end = ts(segment, number, component)
            if end is not None and end > start:
                return start, end
    durations: list[tuple[er7.Segment, int, int]] = [(ais, 7, 8)] if ais else []
    durations.append((sch, 9, 10))
    for segment, amount_field, units_field in durations:
        length = _duration(segment, amount_field, units_field)
        if length is not None and length > timedelta(0):
            try:
                return start, start + length
            except OverflowError:
                raise DataTypeError(
                    f"{segment.name}-{amount_field} (duration) ends the appointment after "
                    "the year 9999",
                    location=segment.at(amount_field),
                ) from None
    return start, None


def _duration(segment: er7.Segment, amount_field: int, units_field: int) -> timedelta | None:
    raw = segment.get(amount_field)
    if not raw:
        return None
    if not _NUMBER.fullmatch(raw) or len(raw) > 12:
        raise DataTypeError(
            f"{segment.name}-{amount_field} (duration) is not a number",
            location=segment.at(amount_field),
        )
    units = (segment.get(units_field, 1) or segment.get(units_field, 2) or "min").lower()
    unit = _UNITS.get(units)
    if unit is None:
        raise TableValueNotFound(
            f"{segment.name}-{units_field} (duration units) is not a unit of time this parser "
            "knows; use s, min, h or d",
            location=segment.at(units_field),
        )
    # Absent units mean minutes: that is what schedulers send, and seconds would be absurd.
    seconds = float(raw) * unit.total_seconds()
    if abs(seconds) > _LONGEST.total_seconds():
        raise DataTypeError(
            f"{segment.name}-{amount_field} (duration) is longer than a year",
            location=segment.at(amount_field),
        )
    return timedelta(seconds=seconds)


def _identifiers(pid: er7.Segment | None) -> tuple[PatientIdentifier, ...]:
    if pid is None:
        return ()
    return tuple(
        PatientIdentifier(
            rep.get(1),
            rep.get(4) or rep.get(4, 2) or None,
            rep.get(5) or None,
        )
        for rep in pid.repetitions(3)
        if rep.get(1)
    )
