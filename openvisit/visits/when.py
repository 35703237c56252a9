"""Times shown to people: in the organisation's time zone and the reader's language."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

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
    time_text = (f"{i18n.format_clock(appointment, language=locale)} "
                 f"{i18n.zone_label(appointment, language=locale)}")
    if appointment.date() != now.astimezone(zone).date():
        return _(
            "This link opens %(minutes)s minutes before your appointment on %(date)s at "
            "%(time)s. Please come back then."
        ) % {
            "minutes": minutes_before, "time": time_text,
            "date": i18n.format_day(appointment, language=locale),
        }
    return _(
        "This link opens %(minutes)s minutes before your appointment at %(time)s. Please "
        "come back then."
    ) % {"minutes": minutes_before, "time": time_text}


def _moment(moment: datetime, *, now: datetime, timezone: str) -> str:
    """``14:30``, or ``14:30, 12 March 2030`` when not today (organisation's zone)."""
    zone = _zone(timezone)
    local = moment.astimezone(zone)
    locale = i18n.active()
    text = (f"{i18n.format_clock(local, language=locale)} "
            f"{i18n.zone_label(local, language=locale)}")
    if local.date() != now.astimezone(zone).date():
        text = f"{text}, {i18n.format_day(local, language=locale)}"
    return text


def clinician_opens_at_text(window_start: datetime, *, now: datetime, timezone: str = "UTC",
                            minutes_before: int = 30) -> str:
    """What a clinician who launched too early can do: open the room now (patients keep
    their window), or correct a wrong time in the EHR."""
    return _(
        "Patients can join from %(opens)s, %(minutes)s minutes before the appointment at "
        "%(time)s. You can open the room now to get ready: patients still wait until then. "
        "If the appointment time is wrong, correct it in the EHR: the next launch picks up "
        "the new time."
    ) % {
        "opens": _moment(window_start, now=now, timezone=timezone),
        "minutes": minutes_before,
        "time": _moment(window_start + timedelta(minutes=minutes_before), now=now,
                        timezone=timezone),
    }


def clinician_ended_text(*, ended: bool, window_end: datetime | None, now: datetime,
                         timezone: str = "UTC", reopen_until: datetime | None = None) -> str:
    """What a clinician can do once a visit is over: reopen one ended by mistake (until
    ``reopen_until``), relaunch a moved one, or book anew."""
    if ended and reopen_until is not None:
        return _(
            "This video visit was ended. If that was a mistake, you can reopen it until "
            "%(time)s: the patient can then join again with the same link."
        ) % {"time": _moment(reopen_until, now=now, timezone=timezone)}
    if ended or window_end is None:
        return _(
            "This video visit was ended, so nobody can join it any more. To see the patient "
            "by video again, book a new video appointment in the EHR and launch it from there."
        )
    return _(
        "Joining this visit closed at %(time)s. If the appointment was moved, launch it again "
        "from the EHR: the new time is picked up. Otherwise book a new video appointment in "
        "the EHR and launch it from there."
    ) % {"time": _moment(window_end, now=now, timezone=timezone)}
