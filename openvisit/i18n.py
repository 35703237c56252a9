"""Translation catalogue: gettext catalogues under ``locales/``, chosen per request.

The language comes from the link (``?lang=``), else the visit's or appointment's language,
else the browser's ``Accept-Language``, else English. Templates call ``_()``; the active
catalogue is held in a context variable so concurrent requests never mix languages.
"""

from __future__ import annotations

from contextvars import ContextVar
from functools import cache
from pathlib import Path

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
