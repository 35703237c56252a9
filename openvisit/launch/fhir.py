"""Read the launch's Appointment (or Encounter, or the patient's appointment today) from the EHR.

FHIR R4 REST (read and search; http.html#read, search.html). Only what OpenVisit stores is
extracted: ids, times, status, department, the patient and practitioner references. Patient
names and clinical data are never read out.

Refusals are typed: :class:`EhrRefused` (401/403) and :class:`EhrRecordMissing` (404), so a
patient launch whose context read is refused or points at nothing can fall back to the
patient's own appointments of the day (:func:`resolve_appointment`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from openvisit.errors import InvalidInput, NotFound, OutboundError
from openvisit.logs import get_logger
from openvisit.models.choices import NOT_HELD_STATUSES
from openvisit.smart.context import LaunchContext, reference_id

log = get_logger(__name__)


class EhrRefused(OutboundError):
    """The EHR's FHIR server refused a read or search (HTTP 401 or 403)."""

    code = "ehr_refused"

    def __init__(self, message: str, *, http_status: int, resource_type: str) -> None:
        super().__init__(message, permanent=True,
                         title="The EHR refused to share the appointment")
        self.http_status = http_status
        self.resource_type = resource_type


class EhrRecordMissing(NotFound):
    """The EHR's FHIR server says the record the launch names does not exist (HTTP 404)."""

    code = "ehr_record_missing"

    def __init__(self, message: str, *, resource_type: str) -> None:
        super().__init__(message, title="The EHR does not have this record")
        self.http_status = 404
        self.resource_type = resource_type


class NoAppointment(InvalidInput):
    """Neither the launch nor the patient's appointments of the day name a visit."""

    status_code = 404
    code = "no_appointment"


#: A context read that may fall back to the patient's own appointments.
CONTEXT_READ_FAILURES = (EhrRefused, EhrRecordMissing)


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
        """GET ``[base]/path``; raises :class:`EhrRefused`, :class:`EhrRecordMissing` or
        :class:`OutboundError` (no answer, other 4xx/5xx). Messages never quote ids."""
        self.calls += 1
        resource_type = path.split("/")[0].split("?")[0]
        try:
            response = await self.http.get(
                f"{self.base}/{path}", params=params, headers=self._headers
            )
        except httpx.HTTPError as exc:
            raise OutboundError(
                f"The EHR's FHIR server did not answer ({type(exc).__name__})."
            ) from exc
        if response.status_code == 404:
            raise EhrRecordMissing(
                f"The EHR says the {resource_type} named by the launch does not exist (HTTP "
                "404): the launch points at a record this user cannot see, or that was deleted.",
                resource_type=resource_type,
            )
        if response.status_code in (401, 403):
            raise EhrRefused(
                f"The EHR's FHIR server refused to show the {resource_type} (HTTP "
                f"{response.status_code}).",
                http_status=response.status_code, resource_type=resource_type,
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
    reader: FhirReader, context: LaunchContext, *, timezone: str, now: datetime,
    fall_back_to_patient: bool = False,
) -> AppointmentFacts:
    """The appointment a launch is about: fhirContext, else the encounter's, else today's.

    With ``fall_back_to_patient`` (patient launches), a context read that the EHR refuses
    (401/403) or does not find (404) is answered from the patient's own appointments of the
    day instead. Raises :class:`EhrRefused`, :class:`EhrRecordMissing` or
    :class:`OutboundError` for a failed read, :class:`NoAppointment` when the launch names
    none and the patient has none today.
    """
    if context.appointment_id or context.encounter_id:
        try:
            return await _from_context(reader, context)
        except CONTEXT_READ_FAILURES as exc:
            if not (fall_back_to_patient and context.patient_id):
                raise
            log.info("launch_context_fallback", resource_type=exc.resource_type,
                     http_status=exc.http_status)
    if context.patient_id:
        found = await todays_appointment(reader, patient_id=context.patient_id,
                                         timezone=timezone, now=now)
        if found is not None:
            return _with_encounter(found, context.encounter_id)
    raise NoAppointment(
        "The EHR did not say which appointment this visit is for, and the patient has no "
        "appointment today. Start the visit from the appointment in the schedule.",
        title="No appointment in the launch",
    )


async def _from_context(reader: FhirReader, context: LaunchContext) -> AppointmentFacts:
    if context.appointment_id:
        facts = appointment_facts(await reader.get(f"Appointment/{context.appointment_id}"))
        return _with_encounter(facts, context.encounter_id)
    assert context.encounter_id is not None
    encounter = await reader.get(f"Encounter/{context.encounter_id}")
    for item in encounter.get("appointment", []) or []:
        appt_id = reference_id(item.get("reference", ""), resource_type="Appointment")
        if appt_id:
            facts = appointment_facts(await reader.get(f"Appointment/{appt_id}"))
            return _with_encounter(facts, context.encounter_id)
    period = encounter.get("period") or {}
    subject = reference_id(str((encounter.get("subject") or {}).get("reference", "")),
                           resource_type="Patient")
    return AppointmentFacts(
        ehr_appointment_id=f"Encounter/{context.encounter_id}",
        status="booked",
        start_at=_parse_instant(period.get("start")),
        end_at=_parse_instant(period.get("end")),
        # The encounter's own subject: who the visit is for, as the EHR records it.
        patient_ref=f"Patient/{subject}" if subject else None,
        practitioner_ref=None,
        department=None,
        encounter_id=context.encounter_id,
    )


async def todays_appointment(
    reader: FhirReader, *, patient_id: str, timezone: str, now: datetime
) -> AppointmentFacts | None:
    """The patient's live appointment of today (in ``timezone``) nearest to ``now``, if any.

    Only appointments whose patient participant is this patient count, whatever else the
    server returns for ``Appointment?patient=…``.
    """
    zone = ZoneInfo(timezone)
    today = now.astimezone(zone).date()
    bundle = await reader.get(
        "Appointment",
        {
            "patient": patient_id,
            "date": [f"ge{today.isoformat()}", f"lt{(today + timedelta(days=1)).isoformat()}"],
        },
    )
    candidates = [
        appointment_facts(e["resource"])
        for e in bundle.get("entry", []) or []
        if (e.get("resource") or {}).get("resourceType") == "Appointment"
    ]
    live = [
        c for c in candidates
        if c.status not in NOT_HELD_STATUSES
        and c.patient_ref == f"Patient/{patient_id}"
    ]
    if not live:
        return None
    return min(live, key=lambda c: abs(((c.start_at or now) - now).total_seconds()))


def _with_encounter(facts: AppointmentFacts, encounter_id: str | None) -> AppointmentFacts:
    if encounter_id is None:
        return facts
    return AppointmentFacts(**{**facts.__dict__, "encounter_id": encounter_id})
