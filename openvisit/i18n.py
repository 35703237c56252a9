"""Translation catalogue: gettext catalogues under ``locales/``, chosen per request.

The language comes from the link (``?lang=``), else the visit's or appointment's language,
else the browser's ``Accept-Language``, else English. Templates call ``_()``; the active
catalogue is held in a context variable so concurrent requests never mix languages.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from datetime import datetime
from functools import cache
from pathlib import Path

from babel import Locale
from babel.dates import format_datetime, format_time, match_skeleton
from babel.support import NullTranslations, Translations

LOCALE_DIR = Path(__file__).resolve().parent / "locales"
DEFAULT_LANGUAGE = "en"
#: Languages with a full catalogue; pages offer exactly these.
LANGUAGES: dict[str, str] = {
    "en": "English",
    "es": "Español",
    "cs": "Čeština",
    "it": "Italiano",
}

_current: ContextVar[str] = ContextVar("openvisit_language", default=DEFAULT_LANGUAGE)


@cache
def catalogue(language: str) -> NullTranslations:
    if language == DEFAULT_LANGUAGE:
        return NullTranslations()
    return Translations.load(str(LOCALE_DIR), [language], domain="messages")


def negotiate(*candidates: str | None, accept_language: str | None = None) -> str:
    """The first supported language among ``candidates``, then the browser's preferences."""
    for candidate in candidates:
        if candidate:
            code = candidate.strip().lower().replace("_", "-").split("-")[0]
            if code in LANGUAGES:
                return code
    if accept_language:
        weighted: list[tuple[float, str]] = []
        for part in accept_language.split(","):
            piece = part.strip()
            if not piece:
                continue
            lang, _, params = piece.partition(";")
            quality = 1.0
            if params.strip().startswith("q="):
                try:
                    quality = float(params.strip()[2:])
                except ValueError:
                    quality = 0.0
            weighted.append((quality, lang.strip().lower().split("-")[0]))
        for _quality, code in sorted(weighted, key=lambda item: -item[0]):
            if code in LANGUAGES:
                return code
    return DEFAULT_LANGUAGE


def activate(language: str) -> None:
    """Make ``language`` the one ``_()`` uses in this context (request or task)."""
    _current.set(language if language in LANGUAGES else DEFAULT_LANGUAGE)


def active() -> str:
    return _current.get()


def N_(message: str) -> str:
    """Mark ``message`` for extraction (``pybabel extract -k N_``); translated later."""
    return message


def gettext(message: str) -> str:
    return catalogue(_current.get()).ugettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return catalogue(_current.get()).ungettext(singular, plural, n)


def translate(message: str, *, language: str) -> str:
    """Translate outside a request (SMS and e-mail templates)."""
    return catalogue(language if language in LANGUAGES else DEFAULT_LANGUAGE).ugettext(message)


# -- dates and times for people --------------------------------------------------------------
# CLDR skeletons name the fields, the locale orders and spells them: "miércoles, 2 de
# diciembre", "středa 2. prosince", "Wednesday, December 2". Babel picks the locale's pattern
# for the nearest skeleton it has (CLDR lists "MMMMEd", not "MMMMEEEEd") and does not widen
# the fields as CLDR's matcher does, so a wanted full weekday is widened here. The clock is
# the locale's own ("3:30 PM" in English, "15:30" in Spanish and Czech).

_WEEKDAY_RUN = re.compile(r"(?<!')E{1,4}|c{3,4}(?!')")


def _skeleton_pattern(skeleton: str, locale: str) -> str:
    loc = Locale.parse(locale)
    best = match_skeleton(skeleton, loc.datetime_skeletons.keys()) or "MMMEd"
    pattern = str(loc.datetime_skeletons[best])
    if "EEEE" in skeleton:
        pattern = _WEEKDAY_RUN.sub("EEEE", pattern)
    return pattern


def format_day(moment: datetime, *, language: str, year: bool = False) -> str:
    """The weekday, day and month (and the year if ``year``) in ``moment``'s own zone."""
    skeleton = "yMMMMEEEEd" if year else "MMMMEEEEd"
    return format_datetime(moment, _skeleton_pattern(skeleton, language), locale=language)


def format_clock(moment: datetime, *, language: str) -> str:
    """The time of day as the locale writes it (12- or 24-hour), in ``moment``'s zone."""
    return format_time(moment, format="short", locale=language)


def zone_label(moment: datetime, *, language: str) -> str:
    """A short name of ``moment``'s time zone for people: the locale's abbreviation where it
    has one ("CET", "SEČ", "EST"), else the offset from UTC ("UTC+1", "UTC-5")."""
    short = format_time(moment, "z", locale=language)
    if short and short[0] not in "+-" and not short.startswith("GMT"):
        return short
    offset = moment.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    if minutes == 0:
        return "UTC"
    sign = "+" if minutes > 0 else "-"  # ASCII: an SMS stays in GSM-7
    hours, rest = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours}" + (f":{rest:02d}" if rest else "")
