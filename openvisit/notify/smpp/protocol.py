"""SMPP 3.4 details OpenVisit needs, free of sockets: addresses, encoding, receipts.

References: SMPP v3.4 §5.2.5 (addr_ton), §5.2.12 (esm_class), §5.2.19 (data_coding),
§5.3.2.12 (user_message_reference), §5.3.2.35 (message_state), Appendix B (the de facto
delivery receipt text "id:… sub:… dlvr:… submit date:… done date:… stat:… err:… text:").
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from openvisit.notify import gsm

TON_INTERNATIONAL, TON_NETWORK, TON_ALPHANUMERIC = 1, 3, 5
NPI_UNKNOWN, NPI_ISDN = 0, 1
CODING_GSM, CODING_UCS2 = 0x00, 0x08
ESM_UDHI = 0x40
ESM_RECEIPT_MASK, ESM_RECEIPT = 0x3C, 0x04
#: registered_delivery: a receipt on final delivery outcome, success or failure.
RECEIPT_ON_FINAL = 0x01
SINGLE_OCTETS = {CODING_GSM: 160, CODING_UCS2: 140}
PART_OCTETS = {CODING_GSM: 153, CODING_UCS2: 134}

#: Receipt ``stat`` → message log status (None: not final, nothing to record).
RECEIPT_STATUS = {
    "DELIVRD": "delivered", "UNDELIV": "undelivered", "EXPIRED": "undelivered",
    "REJECTD": "failed", "DELETED": "failed", "ACCEPTD": "sent", "ENROUTE": "sent",
    "UNKNOWN": None,
}
#: message_state TLV (§5.3.2.35) → message log status.
MESSAGE_STATE = {1: "sent", 2: "delivered", 3: "undelivered", 4: "failed", 5: "undelivered",
                 6: "sent", 8: "failed"}
_RECEIPT = re.compile(r"id:(?P<id>\S+).*?stat:(?P<stat>[A-Z]+)", re.IGNORECASE | re.DOTALL)


def address(value: str) -> tuple[int, int, str]:
    """(ton, npi, addr) for an E.164 number, a short code or an alphanumeric sender id."""
    if value.startswith("+") and value[1:].isdigit():
        return TON_INTERNATIONAL, NPI_ISDN, value[1:]
    if value.isdigit():
        return (TON_NETWORK, NPI_UNKNOWN, value) if len(value) <= 8 else (
            TON_INTERNATIONAL, NPI_ISDN, value)
    return TON_ALPHANUMERIC, NPI_UNKNOWN, value[:11]


def to_e164(addr: str, *, ton: int) -> str:
    """The number an SMSC names in a deliver_sm, as E.164 where it clearly is one."""
    addr = addr.strip()
    if addr.startswith("+"):
        return addr
    if addr.isdigit() and (ton == TON_INTERNATIONAL or len(addr) > 8):
        return "+" + addr
    return addr


def user_message_reference(reference: str) -> int:
    """A 16-bit tag derived from the job key, echoed by SMSCs in receipts (§5.3.2.12)."""
    return int.from_bytes(hashlib.sha256(reference.encode()).digest()[:2], "big")


def encode_parts(text: str, *, reference: int) -> tuple[list[bytes], int, int]:
    """(short_message parts, data_coding, esm_class) for ``text``.

    GSM-7 (unpacked, data_coding 0) when the text fits the alphabet, else UCS-2; longer texts
    are split with an 8-bit concatenation UDH whose reference comes from ``reference``.
    """
    try:
        encoded, coding = gsm.encode(text), CODING_GSM
    except UnicodeEncodeError:
        encoded, coding = text.encode("utf-16-be"), CODING_UCS2
    if len(encoded) <= SINGLE_OCTETS[coding]:
        return [encoded], coding, 0
    chunks = gsm.split_encoded(encoded, gsm=coding == CODING_GSM, part_size=PART_OCTETS[coding])
    if len(chunks) > 255:
        raise ValueError("text too long for one concatenated SMS")
    ref = reference & 0xFF
    parts = [bytes((0x05, 0x00, 0x03, ref, len(chunks), i)) + chunk
             for i, chunk in enumerate(chunks, start=1)]
    return parts, coding, ESM_UDHI


def decode_text(data: bytes, *, coding: int) -> str:
    """The text of a short_message (UDH already stripped), by data_coding."""
    if coding == CODING_UCS2:
        return data.decode("utf-16-be", errors="replace")
    if coding == CODING_GSM:
        return gsm.decode(data)
    return data.decode("latin-1")


@dataclass(frozen=True)
class Delivered:
    """A deliver_sm, understood: a delivery receipt or a message from a phone (MO)."""

    is_receipt: bool
    source: str
    destination: str
    text: str
    message_id: str | None = None
    status: str | None = None
    reference: int | None = None


def _s(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return "" if value is None else str(value)


def parse_deliver_sm(
    *, esm_class: int, data_coding: int, source_addr: object, source_addr_ton: int,
    destination_addr: object, destination_addr_ton: int, short_message: bytes | None,
    receipted_message_id: object = None, message_state: int | None = None,
    user_message_reference: int | None = None,
) -> Delivered:
    """Understand a deliver_sm's fields (as smpplib parses them: strings arrive as bytes)."""
    body = short_message or b""
    if esm_class & ESM_UDHI and body:
        body = body[1 + body[0]:]
    source = to_e164(_s(source_addr), ton=source_addr_ton)
    destination = to_e164(_s(destination_addr), ton=destination_addr_ton)
    if esm_class & ESM_RECEIPT_MASK == ESM_RECEIPT:
        text = body.decode("latin-1", errors="replace")
        match = _RECEIPT.search(text)
        message_id = _s(receipted_message_id) or (match.group("id") if match else None)
        status = MESSAGE_STATE.get(message_state) if message_state else None
        if status is None and match:
            status = RECEIPT_STATUS.get(match.group("stat").upper())
        return Delivered(True, source, destination, "", message_id=message_id or None,
                         status=status, reference=user_message_reference)
    return Delivered(False, source, destination, decode_text(body, coding=data_coding))
