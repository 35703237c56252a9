"""When an appointment starts and ends: resource segments, TQ1, SCH-11, by version.

HL7 v2.5.1 Ch. 10 §10.6.2 (SCH-9/10/11), §10.6.4-7 (AIS-4, AIG-8, AIL-6, AIP-6 start and
their durations); Ch. 4 §4.5.4 (TQ1-7 start, TQ1-8 end, TQ1-13 duration: v2.5+, replacing
SCH-11, which is deprecated in v2.5 and withdrawn from v2.7). The precedence (issue 11):

1. the resource segments' start where present, AIS first, then AIG, AIL, AIP (the earliest
   of that kind when a message books several resources);
2. else TQ1-7;
3. else SCH-11.4: the timing of v2.3-2.4 messages, and the last resort of later ones.

The end comes from the same source where it can: TQ1-8 (or, up to v2.4, SCH-11.5) when its
start is ours, else the resource's duration, else TQ1-13, else SCH-11.5 of a v2.5+ message
whose SCH-11.4 is ours, else SCH-9/10. A field that is used must be readable (else a
:class:`DataTypeError` naming it); one that is only compared (SCH-11 when a resource gives
the start) is ignored when it is not. Ends not after the start are skipped, so a stale
SCH-11 for another slot cannot give a visit that ends before it begins.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from openvisit.hl7v2 import er7
from openvisit.hl7v2.errors import (
    DataTypeError,
    ErrorLocation,
    Hl7ParseError,
    RequiredFieldMissing,
    TableValueNotFound,
)
from openvisit.hl7v2.structure import SiuStructure

_UNITS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), timedelta(seconds=1)),
    **dict.fromkeys(("min", "mins", "minute", "minutes", "m"), timedelta(minutes=1)),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), timedelta(hours=1)),
    **dict.fromkeys(("d", "day", "days"), timedelta(days=1)),
}
_LONGEST = timedelta(days=366)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_OFFSET_ONLY = re.compile(r"\s*(?:[+-][0-9]{2}(?::?[0-9]{2})?|Z)", re.IGNORECASE)
#: (segment, start field, duration field, duration units field), in order of precedence.
RESOURCE_TIMES = (("AIS", 4, 7, 8), ("AIG", 8, 11, 12), ("AIL", 6, 9, 10), ("AIP", 6, 9, 10))
#: Appointments outside these years are refused: nothing real is booked there, and year 1 or
#: 9999 with an offset overflows once converted to UTC.
EARLIEST, LATEST = datetime(1900, 1, 1, tzinfo=UTC), datetime(3000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Timing:
    """The appointment's start and end (``None`` when the message gives neither an end nor a
    duration) and the field each was read from."""

    start: datetime
    end: datetime | None
    start_source: ErrorLocation
    end_source: ErrorLocation | None


def version_tuple(version: str) -> tuple[int, int]:
    """``"2.5.1"`` → ``(2, 5)``; unreadable versions count as the newest."""
    match = re.match(r"(\d+)\.(\d+)", version.strip())
    return (int(match[1]), int(match[2])) if match else (99, 99)


def read_ts(
    segment: er7.Segment, number: int, *, component: int = 1, default_tz: tzinfo
) -> datetime | None:
    """The TS in ``segment``-``number`` (component ``component``), or ``None`` when empty.

    Inside a composite (SCH-11 is a TQ) a TS arrives as subcomponents: the first is read. An
    offset written in the next part (``20240312093000^-0500``) is applied when the time has
    none. Raises :class:`DataTypeError` naming the field when the text is not a date/time.
    """
    value = segment.first(number)
    if component > 1:
        raw, after = value.get(component), value.get(component, subcomponent=2)
    else:
        raw, after = value.get(1), value.get(2)
    if not raw:
        return None
    if after and _OFFSET_ONLY.fullmatch(after) and not re.search(r"[+-][0-9]{2}|Z$", raw[8:]):
        raw += after.strip()
    location = segment.at(number, component=component if component > 1 else None)
    return er7.parse_ts(raw, default_tz=default_tz, location=location)


def appointment_times(structure: SiuStructure, *, version: str, default_tz: tzinfo) -> Timing:
    """Return the :class:`Timing` of the appointment (precedence: module docstring).

    Raises :class:`RequiredFieldMissing` when no source gives a start, :class:`DataTypeError`
    or :class:`TableValueNotFound` for a used field that cannot be read, and
    :class:`DataTypeError` for a start or end outside the years 1900-2999.
    """
    legacy = version_tuple(version) < (2, 5)
    sch = structure.sch
    tq1 = next((s for s in structure.timing if s.get(7)), None)

    def ts(segment: er7.Segment, number: int, component: int = 1) -> datetime | None:
        return read_ts(segment, number, component=component, default_tz=default_tz)

    def quietly(segment: er7.Segment | None, number: int, component: int = 1) -> datetime | None:
        # A start only compared with ours: unreadable means "not the same slot".
        if segment is None:
            return None
        try:
            return ts(segment, number, component)
        except Hl7ParseError:
            return None

    # (start, source segment, start field, duration field, units field)
    found: tuple[datetime, er7.Segment, int, int, int] | None = None
    for name, start_field, amount_field, units_field in RESOURCE_TIMES:
        starts = [
            (start, segment)
            for segment in structure.resource_segments(name)
            if (start := ts(segment, start_field)) is not None
        ]
        if starts:
            start, segment = min(starts, key=lambda pair: pair[0])
            found = (start, segment, start_field, amount_field, units_field)
            break
    # Where the end may come from, in order: ("end", segment, field, component) for an
    # explicit end, ("duration", segment, amount field, units field), ("cq", segment, field).
    candidates: list[tuple[str, er7.Segment, int, int]] = []
    if found is not None:
        start, source, start_field, amount_field, units_field = found
        start_where = source.at(start_field)
        if tq1 is not None and quietly(tq1, 7) == start:
            candidates.append(("end", tq1, 8, 1))
        sch_matches = quietly(sch, 11, 4) == start
        if legacy and sch_matches:
            candidates.append(("end", sch, 11, 5))
        candidates.append(("duration", source, amount_field, units_field))
        if not legacy and sch_matches:
            candidates.append(("end", sch, 11, 5))
    elif tq1 is not None:
        start, start_where = _valued(ts(tq1, 7)), tq1.at(7)
        candidates += [("end", tq1, 8, 1), ("cq", tq1, 13, 0)]
        if quietly(sch, 11, 4) == start:
            candidates.append(("end", sch, 11, 5))
    else:
        sch_start = ts(sch, 11, 4)
        if sch_start is None:
            raise RequiredFieldMissing(
                "the appointment has no start time: AIS-4, AIG-8, AIL-6, AIP-6, TQ1-7 and "
                "SCH-11.4 are all empty",
                location=ErrorLocation("AIS", field=4),
            )
        start, start_where = sch_start, sch.at(11, component=4)
        candidates.append(("end", sch, 11, 5))
    candidates.append(("duration", sch, 9, 10))
    _check_range(start, where=start_where)
    for kind, segment, number, extra in candidates:
        end = _end_from(start, kind, segment, number, extra, ts=ts)
        if end is not None:
            end_where = segment.at(number, component=extra if kind == "end" and extra > 1 else None)
            _check_range(end, where=end_where)
            return Timing(start, end, start_where, end_where)
    return Timing(start, None, start_where, None)


def _valued(value: datetime | None) -> datetime:
    assert value is not None  # the caller picked a segment whose field is valued
    return value


def _end_from(
    start: datetime,
    kind: str,
    segment: er7.Segment,
    number: int,
    extra: int,
    *,
    ts: Callable[[er7.Segment, int, int], datetime | None],
) -> datetime | None:
    """The end one candidate gives, or ``None`` (absent, or not after the start)."""
    if kind == "end":
        end = ts(segment, number, extra)
        return end if end is not None and end > start else None
    length = _quantity(segment, number) if kind == "cq" else _duration(
        segment, amount_field=number, units_field=extra
    )
    if length is None or length <= timedelta(0):
        return None
    try:
        return start + length
    except OverflowError:
        raise DataTypeError(
            f"{segment.name}-{number} (duration) ends the appointment after the year 9999",
            location=segment.at(number),
        ) from None


def _check_range(value: datetime, *, where: ErrorLocation) -> None:
    try:
        inside = EARLIEST <= value.astimezone(UTC) < LATEST
    except OverflowError:
        inside = False
    if not inside:
        raise DataTypeError(
            f"{where} puts the appointment outside the years 1900 to 2999; check the date",
            location=where,
        )


def _quantity(segment: er7.Segment, number: int) -> timedelta | None:
    """A CQ duration (TQ1-13: quantity ^ units, units CE)."""
    value = segment.first(number)
    raw = value.get(1)
    if not raw:
        return None
    return _length(
        raw,
        value.get(2) or value.get(2, subcomponent=2),
        segment=segment,
        amount_field=number,
        units_field=number,
    )


def _duration(segment: er7.Segment, *, amount_field: int, units_field: int) -> timedelta | None:
    raw = segment.get(amount_field)
    if not raw:
        return None
    units = segment.get(units_field) or segment.get(units_field, component=2)
    return _length(
        raw, units, segment=segment, amount_field=amount_field, units_field=units_field
    )


def _length(
    raw: str, units: str, *, segment: er7.Segment, amount_field: int, units_field: int
) -> timedelta:
    if not _NUMBER.fullmatch(raw) or len(raw) > 12:
        raise DataTypeError(
            f"{segment.name}-{amount_field} (duration) is not a number",
            location=segment.at(amount_field),
        )
    # Absent units mean minutes: that is what schedulers send, and seconds would be absurd.
    unit = _UNITS.get((units or "min").strip().lower())
    if unit is None:
        raise TableValueNotFound(
            f"{segment.name}-{units_field} (duration units) is not a unit of time this parser "
            "knows; use s, min, h or d",
            location=segment.at(units_field),
        )
    seconds = float(raw) * unit.total_seconds()
    if abs(seconds) > _LONGEST.total_seconds():
        raise DataTypeError(
            f"{segment.name}-{amount_field} (duration) is longer than a year",
            location=segment.at(amount_field),
        )
    return timedelta(seconds=seconds)
