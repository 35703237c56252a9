"""Errors of the HL7 v2 protocol core, each carrying what an ACK's ERR segment needs.

Every parse failure is an :class:`Hl7ParseError` with an HL7 table 0357 code (ERR-3) and, where
known, the segment/field location (ERR-2, or ERR-1 before v2.5): HL7 v2.5.1 Ch. 2 §2.15.5 (ERR)
and §2.15.8 (MSA). Messages name segments and fields only, never field values, because values
are PHI (phone numbers, e-mail addresses, appointment dates).
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from typing import Any

from openvisit.errors import OpenVisitError

#: HL7 table 0357 (message error condition codes), used as ERR-3 text.
HL7_ERROR_TEXT: dict[int, str] = {
    0: "Message accepted",
    100: "Segment sequence error",
    101: "Required field missing",
    102: "Data type error",
    103: "Table value not found",
    200: "Unsupported message type",
    201: "Unsupported event code",
    202: "Unsupported processing id",
    203: "Unsupported version id",
    204: "Unknown key identifier",
    205: "Duplicate key identifier",
    206: "Application record locked",
    207: "Application internal error",
}


@dataclass(frozen=True, slots=True)
class ErrorLocation:
    """Where an error sits, as HL7's ERL data type counts it (all positions from 1).

    ``sequence`` is the occurrence of the segment in the message (the second AIS is 2).
    """

    segment: str
    _: KW_ONLY
    sequence: int = 1
    field: int | None = None
    repetition: int | None = None
    component: int | None = None
    subcomponent: int | None = None

    def __str__(self) -> str:
        text = self.segment if self.sequence == 1 else f"{self.segment}[{self.sequence}]"
        if self.field is None:
            return text
        text += f"-{self.field}"
        if self.repetition is not None and self.repetition > 1:
            text += f"({self.repetition})"
        if self.component is not None:
            text += f".{self.component}"
            if self.subcomponent is not None:
                text += f".{self.subcomponent}"
        return text


class Hl7Error(OpenVisitError):
    """Base of every HL7 v2 error: an HL7 error code for ERR-3 plus an optional location.

    ``rejects`` says whether the message as such is refused (AR/CR: wrong type, event,
    version or processing id) rather than failing on its content (AE/CE).
    """

    status_code = 422
    code = "hl7_error"
    hl7_code: int = 207
    rejects: bool = False

    def __init__(
        self,
        message: str,
        *,
        location: ErrorLocation | None = None,
        hl7_code: int | None = None,
        **kwargs: Any,
    ) -> None:
        if hl7_code is not None:
            self.hl7_code = hl7_code
        self.location = location
        details: dict[str, Any] = {"hl7_code": self.hl7_code}
        if location is not None:
            details["location"] = str(location)
        details.update(kwargs.pop("details", None) or {})
        super().__init__(message, details=details, **kwargs)

    @property
    def hl7_text(self) -> str:
        """The table 0357 text for :attr:`hl7_code` (ERR-3.2)."""
        return HL7_ERROR_TEXT.get(self.hl7_code, "Application error")


class Hl7ParseError(Hl7Error):
    """The message is malformed or not one this core accepts; the text says where."""

    code = "hl7_parse_error"
    hl7_code = 102


class SegmentSequenceError(Hl7ParseError):
    """A required segment is missing, repeated or out of order (0357: 100)."""

    hl7_code = 100


class RequiredFieldMissing(Hl7ParseError):
    """A field this core needs is empty (0357: 101)."""

    hl7_code = 101


class DataTypeError(Hl7ParseError):
    """A field does not match its HL7 data type, e.g. a bad TS (0357: 102)."""

    hl7_code = 102


class TableValueNotFound(Hl7ParseError):
    """A coded field holds a value outside its table (0357: 103)."""

    hl7_code = 103


class UnsupportedMessageType(Hl7ParseError):
    """MSH-9.1 is not SIU (0357: 200)."""

    code = "hl7_unsupported"
    hl7_code = 200
    rejects = True


class UnsupportedEvent(Hl7ParseError):
    """MSH-9.2 is not one of the SIU events OpenVisit handles (0357: 201)."""

    code = "hl7_unsupported"
    hl7_code = 201
    rejects = True


class UnsupportedProcessingId(Hl7ParseError):
    """MSH-11 is not P, T or D (0357: 202)."""

    code = "hl7_unsupported"
    hl7_code = 202
    rejects = True


class UnsupportedVersion(Hl7ParseError):
    """MSH-12 is outside v2.3-v2.8 (0357: 203)."""

    code = "hl7_unsupported"
    hl7_code = 203
    rejects = True


class Hl7ApplicationError(Hl7Error):
    """A well-formed message the application cannot take (0357: 204-207).

    For the listener: unknown sender or appointment (204), duplicate (205), record locked (206,
    pass ``permanent=False``), internal failure (207, the default).
    """

    code = "hl7_application_error"
    hl7_code = 207


class MllpError(OpenVisitError):
    """The MLLP byte stream or a frame to send is unusable (HL7 MLLP Release 1)."""

    status_code = 400
    code = "mllp_error"


class MllpFrameTooLarge(MllpError):
    """A frame grew past the decoder's limit; its bytes were discarded."""

    code = "mllp_frame_too_large"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"MLLP frame exceeds the {limit}-byte limit and was discarded; ask the sender to "
            "split the message or raise the listener's maximum frame size",
            details={"limit": limit},
        )
        self.limit = limit
