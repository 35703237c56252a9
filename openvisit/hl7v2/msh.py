"""The MSH (message header) segment: who sent what, and how to acknowledge it.

HL7 v2.5.1 Ch. 2 §2.15.9 (MSH). :func:`parse_msh` reads only the header and checks nothing
beyond its syntax, so a listener can still acknowledge a message whose body (or even whose
type or version) it rejects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from openvisit.hl7v2 import er7
from openvisit.hl7v2.errors import ErrorLocation, SegmentSequenceError


class HierarchicDesignator(NamedTuple):
    """An HD (MSH-3 to MSH-6): namespace id, universal id (e.g. an OID) and its type."""

    namespace_id: str = ""
    universal_id: str = ""
    universal_id_type: str = ""

    @property
    def name(self) -> str | None:
        """The namespace id, else the universal id, else ``None``."""
        return self.namespace_id or self.universal_id or None

    @classmethod
    def from_value(cls, value: er7.Value) -> HierarchicDesignator:
        """Read an HD from a field repetition (components 1-3)."""
        return cls(value.get(1), value.get(2), value.get(3))


@dataclass(frozen=True, slots=True, kw_only=True)
class MshHeader:
    """The parts of MSH that routing, idempotency and acknowledgements need.

    Values are unescaped; empty fields are ``""`` (or ``None`` for the ack types and
    charset). Nothing here is PHI, so it is safe to log.
    """

    delimiters: er7.Delimiters
    sending_application: HierarchicDesignator
    sending_facility: HierarchicDesignator
    receiving_application: HierarchicDesignator
    receiving_facility: HierarchicDesignator
    message_datetime_raw: str
    message_type: str
    trigger_event: str
    message_structure: str
    control_id: str
    processing_id: str
    version: str
    accept_ack_type: str | None
    application_ack_type: str | None
    charset: str | None


def parse_msh(message: bytes | str) -> MshHeader:
    """Read the MSH segment of a raw message.

    Returns the header with every field as sent (no check of type, event or version).
    Raises :class:`~openvisit.hl7v2.errors.Hl7ParseError` (0357: 100 or 102) when the message
    does not start with a well-formed MSH or its bytes do not match MSH-18.
    """
    return header_of(er7.parse(er7.decode(message)))


def header_of(message: er7.Er7Message) -> MshHeader:
    """Build the :class:`MshHeader` of an already tokenised message.

    Raises :class:`SegmentSequenceError` when it has no MSH (it cannot, if made by
    :func:`openvisit.hl7v2.er7.parse`).
    """
    msh = message.first("MSH")
    if msh is None:
        raise SegmentSequenceError("the message has no MSH segment", location=ErrorLocation("MSH"))
    message_type, trigger_event = msh.get(9, component=1).upper(), msh.get(9, component=2).upper()
    if not trigger_event and "_" in message_type:
        # A few senders write MSH-9 as "SIU_S12" in one component.
        message_type, _, trigger_event = message_type.partition("_")
    return MshHeader(
        delimiters=message.delimiters,
        sending_application=HierarchicDesignator.from_value(msh.first(3)),
        sending_facility=HierarchicDesignator.from_value(msh.first(4)),
        receiving_application=HierarchicDesignator.from_value(msh.first(5)),
        receiving_facility=HierarchicDesignator.from_value(msh.first(6)),
        message_datetime_raw=msh.get(7),
        message_type=message_type,
        trigger_event=trigger_event,
        message_structure=msh.get(9, component=3).upper(),
        control_id=msh.get(10),
        processing_id=msh.get(11).upper(),
        version=msh.get(12),
        accept_ack_type=msh.get(15).upper() or None,
        application_ack_type=msh.get(16).upper() or None,
        charset=msh.get(18) or None,
    )
