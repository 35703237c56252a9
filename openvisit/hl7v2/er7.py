"""HL7 v2 "ER7" encoding rules: delimiters, segments, fields, escapes and the TS data type.

This is the low-level layer under :mod:`openvisit.hl7v2.siu`: it turns text into segments and
gives typed, bounds-safe access to fields/repetitions/components (a missing one is ``""``, never
an ``IndexError``). HL7 v2.5.1 Ch. 2 §2.5 (message framework: delimiters from MSH-1/MSH-2),
§2.7 (escape sequences) and Ch. 2A (TS/DTM).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo

from openvisit.hl7v2.errors import (
    DataTypeError,
    ErrorLocation,
    SegmentSequenceError,
)

_SEGMENT_ID = re.compile(r"[A-Z][A-Z0-9]{2}")
# ASCII digits only: Python's \d (and int()) would also take e.g. full-width digits.
# The TS/DTM digits: YYYY[MM[DD[HH[MM[SS]]]]], then (liberally) fraction digits without '.'.
_TS_DIGITS = re.compile(r"[0-9]{4,}")
# What may follow the digits, in either order: a fraction and a UTC offset (±HH, ±HHMM,
# ±HH:MM or Z), optionally separated by a space.
_TS_FRACTION = re.compile(r"\.([0-9]+)")
_TS_OFFSET = re.compile(r"\s*(?:([+-])([0-9]{2})(?::?([0-9]{2}))?|(Z))", re.IGNORECASE)
# ISO 8601 extended form, which a few converters write into HL7 fields.
_ISO = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
    r"(?:[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]+))?)?)?"
    r"(?:\s*(?:([+-])([0-9]{2})(?::?([0-9]{2}))?|(Z)))?",
    re.IGNORECASE,
)
# HL7 table 0211 names → Python codecs. Unlisted or ASCII declarations fall back to UTF-8 then
# Latin-1, because senders often declare ASCII and still send accented names.
_CHARSETS: dict[str, str] = {
    "UNICODE UTF-8": "utf-8",
    "ISO IR192": "utf-8",
    "8859/1": "iso8859-1",
    "ISO IR100": "iso8859-1",
    "8859/2": "iso8859-2",
    "ISO IR101": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "GB 18030-2000": "gb18030",
    "KS X 1001": "euc-kr",
    "BIG-5": "big5",
}


@dataclass(frozen=True, slots=True)
class Delimiters:
    """The five ER7 delimiters (MSH-1 and MSH-2); ``escape``/``subcomponent`` may be absent."""

    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"

    @property
    def encoding_characters(self) -> str:
        """MSH-2 as it is written: component, repetition, escape, subcomponent."""
        return self.component + self.repetition + self.escape + self.subcomponent


STANDARD_DELIMITERS = Delimiters()


@dataclass(frozen=True, slots=True)
class Value:
    """One field repetition, still escaped; :meth:`get` splits and unescapes on demand."""

    raw: str = field(repr=False)  # PHI: keep it out of tracebacks and debug logs
    delimiters: Delimiters

    def get(self, component: int = 1, *, subcomponent: int = 1) -> str:
        """Return one component/subcomponent, unescaped; ``""`` when absent or HL7 null."""
        part = _nth(self.raw, separator=self.delimiters.component, n=component)
        if self.delimiters.subcomponent:
            part = _nth(part, separator=self.delimiters.subcomponent, n=subcomponent)
        elif subcomponent != 1:
            return ""
        # '""' is HL7's explicit null ("delete this value"); for us it carries nothing.
        return "" if part == '""' else unescape(part, delimiters=self.delimiters).strip()

    def __bool__(self) -> bool:
        return self.raw not in ("", '""')


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment: ``fields[n]`` is field n (for MSH, fields[1] is MSH-1 and fields[2] MSH-2)."""

    name: str
    fields: tuple[str, ...] = field(repr=False)  # PHI
    delimiters: Delimiters
    sequence: int

    def repetitions(self, field: int) -> tuple[Value, ...]:
        """Return the non-empty repetitions of a field (none when it is empty or absent)."""
        raw = self.fields[field] if 0 < field < len(self.fields) else ""
        if self.name == "MSH" and field <= 2:
            return (Value(raw, Delimiters("", "", "", "", "")),) if raw else ()
        parts = raw.split(self.delimiters.repetition) if self.delimiters.repetition else [raw]
        return tuple(v for v in (Value(p, self.delimiters) for p in parts) if v)

    def first(self, field: int) -> Value:
        """Return the first non-empty repetition of a field (an empty :class:`Value` if none)."""
        reps = self.repetitions(field)
        return reps[0] if reps else Value("", self.delimiters)

    def get(self, field: int, *, component: int = 1, subcomponent: int = 1) -> str:
        """Shorthand for ``first(field).get(component, subcomponent=subcomponent)``."""
        return self.first(field).get(component, subcomponent=subcomponent)

    def at(self, field: int | None = None, *, component: int | None = None) -> ErrorLocation:
        """Return the :class:`ErrorLocation` of this segment (or one of its fields)."""
        return ErrorLocation(self.name, sequence=self.sequence, field=field, component=component)


@dataclass(frozen=True, slots=True)
class Er7Message:
    """A tokenised message: its delimiters and segments in order."""

    delimiters: Delimiters
    segments: tuple[Segment, ...]

    def all(self, name: str) -> tuple[Segment, ...]:
        """Return every segment with this id, in message order."""
        return tuple(s for s in self.segments if s.name == name)

    def first(self, name: str) -> Segment | None:
        """Return the first segment with this id, or ``None``."""
        return next((s for s in self.segments if s.name == name), None)


def _nth(text: str, *, separator: str, n: int) -> str:
    if not separator:
        return text if n == 1 else ""
    parts = text.split(separator)
    return parts[n - 1] if 0 < n <= len(parts) else ""


def decode(data: bytes | str) -> str:
    """Decode raw message bytes using the character set named in MSH-18.

    Returns the text unchanged when given ``str``. Without a declaration (or declaring ASCII)
    UTF-8 is tried, then ISO 8859-1. Bytes that do not match a declared character set become
    U+FFFD rather than refusing the message: most sit in fields nobody reads (a note), and
    the feed refuses the message only when one is in a value it keeps, naming that field.
    Never raises.
    """
    if isinstance(data, str):
        return data
    codec = codec_for(_declared_charset(data))
    if codec is None:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("iso8859-1")
    return data.decode(codec, errors="replace")


def codec_for(charset: str | None) -> str | None:
    """Return the Python codec for an MSH-18 value, or ``None`` when unknown or absent."""
    return _CHARSETS.get((charset or "").strip().upper())


def _declared_charset(data: bytes) -> str:
    head = re.split(rb"[\r\n]", data.lstrip(), maxsplit=1)[0].decode("ascii", "replace")
    if not head.startswith("MSH") or len(head) < 4:
        return ""
    fields = head.split(head[3])
    raw = fields[17] if len(fields) > 17 else ""
    return raw.split("~")[0].strip()


def parse(text: str) -> Er7Message:
    """Split a message into segments and fields, reading its delimiters from MSH-1/MSH-2.

    Segments may end with CR, LF or CRLF (when a CR occurs anywhere, only CR ends a segment, so
    LFs inside text fields survive). Raises :class:`SegmentSequenceError` when the text does not
    start with MSH or a line is not a segment, :class:`DataTypeError` for unusable delimiters.
    """
    text = text.lstrip("\ufeff \t\r\n\x0b")
    if not text.startswith("MSH"):
        raise SegmentSequenceError(
            "the message does not start with an MSH segment", location=ErrorLocation("MSH")
        )
    delimiters = _delimiters(text)
    lines = [ln.lstrip("\n") for ln in text.split("\r")] if "\r" in text else text.split("\n")
    segments: list[Segment] = []
    counts: dict[str, int] = {}
    for number, line in enumerate(ln for ln in lines if ln.strip()):
        name = line[:3]
        if not _SEGMENT_ID.fullmatch(name) or (len(line) > 3 and line[3] != delimiters.field):
            raise SegmentSequenceError(
                f"segment {number + 1} of the message does not start with a segment id "
                f"followed by {delimiters.field!r}",
                location=None,
            )
        if name == "MSH":
            fields = ("MSH", delimiters.field, *line[4:].split(delimiters.field))
        else:
            fields = tuple(line.split(delimiters.field))
        counts[name] = counts.get(name, 0) + 1
        segments.append(Segment(name, fields, delimiters, counts[name]))
    return Er7Message(delimiters, tuple(segments))


def _delimiters(text: str) -> Delimiters:
    field = text[3:4]
    if not field or field.isalnum() or field.isspace():
        raise DataTypeError(
            "MSH-1 (field separator) is missing or not a punctuation character",
            location=ErrorLocation("MSH", field=1),
        )
    end = text.find(field, 4)
    line_end = min((i for i in (text.find("\r", 4), text.find("\n", 4)) if i >= 0), default=-1)
    if end < 0 or (0 <= line_end < end):
        end = line_end if line_end >= 0 else len(text)
    chars = text[4:end]
    usable = all(not c.isalnum() and not c.isspace() and c != field for c in chars)
    if not 2 <= len(chars) <= 5 or not usable or len(set(chars)) != len(chars):
        raise DataTypeError(
            "MSH-2 (encoding characters) must hold distinct punctuation characters, normally ^~\\&",
            location=ErrorLocation("MSH", field=2),
        )
    padded = chars[:4] + "\0" * (4 - len(chars[:4]))
    component, repetition, escape, sub = (c if c != "\0" else "" for c in padded)
    return Delimiters(field, component, repetition, escape, sub)


def unescape(text: str, *, delimiters: Delimiters) -> str:
    """Resolve ER7 escape sequences (HL7 v2.5.1 Ch. 2 §2.7).

    Delimiter escapes (``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``) and ``\\Xhh..\\`` become characters,
    ``\\.br\\`` a newline; highlighting and character-set switches are dropped; an unknown or
    unterminated escape stays as written.
    """
    esc = delimiters.escape
    if not esc or esc not in text:
        return text
    simple = {
        "F": delimiters.field,
        "S": delimiters.component,
        "T": delimiters.subcomponent,
        "R": delimiters.repetition,
        "E": esc,
        ".br": "\n",
    }
    out: list[str] = []
    i = 0
    while (start := text.find(esc, i)) >= 0:
        end = text.find(esc, start + 1)
        if end < 0:
            break
        out.append(text[i:start])
        code = text[start + 1 : end]
        if code in simple:
            out.append(simple[code])
        elif code[:1] == "X" and len(code) % 2 == 1 and re.fullmatch(r"[0-9A-Fa-f]*", code[1:]):
            raw = bytes.fromhex(code[1:])
            try:
                out.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                out.append(raw.decode("iso8859-1"))
        elif code[:1] in ("H", "N", "C", "M", "Z", "."):
            pass  # formatting and character-set switches carry no data we use
        else:
            out.append(text[start : end + 1])
        i = end + 1
    out.append(text[i:])
    return "".join(out)


def escape(text: str, *, delimiters: Delimiters = STANDARD_DELIMITERS) -> str:
    """Escape delimiters and line breaks so ``text`` fits in one field (HL7 v2.5.1 §2.7)."""
    esc = delimiters.escape or "\\"
    out = text.replace(esc, f"{esc}E{esc}")
    for char, code in (
        (delimiters.field, "F"),
        (delimiters.component, "S"),
        (delimiters.subcomponent, "T"),
        (delimiters.repetition, "R"),
    ):
        if char:
            out = out.replace(char, f"{esc}{code}{esc}")
    return out.replace("\r", f"{esc}X0D{esc}").replace("\n", f"{esc}X0A{esc}")


def parse_ts(value: str, *, default_tz: tzinfo, location: ErrorLocation) -> datetime:
    """Parse an HL7 TS/DTM (``YYYY[MM[DD[HH[MM[SS[.S…]]]]]][+/-ZZZZ]``) to an aware datetime.

    Liberal in form (issue 11), exact in meaning: fraction digits written without the ``.``
    (anything after the 14 digits of seconds) or beyond the four TS allows are read as a
    fraction (kept to the microsecond); the offset may come before the fraction, after a
    space, as ``±HH:MM``, ``±HH`` or ``Z``; ISO 8601's extended form (``2024-03-12T09:30-05:00``)
    is read too. Without an offset the time is read in ``default_tz`` (the endpoint's zone).
    Raises :class:`DataTypeError` naming ``location`` (never the value, which is PHI) when the
    text is not a date/time, is ambiguous (an odd number of digits before the seconds, two
    offsets) or names an impossible date, time or offset.
    """
    text = value.strip()
    parts = _iso_parts(text) or _ts_parts(text)
    if parts is None:
        raise DataTypeError(
            f"{location} is not an HL7 date/time (expected YYYYMMDDHHMM[SS][+/-ZZZZ])",
            location=location,
        )
    numbers, frac, offset = parts
    try:
        year, month, day, hour, minute, second = (int(n) if n else d for n, d in zip(
            numbers, (0, 1, 1, 0, 0, 0), strict=True))
        naive = datetime(year, month, day, hour, minute, second,
                         int((frac or "0")[:6].ljust(6, "0")))
        if offset is None:
            return naive.replace(tzinfo=default_tz)
        sign, off_h, off_m = offset
        if off_m >= 60:
            raise ValueError("offset minutes")
        delta = timedelta(hours=off_h, minutes=off_m)
        return naive.replace(tzinfo=timezone(-delta if sign == "-" else delta))
    except ValueError:
        raise DataTypeError(
            f"{location} names an impossible date, time or UTC offset", location=location
        ) from None


_TsParts = tuple[tuple[str, ...], str | None, tuple[str, int, int] | None]


def _ts_parts(text: str) -> _TsParts | None:
    """(YYYY, MM, DD, HH, MM, SS as text; fraction digits; offset) of the compact TS form."""
    match = _TS_DIGITS.match(text)
    if match is None:
        return None
    digits = match.group()
    if len(digits) < 14 and len(digits) % 2:
        return None  # 2024031209301: half a field is ambiguous, not over-precise
    frac = digits[14:] or None
    numbers = (digits[:4], digits[4:6], digits[6:8], digits[8:10], digits[10:12], digits[12:14])
    rest, offset = text[match.end():], None
    while rest:
        found = _TS_FRACTION.match(rest)
        if found is not None and frac is None and len(digits) == 14:
            frac, rest = found.group(1), rest[found.end():]
            continue
        found = _TS_OFFSET.match(rest)
        if found is not None and offset is None:
            sign, hours, minutes, zulu = found.groups()
            offset = ("+", 0, 0) if zulu else (sign, int(hours), int(minutes or 0))
            rest = rest[found.end():]
            continue
        return None
    return numbers, frac, offset


def _iso_parts(text: str) -> _TsParts | None:
    match = _ISO.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, frac, sign, off_h, off_m, zulu = match.groups()
    offset: tuple[str, int, int] | None = None
    if zulu:
        offset = ("+", 0, 0)
    elif sign:
        offset = (sign, int(off_h), int(off_m or 0))
    return (year, month, day, hour or "", minute or "", second or ""), frac, offset
