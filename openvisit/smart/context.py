"""Resolve which appointment, encounter and patient a SMART launch is about.

Spec: SMART App Launch IG STU 2.2 §2.0.7 "Launch context" (``patient``, ``encounter``) and
§2.0.7.2.1 ``fhirContext`` (items with ``reference``, ``type``, ``role``, ``identifier``;
references are relative, absolute URLs are tolerated here); FHIR R4 §2.3.0 "References" for the
``[base]/Type/id[/_history/vid]`` shape.

Contract: :func:`resolve_launch_context` returns a :class:`LaunchContext` whose ``primary`` is
the appointment when one is named, else the encounter, else the patient; an app-side
``appointment_hint`` (a standalone launch's ``?appointment=``) stands in for the appointment
when the EHR names none. It raises :class:`~openvisit.smart.errors.LaunchContextMissing` when
none is present or an id is not a FHIR id. Messages never quote the ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from openvisit.smart.errors import LaunchContextMissing
from openvisit.smart.idtoken import parse_fhir_user
from openvisit.smart.token import FhirContextItem, TokenResponse

_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_REFERENCE = re.compile(
    r"(?:.*/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?/?"
)


@dataclass(frozen=True)
class LaunchContext:
    """The FHIR ids a launch names, and the one the visit is keyed on (``primary``).

    ``user_ref`` is the signed-in user as a relative reference (``Practitioner/123``), taken
    from the validated id_token's ``fhirUser``; ``None`` for launches without OpenID Connect.
    """

    appointment_id: str | None
    encounter_id: str | None
    patient_id: str | None
    user_ref: str | None

    @property
    def primary(self) -> Literal["appointment", "encounter", "patient"]:
        """Which id a visit should be keyed on: appointment, else encounter, else patient."""
        if self.appointment_id:
            return "appointment"
        return "encounter" if self.encounter_id else "patient"


def _bad_id(what: str) -> LaunchContextMissing:
    return LaunchContextMissing(
        f"The EHR sent a {what} in the launch context that is not a FHIR id. Ask the EHR "
        "analyst to check the launch configuration for OpenVisit."
    )


def reference_id(reference: str, *, resource_type: str) -> str | None:
    """Return the id in ``reference`` if it points at ``resource_type``, else ``None``.

    Accepts ``Type/id``, ``[base]/Type/id`` and a trailing ``/_history/vid``.
    """
    match = _REFERENCE.fullmatch(reference.strip())
    if match is None or match["type"] != resource_type:
        return None
    return match["id"]


def _from_fhir_context(items: list[FhirContextItem], resource_type: str) -> str | None:
    for item in items:
        if not item.reference:
            continue  # identifier-only items cannot be resolved without a FHIR search
        found = reference_id(item.reference, resource_type=resource_type)
        if found is not None:
            return found
        if item.type == resource_type:
            # A typed item whose reference is only the bare id.
            if not _FHIR_ID.fullmatch(item.reference.strip()):
                raise _bad_id(resource_type)
            return item.reference.strip()
    return None


def _plain_id(value: str | None, what: str) -> str | None:
    if value is None or value == "":
        return None
    ref = reference_id(value, resource_type=what)
    if ref is not None:  # a few servers send "Patient/123" instead of "123"
        return ref
    if not _FHIR_ID.fullmatch(value):
        raise _bad_id(what)
    return value


def is_fhir_id(value: str) -> bool:
    """Whether ``value`` is a FHIR resource id (R4 §2.24.0.1: 1-64 letters, digits, - and .)."""
    return _FHIR_ID.fullmatch(value) is not None


def resolve_launch_context(
    token: TokenResponse, *, fhir_user: str | None = None, appointment_hint: str | None = None
) -> LaunchContext:
    """Return the launch context of ``token``; ``fhir_user`` comes from the validated id_token.

    The appointment comes from any ``fhirContext`` item that references ``Appointment/…``
    (relative or absolute) or has ``type: Appointment``, else from ``appointment_hint``; the
    encounter from ``encounter`` or, failing that, ``fhirContext``; the patient from
    ``patient``. The EHR's context wins over the hint.
    """
    appointment = _from_fhir_context(token.fhir_context, "Appointment") or _plain_id(
        appointment_hint, "Appointment")
    encounter = _plain_id(token.encounter, "Encounter") or _from_fhir_context(
        token.fhir_context, "Encounter"
    )
    patient = _plain_id(token.patient, "Patient")
    if not (appointment or encounter or patient):
        raise LaunchContextMissing(
            "The EHR did not say which appointment, encounter or patient this visit is for. "
            "Start the visit from an appointment in the EHR; if it keeps happening, ask the EHR "
            "analyst to add launch context (fhirContext or encounter) to OpenVisit's launch."
        )
    user_ref = None
    if fhir_user:
        parsed = parse_fhir_user(fhir_user)
        user_ref = f"{parsed.resource_type}/{parsed.id}"
    return LaunchContext(
        appointment_id=appointment, encounter_id=encounter, patient_id=patient, user_ref=user_ref
    )
