"""Parse HL7 v2 SIU (schedule information unsolicited) messages into :class:`SiuMessage`.

HL7 v2.5.1 Ch. 10 §10.4 (SIU_S12 structure), §10.6.2 (SCH), §10.6.4 (AIS), §10.6.6 (AIL),
§10.6.7 (AIP); Ch. 3 §3.4.2 (PID), §3.4.3 (PV1); EHR-SPEC §4. Versions 2.3 to 2.8 are accepted.
Patient names and birth dates are never read, so they cannot leak from here.

Liberal in what it accepts (issue 11): segments are found by name within the message's
structure (:mod:`.structure`), timestamps by their meaningful part (:func:`.er7.parse_ts`),
and a field OpenVisit does not use (MSH-7, an unused SCH-11) never refuses a message. Exact in
what it keeps: times by version precedence (:mod:`.timing`), department and provider only
where they really are (:mod:`.resources`), and :attr:`SiuMessage.sources` says which field
each kept value came from, so a value the store cannot keep is refused naming that field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from enum import StrEnum
from typing import NamedTuple

import phonenumbers

from openvisit.errors import ConfigurationError
from openvisit.hl7v2 import contact, er7
from openvisit.hl7v2.errors import (
    ErrorLocation,
    Hl7ParseError,
    RequiredFieldMissing,
    TableValueNotFound,
    UnsupportedEvent,
    UnsupportedMessageType,
    UnsupportedProcessingId,
    UnsupportedVersion,
)
from openvisit.hl7v2.msh import MshHeader, header_of
from openvisit.hl7v2.resources import department, provider
from openvisit.hl7v2.structure import SiuStructure, structure_of
from openvisit.hl7v2.timing import appointment_times

SUPPORTED_VERSIONS = frozenset(
    {"2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2"}
)
PROCESSING_IDS = frozenset({"P", "T", "D"})
ACK_CONDITIONS = frozenset({"AL", "NE", "ER", "SU"})
_SAFE_CODE = re.compile(r"[A-Za-z0-9_.]{1,12}")


class SiuEvent(StrEnum):
    """The SIU trigger events OpenVisit handles (MSH-9.2; EHR-SPEC §4)."""

    S12 = "S12"  # new booking
    S13 = "S13"  # rescheduled
    S14 = "S14"  # modified
    S15 = "S15"  # cancelled
    S16 = "S16"  # discontinued: the rest of the appointment will not happen
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
    #: Where each kept value was read (attribute name → field): names of fields, no values.
    sources: dict[str, ErrorLocation] = field(default_factory=dict, compare=False, repr=False)

    @property
    def department(self) -> str | None:
        """The point of care, else the facility (AIL-3, else PV1-3, AIG-3 or RGS-3)."""
        return self.department_point_of_care or self.department_facility

    @property
    def is_cancellation(self) -> bool:
        """True for S15 (cancelled) and S17 (deleted)."""
        return self.event in (SiuEvent.S15, SiuEvent.S17)

    @property
    def is_discontinuation(self) -> bool:
        """True for S16 (discontinued: what is left of the appointment will not happen)."""
        return self.event is SiuEvent.S16

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
            "start_source": str(self.sources["start"]) if "start" in self.sources else None,
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
    structure = structure_of(tokens)
    sch = structure.sch
    placer, filler = sch.get(1) or None, sch.get(2) or None
    if placer is None and filler is None:
        raise RequiredFieldMissing(
            "SCH-1 (placer appointment id) and SCH-2 (filler appointment id) are both empty; "
            "one is needed to identify the appointment",
            location=sch.at(2),
        )
    timing = appointment_times(structure, version=header.version, default_tz=default_tz)
    start, end = timing.start, timing.end
    pid, pv1 = structure.pid, structure.pv1
    place = department(structure)
    provider_id, provider_at = provider(structure)
    status = CodedValue(sch.get(25) or None, sch.get(25, component=2) or None)
    sources = _sources(structure, timing.start_source, timing.end_source)
    if place.location is not None:
        sources["department"] = place.location
    if provider_at is not None:
        sources["provider_id"] = provider_at
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
        message_datetime=_message_datetime(structure.msh, default_tz=default_tz),
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
        department_point_of_care=place.point_of_care,
        department_facility=place.facility,
        provider_id=provider_id,
        sources=sources,
    )


def _message_datetime(msh: er7.Segment, *, default_tz: tzinfo) -> datetime | None:
    """MSH-7, or ``None`` when it is empty or unreadable: OpenVisit keeps nothing of it, so
    an odd value there must never refuse a message (issue 11, item 1)."""
    raw = msh.get(7)
    if not raw:
        return None
    try:
        return er7.parse_ts(raw, default_tz=default_tz, location=msh.at(7))
    except Hl7ParseError:
        return None


def _sources(
    structure: SiuStructure, start: ErrorLocation, end: ErrorLocation | None
) -> dict[str, ErrorLocation]:
    sch, pid, pv1 = structure.sch, structure.pid, structure.pv1
    found = {
        "placer_appointment_id": sch.at(1),
        "filler_appointment_id": sch.at(2),
        "start": start,
    }
    if end is not None:
        found["end"] = end
    if pid is not None:
        found |= {"patient_ref": pid.at(3), "email": pid.at(13), "language": pid.at(15)}
    if pv1 is not None:
        found["visit_number"] = pv1.at(19)
    return found


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


def _identifiers(pid: er7.Segment | None) -> tuple[PatientIdentifier, ...]:
    if pid is None:
        return ()
    return tuple(
        PatientIdentifier(
            rep.get(1),
            rep.get(4) or rep.get(4, subcomponent=2) or None,
            rep.get(5) or None,
        )
        for rep in pid.repetitions(3)
        if rep.get(1)
    )
