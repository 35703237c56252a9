"""Department names: what a patient reads for the scheduling feed's department code.

The HL7 feed gives a department as a code (AIL-3 / PV1-3, e.g. ``10501``) that means nothing
to a patient; the organisation names its codes once (``10501`` → "Family medicine", and per
language where it wants: "Medicina familiar", "Všeobecné lékařství"). SMS, e-mail and the
patient's page show the name in the patient's language, else the name for every language.

A department with no name is left out of what patients read when its value looks like a code
(no lower-case letter: ``10501``, ``CARD``, ``TELEHEALTH_DEPT``); a value written for people
(``Cardiology``, from a FHIR launch or a sender that puts names in the feed) is shown as it is.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.audit import record
from openvisit.errors import InvalidInput
from openvisit.i18n import LANGUAGES
from openvisit.models import DepartmentName
from openvisit.notify import repository as repo

#: Longest name kept (an SMS should stay short; the column is wider).
MAX_NAME = 80


@dataclass(frozen=True, kw_only=True)
class DepartmentEntry:
    """One code's names: ``names[""]`` for every language, ``names["es"]`` for Spanish."""

    code: str
    names: dict[str, str]


def looks_like_code(value: str) -> bool:
    """True for values people cannot read as a name (no lower-case letter at all)."""
    return not any(ch.islower() for ch in value)


def _clean_code(code: str) -> str:
    text = (code or "").strip()
    if not text or len(text) > 64 or not text.isprintable():
        raise InvalidInput("Give the department code as the scheduling feed sends it (AIL-3 "
                           "or PV1-3, e.g. 10501), up to 64 characters.",
                           details={"field": "code"})
    return text


def _clean_language(language: str | None) -> str:
    text = (language or "").strip().lower()
    if text and text not in LANGUAGES:
        raise InvalidInput(f"{text!r} is not one of the languages OpenVisit speaks "
                           f"({', '.join(LANGUAGES)}); leave it empty for every language.",
                           details={"field": "language"})
    return text


async def set_name(session: AsyncSession, *, organisation_id: uuid.UUID, code: str,
                   name: str, language: str | None = None, actor: str) -> DepartmentName:
    """Name department ``code`` (in ``language``, or in every language); audited.

    Raises :class:`InvalidInput` for an empty or over-long code or name, or an unknown
    language.
    """
    code, lang = _clean_code(code), _clean_language(language)
    text = " ".join((name or "").split())
    if not text or len(text) > MAX_NAME:
        raise InvalidInput(f"Give the name patients should read, up to {MAX_NAME} characters.",
                           details={"field": "name"})
    existing = next((row for row in await repo.department_names(
        session, organisation_id=organisation_id, code=code) if row.language == lang), None)
    before = {"name": existing.name} if existing else None
    if existing is None:
        existing = DepartmentName(organisation_id=organisation_id, code=code, language=lang,
                                  name=text)
        session.add(existing)
    else:
        existing.name = text
    await session.flush()
    await record(session, actor=actor, action="department.name", object_type="department",
                 object_id=f"{code}/{lang or '*'}", before=before, after={"name": text},
                 organisation_id=organisation_id)
    return existing


async def remove_names(session: AsyncSession, *, organisation_id: uuid.UUID, code: str,
                       language: str | None = None, actor: str) -> int:
    """Forget a code's names (or one language's); audited. Returns how many went."""
    code = _clean_code(code)
    lang = None if language is None else _clean_language(language)
    removed = await repo.delete_department_names(session, organisation_id=organisation_id,
                                                 code=code, language=lang)
    if removed:
        await record(session, actor=actor, action="department.name_removed",
                     object_type="department", object_id=f"{code}/{lang or '*'}",
                     organisation_id=organisation_id)
    return removed


async def entries(session: AsyncSession, *, organisation_id: uuid.UUID) -> list[DepartmentEntry]:
    """Every named code of the organisation, for the portal and the CLI."""
    grouped: dict[str, dict[str, str]] = {}
    for row in await repo.department_names(session, organisation_id=organisation_id):
        grouped.setdefault(row.code, {})[row.language] = row.name
    return [DepartmentEntry(code=code, names=names) for code, names in grouped.items()]


async def display_name(session: AsyncSession, *, organisation_id: uuid.UUID,
                       department: str | None, language: str) -> str | None:
    """What a patient reading ``language`` sees for ``department`` (None: leave it out)."""
    value = (department or "").strip()
    if not value:
        return None
    names = {row.language: row.name for row in await repo.department_names(
        session, organisation_id=organisation_id, code=value)}
    chosen = names.get(language) or names.get("")
    if chosen:
        return chosen
    return None if looks_like_code(value) else value
