"""When an appointment starts and ends, from AIS, SCH-11 (TQ), TQ1 and the duration fields.

HL7 v2.5.1 Ch. 10 §10.6.2 (SCH-9/10/11), §10.6.4 (AIS-4/7/8); Ch. 4 (TQ1, v2.5+, which
replaces SCH-11); EHR-SPEC §4: AIS-4 first, else SCH-11.4; end from SCH-11.5, else AIS-4 plus
AIS-7/8, else SCH-9/10.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, tzinfo

from openvisit.hl7v2 import er7
from openvisit.hl7v2.errors import (
    DataTypeError,
    ErrorLocation,
    RequiredFieldMissing,
    TableValueNotFound,
)

_UNITS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), timedelta(seconds=1)),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), timedelta(minutes=1)),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), timedelta(hours=1)),
    **dict.fromkeys(("d", "day", "days"), timedelta(days=1)),
}
_LONGEST = timedelta(days=366)
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")


def appointment_times(
    tokens: er7.Er7Message, *, sch: er7.Segment, default_tz: tzinfo
) -> tuple[datetime, datetime | None]:
    """Return (start, end): start from AIS-4, else SCH-11.4, else TQ1-7 (v2.5+).

    The end comes from the same source as the start where it can: SCH-11.5 or TQ1-8 when their
    start matches ours, else AIS-4 + AIS-7/8, else SCH-9/10. Ends not after the start are
    skipped, so an SCH-11 for another slot cannot give a visit that ends before it begins.
    """

    def ts(segment: er7.Segment, *, number: int, component: int = 1) -> datetime | None:
        # SCH-11 is a TQ, whose TS components arrive as subcomponents: take the first.
        raw = segment.get(number, component=component)
        if not raw:
            return None
        location = segment.at(number, component=component if component > 1 else None)
        return er7.parse_ts(raw, default_tz=default_tz, location=location)

    ais = next((s for s in tokens.all("AIS") if s.get(4)), None)
    tq1 = next((s for s in tokens.all("TQ1") if s.get(7)), None)
    sch_start = ts(sch, number=11, component=4)
    start = ts(ais, number=4) if ais else sch_start or (ts(tq1, number=7) if tq1 else None)
    if start is None:
        raise RequiredFieldMissing(
            "the appointment has no start time: AIS-4, SCH-11.4 and TQ1-7 are all empty",
            location=ErrorLocation("AIS", field=4),
        )
    # (window start, segment, end field, end component): SCH-11 is TQ, TQ1 is v2.5+.
    windows: list[tuple[datetime | None, er7.Segment, int, int]] = [(sch_start, sch, 11, 5)]
    if tq1 is not None:
        windows.append((ts(tq1, number=7), tq1, 8, 1))
    for window_start, segment, number, component in windows:
        if window_start in (None, start):
            end = ts(segment, number=number, component=component)
            if end is not None and end > start:
                return start, end
    durations: list[tuple[er7.Segment, int, int]] = [(ais, 7, 8)] if ais else []
    durations.append((sch, 9, 10))
    for segment, amount_field, units_field in durations:
        length = _duration(segment, amount_field=amount_field, units_field=units_field)
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


def _duration(segment: er7.Segment, *, amount_field: int, units_field: int) -> timedelta | None:
    raw = segment.get(amount_field)
    if not raw:
        return None
    if not _NUMBER.fullmatch(raw) or len(raw) > 12:
        raise DataTypeError(
            f"{segment.name}-{amount_field} (duration) is not a number",
            location=segment.at(amount_field),
        )
    units = (segment.get(units_field) or segment.get(units_field, component=2) or "min").lower()
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
