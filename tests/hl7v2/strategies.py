"""Hypothesis strategies over the SIU corpus (:mod:`tests.hl7v2.corpus`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from .corpus import (
    LANGUAGES,
    NEWLINES,
    OFFSET_STYLES,
    OPTIONAL,
    PRECISIONS,
    Booking,
    Variation,
    zone,
)

# Real UTC offsets, including the odd ones (India +05:30, Nepal +05:45, FHIR-Converter's +02:15).
OFFSETS = (-600, -480, -300, -240, 0, 60, 120, 135, 330, 345, 600, 780)
WORD = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
PHONES = {
    "epic23": [f"+1202555{n:04d}" for n in range(100, 200)],
    "uk24": [f"+4474001234{n:02d}" for n in range(10, 60)],
    "v251": [f"+1202555{n:04d}" for n in range(100, 200)],
    "v28": [f"+420601123{n:03d}" for n in range(100, 200)],
}


def _unambiguous(family: str, instant: datetime) -> bool:
    """Whether ``instant`` written as local time in the family's zone reads back as itself
    (not in a DST gap or fold, which a time without an offset cannot name)."""
    local = instant.astimezone(zone(family)).replace(tzinfo=None)
    return local.replace(tzinfo=zone(family)).astimezone(UTC) == instant


def _name(alphabet: str, *, min_size: int = 1, max_size: int = 20) -> st.SearchStrategy[str]:
    # No space at either end: fields are read stripped, as every receiver does.
    return st.text(alphabet, min_size=min_size, max_size=max_size).filter(
        lambda t: t == t.strip() and t.strip() != '""'
    )


@st.composite
def bookings(draw: st.DrawFn, family: str) -> Booking:
    start = draw(
        st.datetimes(
            min_value=datetime(2026, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.just(UTC)
        ).map(lambda d: d.replace(second=0, microsecond=0))
    )
    minutes = draw(st.integers(5, 240))
    # Both ends must be nameable as local times (the "none" offset style writes them so).
    if not (_unambiguous(family, start)
            and _unambiguous(family, start + timedelta(minutes=minutes))):
        start = datetime(2030, 3, 12, 13, 30, tzinfo=UTC)
    facility_chars = WORD + " -/&|^~é"
    return Booking(
        start=start,
        minutes=minutes,
        control_id=draw(_name(WORD + "-.", max_size=20)),
        filler=draw(_name(WORD + "-", max_size=20)),
        placer=draw(_name(WORD + "-", max_size=20)),
        patient_id=draw(_name(WORD, max_size=12)),
        phone=draw(st.one_of(st.none(), st.sampled_from(PHONES[family]))),
        email=draw(
            st.one_of(st.none(), st.integers(0, 999).map(lambda n: f"test.{n}@example.org"))
        ),
        language=draw(st.sampled_from(sorted(LANGUAGES))),
        department=draw(_name(WORD + "-/ ", max_size=16)),
        facility=draw(_name(facility_chars, max_size=24)),
        provider=draw(_name(WORD, max_size=10).map(lambda t: t + "7")),
        visit_number=draw(_name("0123456789", max_size=12)),
    )


@st.composite
def variations(draw: st.DrawFn) -> Variation:
    return Variation(
        newline=draw(st.sampled_from(NEWLINES)),
        pid_first=draw(st.booleans()),
        z_segments=tuple(draw(st.lists(st.integers(0, 40), max_size=3))),
        notes=tuple(draw(st.lists(st.integers(0, 40), max_size=4))),
        precision=draw(st.sampled_from(PRECISIONS)),
        offset_style=draw(st.sampled_from(OFFSET_STYLES)),
        sender_offset=draw(st.sampled_from(OFFSETS)),
        omit=frozenset(draw(st.sets(st.sampled_from(OPTIONAL), max_size=4))),
        repeat_groups=draw(st.booleans()),
        escapes=draw(st.booleans()),
        msh7_junk=draw(st.booleans()),
    )
