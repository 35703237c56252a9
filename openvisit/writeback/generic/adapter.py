"""The generic profile: the FHIR resources of EHR-SPEC §5, for any R4 server.

- AuditEvent, Observation/Communication (device test), Communication (message sent, patient
  arrived): a conditional create tagged with the write's key, so a retry finds the first copy;
- Encounter: read, apply status/class/period (:func:`~openvisit.writeback.resources.
  encounter_update`), ``PUT`` with ``If-Match``; a 412 (someone changed it) reads again;
- Appointment.status: read, JSON Patch ``replace /status`` with ``If-Match``.

Every resource is validated with ``fhir.resources`` before it is sent: a payload the EHR would
refuse fails here, with the element named, instead of being retried against the EHR.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from openvisit.models.choices import WritebackWhat
from openvisit.writeback import adapter as a
from openvisit.writeback import fhir, webhook
from openvisit.writeback import resources as res
from openvisit.writeback.fhir import FhirAnswer, FhirWriteError
from openvisit.writeback.settings import WritebackSettings

#: Read-modify-write rounds before a 412 is left to the job's retry.
CONFLICT_ROUNDS = 3
#: Visit event → Appointment.status (where the EHR allows the write).
APPOINTMENT_STATUS_FOR = {"started": "arrived", "ended": "fulfilled"}
ENCOUNTER_STATUS_FOR: dict[str, res.EncounterStatus] = {
    "started": "in-progress", "ended": "finished"}


def when(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


def facts_of(payload: Mapping[str, Any]) -> res.Facts:
    appt = payload.get("appointment") or {}
    return res.Facts(appointment_id=str(appt.get("id") or ""),
                     encounter_id=appt.get("encounter"), patient_ref=appt.get("patient"),
                     practitioner_ref=appt.get("practitioner"))


def ref_of(answer: FhirAnswer, resource_type: str) -> str | None:
    rid = answer.resource_id
    return f"{resource_type}/{rid}" if rid else None


class GenericAdapter:
    """Write-back as plain FHIR R4 (the base of the vendor profiles too)."""

    name = "generic"

    def plan(self, event_kind: str, *, role: str | None, has_encounter: bool,
             settings: WritebackSettings, options: Mapping[str, Any]) -> list[WritebackWhat]:
        whats: list[WritebackWhat] = []
        if event_kind == "joined" and role == "patient" and settings.patient_arrived:
            whats.append(a.ARRIVED)
        if event_kind == "joined" and role == "patient" and settings.webhook_url:
            whats.append(a.ARRIVED_WEBHOOK)
        if settings.audit_events and event_kind in res.AUDIT_EVENTS:
            whats.append(a.AUDIT)
        if settings.encounter and has_encounter and event_kind in ENCOUNTER_STATUS_FOR:
            whats.append(a.ENCOUNTER)
        if settings.appointment_status and event_kind in APPOINTMENT_STATUS_FOR:
            whats.append(a.APPOINTMENT_STATUS)
        if event_kind == "devicetest_result" and settings.devicetest != "off":
            whats.append(a.DEVICETEST)
        return whats

    async def write(self, write: a.Write, target: a.WriteTarget) -> str | None:
        p = write.payload
        at = when(p.get("at"))
        assert at is not None, "every write carries its event time"
        if write.what == a.AUDIT:
            agent = p.get("agent") or None
            resource = res.audit_event(
                key=write.key, event_kind=write.event_kind, at=at, facts=facts_of(p),
                agent_ref=res.reference(agent["type"], agent["value"]) if agent else None,
                agent_role=p.get("role"))
            return await self.create(resource, write, target)
        if write.what == a.ENCOUNTER:
            return await self.encounter(write, target)
        if write.what == a.APPOINTMENT_STATUS:
            return await self.appointment_status(write, target)
        if write.what == a.DEVICETEST:
            build = (res.devicetest_communication if p.get("as") == "communication"
                     else res.devicetest_observation)
            return await self.create(build(key=write.key, at=at, result=dict(p["result"]),
                                           patient_ref=p.get("patient")), write, target)
        if write.what == a.MESSAGE:
            return await self.create(res.message_communication(
                key=write.key, at=at, facts=facts_of(p), channel=str(p["channel"]),
                template=str(p["template"]), text=p.get("text")), write, target)
        if write.what == a.ARRIVED:
            return await self.create(res.patient_arrived_communication(
                key=write.key, at=at, facts=facts_of(p), text=str(p["text"])), write, target)
        if write.what == a.ARRIVED_WEBHOOK:
            await webhook.post(write, target)
            return None
        raise FhirWriteError(f"The {self.name} profile has no write of kind {write.what!r}.",
                             outcome="permanent", http_status=None)

    # ------------------------------------------------------------------ building blocks

    async def create(self, resource: dict[str, Any], write: a.Write,
                     target: a.WriteTarget) -> str | None:
        """Validate, then create conditionally on the write's tag (a retry finds the first)."""
        try:
            res.validate(resource)
        except ValueError as exc:
            raise FhirWriteError(f"OpenVisit built an invalid resource ({exc}); this is a bug "
                                 "to report.", outcome="permanent", http_status=None) from None
        answer = await target.fhir.send(fhir.conditional_create(
            resource, if_none_exist=res.if_none_exist(write.key)))
        return ref_of(answer, str(resource["resourceType"]))

    async def resolve(self, resource_type: str, value: str,
                      target: a.WriteTarget) -> FhirAnswer:
        """Read ``Type/id``, or find it by identifier when the reference is not a FHIR id."""
        ref = res.reference(resource_type, value) or {}
        if "reference" in ref:
            rid = str(ref["reference"]).split("/", 1)[1]
            return await target.fhir.send(fhir.read(resource_type, rid))
        bundle = await target.fhir.send(fhir.search(
            resource_type, {"identifier": str(ref["identifier"]["value"])}))
        entries: list[dict[str, Any]] = [
            e["resource"] for e in bundle.resource.get("entry") or []
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
        if len(entries) != 1:
            raise FhirWriteError(
                f"The EHR has {len(entries)} {resource_type} resources with this visit's "
                "identifier; OpenVisit writes only when exactly one matches.",
                outcome="permanent" if entries else "retry", http_status=None)
        return FhirAnswer(status=200, resource=entries[0], location=None, etag=None)

    async def encounter(self, write: a.Write, target: a.WriteTarget) -> str | None:
        p = write.payload
        facts = facts_of(p)
        if not facts.encounter_id:
            return None
        status = ENCOUNTER_STATUS_FOR[write.event_kind]
        for _ in range(CONFLICT_ROUNDS):
            current = await self.resolve("Encounter", facts.encounter_id, target)
            updated = res.encounter_update(current.resource, status=status,
                                           started_at=when(p.get("started_at")),
                                           ended_at=when(p.get("ended_at")))
            rid = str(current.resource["id"])
            if updated == {k: v for k, v in current.resource.items() if k != "meta"}:
                return f"Encounter/{rid}"  # already so: a retry after the write landed
            try:
                res.validate(updated)
            except ValueError as exc:
                raise FhirWriteError(f"The EHR's Encounter would not be valid R4 after the "
                                     f"update ({exc}).", outcome="permanent",
                                     http_status=None) from None
            try:
                await target.fhir.send(fhir.update(updated, version=current.version))
            except FhirWriteError as exc:
                if exc.outcome == "conflict":
                    continue
                raise
            return f"Encounter/{rid}"
        raise FhirWriteError("The EHR's Encounter kept changing while OpenVisit updated it; "
                             "it will try again.", outcome="retry", http_status=412)

    async def appointment_status(self, write: a.Write, target: a.WriteTarget) -> str | None:
        facts = facts_of(write.payload)
        status = APPOINTMENT_STATUS_FOR[write.event_kind]
        for _ in range(CONFLICT_ROUNDS):
            current = await self.resolve("Appointment", facts.appointment_id, target)
            rid = str(current.resource["id"])
            ops = res.appointment_status_ops(current.resource, status=status)
            if not ops:
                return f"Appointment/{rid}"
            try:
                await target.fhir.send(fhir.patch("Appointment", rid, ops,
                                                  version=current.version))
            except FhirWriteError as exc:
                if exc.outcome == "conflict":
                    continue
                raise
            return f"Appointment/{rid}"
        raise FhirWriteError("The EHR's Appointment kept changing while OpenVisit updated it; "
                             "it will try again.", outcome="retry", http_status=412)
