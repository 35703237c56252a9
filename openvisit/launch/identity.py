"""Who the patient is, for the clinician's eyes only (issue 15 item 2): read live, never kept.

During a clinician's launch, with the clinician's own access token (``user/Patient.rs``), the
launch reads the appointment's ``Patient`` and takes its name and date of birth, so the
clinician can tell who is waiting. OpenVisit stores neither, anywhere: not in the database,
not in a log, not in a URL. They travel to the clinician's visit page in an encrypted,
``HttpOnly`` cookie of that browser (Fernet with the field-encryption key, bound to the visit,
expiring with the clinician's launch proof), which only the server can read, and are shown on
the clinician's page alone. A second clinician, or the same clinician in another browser,
sees them after their own launch; a patient never does.

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

COOKIE_PREFIX = "ov_pt_"
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


def cookie_name(visit_id: uuid.UUID) -> str:
    return COOKIE_PREFIX + visit_id.hex[:16]


def set_cookie(response: Response, *, app: AppContext, visit_id: uuid.UUID,
               identity: PatientIdentity) -> None:
    """Hand the identity to this browser's visit page, sealed (see the module docstring)."""
    settings = app.settings
    lifetime = int(settings.launch_provider_proof_hours * 3600)
    sealed = app.cipher.encrypt(json.dumps({
        "v": str(visit_id), "n": identity.name, "b": identity.birth_date,
        "exp": int(time.time()) + lifetime}))
    secure = settings.public_url.startswith("https://")
    response.set_cookie(cookie_name(visit_id), sealed, max_age=lifetime, path="/v/",
                        secure=secure, httponly=True, samesite="none" if secure else "lax")


def from_cookie(request: Request, *, app: AppContext,
                visit_id: uuid.UUID) -> PatientIdentity | None:
    """The identity this browser's launch left for ``visit_id``; None if absent, forged,
    expired, or for another visit."""
    sealed = request.cookies.get(cookie_name(visit_id))
    if not sealed or len(sealed) > 4096:
        return None
    try:
        data = json.loads(app.cipher.decrypt(sealed))
    except (ConfigurationError, ValueError):
        return None
    if (not isinstance(data, dict) or data.get("v") != str(visit_id)
            or not isinstance(data.get("exp"), int) or data["exp"] < time.time()):
        return None
    return PatientIdentity(name=str(data.get("n") or "")[:MAX_NAME],
                           birth_date=str(data.get("b") or "")[:10])
