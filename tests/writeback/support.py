"""Medplum's FHIR router as the outside EHR (tests/peers/fhir_server.mjs), a visit run through
the lobby, and a worker that drains the visit's write-backs (shared with the sandbox's chart
tests)."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from openvisit.context import AppContext
from openvisit.jobs.worker import Worker
from openvisit.models import Appointment, EhrEndpoint, Organisation, Writeback
from openvisit.visits import lobby
from openvisit.visits import service as visits
from openvisit.writeback import resources
from openvisit.writeback import service as writeback
from openvisit.writeback.tokens import BackendTokens
from tests.peers.fixtures import PEERS_DIR, PeerProcess, _node, free_port, require_npm_package
from tests.visits.support import Links

BASE_PATH = "/fhir/R4"
#: The AuditEvents of :func:`run_visit`, in the order they must be stored.
EXPECTED = ["connected", "connected", "started", "admitted", "disconnected", "ended"]


class FhirServer:
    """The shim in the background; ``stop()`` is the EHR going down, ``start()`` it coming
    back with everything it had stored (its journal)."""

    def __init__(self, tmp: Path) -> None:
        require_npm_package("@medplum/fhir-router")
        self.port = free_port()
        self.journal = tmp / "fhir-journal.jsonl"
        self.log = tmp / "fhir-server.log"
        self.base = f"http://127.0.0.1:{self.port}{BASE_PATH}"
        self.peer: PeerProcess | None = None

    def start(self) -> None:
        self.peer = PeerProcess("fhir_server", [
            _node(), PEERS_DIR / "fhir_server.mjs", "--port", str(self.port),
            "--journal", self.journal], self.log, cwd=PEERS_DIR).start()
        self.peer.wait_for_port(self.port, ready_line="READY fhir_server", timeout=60)

    def stop(self) -> None:
        if self.peer is not None:
            self.peer.stop()
            self.peer = None

    def call(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, f"{self.base}/{path}", timeout=10, **kw)

    def create(self, resource: dict[str, Any]) -> str:
        answer = self.call("POST", resource["resourceType"], json=resource)
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    def tagged(self, resource_type: str) -> list[dict[str, Any]]:
        """Every resource of the type that OpenVisit wrote (tagged), oldest first."""
        found = self.call("GET", resource_type, params={"_count": "1000"}).json()
        rows = [e["resource"] for e in found.get("entry") or []]
        return [r for r in rows if any(t.get("system") == resources.TAG_SYSTEM
                                       for t in (r.get("meta") or {}).get("tag") or [])]

    def requests(self) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = httpx.get(
            f"http://127.0.0.1:{self.port}/__requests", timeout=10).json()
        return seen


class NoAuthTokens(BackendTokens):
    """Medplum's router behind the shim checks no token; counts how often one was asked."""

    asked = 0

    async def token(self, app: AppContext, endpoint: EhrEndpoint, *, scope: str) -> str | None:
        type(self).asked += 1
        assert scope.startswith("system/"), scope
        return None


@dataclass
class Chart:
    """What the EHR holds for one appointment, and OpenVisit's copy of it."""

    endpoint: EhrEndpoint
    appointment: Appointment
    patient_id: str
    practitioner_id: str
    encounter_id: str
    appointment_id: str


async def seed(ctx: AppContext, server: FhirServer, *, options: dict[str, Any] | None = None,
               vendor: str = "generic", endpoint: EhrEndpoint | None = None) -> Chart:
    """A patient, practitioner, booked Appointment and planned Encounter on the server, and
    OpenVisit's appointment for them: on ``endpoint`` (one clinic, many charts) or on a new
    organisation's endpoint with write-back on (``options`` added to its settings)."""
    patient = server.create({"resourceType": "Patient", "active": True})
    practitioner = server.create({"resourceType": "Practitioner", "active": True})
    appointment = server.create({
        "resourceType": "Appointment", "status": "booked",
        "start": "2026-12-02T10:00:00Z", "end": "2026-12-02T10:20:00Z",
        "participant": [{"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"},
                        {"actor": {"reference": f"Practitioner/{practitioner}"},
                         "status": "accepted"}]})
    encounter = server.create({
        "resourceType": "Encounter", "status": "planned",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                  "code": "AMB"},
        "subject": {"reference": f"Patient/{patient}"},
        "appointment": [{"reference": f"Appointment/{appointment}"}]})
    wb = {"enabled": True, "appointment_status": True, **(options or {})}
    async with ctx.transaction() as session:
        if endpoint is None:
            org = Organisation(slug=f"org-{uuid.uuid4().hex[:8]}", display_name="Clinic",
                               timezone="UTC")
            session.add(org)
            await session.flush()
            endpoint = EhrEndpoint(organisation_id=org.id, name="Medplum", vendor=vendor,
                                   environment="test", fhir_base=server.base,
                                   client_id="openvisit", state="approved",
                                   options={"writeback": wb})
            session.add(endpoint)
            await session.flush()
        appt = Appointment(organisation_id=endpoint.organisation_id, endpoint_id=endpoint.id,
                           ehr_appointment_id=appointment, encounter_id=encounter,
                           **ctx.refs.columns(f"Patient/{patient}"),
                           provider_ehr_id=f"Practitioner/{practitioner}")
        session.add(appt)
        await session.flush()
    return Chart(endpoint, appt, patient, practitioner, encounter, appointment)


async def run_visit(ctx: AppContext, chart: Chart, *, gap: float = 0) -> uuid.UUID:
    """Patient joins (lobby), clinician joins, admits, patient drops, visit ends: five
    transactions, ``gap`` seconds apart."""
    async with ctx.transaction() as session:
        appt = await session.get(Appointment, chart.appointment.id)
        assert appt is not None
        visit = await visits.open_visit(session, app=ctx, appointment=appt)
        provider = await visits.seat_link(session, app=ctx, visit=visit, role="provider",
                                          ehr_user_id=f"Practitioner/{chart.practitioner_id}")
        patient = await visits.seat_link(session, app=ctx, visit=visit, role="patient",
                                         patient_ref=f"Patient/{chart.patient_id}")
    await asyncio.sleep(gap)
    async with ctx.transaction() as session:
        visit, seat = await lobby.join(session, app=ctx, token=Links.token(patient),
                                       connection_id="p.1")
        patient_id = seat.id
    await asyncio.sleep(gap)
    async with ctx.transaction() as session:
        visit, doctor = await lobby.join(session, app=ctx, token=Links.token(provider),
                                         connection_id="d.1")
        await lobby.admit(session, app=ctx, visit=visit, actor=doctor, target_id=patient_id)
    await asyncio.sleep(gap)
    async with ctx.transaction() as session:
        await lobby.disconnect(session, app=ctx, participant_id=patient_id,
                               connection_id="p.1")
    await asyncio.sleep(gap)
    async with ctx.transaction() as session:
        visit, doctor = await lobby.staff_seat(session, app=ctx, token=Links.token(provider))
        await lobby.end_visit(session, app=ctx, visit=visit, actor=doctor)
    return visit.id


def audit_kinds(server: FhirServer, appointment_id: str,
                events: list[dict[str, Any]] | None = None) -> list[str]:
    """The OpenVisit subtype of each AuditEvent about the appointment, in the order stored
    (from ``events``, the server's tagged AuditEvents, when the caller already has them)."""
    kinds = []
    for event in server.tagged("AuditEvent") if events is None else events:
        refs = [e["what"].get("reference") for e in event["entity"]]
        if f"Appointment/{appointment_id}" in refs:
            kinds.append(next(s["code"] for s in event["subtype"]
                              if s["system"] == resources.EVENT_SYSTEM))
    return kinds


async def rows(ctx: AppContext, visit_id: uuid.UUID) -> list[Writeback]:
    async with ctx.db.read() as session:
        found = list(await writeback.rows_of_visit(session, visit_id))
        session.expunge_all()  # detached with their values loaded
        return found


async def drain(ctx: AppContext, visit_ids: list[uuid.UUID], *, timeout: float = 60) -> None:
    """Run jobs until no write of these visits is pending or retrying (writes that wait
    behind an earlier one are deferred, so one pass of the queue is not enough)."""
    deadline = time.monotonic() + timeout
    worker = Worker(ctx, concurrency=4)
    while time.monotonic() < deadline:
        await worker.run_until_empty(timeout=timeout)
        states = {r.state for v in visit_ids for r in await rows(ctx, v)}
        if not states & {"pending", "retrying"}:
            return
        await asyncio.sleep(0.05)  # a deferred write becomes due (poll with a deadline)
    raise TimeoutError("write-backs still pending")
