"""Every value the feed keeps is checked before the database sees it (issue 11, item 7).

A message that can never be stored (an id longer than its column, a NUL byte, which
PostgreSQL refuses in text, bytes that are not valid in the declared character set) must be
refused at once with a reason naming the field, not fail inside the transaction and be
answered "temporary error, resend later" for ever, blocking a sender that resends in order.
The checks use the columns' own sizes, so a schema change cannot leave them behind. Times are
checked by the protocol core (years 1900-2999, :mod:`openvisit.hl7v2.timing`).
"""

from __future__ import annotations

from sqlalchemy import String

from openvisit.hl7v2 import DataTypeError, ErrorLocation, MshHeader, SiuMessage
from openvisit.models import Appointment, InboundMessage

#: What decoding puts where bytes do not match the character set (see er7.decode).
REPLACEMENT = "\ufffd"


class UnstorableHeader(DataTypeError):
    """MSH-10 or MSH-3/MSH-4 cannot be recorded: the message is rejected as a whole (AR)."""

    rejects = True


def _limit(column: object) -> int:
    kind = getattr(column, "type", None)
    return kind.length if isinstance(kind, String) and kind.length else 255


# (SiuMessage attribute, key in SiuMessage.sources, column, what it is for people)
_KEPT = (
    ("filler_appointment_id", "filler_appointment_id", Appointment.ehr_appointment_id,
     "filler appointment id"),
    ("placer_appointment_id", "placer_appointment_id", Appointment.placer_appointment_id,
     "placer appointment id"),
    ("visit_number", "visit_number", Appointment.encounter_id, "visit number"),
    ("provider_id", "provider_id", Appointment.provider_ehr_id, "personnel id"),
    ("department_point_of_care", "department", Appointment.department, "department"),
    ("department_facility", "department", Appointment.department, "facility"),
)


def check_siu(message: SiuMessage) -> None:
    """Raise :class:`DataTypeError` (0357: 102, answered AE) naming the field of the first
    value that cannot be stored; return ``None`` when all of them can."""
    charset = message.header.charset
    for attribute, source, column, what in _KEPT:
        value = getattr(message, attribute)
        if value is not None:
            where = message.sources.get(source) or ErrorLocation(source.upper()[:3])
            _check(value, where=where, what=what, limit=_limit(column), charset=charset)
    pid = message.sources.get("patient_ref")
    for identifier in message.patient_identifiers[:1]:
        for part in (identifier.id, identifier.assigning_authority or ""):
            _check(part, where=pid or ErrorLocation("PID", field=3), what="patient identifier",
                   limit=None, charset=charset)
    if message.email is not None:
        _check(message.email, where=message.sources.get("email") or ErrorLocation("PID"),
               what="e-mail address, PID-13/14/40", limit=None, charset=charset)


def check_header(header: MshHeader) -> None:
    """Raise :class:`UnstorableHeader` (answered AR) when MSH-10, MSH-3 or MSH-4, which
    identify the message for duplicate detection, cannot be recorded."""
    limit = _limit(InboundMessage.control_id)
    _check(header.control_id, where=ErrorLocation("MSH", field=10),
           what="message control id", limit=limit, charset=header.charset, error=UnstorableHeader)
    for number, hd in ((3, header.sending_application), (4, header.sending_facility)):
        for part in hd:
            _check(part, where=ErrorLocation("MSH", field=number), what="sender",
                   limit=None, charset=header.charset, error=UnstorableHeader)


def _check(
    value: str,
    *,
    where: ErrorLocation,
    what: str,
    limit: int | None,
    charset: str | None,
    error: type[DataTypeError] = DataTypeError,
) -> None:
    if "\x00" in value:
        raise error(
            f"{where} ({what}) holds a NUL byte (0x00), which no HL7 field may carry; "
            "remove it in the sending system",
            location=where,
        )
    if REPLACEMENT in value:
        declared = f"declares {charset}" if charset else "declares none, so UTF-8 is expected"
        raise error(
            f"{where} ({what}) holds bytes that are not valid in the character set of the "
            f"message (MSH-18 {declared}); send it in the declared character set",
            location=where,
        )
    if limit is not None and len(value) > limit:
        raise error(
            f"{where} ({what}) is {len(value)} characters long; OpenVisit keeps at most "
            f"{limit}, so shorten it in the sending system",
            location=where,
        )
