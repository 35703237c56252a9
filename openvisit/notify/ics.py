"""A calendar file (iCalendar, RFC 5545) for one video visit, with its join link.

Attached to the e-mail confirmations (``text/calendar; method=PUBLISH``) and offered on the
patient's page (``/v/{token}/visit.ics``), so the visit lands in the patient's calendar with
the link one tap away. Times are UTC (``DTSTART:20301202T143000Z``, §3.3.5 form 2), which every
calendar shows in the reader's own zone, so no VTIMEZONE is needed. Text values are escaped
(§3.3.11: backslash, semicolon, comma, line breaks) and content lines folded at 75 octets
without splitting a UTF-8 character (§3.1). The UID is stable per visit, so a later file for
the same visit (a new time) updates the calendar entry instead of adding a second one.
Nothing about the patient is in it: the organisation, the department name and the link.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

PRODID = "-//OpenVisit//Video visit//EN"
CONTENT_TYPE = "text/calendar; charset=utf-8; method=PUBLISH"


@dataclass(frozen=True, kw_only=True)
class CalendarVisit:
    """What the calendar entry says; ``summary``/``description`` already in the reader's
    language."""

    uid: str
    start_at: datetime
    end_at: datetime | None
    summary: str
    description: str
    link: str | None
    organisation: str
    sequence: int = 0


def escape_text(value: str) -> str:
    """RFC 5545 §3.3.11 TEXT escaping."""
    return (value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
            .replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n"))


def fold(line: str) -> str:
    """Fold one content line at 75 octets (CRLF + space), never inside a UTF-8 sequence."""
    out: list[str] = []
    current, size, limit = "", 0, 75
    for char in line:
        width = len(char.encode("utf-8"))
        if size + width > limit:
            out.append(current)
            current, size, limit = "", 0, 74  # the leading space of a continuation counts
        current += char
        size += width
    out.append(current)
    return "\r\n ".join(out)


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def calendar(visit: CalendarVisit, *, now: datetime) -> str:
    """The whole VCALENDAR text (CRLF line ends, as §3.1 requires)."""
    end = visit.end_at or visit.start_at + timedelta(minutes=30)
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        f"PRODID:{PRODID}",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        "BEGIN:VEVENT",
        f"UID:{escape_text(visit.uid)}",
        f"SEQUENCE:{visit.sequence}",
        f"DTSTAMP:{_utc(now)}",
        f"DTSTART:{_utc(visit.start_at)}",
        f"DTEND:{_utc(end)}",
        f"SUMMARY:{escape_text(visit.summary)}",
        f"DESCRIPTION:{escape_text(visit.description)}",
        f"LOCATION:{escape_text(visit.link or visit.organisation)}",
    ]
    if visit.link:
        # URL is a URI value (§3.8.4.6): not TEXT-escaped.
        lines.append(f"URL:{visit.link}")
    lines += [
        "TRANSP:OPAQUE",
        "STATUS:CONFIRMED",
        "BEGIN:VALARM",
        "ACTION:DISPLAY",
        f"DESCRIPTION:{escape_text(visit.summary)}",
        "TRIGGER:-PT15M",
        "END:VALARM",
        "END:VEVENT",
        "END:VCALENDAR",
    ]
    return "".join(fold(line) + "\r\n" for line in lines)
