"""Times shown to people: in the organisation's time zone and the reader's language."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.dates import format_date, format_time

from openvisit import i18n
from openvisit.i18n import gettext as _


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def opens_at_text(window_start: datetime, *, now: datetime, timezone: str = "UTC",
                  minutes_before: int = 30) -> str:
    """"This link opens 30 minutes before your appointment at 14:30." in the active language.

    The appointment time is ``window_start + minutes_before``; the date is added when it is
    not today in the organisation's time zone.
    """
    zone = _zone(timezone)
    appointment = (window_start + timedelta(minutes=minutes_before)).astimezone(zone)
    locale = i18n.active()
    time_text = format_time(appointment, format="short", locale=locale)
    if appointment.date() != now.astimezone(zone).date():
        return _(
            "This link opens %(minutes)s minutes before your appointment on %(date)s at "
            "%(time)s. Please come back then."
        ) % {
            "minutes": minutes_before, "time": time_text,
            "date": format_date(appointment, format="long", locale=locale),
        }
    return _(
        "This link opens %(minutes)s minutes before your appointment at %(time)s. Please "
        "come back then."
    ) % {"minutes": minutes_before, "time": time_text}
