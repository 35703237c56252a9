"""Dates and times for people, per locale (issue 15 item 9): CLDR skeletons through Babel,
the locale's own 12/24-hour clock, and the time zone named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from babel.dates import get_day_names, get_month_names
from hypothesis import given, settings
from hypothesis import strategies as st

from openvisit import i18n
from openvisit.notify import gsm, render

WED = datetime(2026, 12, 2, 14, 30, tzinfo=UTC)


@pytest.mark.parametrize(("language", "zone", "day", "clock", "label"), [
    ("es", "Europe/Madrid", "miércoles, 2 de diciembre", "15:30", "CET"),
    ("cs", "Europe/Prague", "středa 2. prosince", "15:30", "SEČ"),
    ("en", "America/New_York", "Wednesday, December 2", "9:30\u202fAM", "EST"),
    ("de", "Europe/Berlin", "Mittwoch, 2. Dezember", "15:30", "MEZ"),
    ("es", "America/New_York", "miércoles, 2 de diciembre", "9:30", "UTC-5"),
    ("en", "Asia/Kolkata", "Wednesday, December 2", "8:00\u202fPM", "UTC+5:30"),
])
def test_it_writes_the_day_clock_and_zone_as_the_locale_does(
        language: str, zone: str, day: str, clock: str, label: str) -> None:
    local = WED.astimezone(ZoneInfo(zone))
    assert i18n.format_day(local, language=language) == day
    assert i18n.format_clock(local, language=language).replace(" ", "\u202f") == clock
    assert i18n.zone_label(local, language=language) == label


def test_it_adds_the_year_for_e_mail() -> None:
    local = WED.astimezone(ZoneInfo("Europe/Madrid"))
    assert i18n.format_day(local, language="es", year=True) == \
        "miércoles, 2 de diciembre de 2026"
    assert i18n.format_day(local, language="cs", year=True) == "středa 2. prosince 2026"


ZONES = ("UTC", "Europe/Prague", "Europe/Madrid", "America/New_York", "America/Los_Angeles",
         "Asia/Kolkata", "Australia/Adelaide", "Pacific/Chatham")


@settings(max_examples=150, deadline=None)
@given(moment=st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31),
                           timezones=st.just(UTC)),
       zone=st.sampled_from(ZONES), language=st.sampled_from(("en", "es", "cs", "de", "it")))
def test_it_names_the_local_weekday_day_month_and_hour(moment: datetime, zone: str,
                                                        language: str) -> None:
    local = moment.astimezone(ZoneInfo(zone))
    day = i18n.format_day(local, language=language)
    weekday = get_day_names("wide", locale=language)[local.weekday()]
    month = get_month_names("wide", context="format", locale=language)[local.month]
    assert weekday in day and month in day and str(local.day) in day
    clock = i18n.format_clock(local, language=language)
    twelve = language == "en"
    hour = (local.hour % 12 or 12) if twelve else local.hour
    hours, _, rest = clock.partition(":")
    assert (int(hours), rest[:2]) == (hour, f"{local.minute:02d}"), clock
    assert ("AM" in clock or "PM" in clock) == twelve
    label = i18n.zone_label(local, language=language)
    assert label and "GMT" not in label
    if label.startswith("UTC") and label != "UTC":
        offset = local.utcoffset() or timedelta()
        sign = "+" if offset > timedelta() else "-"
        assert label.startswith(f"UTC{sign}") and label.isascii()


@pytest.mark.parametrize(("language", "expected"), [
    ("es", "el miércoles, 2 de diciembre a las 15:30 CET"),
    ("cs", "Termín: středa 2. prosince v 15:30 SEČ"),
])
def test_it_puts_them_in_the_sms(language: str, expected: str) -> None:
    facts = render.Facts(organisation="Clínica Ejemplo", department="Medicina familiar",
                         start_at=WED, timezone="Europe/Madrid", link="https://x.example/v/t")
    text = render.render_sms("booked", language=language, facts=facts, transliterate=False)
    assert expected in text, text
    assert text.startswith("Clínica Ejemplo: ") and "(Medicina familiar)" in text
    sent = render.render_sms("booked", language=language, facts=facts)
    assert gsm.segments(sent) <= 2
