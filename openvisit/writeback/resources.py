"""The FHIR R4 resources write-back sends: pure functions from facts to JSON (EHR-SPEC §5).

Nothing here reads a database or the network; every function returns a plain dict that
:func:`validate` checks with ``fhir.resources`` (its ``R4B`` models, whose AuditEvent,
Encounter, Appointment, Observation and Communication are the R4 definitions, see
:mod:`openvisit.sandbox.fhir_validate`) before it is sent.

References: a value that is already ``Type/id`` is kept; a bare FHIR id becomes
``<Type>/<id>``; an id that is not a FHIR id (an HL7 SCH-2 or PID-3 value from the SIU feed)
becomes a logical reference by identifier, ``{"type": ..., "identifier": {"value": ...}}``,
which R4 allows where no server id is known (R4 §2.3.0 "Reference.identifier").

Idempotency: every created resource carries ``meta.tag`` ``{system: TAG_SYSTEM, code: key}``
with the write's key; the create is conditional on ``_tag=TAG_SYSTEM|key``. AuditEvent has no
top-level ``identifier`` in R4, and a tag is searchable on every resource (``_tag``), so one
rule dedupes everything (checked against Medplum's router in tests/writeback).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from fhir.resources import R4B

__all__ = [
    "AUDIT_EVENTS",
    "TAG_SYSTEM",
    "Facts",
    "appointment_status_ops",
    "audit_event",
    "devicetest_communication",
    "devicetest_observation",
    "encounter_update",
    "if_none_exist",
    "instant",
    "message_communication",
    "patient_arrived_communication",
    "reference",
    "validate",
]

TAG_SYSTEM = "urn:openvisit:writeback"
#: OpenVisit's own code system for visit events and device-test checks (*judgement*: no
#: standard code names "admitted from a virtual lobby").
EVENT_SYSTEM = "urn:openvisit:visit-event"
CHECK_SYSTEM = "urn:openvisit:device-test"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
UCUM = "http://unitsofmeasure.org"

_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

#: Visit event kind → (DICOM type, DICOM subtype, display). Connect/disconnect are a user
#: log-in/log-out to the visit (DCM 110114 with 110122/110123); the lobby and visit steps are
#: application activity (DCM 110100) with OpenVisit's subtype only.
AUDIT_EVENTS: dict[str, tuple[str, str | None, str]] = {
    "connected": ("110114", "110122", "Participant connected to the video visit"),
    "disconnected": ("110114", "110123", "Participant disconnected from the video visit"),
    "admitted": ("110100", None, "Participant admitted from the lobby"),
    "returned_to_lobby": ("110100", None, "Participant sent back to the lobby"),
    "removed": ("110100", None, "Participant removed from the video visit"),
    "started": ("110100", None, "Video visit started"),
    "ended": ("110100", None, "Video visit ended"),
}
_DCM_DISPLAY = {"110114": "User Authentication", "110100": "Application Activity",
                "110122": "Login", "110123": "Logout"}


@dataclass(frozen=True)
class Facts:
    """What write-back knows of one appointment: references only, never a name."""

    appointment_id: str
    encounter_id: str | None = None
    patient_ref: str | None = None
    practitioner_ref: str | None = None


def instant(value: datetime) -> str:
    """An R4 ``instant``: UTC with seconds and a ``Z`` (naive times are UTC here)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def reference(resource_type: str, value: str | None) -> dict[str, Any] | None:
    """A Reference to ``value`` (see the module docstring); None for no value."""
    if not value:
        return None
    if "/" in value:
        kind, _, rid = value.rpartition("/")
        if kind.split("/")[-1] and _FHIR_ID.match(rid):
            return {"reference": f"{kind.split('/')[-1]}/{rid}"}
    if _FHIR_ID.match(value):
        return {"reference": f"{resource_type}/{value}"}
    return {"type": resource_type, "identifier": {"value": value[:255]}}


def _tagged(resource: dict[str, Any], key: str) -> dict[str, Any]:
    resource["meta"] = {"tag": [{"system": TAG_SYSTEM, "code": key}]}
    return resource


def if_none_exist(key: str) -> str:
    """The ``If-None-Exist`` search that finds the resource a previous try of ``key`` made."""
    return f"_tag={TAG_SYSTEM}|{key}"


def _entities(facts: Facts) -> list[dict[str, Any]]:
    entities: list[dict[str, Any]] = []
    for kind, value in (("Appointment", facts.appointment_id), ("Encounter", facts.encounter_id)):
        what = reference(kind, value)
        if what is not None:
            entities.append({"what": what, "type": {
                "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                "code": "2", "display": "System Object"}})
    return entities


def audit_event(*, key: str, event_kind: str, at: datetime, facts: Facts,
                agent_ref: dict[str, Any] | None, agent_role: str | None,
                observer: str = "OpenVisit") -> dict[str, Any]:
    """One AuditEvent for a visit event (EHR-SPEC §5): type, subtype, action E, recorded,
    outcome 0, the agent (the EHR user or the patient; OpenVisit itself for visit-level
    events), source.observer, entity Appointment and Encounter."""
    if event_kind not in AUDIT_EVENTS:
        raise ValueError(f"no AuditEvent for visit event {event_kind!r}")
    dcm_type, dcm_subtype, display = AUDIT_EVENTS[event_kind]
    subtypes = [{"system": EVENT_SYSTEM, "code": event_kind, "display": display}]
    if dcm_subtype:
        subtypes.insert(0, {"system": DCM, "code": dcm_subtype,
                            "display": _DCM_DISPLAY[dcm_subtype]})
    agent: dict[str, Any] = {"requestor": agent_ref is not None}
    if agent_ref is not None:
        agent["who"] = agent_ref
    else:
        agent["who"] = {"display": observer}
    if agent_role:
        agent["role"] = [{"text": agent_role}]
    return _tagged({
        "resourceType": "AuditEvent",
        "type": {"system": DCM, "code": dcm_type, "display": _DCM_DISPLAY[dcm_type]},
        "subtype": subtypes,
        "action": "E",
        "recorded": instant(at),
        "outcome": "0",
        "outcomeDesc": display,
        "agent": [agent],
        "source": {"observer": {"display": observer},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                             "code": "4", "display": "Application Server"}]},
        "entity": _entities(facts),
    }, key)


EncounterStatus = Literal["in-progress", "finished"]


def encounter_update(current: dict[str, Any], *, status: EncounterStatus,
                     started_at: datetime | None, ended_at: datetime | None) -> dict[str, Any]:
    """The EHR's Encounter with OpenVisit's facts applied: ``status``, ``class`` VR (virtual,
    v3-ActCode) and ``period`` (start kept if the EHR has one; end set when finished).

    Applying it twice gives the same resource, so a retried update changes nothing. A
    finished Encounter is never moved back to in-progress (a late "started" after "ended").
    """
    updated = {k: v for k, v in current.items() if k != "meta"}
    if current.get("status") == "finished" and status == "in-progress":
        status = "finished"
    updated["status"] = status
    updated["class"] = {"system": ACT_CODE, "code": "VR", "display": "virtual"}
    period = dict(current.get("period") or {})
    if started_at is not None and "start" not in period:
        period["start"] = instant(started_at)
    if status == "finished" and ended_at is not None:
        period["end"] = instant(ended_at)
        period.setdefault("start", instant(started_at or ended_at))
    if period:
        updated["period"] = period
    return updated


def appointment_status_ops(current: dict[str, Any], *, status: str) -> list[dict[str, Any]]:
    """The JSON Patch that sets ``Appointment.status`` (empty when it already has it)."""
    if current.get("status") == status:
        return []
    return [{"op": "replace" if "status" in current else "add", "path": "/status",
             "value": status}]


#: The device test's four checks, in the order they are reported.
CHECKS = ("camera", "microphone", "speaker", "call")
_QUANTITIES: tuple[tuple[str, str, str, str], ...] = (
    ("rtt_ms", "Round-trip time", "ms", "ms"),
    ("jitter_ms", "Jitter", "ms", "ms"),
    ("packet_loss_pct", "Packet loss", "%", "%"),
    ("connect_ms", "Time to connect", "ms", "ms"),
    ("frames_decoded", "Frames decoded", "{frames}", "frames"),
    ("frame_width", "Frame width", "{pixels}", "px"),
    ("frame_height", "Frame height", "{pixels}", "px"),
)


def _state(value: str) -> dict[str, Any]:
    return {"coding": [{"system": CHECK_SYSTEM, "code": value}], "text": value}


def devicetest_observation(*, key: str, at: datetime, result: dict[str, Any],
                           patient_ref: str | None) -> dict[str, Any]:
    """An Observation of a device-test result: overall pass/fail, one component per check
    and one per call figure (UCUM units), about the patient when the context names one."""
    call = result.get("call") or {}
    components: list[dict[str, Any]] = []
    for check in CHECKS:
        value = call.get("status") if check == "call" else result.get(check)
        if isinstance(value, str):
            components.append({"code": {"coding": [{"system": CHECK_SYSTEM, "code": check}],
                                        "text": check}, "valueCodeableConcept": _state(value)})
    for name, text, unit, shown in _QUANTITIES:
        value = call.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            components.append({
                "code": {"coding": [{"system": CHECK_SYSTEM, "code": name}], "text": text},
                "valueQuantity": {"value": value, "unit": shown, "system": UCUM, "code": unit},
            })
    if isinstance(call.get("candidate_type"), str):
        components.append({"code": {"coding": [{"system": CHECK_SYSTEM,
                                                "code": "candidate_type"}],
                                    "text": "Network path"},
                           "valueString": call["candidate_type"]})
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "survey", "display": "Survey"}]}],
        "code": {"coding": [{"system": CHECK_SYSTEM, "code": "device-test",
                             "display": "Telehealth device test"}],
                 "text": "Telehealth device test"},
        "effectiveDateTime": instant(at),
        "valueCodeableConcept": _state("passed" if result.get("passed") else "failed"),
        "component": components,
    }
    subject = reference("Patient", patient_ref)
    if subject is not None:
        observation["subject"] = subject
    return _tagged(observation, key)


def devicetest_communication(*, key: str, at: datetime, result: dict[str, Any],
                             patient_ref: str | None) -> dict[str, Any]:
    """The same result as a Communication (vendor profile choice): a one-line summary of the
    checks and figures (no personal data: states and numbers only)."""
    call = result.get("call") or {}
    checks = ", ".join(
        f"{c} {call.get('status') if c == 'call' else result.get(c)}" for c in CHECKS)
    figures = ", ".join(f"{n} {call[n]}" for n, *_ in _QUANTITIES if n in call)
    text = f"Telehealth device test {'passed' if result.get('passed') else 'failed'}: {checks}"
    communication: dict[str, Any] = {
        "resourceType": "Communication",
        "status": "completed",
        "category": [{"coding": [{"system": CHECK_SYSTEM, "code": "device-test"}]}],
        "sent": instant(at),
        "payload": [{"contentString": text + (f" ({figures})" if figures else "")}],
    }
    subject = reference("Patient", patient_ref)
    if subject is not None:
        communication["subject"] = subject
    return _tagged(communication, key)


_MEDIUM = {"sms": ("SMSWRIT", "SMS"), "email": ("EMAILWRIT", "email")}


def message_communication(*, key: str, at: datetime, facts: Facts, channel: str,
                          template: str, text: str | None = None) -> dict[str, Any]:
    """A Communication for an SMS or e-mail sent: status completed, medium (v3
    ParticipationMode), about the Appointment, the patient as recipient; the message text
    only when the organisation turned that on (``text`` is None otherwise)."""
    code, display = _MEDIUM.get(channel, ("WRITTEN", "written"))
    communication: dict[str, Any] = {
        "resourceType": "Communication",
        "status": "completed",
        "category": [{"coding": [{"system": EVENT_SYSTEM, "code": f"message-{template}"}],
                      "text": template}],
        "medium": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationMode",
            "code": code, "display": display}]}],
        "sent": instant(at),
    }
    about = reference("Appointment", facts.appointment_id)
    if about is not None:
        communication["about"] = [about]
    patient = reference("Patient", facts.patient_ref)
    if patient is not None:
        communication["subject"] = patient
        communication["recipient"] = [patient]
    if text:
        communication["payload"] = [{"contentString": text}]
    return _tagged(communication, key)


def patient_arrived_communication(*, key: str, at: datetime, facts: Facts,
                                  text: str) -> dict[str, Any]:
    """A Communication to the practitioner: the patient is waiting in the lobby."""
    communication: dict[str, Any] = {
        "resourceType": "Communication",
        "status": "completed",
        "priority": "urgent",
        "category": [{"coding": [{"system": EVENT_SYSTEM, "code": "patient-arrived"}],
                      "text": "Patient arrived"}],
        "sent": instant(at),
        "payload": [{"contentString": text}],
    }
    recipient = reference("Practitioner", facts.practitioner_ref)
    if recipient is not None:
        communication["recipient"] = [recipient]
    about = reference("Appointment", facts.appointment_id)
    if about is not None:
        communication["about"] = [about]
    patient = reference("Patient", facts.patient_ref)
    if patient is not None:
        communication["subject"] = patient
    encounter = reference("Encounter", facts.encounter_id)
    if encounter is not None:
        communication["encounter"] = encounter
    return _tagged(communication, key)


def validate(resource: dict[str, Any]) -> None:
    """Raise ``ValueError`` naming the elements unless ``resource`` is valid R4 (R4B models).

    Messages name elements, never values (a value could be a reference to a person)."""
    kind = resource.get("resourceType")
    if not isinstance(kind, str):
        raise ValueError("resource has no resourceType")
    model = R4B.get_fhir_model_class(kind)
    try:
        model.model_validate(resource)
    except ValueError as exc:
        errors: list[dict[str, Any]] = getattr(exc, "errors", lambda: [])()
        where = sorted({".".join(str(p) for p in e.get("loc", ())) for e in errors[:10]})
        raise ValueError(f"invalid {kind}: {', '.join(where) or 'structure'}") from None
