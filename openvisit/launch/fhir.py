"""Read the launch's Appointment (or Encounter, or the patient's appointment today) from the EHR.

FHIR R4 REST (read and search). Only what OpenVisit stores is extracted: ids, times, status,
department, the practitioner reference. Patient names and clinical data are never read out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from openvisit.errors import InvalidInput, OutboundError
from openvisit.smart.context import LaunchContext, reference_id


@dataclass(frozen=True)
class AppointmentFacts:
    """What OpenVisit keeps of an EHR Appointment."""

    ehr_appointment_id: str
    status: str
    start_at: datetime | None
    end_at: datetime | None
    patient_ref: str | None
    practitioner_ref: str | None
    department: str | None
    encounter_id: str | None


class FhirReader:
    """A tiny FHIR client bound to one base URL and one access token; counts its calls."""

    def __init__(self, http: httpx.AsyncClient, *, base: str, access_token: str) -> None:
        self.http = http
        self.base = base
        self._headers = {
            "Authorization": f"Bearer {access_token}",
            "Accept": "application/fhir+json",
        }
        self.calls = 0

    async def get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.calls += 1
        try:
            response = await self.http.get(
                f"{self.base}/{path}", params=params, headers=self._headers
            )
        except httpx.HTTPError as exc:
            raise OutboundError(
                f"The EHR's FHIR server did not answer ({type(exc).__name__})."
            ) from exc
        if response.status_code == 404:
            raise InvalidInput(
                f"The EHR says {path.split('?')[0]} does not exist; the launch context points "
                "at a record this user cannot see or that was deleted."
            )
        if response.status_code in (401, 403):
            raise OutboundError(
                f"The EHR refused to show {path.split('/')[0]} (HTTP {response.status_code}); "
                "OpenVisit's scopes may be missing from the EHR's app registration.",
                permanent=True,
            )
        if response.status_code >= 400:
            raise OutboundError(
                f"The EHR's FHIR server answered HTTP {response.status_code}.",
                permanent=response.status_code < 500,
            )
        body: dict[str, Any] = response.json()
        return body


def _parse_instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def appointment_facts(resource: dict[str, Any]) -> AppointmentFacts:
    """Extract the stored facts of an R4 Appointment."""
    if resource.get("resourceType") != "Appointment" or not resource.get("id"):
        raise InvalidInput("The EHR returned something that is not an Appointment.")
    patient_ref = practitioner_ref = department = None
    for participant in resource.get("participant", []) or []:
        ref = (participant.get("actor") or {}).get("reference", "")
        if not isinstance(ref, str):
            continue
        if patient_ref is None and reference_id(ref, resource_type="Patient"):
            patient_ref = f"Patient/{reference_id(ref, resource_type='Patient')}"
        elif practitioner_ref is None and reference_id(ref, resource_type="Practitioner"):
            practitioner_ref = f"Practitioner/{reference_id(ref, resource_type='Practitioner')}"
        elif department is None and reference_id(ref, resource_type="Location"):
            department = (participant.get("actor") or {}).get("display")
    if department is None:
        for service in resource.get("serviceType", []) or []:
            if isinstance(service, dict) and service.get("text"):
                department = service["text"]
                break
    return AppointmentFacts(
        ehr_appointment_id=str(resource["id"]),
        status=str(resource.get("status") or "booked"),
        start_at=_parse_instant(resource.get("start")),
        end_at=_parse_instant(resource.get("end")),
        patient_ref=patient_ref,
        practitioner_ref=practitioner_ref,
        department=department[:255] if isinstance(department, str) else None,
        encounter_id=None,
    )


async def resolve_appointment(
    reader: FhirReader, context: LaunchContext, *, timezone: str, now: datetime
) -> AppointmentFacts:
    """The appointment a launch is about: fhirContext, else the encounter's, else today's.

    Raises :class:`InvalidInput` when the launch names none and the patient has none today.
    """
    if context.appointment_id:
        facts = appointment_facts(await reader.get(f"Appointment/{context.appointment_id}"))
        return _with_encounter(facts, context.encounter_id)
    if context.encounter_id:
        encounter = await reader.get(f"Encounter/{context.encounter_id}")
        for item in encounter.get("appointment", []) or []:
            appt_id = reference_id(item.get("reference", ""), resource_type="Appointment")
            if appt_id:
                facts = appointment_facts(await reader.get(f"Appointment/{appt_id}"))
                return _with_encounter(facts, context.encounter_id)
        period = encounter.get("period") or {}
        return AppointmentFacts(
            ehr_appointment_id=f"Encounter/{context.encounter_id}",
            status="booked",
            start_at=_parse_instant(period.get("start")),
            end_at=_parse_instant(period.get("end")),
            patient_ref=f"Patient/{context.patient_id}" if context.patient_id else None,
            practitioner_ref=None,
            department=None,
            encounter_id=context.encounter_id,
        )
    if context.patient_id:
        zone = ZoneInfo(timezone)
        today = now.astimezone(zone).date()
        bundle = await reader.get(
            "Appointment",
            {
                "patient": context.patient_id,
                "date": [f"ge{today.isoformat()}", f"lt{(today + timedelta(days=1)).isoformat()}"],
            },
        )
        candidates = [
            appointment_facts(e["resource"])
            for e in bundle.get("entry", []) or []
            if (e.get("resource") or {}).get("resourceType") == "Appointment"
        ]
        live = [
            c for c in candidates if c.status not in ("cancelled", "noshow", "entered-in-error")
        ]
        if live:
            return min(live, key=lambda c: abs(((c.start_at or now) - now).total_seconds()))
    raise InvalidInput(
        "The EHR did not say which appointment this visit is for, and the patient has no "
        "appointment today. Start the visit from the appointment in the schedule.",
        title="No appointment in the launch",
    )


def _with_encounter(facts: AppointmentFacts, encounter_id: str | None) -> AppointmentFacts:
    if encounter_id is None:
        return facts
    return AppointmentFacts(**{**facts.__dict__, "encounter_id": encounter_id})
