"""Item 1 of issue 11: timestamps are read by their meaningful part.

Senders write more precision than TS/DTM allows (fractional seconds without the ``.``, more
than four fraction digits), put the UTC offset in unusual places or forms (before the
fraction, after a space, with a colon, hours only, ``Z``), or use ISO 8601's extended form.
Each is read to the same instant; what has no meaning (a fraction) is dropped, what is truly
ambiguous (an odd number of digits, an impossible date) is still refused.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openvisit.hl7v2 import DataTypeError, ErrorLocation, er7

from .support import NEW_YORK

HERE = ErrorLocation("AIS", field=4)
MINUS_5 = timezone(-timedelta(hours=5))


def ts(value: str) -> datetime:
    return er7.parse_ts(value, default_tz=NEW_YORK, location=HERE)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # fractional seconds written without the '.', and more digits than TS allows
        ("20240312093015123", datetime(2024, 3, 12, 9, 30, 15, 123000, tzinfo=NEW_YORK)),
        ("202403120930151234567", datetime(2024, 3, 12, 9, 30, 15, 123456, tzinfo=NEW_YORK)),
        ("20240312093015.12345", datetime(2024, 3, 12, 9, 30, 15, 123450, tzinfo=NEW_YORK)),
        ("20240312093015123-0500", datetime(2024, 3, 12, 14, 30, 15, 123000, tzinfo=UTC)),
        # the offset before the fraction, after a space, with a colon, hours only, Z
        ("20240312093015-0500.25", datetime(2024, 3, 12, 14, 30, 15, 250000, tzinfo=UTC)),
        ("20240312093015 -0500", datetime(2024, 3, 12, 14, 30, 15, tzinfo=UTC)),
        ("202403120930-05:00", datetime(2024, 3, 12, 14, 30, tzinfo=UTC)),
        ("202403120930-05", datetime(2024, 3, 12, 14, 30, tzinfo=UTC)),
        ("202403120930+01", datetime(2024, 3, 12, 8, 30, tzinfo=UTC)),
        ("202403120930Z", datetime(2024, 3, 12, 9, 30, tzinfo=UTC)),
        ("20240312093000.0000Z", datetime(2024, 3, 12, 9, 30, tzinfo=UTC)),
        # ISO 8601 extended form
        ("2024-03-12T09:30", datetime(2024, 3, 12, 9, 30, tzinfo=NEW_YORK)),
        ("2024-03-12T09:30:15.5-05:00", datetime(2024, 3, 12, 14, 30, 15, 500000, tzinfo=UTC)),
        ("2024-03-12 09:30:15Z", datetime(2024, 3, 12, 9, 30, 15, tzinfo=UTC)),
        ("2024-03-12", datetime(2024, 3, 12, tzinfo=NEW_YORK)),
    ],
)
def test_it_reads_over_precise_and_oddly_zoned_timestamps(value: str, expected: datetime) -> None:
    assert ts(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "2024031209301",  # 13 digits: is the last one half a second field? ambiguous
        "20240312093",
        "202403120930+0160",  # minutes of the offset past 59
        "202403120930+2400",
        "202403120930.5",  # a fraction needs the seconds before it
        "20240312093015.5.5",
        "20240312093015-0500-0500",
        "2024-13-12T09:30",
        "2024-03-12T9:30",
        "20240312T093000X",
        "２０２４",
    ],
)
def test_it_still_refuses_what_is_ambiguous_or_impossible(value: str) -> None:
    with pytest.raises(DataTypeError) as caught:
        ts(value)

    assert caught.value.location == HERE


INSTANTS = st.datetimes(
    min_value=datetime(1950, 1, 1), max_value=datetime(2150, 12, 31), timezones=st.just(UTC)
)
OFFSETS = st.integers(-12 * 60, 14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


@settings(max_examples=300, deadline=None, database=None)
@given(instant=INSTANTS, tz=OFFSETS, style=st.integers(0, 6))
def test_it_reads_every_spelling_of_an_instant_to_the_same_instant(
    instant: datetime, tz: timezone, style: int
) -> None:
    local = instant.astimezone(tz)
    minutes = int(local.utcoffset().total_seconds()) // 60  # type: ignore[union-attr]
    sign, hh, mm = "-" if minutes < 0 else "+", abs(minutes) // 60, abs(minutes) % 60
    digits = local.strftime("%Y%m%d%H%M%S")
    frac = f"{local.microsecond:06d}"
    spelling = [
        f"{digits}.{frac}{sign}{hh:02d}{mm:02d}",
        f"{digits}{frac}{sign}{hh:02d}{mm:02d}",
        f"{digits}{sign}{hh:02d}{mm:02d}.{frac}",
        f"{digits}.{frac} {sign}{hh:02d}:{mm:02d}",
        local.isoformat(),
        instant.strftime("%Y%m%d%H%M%S") + f".{instant.microsecond:06d}Z",
        instant.strftime("%Y-%m-%dT%H:%M:%S") + f".{instant.microsecond:06d}Z",
    ][style]

    assert ts(spelling) == instant
