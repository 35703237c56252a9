"""SMS text: the GSM 7-bit alphabet, segment counts and transliteration (3GPP TS 23.038).

An SMS carries 160 GSM-7 characters, or 70 UCS-2 characters once a single letter falls outside
the GSM alphabet; concatenated parts lose room to the UDH (153 and 67). One "č" therefore
more than doubles the cost of a Czech message, which is why :func:`prepare` can replace such
letters with their base letter when that saves parts.
"""

from __future__ import annotations

import math
import unicodedata

#: GSM 03.38 default alphabet, indexed by septet value (0x1B is the escape to the extension).
BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
#: Extension table: character → septet after 0x1B (each costs two septets).
EXTENSION = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D,
             "]": 0x3E, "|": 0x40, "€": 0x65}
_BASIC_INDEX = {ch: i for i, ch in enumerate(BASIC) if ch != "\x1b"}
_REVERSE_EXTENSION = {v: k for k, v in EXTENSION.items()}

# Characters that look like others and would force UCS-2 for no reason (CLDR puts a narrow
# no-break space in English times: "10:30\u202fAM").
_SPACES = {"\u00a0": " ", "\u2007": " ", "\u202f": " ", "\u2009": " ", "\u200a": " "}
_LOOKALIKES = {"‘": "'", "’": "'", "‚": "'", "“": '"', "”": '"', "„": '"', "–": "-", "—": "-",
               "…": "...", "•": "-", "«": '"', "»": '"'}

SINGLE_GSM, PART_GSM = 160, 153
SINGLE_UCS2, PART_UCS2 = 70, 67


def is_gsm(text: str) -> bool:
    """True if every character of ``text`` is in the GSM alphabet or its extension."""
    return all(ch in _BASIC_INDEX or ch in EXTENSION for ch in text)


def septets(text: str) -> int:
    """GSM-7 length of ``text`` (extension characters count twice); text must be GSM."""
    return sum(2 if ch in EXTENSION else 1 for ch in text)


def segments(text: str) -> int:
    """How many SMS parts ``text`` needs (GSM-7 if it fits the alphabet, else UCS-2)."""
    if is_gsm(text):
        length, single, part = septets(text), SINGLE_GSM, PART_GSM
    else:
        length = len(text.encode("utf-16-be")) // 2
        single, part = SINGLE_UCS2, PART_UCS2
    return 1 if length <= single else math.ceil(length / part)


def normalise_spaces(text: str) -> str:
    """Replace typographic spaces and quotes that have a plain GSM equivalent."""
    return "".join(_SPACES.get(ch, _LOOKALIKES.get(ch, ch)) for ch in text)


def transliterate(text: str) -> str:
    """``text`` with every non-GSM letter replaced by its base letter (č → c), else "?"."""
    out: list[str] = []
    for ch in text:
        if ch in _BASIC_INDEX or ch in EXTENSION:
            out.append(ch)
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
        out.append(base if base and is_gsm(base) else "?")
    return "".join(out)


def prepare(text: str, *, transliterate_when_shorter: bool) -> str:
    """The text to send: spaces normalised, transliterated only if that saves parts."""
    text = normalise_spaces(text)
    if is_gsm(text) or not transliterate_when_shorter:
        return text
    plain = transliterate(text)
    return plain if segments(plain) < segments(text) else text


def encode(text: str) -> bytes:
    """Unpacked GSM-7 (one septet per octet), as SMPP carries it with data_coding 0.

    Raises :class:`UnicodeEncodeError` for characters outside the alphabet.
    """
    out = bytearray()
    for i, ch in enumerate(text):
        if ch in _BASIC_INDEX:
            out.append(_BASIC_INDEX[ch])
        elif ch in EXTENSION:
            out += bytes((0x1B, EXTENSION[ch]))
        else:
            raise UnicodeEncodeError("gsm-7", text, i, i + 1, "not in the GSM alphabet")
    return bytes(out)


def decode(data: bytes) -> str:
    """Inverse of :func:`encode` (unknown escapes become a space, as the spec says)."""
    out: list[str] = []
    escape = False
    for octet in data:
        if escape:
            out.append(_REVERSE_EXTENSION.get(octet, " "))
            escape = False
        elif octet == 0x1B:
            escape = True
        else:
            out.append(BASIC[octet & 0x7F])
    return "".join(out)


def split_encoded(data: bytes, *, gsm: bool, part_size: int) -> list[bytes]:
    """Split encoded text into parts of at most ``part_size`` octets.

    Never splits an escape pair (GSM) or a UTF-16 code unit (UCS-2); a surrogate pair may
    still straddle two parts, which handsets reassemble before display.
    """
    parts: list[bytes] = []
    start = 0
    while start < len(data):
        end = min(start + part_size, len(data))
        if gsm and end < len(data) and data[end - 1] == 0x1B and _escape_open(data, start, end):
            end -= 1
        if not gsm and (end - start) % 2:
            end -= 1
        parts.append(data[start:end])
        start = end
    return parts


def _escape_open(data: bytes, start: int, end: int) -> bool:
    """True if the octet at ``end - 1`` is an escape that starts a pair (not a pair's second)."""
    run = 0
    i = end - 1
    while i >= start and data[i] == 0x1B:
        run += 1
        i -= 1
    return run % 2 == 1
