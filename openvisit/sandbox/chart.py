"""The chart of one appointment: what OpenVisit wrote back, read live from the FHIR store.

``GET /ehr/chart/{appointment}`` is the EHR's view of a visit, so a demo shows the loop
closing: the Appointment (time, status), its Encounter (status, class, period), a timeline
of the AuditEvents whose ``entity.what`` names the Appointment or its Encounter (in
``recorded`` order, each subtype with a human label and the agent's name from the store),
the device-test Observations and the Communications about the Appointment or Encounter.

OpenVisit's device-test link is one per clinic (an integration record), so its Observation
names no patient; the chart shows the patient's own results and, apart and said so, the
results of that day that name nobody.

``GET /ehr/chart/{appointment}/state`` answers a fingerprint of everything the page shows;
``static/chart.js`` polls it and reloads the page when it changes. No sign-in, like the
schedule: the sandbox is a demo EHR holding synthetic data only. Logs name ids, never names.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from openvisit.sandbox.fhir_store import Resource, is_valid_id
from openvisit.sandbox.pages import actor_id, display_name, mrn_of
from openvisit.sandbox.runtime import Sandbox, get_sandbox
from openvisit.writeback.resources import CHECK_SYSTEM, CHECKS, EVENT_SYSTEM

log = logging.getLogger(__name__)

#: How often the page asks whether anything changed (static/chart.js reads it from the page).
POLL_SECONDS = 5
#: OpenVisit's visit-event subtype → what the chart says; ``{who}`` is Patient, Clinician…
EVENT_LABELS: dict[str, str] = {
    "connected": "{who} connected",
    "disconnected": "{who} disconnected",
    "admitted": "{who} admitted from the lobby",
    "returned_to_lobby": "{who} sent back to the lobby",
    "removed": "{who} removed from the visit",
    "started": "Visit started",
    "ended": "Visit ended",
}
_WHO = {"Patient": "Patient", "Practitioner": "Clinician", "RelatedPerson": "Companion"}
_CHECK_NAMES = {"camera": "Camera", "microphone": "Microphone", "speaker": "Speaker",
                "call": "Test call"}
#: A device test with no subject is shown on the chart of an appointment on the same day.
_DEVICE_TEST = (CHECK_SYSTEM, "device-test")


@dataclass(frozen=True)
class Event:
    """One AuditEvent on the timeline."""

    id: str
    code: str
    label: str
    time: str
    agent: str
    agent_kind: str


@dataclass(frozen=True)
class Check:
    name: str
    state: str


@dataclass(frozen=True)
class DeviceTest:
    """One device-test Observation: the overall result, the four checks, the call figures."""

    id: str
    time: str
    result: str
    checks: list[Check]
    figures: list[tuple[str, str]]


@dataclass(frozen=True)
class Message:
    """One Communication about the appointment (a message sent, the patient arrived)."""

    id: str
    time: str
    label: str
    medium: str
    recipient: str
    text: str


@dataclass(frozen=True)
class EncounterView:
    id: str
    status: str
    class_code: str
    class_display: str
    start: str
    end: str


@dataclass(frozen=True)
class Chart:
    """Everything the chart page shows for one appointment."""

    appointment_id: str
    date: str
    time: str
    end: str
    status: str
    kind: str
    virtual: bool
    description: str
    patient_id: str
    patient_name: str
    patient_mrn: str
    patient_birth: str
    practitioner_id: str
    practitioner_name: str
    encounter: EncounterView | None
    events: list[Event] = field(default_factory=list)
    tests: list[DeviceTest] = field(default_factory=list)
    clinic_tests: list[DeviceTest] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    version: str = ""

    @property
    def written(self) -> bool:
        """Whether anything written back shows (the empty state otherwise)."""
        return bool(self.events or self.tests or self.clinic_tests or self.messages)


def _ref(value: Any) -> tuple[str, str] | None:
    """``(type, id)`` of a Reference (relative or absolute), None for anything else."""
    if not isinstance(value, dict) or not isinstance(value.get("reference"), str):
        return None
    parts = [p for p in value["reference"].split("/_history/")[0].split("/") if p]
    return (parts[-2], parts[-1]) if len(parts) >= 2 else None


def _refs(values: Any) -> set[tuple[str, str]]:
    items = values if isinstance(values, list) else [values]
    return {r for r in map(_ref, items) if r is not None}


def _codes(concept: Any) -> set[tuple[str | None, str]]:
    if not isinstance(concept, dict):
        return set()
    return {(c.get("system"), str(c.get("code"))) for c in concept.get("coding", [])
            if isinstance(c, dict) and c.get("code")}


def _text(concept: Any) -> str:
    if not isinstance(concept, dict):
        return ""
    if concept.get("text"):
        return str(concept["text"])
    for coding in concept.get("coding", []):
        if isinstance(coding, dict) and (coding.get("display") or coding.get("code")):
            return str(coding.get("display") or coding.get("code"))
    return ""


def _moment(value: Any, tz: tzinfo) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=tz)).astimezone(tz)


def _clock(value: Any, tz: tzinfo) -> str:
    moment = _moment(value, tz)
    return moment.strftime("%H:%M:%S") if moment else ""


class _People:
    """Display names of the people references name, read from the store once each."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._store = sandbox.store
        self._seen: dict[tuple[str, str], str] = {}

    def name(self, reference: Any) -> str:
        key = _ref(reference)
        if key is None or key[0] not in {"Patient", "Practitioner", "RelatedPerson"}:
            return str(reference.get("display", "")) if isinstance(reference, dict) else ""
        if key not in self._seen:
            found = self._store.read(*key)
            self._seen[key] = display_name(found) if found else key[1]
        return self._seen[key]


def _event(resource: Resource, *, people: _People, tz: tzinfo) -> Event:
    code = next((c for s, c in (_codes({"coding": resource.get("subtype", [])}))
                 if s == EVENT_SYSTEM), "")
    agents = [a for a in resource.get("agent", []) if isinstance(a, dict)]
    agent = next((a for a in agents if a.get("requestor")), agents[0] if agents else {})
    who = agent.get("who")
    kind = (_ref(who) or ("", ""))[0]
    label = EVENT_LABELS.get(code, "").format(who=_WHO.get(kind, "Participant"))
    if not label:  # not one of OpenVisit's: what the resource says of itself
        subtypes = resource.get("subtype") or [{}]
        label = str(resource.get("outcomeDesc") or _text({"coding": subtypes[-1:]})
                    or _text({"coding": [resource.get("type") or {}]}) or "AuditEvent")
    return Event(id=str(resource["id"]), code=code, label=label,
                 time=_clock(resource.get("recorded"), tz),
                 agent=people.name(who) or "OpenVisit", agent_kind=_WHO.get(kind, "System"))


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _device_test(resource: Resource, *, tz: tzinfo) -> DeviceTest:
    checks: dict[str, str] = {}
    figures: list[tuple[str, str]] = []
    for part in resource.get("component", []):
        code = next((c for s, c in _codes(part.get("code")) if s == CHECK_SYSTEM), "")
        if code in CHECKS:
            checks[code] = _text(part.get("valueCodeableConcept"))
        elif isinstance(part.get("valueQuantity"), dict):
            quantity = part["valueQuantity"]
            shown = f"{_number(quantity.get('value', ''))} {quantity.get('unit', '')}".strip()
            figures.append((_text(part.get("code")) or code, shown))
        elif isinstance(part.get("valueString"), str):
            figures.append((_text(part.get("code")) or code, part["valueString"]))
    moment = _moment(resource.get("effectiveDateTime"), tz)
    return DeviceTest(
        id=str(resource["id"]),
        time=moment.strftime("%d %b %H:%M:%S") if moment else "",
        result=_text(resource.get("valueCodeableConcept")) or str(resource.get("status", "")),
        checks=[Check(_CHECK_NAMES[c], checks[c]) for c in CHECKS if c in checks],
        figures=figures,
    )


def _message(resource: Resource, *, people: _People, tz: tzinfo) -> Message:
    categories = resource.get("category") or [{}]
    codes = {c for _, c in _codes(categories[0])}
    medium = _text((resource.get("medium") or [{}])[0])
    if "patient-arrived" in codes:
        label = "Patient arrived in the lobby"
    elif any(c.startswith("message-") for c in codes):
        template = next(c for c in codes if c.startswith("message-"))[len("message-"):]
        label = f"{medium or 'Message'} sent: {template.replace('_', ' ')}"
    else:
        label = _text(categories[0]) or "Communication"
    recipients = [people.name(r) for r in resource.get("recipient", [])]
    texts = [str(p["contentString"]) for p in resource.get("payload", [])
             if isinstance(p, dict) and isinstance(p.get("contentString"), str)]
    return Message(id=str(resource["id"]), time=_clock(resource.get("sent"), tz), label=label,
                   medium=medium, recipient=", ".join(r for r in recipients if r),
                   text=" ".join(texts))


def _encounter_of(sandbox: Sandbox, appointment_id: str) -> Resource | None:
    for encounter in sandbox.store.all("Encounter"):
        if ("Appointment", appointment_id) in _refs(encounter.get("appointment", [])):
            return encounter
    return None


def _fingerprint(resources: list[Resource]) -> str:
    seen = sorted((str(r.get("resourceType")), str(r.get("id")),
                   str(r.get("meta", {}).get("versionId", ""))) for r in resources)
    return hashlib.sha256(json.dumps(seen).encode()).hexdigest()[:16]


def _sort_key(value: Any, tz: tzinfo) -> datetime:
    return _moment(value, tz) or datetime.min.replace(tzinfo=tz)


def build_chart(sandbox: Sandbox, appointment_id: str) -> Chart | None:
    """The chart of ``appointment_id`` as the store holds it now, or None when unknown."""
    store = sandbox.store
    appointment = store.read("Appointment", appointment_id)
    if appointment is None:
        return None
    tz = sandbox.now().tzinfo
    assert tz is not None
    people = _People(sandbox)
    patient_id = actor_id(appointment, "Patient") or ""
    practitioner_id = actor_id(appointment, "Practitioner") or ""
    patient = store.read("Patient", patient_id) if patient_id else None
    encounter = _encounter_of(sandbox, appointment_id)
    about = {("Appointment", appointment_id)}
    if encounter is not None:
        about.add(("Encounter", str(encounter["id"])))
    shown: list[Resource] = [appointment, *([encounter] if encounter else [])]

    # Insertion order breaks ties of equal ``recorded`` (the order the EHR stored them).
    audits = [e for e in store.all("AuditEvent")
              if about & _refs([x.get("what") for x in e.get("entity", [])
                                if isinstance(x, dict)])]
    audits.sort(key=lambda e: _sort_key(e.get("recorded"), tz))
    start = _moment(appointment.get("start"), tz) or sandbox.now()
    tests: list[Resource] = []
    clinic_tests: list[Resource] = []
    for observation in store.all("Observation"):
        if _DEVICE_TEST not in _codes(observation.get("code")):
            continue
        subject = _ref(observation.get("subject"))
        if subject == ("Patient", patient_id):
            tests.append(observation)
        elif subject is None and _day(observation, tz) == start.date():
            clinic_tests.append(observation)
    for found in (tests, clinic_tests):  # the newest result first: it is what matters
        found.sort(key=lambda o: _sort_key(o.get("effectiveDateTime"), tz), reverse=True)
    comms = [c for c in store.all("Communication")
             if about & (_refs(c.get("about", [])) | _refs(c.get("encounter")))]
    comms.sort(key=lambda c: _sort_key(c.get("sent"), tz))
    shown += audits + tests + clinic_tests + comms

    end = _moment(appointment.get("end"), tz)
    kinds = [s.get("text", "") for s in appointment.get("serviceType", [])]
    return Chart(
        appointment_id=appointment_id,
        date=start.strftime("%A %d %B %Y"),
        time=start.strftime("%H:%M"),
        end=end.strftime("%H:%M") if end else "",
        status=str(appointment.get("status", "")),
        kind=kinds[0] if kinds else "Visit",
        virtual="Video visit" in kinds,
        description=str(appointment.get("description", "")),
        patient_id=patient_id,
        patient_name=display_name(patient) if patient else patient_id,
        patient_mrn=mrn_of(patient) if patient else "",
        patient_birth=str(patient.get("birthDate", "")) if patient else "",
        practitioner_id=practitioner_id,
        practitioner_name=people.name({"reference": f"Practitioner/{practitioner_id}"}),
        encounter=_encounter_view(encounter, tz) if encounter else None,
        events=[_event(e, people=people, tz=tz) for e in audits],
        tests=[_device_test(o, tz=tz) for o in tests],
        clinic_tests=[_device_test(o, tz=tz) for o in clinic_tests[:3]],
        messages=[_message(c, people=people, tz=tz) for c in comms],
        version=_fingerprint(shown),
    )


def _day(observation: Resource, tz: tzinfo) -> date | None:
    moment = _moment(observation.get("effectiveDateTime"), tz)
    return moment.date() if moment else None


def _encounter_view(encounter: Resource, tz: tzinfo) -> EncounterView:
    period = encounter.get("period") or {}
    klass = encounter.get("class") or {}
    return EncounterView(
        id=str(encounter["id"]),
        status=str(encounter.get("status", "")),
        class_code=str(klass.get("code", "")),
        class_display=str(klass.get("display", "")),
        start=_clock(period.get("start"), tz),
        end=_clock(period.get("end"), tz),
    )


async def chart(request: Request) -> Response:
    """The chart page of one appointment (404 for an unknown one)."""
    sandbox = get_sandbox(request)
    appointment_id = str(request.path_params["appointment"])
    found = build_chart(sandbox, appointment_id) if is_valid_id(appointment_id) else None
    if found is None:
        return sandbox.templates.TemplateResponse(
            request, "error.html",
            {"title": "Not found", "message": "No such appointment in the sandbox (Reset demo "
             "replaces every appointment: open it again from the schedule)."},
            status_code=404)
    log.info("sandbox.chart_viewed appointment=%s events=%d", appointment_id, len(found.events))
    return sandbox.templates.TemplateResponse(
        request, "chart.html",
        # No demo bar: its "Reset demo" would replace this very appointment.
        {"chart": found, "poll_seconds": POLL_SECONDS},
        headers={"Cache-Control": "no-store"})


async def chart_state(request: Request) -> Response:
    """``{"version": …}``: changes whenever anything the chart page shows changes."""
    sandbox = get_sandbox(request)
    appointment_id = str(request.path_params["appointment"])
    found = build_chart(sandbox, appointment_id) if is_valid_id(appointment_id) else None
    if found is None:
        return JSONResponse({"error": "not found"}, status_code=404,
                            headers={"Cache-Control": "no-store"})
    return JSONResponse({"version": found.version}, headers={"Cache-Control": "no-store"})


def routes() -> list[BaseRoute]:
    return [
        Route("/ehr/chart/{appointment}", chart, methods=["GET"]),
        Route("/ehr/chart/{appointment}/state", chart_state, methods=["GET"]),
    ]
