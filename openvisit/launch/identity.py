"""Who the patient is, for the clinician's eyes only (issue 15 item 2): read live, never kept.

During a clinician's launch, with the clinician's own access token (``user/Patient.rs``), the
launch reads the appointment's ``Patient`` and takes its name and date of birth, so the
clinician can tell who is waiting. OpenVisit stores neither, anywhere: not in the database,
not in a log, not in a URL. They travel to the clinician's visit page in an encrypted,
``HttpOnly`` cookie of that browser (Fernet with the field-encryption key; one entry per visit,
the eight newest, each expiring with the clinician's launch proof), which only the server can
read, and are shown on the clinician's page alone. A second clinician, or the same clinician
in another browser, sees them after their own launch; a patient never does.

Reading them is best effort: an EHR that refuses, times out or sends an odd Patient leaves the
page with the seat's role label, and the launch goes on (event ``patient_identity_unavailable``
with the reason's class; never the name).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from openvisit.context import AppContext
from openvisit.errors import ConfigurationError, OpenVisitError
from openvisit.launch.fhir import FhirReader
from openvisit.logs import get_logger

log = get_logger(__name__)

COOKIE = "ov_patient"
#: Visits one browser keeps identities for (a clinic day's recent ones); older ones drop out.
KEEP = 8
MAX_COOKIE = 4096
MAX_NAME = 120
#: Preference among HumanName.use values (FHIR R4 ValueSet name-use).
NAME_USES = ("usual", "official", None, "temp", "nickname", "anonymous", "maiden", "old")


@dataclass(frozen=True)
class PatientIdentity:
    """What the clinician sees: a display name and the date of birth (either may be empty)."""

    name: str
    #: FHIR ``date``: ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``.
    birth_date: str

    def birth(self) -> date | None:
        """The full date of birth, when the EHR gave day and month."""
        try:
            return date.fromisoformat(self.birth_date) if len(self.birth_date) == 10 else None
        except ValueError:
            return None


def display_name(patient: dict[str, Any]) -> str:
    """One line for ``Patient.name``: the preferred use, its ``text`` or given + family."""
    raw = patient.get("name")
    names = [n for n in raw if isinstance(n, dict)] if isinstance(raw, list) else []
    if not names:
        return ""

    def rank(name: dict[str, Any]) -> int:
        use = name.get("use")
        if use is not None and not isinstance(use, str):
            return len(NAME_USES)
        return NAME_USES.index(use) if use in NAME_USES else len(NAME_USES)

    name = min(names, key=rank)
    text = name.get("text")
    if not isinstance(text, str) or not text.strip():
        raw_given = name.get("given")
        given = [g for g in raw_given if isinstance(g, str)] if isinstance(raw_given, list) \
            else []
        family = name.get("family")
        text = " ".join([*given, family if isinstance(family, str) else ""])
    return " ".join(str(text).split())[:MAX_NAME]


def from_patient(patient: dict[str, Any]) -> PatientIdentity | None:
    if patient.get("resourceType") != "Patient":
        return None
    birth = patient.get("birthDate")
    birth_date = birth if isinstance(birth, str) and len(birth) in (4, 7, 10) else ""
    name = display_name(patient)
    return PatientIdentity(name=name, birth_date=birth_date) if name or birth_date else None


async def read(reader: FhirReader, patient_ref: str | None) -> PatientIdentity | None:
    """The appointment's patient as the clinician's token may read it, or None."""
    kind, _, patient_id = (patient_ref or "").partition("/")
    if kind != "Patient" or not patient_id:
        return None
    try:
        return from_patient(await reader.get(f"Patient/{patient_id}"))
    except (OpenVisitError, ValueError, TypeError, AttributeError) as exc:
        log.info("patient_identity_unavailable", reason=type(exc).__name__)
        return None


def _entries(request: Request | None, app: AppContext) -> dict[str, dict[str, Any]]:
    """The sealed cookie's entries that have not expired (visit id → {n, b, exp})."""
    sealed = request.cookies.get(COOKIE) if request is not None else None
    if not sealed or len(sealed) > MAX_COOKIE:
        return {}
    try:
        data = json.loads(app.cipher.decrypt(sealed))
    except (ConfigurationError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    now = time.time()
    return {visit: entry for visit, entry in data.items()
            if isinstance(entry, dict) and isinstance(entry.get("exp"), int)
            and entry["exp"] >= now}


def set_cookie(response: Response, *, app: AppContext, visit_id: uuid.UUID,
               identity: PatientIdentity, request: Request | None = None) -> None:
    """Hand the identity to this browser's visit pages, sealed (see the module docstring).

    One cookie for all of a clinician's recent visits (the :data:`KEEP` newest), so a busy
    day never grows the request headers past what proxies accept."""
    settings = app.settings
    lifetime = int(settings.launch_provider_proof_hours * 3600)
    entries = _entries(request, app)
    entries[str(visit_id)] = {"n": identity.name, "b": identity.birth_date,
                              "exp": int(time.time()) + lifetime}
    newest = dict(sorted(entries.items(), key=lambda item: item[1]["exp"])[-KEEP:])
    sealed = app.cipher.encrypt(json.dumps(newest, separators=(",", ":")))
    secure = settings.public_url.startswith("https://")
    # Path "/": the next launch's callback (/launch/…) must read it to add its visit.
    response.set_cookie(COOKIE, sealed, max_age=lifetime, path="/", secure=secure,
                        httponly=True, samesite="none" if secure else "lax")


def from_cookie(request: Request, *, app: AppContext,
                visit_id: uuid.UUID) -> PatientIdentity | None:
    """The identity this browser's launch left for ``visit_id``; None if absent, forged,
    expired, or not for this visit."""
    entry = _entries(request, app).get(str(visit_id))
    if entry is None:
        return None
    return PatientIdentity(name=str(entry.get("n") or "")[:MAX_NAME],
                           birth_date=str(entry.get("b") or "")[:10])
