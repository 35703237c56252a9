"""Message text per language from the Jinja2 templates under ``templates/notify/messages/``.

Layout: ``<lang>/sms/<message>.txt`` and ``<lang>/email/<message>.{subject.txt,txt,html}`` for
every message in :data:`MESSAGES`; HTML mail extends the shared ``_layout.html``. Messages
say who is writing, the department, the local date and time and the link - never a name or
anything clinical. SMS text is folded onto one line and kept to as few parts as possible
(:func:`openvisit.notify.gsm.prepare`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from openvisit import i18n
from openvisit.models.choices import NOTIFICATION_MESSAGES, NotificationMessage
from openvisit.notify import gsm, ics
from openvisit.notify.plan import zone

#: Every template of the package is under ``templates/notify/``: the outbox page beside these.
TEMPLATE_DIR = Path(__file__).resolve().parent.parent / "templates" / "notify" / "messages"
#: Every message there is (``Notification.message``, checked by the column's constraint).
MESSAGES = NOTIFICATION_MESSAGES
#: Messages that carry the join link (a cancellation does not).
WITH_LINK: frozenset[NotificationMessage] = frozenset(
    {"booked", "rescheduled", "modified", "reminder", "invite"})
LANGUAGES = tuple(i18n.LANGUAGES)

_env = Environment(
    loader=FileSystemLoader(str(TEMPLATE_DIR)),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@dataclass(frozen=True)
class Facts:
    """Everything a message may say."""

    organisation: str
    department: str | None
    start_at: datetime
    timezone: str
    link: str | None
    #: Who an ``invite`` is for: interpreter | guest (the seat's role; no name, ever).
    role: str | None = None


@dataclass(frozen=True)
class EmailContent:
    subject: str
    text: str
    html: str


def language_of(*candidates: str | None) -> str:
    """The first candidate we have templates for, else English."""
    return i18n.negotiate(*candidates)


def _context(facts: Facts, language: str, message: str) -> dict[str, object]:
    local = facts.start_at.astimezone(zone(facts.timezone))
    return {
        "lang": language,
        "org": facts.organisation,
        # Already the patient-facing name (openvisit.notify.departments), or None.
        "department": (facts.department or "").strip() or None,
        # "miércoles, 2 de diciembre" / "středa 2. prosince" for SMS; with the year for
        # e-mail; the clock as the locale writes it, and the zone ("15:30 SEČ", "9:30 AM EST").
        "day": i18n.format_day(local, language=language),
        "date": i18n.format_day(local, language=language, year=True),
        "time": f"{i18n.format_clock(local, language=language)} "
                f"{i18n.zone_label(local, language=language)}",
        # A cancellation never carries a link, whatever the caller passed.
        "link": (facts.link or "") if message in WITH_LINK else "",
        "role": facts.role or "",
    }


def render_sms(message: str, *, language: str, facts: Facts, transliterate: bool = True) -> str:
    """One line of SMS text, transliterated to GSM-7 when that saves parts."""
    text = _env.get_template(f"{language}/sms/{message}.txt").render(
        _context(facts, language, message))
    return gsm.prepare(" ".join(text.split()), transliterate_when_shorter=transliterate)


def render_email(message: str, *, language: str, facts: Facts) -> EmailContent:
    """Subject, plain text and HTML of one e-mail."""
    context = _context(facts, language, message)
    base = f"{language}/email/{message}"
    subject = " ".join(_env.get_template(f"{base}.subject.txt").render(context).split())
    text = _env.get_template(f"{base}.txt").render(context).strip() + "\n"
    html = _env.get_template(f"{base}.html").render(context)
    return EmailContent(subject=subject, text=text, html=html)


def render_calendar(facts: Facts, *, language: str, uid: str, end_at: datetime | None,
                    now: datetime) -> str:
    """The visit's calendar file (:mod:`openvisit.notify.ics`) in ``language``."""
    what = i18n.translate(i18n.N_("Video visit"), language=language)
    join = i18n.translate(i18n.N_("Join the video visit here, no app needed:"),
                          language=language)
    department = (facts.department or "").strip()
    summary = f"{what}: {facts.organisation}" + (f" ({department})" if department else "")
    return ics.calendar(ics.CalendarVisit(
        uid=uid, start_at=facts.start_at, end_at=end_at, summary=summary,
        description=f"{join} {facts.link}" if facts.link else summary, link=facts.link,
        organisation=facts.organisation), now=now)


def template_names() -> list[str]:
    """Every template file a complete language must have (for tests and operators)."""
    names = []
    for message in MESSAGES:
        names.append(f"sms/{message}.txt")
        names += [f"email/{message}.subject.txt", f"email/{message}.txt",
                  f"email/{message}.html"]
    return names
