"""The visit's calendar file (issue 15 item 12): RFC 5545 text read back by an independent
parser (icalendar), escaping and folding at the edges, attached to the e-mail."""

from __future__ import annotations

import email
from datetime import UTC, datetime, timedelta

import icalendar
from hypothesis import given, settings
from hypothesis import strategies as st

from openvisit.notify import ics, render
from openvisit.notify.email.transport import build

START = datetime(2030, 12, 2, 14, 30, tzinfo=UTC)
LINK = "https://visits.example.org/v/" + "A" * 22 + "." + "B" * 32
NOW = datetime(2030, 11, 30, 8, 0, tzinfo=UTC)


def _event(text: str) -> icalendar.Event:
    cal = icalendar.Calendar.from_ical(text)
    [event] = [c for c in cal.walk("VEVENT")]
    return event


def test_it_reads_back_with_the_join_link_in_utc() -> None:
    facts = render.Facts(organisation="Nemocnice; Example, a.s.", department="Kardiologie",
                         start_at=START, timezone="Europe/Prague", link=LINK)
    text = render.render_calendar(facts, language="cs", uid="appointment-42",
                                  end_at=START + timedelta(minutes=20), now=NOW)
    assert text.endswith("\r\n") and "\n" not in text.replace("\r\n", "")
    assert all(len(line.encode()) <= 75 for line in text.split("\r\n"))
    event = _event(text)
    assert event.decoded("dtstart") == START and event.decoded("dtend") == START + timedelta(
        minutes=20)
    assert str(event["uid"]) == "appointment-42"
    assert str(event["url"]) == LINK
    assert LINK in str(event["description"])  # unfolded again by the parser
    assert str(event["summary"]) == "Videonávštěva: Nemocnice; Example, a.s. (Kardiologie)"
    assert "Nemocnice\\; Example\\, a.s." in text.replace("\r\n ", "")


@settings(max_examples=100, deadline=None)
@given(summary=st.text(min_size=1, max_size=300).filter(lambda s: s.strip()))
def test_it_escapes_and_folds_any_text_without_breaking_characters(summary: str) -> None:
    text = ics.calendar(ics.CalendarVisit(uid="u-1", start_at=START, end_at=None,
                                          summary=summary, description=summary, link=None,
                                          organisation="Clinic"), now=NOW)
    for line in text.split("\r\n"):
        assert len(line.encode("utf-8")) <= 75
    event = _event(text)
    expected = summary.replace("\r\n", "\n").replace("\r", "\n")
    assert str(event["summary"]) == expected
    assert event.decoded("dtend") - event.decoded("dtstart") == timedelta(minutes=30)


def test_it_attaches_the_calendar_to_the_e_mail() -> None:
    facts = render.Facts(organisation="Clinic", department=None, start_at=START,
                         timezone="UTC", link=LINK)
    calendar = render.render_calendar(facts, language="es", uid="appointment-7", end_at=None,
                                      now=NOW)
    msg = build(to="p@example.org", subject="S", text="T", html="<p>T</p>",
                sender="visits@example.org", sender_name="Clinic", reference="k",
                calendar=calendar)
    parsed = email.message_from_bytes(msg.as_bytes())
    [part] = [p for p in parsed.walk() if p.get_content_type() == "text/calendar"]
    assert part.get_filename() == "visit.ics" and part.get_param("method") == "PUBLISH"
    event = _event(part.get_payload(decode=True).decode("utf-8"))
    assert str(event["summary"]) == "Videoconsulta: Clinic" and str(event["url"]) == LINK
