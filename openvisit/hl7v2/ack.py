"""Build HL7 v2 acknowledgements (ACK) and decide which kind the sender wants.

HL7 v2.5.1 Ch. 2 §2.9.2 (original mode: AA/AE/AR), §2.9.3 (enhanced mode: commit acks
CA/CE/CR governed by MSH-15, application acks by MSH-16, table 0155), §2.15.8 (MSA) and
§2.15.5 (ERR: ERR-1 up to v2.4, ERR-2/3/4/8 from v2.5). ACKs are written with the standard
delimiters ``|^~\\&`` and CR segment ends; every echoed value is escaped.

MSA-3 is an ST of 80 characters, so a longer text is cut between words (ending ``...``);
the whole text always goes in ERR, where each version has room for it: ERR-8 (user message)
from v2.5, and before that the alternate text (CE.5) of ERR-1's error code (the place HAPI
and most engines read it from).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from openvisit.hl7v2 import er7
from openvisit.hl7v2.errors import Hl7Error, Hl7ParseError
from openvisit.hl7v2.msh import HierarchicDesignator, MshHeader, parse_msh

AckCode = Literal["AA", "AE", "AR", "CA", "CE", "CR"]
AckCondition = Literal["AL", "NE", "ER", "SU"]
_CONDITIONS: dict[str, AckCondition] = {"AL": "AL", "NE": "NE", "ER": "ER", "SU": "SU"}
# MSA-3 is an ST of 80 characters in v2.3-v2.6; ERR-8 a TX of 250 (ERR-7, diagnostic
# information, a TX of 2048, takes the whole text when even that is too short).
_MSA_TEXT_MAX = 80
_ERR_TEXT_MAX = 250
_ELLIPSIS = "..."


@dataclass(frozen=True, slots=True)
class AckMode:
    """How the sender of a message wants it acknowledged.

    Original mode (MSH-15 and MSH-16 both empty): always answer with AA/AE/AR. Enhanced mode
    (either valued): answer on the connection with a commit ack CA/CE/CR when ``accept`` asks
    for one; ``application`` says when a later application ack is wanted.
    """

    enhanced: bool
    accept: AckCondition
    application: AckCondition

    def should_respond(self, error: Hl7Error | None) -> bool:
        """Return whether to write an ACK back for a message with this outcome."""
        if not self.enhanced:
            return True
        return _wanted(self.accept, success=error is None)

    def wants_application_ack(self, error: Hl7Error | None) -> bool:
        """Return whether the sender wants an application ack for this outcome."""
        return _wanted(self.application, success=error is None)

    def response_code(self, error: Hl7Error | None) -> AckCode:
        """Return MSA-1 for the ack written back: AA/AE/AR, or CA/CE/CR in enhanced mode.

        Rejections (unsupported type, event, version, processing id) give AR/CR; other errors
        AE/CE.
        """
        if error is None:
            return "CA" if self.enhanced else "AA"
        if error.rejects:
            return "CR" if self.enhanced else "AR"
        return "CE" if self.enhanced else "AE"


def _wanted(condition: AckCondition, *, success: bool) -> bool:
    return (
        condition == "AL" or (condition == "SU" and success) or (condition == "ER" and not success)
    )


def ack_mode(msh: MshHeader) -> AckMode:
    """Return the acknowledgement mode MSH-15/MSH-16 ask for.

    In enhanced mode an empty or unknown MSH-15 reads as AL (a commit ack the sender did not
    need costs less than a sender waiting for one) and an empty or unknown MSH-16 as NE.
    """
    if msh.accept_ack_type is None and msh.application_ack_type is None:
        return AckMode(enhanced=False, accept="NE", application="AL")
    return AckMode(
        enhanced=True,
        accept=_CONDITIONS.get(msh.accept_ack_type or "", "AL"),
        application=_CONDITIONS.get(msh.application_ack_type or "", "NE"),
    )


def build_ack(
    original: MshHeader | bytes | str,
    *,
    code: AckCode,
    control_id: str,
    now: datetime,
    sending_application: str,
    sending_facility: str,
    text: str | None = None,
    error: Hl7Error | None = None,
) -> bytes:
    """Build the ACK for a message whose MSH could be read.

    The ACK's MSH swaps sender and receiver, carries MSH-9 ``ACK^<event>^ACK``, the new
    ``control_id`` as MSH-10 and the original's processing id, version and character set;
    MSA-2 echoes the original MSH-10; MSA-3 is ``text`` (default: the error's message); an ERR
    segment follows when ``error`` is given. Returns the message bytes (no MLLP frame).
    Raises :class:`~openvisit.hl7v2.errors.Hl7ParseError` when ``original`` is raw bytes/text
    without a readable MSH; use :func:`build_fallback_ack` then.
    """
    header = original if isinstance(original, MshHeader) else parse_msh(original)
    return _render(
        receiver=(header.sending_application, header.sending_facility),
        event=header.trigger_event,
        processing_id=header.processing_id or "P",
        version=header.version or "2.5.1",
        charset=header.charset,
        original_control_id=header.control_id,
        code=code,
        control_id=control_id,
        now=now,
        sender=(sending_application, sending_facility),
        text=text,
        error=error,
    )


def build_fallback_ack(
    raw: bytes | str,
    *,
    error: Hl7Error,
    control_id: str,
    now: datetime,
    sending_application: str,
    sending_facility: str,
    code: AckCode = "AR",
    version: str = "2.5.1",
) -> bytes:
    """Build a negative ACK for a message that may not even have a readable MSH.

    Uses :func:`build_ack` when the MSH can be read; otherwise answers best effort: empty
    receiver and MSA-2, MSH-9 ``ACK``, processing id P and ``version``. Never raises for any
    ``raw`` input.
    """
    try:
        header = parse_msh(raw)
    except Hl7ParseError:
        empty = HierarchicDesignator()
        return _render(
            receiver=(empty, empty),
            event="",
            processing_id="P",
            version=version,
            charset=None,
            original_control_id="",
            code=code,
            control_id=control_id,
            now=now,
            sender=(sending_application, sending_facility),
            text=None,
            error=error,
        )
    return build_ack(
        header,
        code=code,
        control_id=control_id,
        now=now,
        sending_application=sending_application,
        sending_facility=sending_facility,
        error=error,
    )


def _render(
    *,
    receiver: tuple[HierarchicDesignator, HierarchicDesignator],
    event: str,
    processing_id: str,
    version: str,
    charset: str | None,
    original_control_id: str,
    code: AckCode,
    control_id: str,
    now: datetime,
    sender: tuple[str, str],
    text: str | None,
    error: Hl7Error | None,
) -> bytes:
    e = er7.escape
    codec = er7.codec_for(charset)
    enhanced_reply = code.startswith("C")
    msh = [
        "MSH",
        "^~\\&",
        e(sender[0]),
        e(sender[1]),
        _hd(receiver[0]),
        _hd(receiver[1]),
        _timestamp(now),
        "",
        f"ACK^{e(event)}^ACK" if event else "ACK",
        e(control_id),
        e(processing_id),
        e(version),
        "",
        "",
        # A commit ack is itself never acknowledged (§2.9.3), so say so explicitly.
        "NE" if enhanced_reply else "",
        "NE" if enhanced_reply else "",
        "",
        e(charset) if codec and charset else "",
    ]
    msa_text = text if text is not None else (error.message if error else "")
    segments = [
        "|".join(msh).rstrip("|"),
        "|".join(["MSA", code, e(original_control_id), e(cut_at_word(msa_text, _MSA_TEXT_MAX))])
        .rstrip("|"),
    ]
    if error is not None:
        segments.append(_err(error, version=version))
    return ("\r".join(segments) + "\r").encode(codec or "utf-8", errors="replace")


def cut_at_word(text: str, limit: int) -> str:
    """``text`` if it fits in ``limit`` characters, else cut between words and ended with
    ``...`` (a single word longer than the limit is cut where it must be)."""
    if len(text) <= limit:
        return text
    room = limit - len(_ELLIPSIS)
    head = text[: room + 1]
    cut = max(head.rfind(" "), head.rfind(","), head.rfind(";"))
    kept = (text[:cut] if cut > 0 else text[:room]).rstrip(" ,;:")
    return kept + _ELLIPSIS


def _err(error: Hl7Error, *, version: str) -> str:
    e, loc = er7.escape, error.location
    if not _at_least_2_5(version):
        # ERR-1 (ELD): segment ^ sequence ^ field ^ code&text&HL70357&&full text (CE.5).
        where = [loc.segment, str(loc.sequence), str(loc.field or "")] if loc else ["", "", ""]
        code = f"{error.hl7_code}&{e(error.hl7_text)}&HL70357&&{e(error.message)}"
        return f"ERR|{'^'.join([*map(e, where), code])}"
    erl = ""
    if loc is not None:
        parts = [loc.segment, str(loc.sequence)]
        if loc.field is not None:
            parts += [str(loc.field), str(loc.repetition or 1)]
            if loc.component is not None:
                parts.append(str(loc.component))
                if loc.subcomponent is not None:
                    parts.append(str(loc.subcomponent))
        erl = "^".join(map(e, parts))
    user = cut_at_word(error.message, _ERR_TEXT_MAX)
    fields = [
        "ERR",
        "",
        erl,
        f"{error.hl7_code}^{e(error.hl7_text)}^HL70357",
        "E",
        "",
        "",
        e(error.message) if user != error.message else "",
        e(user),
    ]
    return "|".join(fields)


def _at_least_2_5(version: str) -> bool:
    match = re.match(r"(\d+)\.(\d+)", version)
    return match is None or (int(match[1]), int(match[2])) >= (2, 5)


def _hd(value: HierarchicDesignator) -> str:
    return "^".join(map(er7.escape, value)).rstrip("^")


def _timestamp(now: datetime) -> str:
    stamp = now.strftime("%Y%m%d%H%M%S")
    offset = now.utcoffset()
    if offset is None:
        return stamp
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{stamp}{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
