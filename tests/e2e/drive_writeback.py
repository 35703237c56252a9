"""The write-back scenario for ``drive_room.py`` (issue 13, "done when"): a visit in Chromium
whose endpoint writes back to Medplum's FHIR router, started in the same network namespace,
then a device test from the same endpoint's device-test record.

The patient joins on a phone and waits, the clinician admits, both decode video, the patient
leaves, the clinician ends the visit for everyone. An ``openvisit worker`` process sends the
write-backs. The scenario reads back from the FHIR server what it holds: every AuditEvent
about the appointment (in recorded order), the Encounter and Appointment, every tag (to show
nothing was written twice) and the device-test Observation.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Browser

from openvisit.writeback.resources import EVENT_SYSTEM, TAG_SYSTEM
from tests.e2e.drive_devicetest import LOOPBACK_EXTRA, _run_test
from tests.e2e.room_stack import (
    REPO,
    Stack,
    admit_from_panel,
    decoding,
    free_port,
    new_page,
    on,
    patient_joins,
    shot,
    token_pid,
    wait_port,
)
from tests.support.backend import TEST_KEYS, TEST_SECRET

PEERS = REPO / "tests" / "peers"


class Fhir:
    """Medplum's FHIR router behind tests/peers/fhir_server.mjs, in this namespace."""

    def __init__(self, stack: Stack) -> None:
        self.port = free_port()
        log = stack.workdir / "fhir-server.log"
        proc = subprocess.Popen(
            ["node", str(PEERS / "fhir_server.mjs"), "--port", str(self.port),
             "--journal", str(stack.workdir / "fhir-journal.jsonl")],
            cwd=PEERS, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        stack.procs.append(proc)
        wait_port(self.port, proc, log, timeout=60)
        self.base = f"http://127.0.0.1:{self.port}/fhir/R4"
        self.http = httpx.Client(base_url=self.base, timeout=10)

    def create(self, resource: dict[str, Any]) -> str:
        answer = self.http.post(resource["resourceType"], json=resource)
        answer.raise_for_status()
        return str(answer.json()["id"])

    def all(self, resource_type: str) -> list[dict[str, Any]]:
        found = self.http.get(resource_type, params={"_count": "1000"}).json()
        return [e["resource"] for e in found.get("entry") or []]


async def seed(stack: Stack, fhir: Fhir) -> dict[str, Any]:
    """The EHR's chart on the FHIR server; OpenVisit's endpoint (write-back on), appointment,
    visit links and a device-test token of the same endpoint."""
    from openvisit.config import Settings
    from openvisit.context import AppContext
    from openvisit.models import Appointment, ContextToken, EhrEndpoint, Organisation
    from openvisit.models.base import utcnow
    from openvisit.portal.records.service import DEVICE_TEST, sign_context_token
    from openvisit.visits import service

    patient = fhir.create({"resourceType": "Patient", "active": True})
    practitioner = fhir.create({"resourceType": "Practitioner", "active": True})
    appointment = fhir.create({
        "resourceType": "Appointment", "status": "booked",
        "start": "2026-12-02T10:00:00Z", "end": "2026-12-02T10:20:00Z",
        "participant": [{"actor": {"reference": f"Patient/{patient}"}, "status": "accepted"},
                        {"actor": {"reference": f"Practitioner/{practitioner}"},
                         "status": "accepted"}]})
    encounter = fhir.create({
        "resourceType": "Encounter", "status": "planned",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": f"Patient/{patient}"},
        "appointment": [{"reference": f"Appointment/{appointment}"}]})
    settings = Settings(_env_file=None, environment="test", database_url=stack.db_url,  # type: ignore[call-arg]
                        redis_url=stack.redis_url, secret_key=TEST_SECRET,
                        field_encryption_keys=",".join(TEST_KEYS), auto_migrate=False)
    ctx = AppContext.create(settings)
    try:
        async with ctx.transaction() as session:
            org = Organisation(slug=f"wb-{secrets.token_hex(4)}", display_name="E2E clinic",
                               timezone="UTC")
            session.add(org)
            await session.flush()
            endpoint = EhrEndpoint(
                organisation_id=org.id, name="Medplum", fhir_base=fhir.base, client_id="ov",
                environment="test", state="approved",
                options={"writeback": {"enabled": True, "appointment_status": True,
                                       "backend_token": False}})  # the shim takes no token
            session.add(endpoint)
            await session.flush()
            appt = Appointment(organisation_id=org.id, endpoint_id=endpoint.id,
                               ehr_appointment_id=appointment, encounter_id=encounter,
                               **ctx.refs.columns(f"Patient/{patient}"),
                               provider_ehr_id=f"Practitioner/{practitioner}",
                               start_at=utcnow())
            session.add(appt)
            await session.flush()
            visit = await service.open_visit(session, app=ctx, appointment=appt)
            token = ContextToken(endpoint_id=endpoint.id, purpose=DEVICE_TEST)
            session.add(token)
            await session.flush()
            return {
                "visit_id": str(visit.id), "appointment": appointment, "encounter": encounter,
                "patient": patient, "practitioner": practitioner,
                "provider_link": await service.seat_link(
                    session, app=ctx, visit=visit, role="provider",
                    ehr_user_id=f"Practitioner/{practitioner}"),
                "patient_link": await service.seat_link(
                    session, app=ctx, visit=visit, role="patient",
                    patient_ref=f"Patient/{patient}"),
                "devicetest": sign_context_token(ctx, token),
            }
    finally:
        await ctx.close()


async def writeback_states(db_url: str) -> dict[str, int]:
    from sqlalchemy import func, select

    from openvisit.db import Database
    from openvisit.models import Writeback

    db = Database(db_url)
    try:
        async with db.read() as session:
            found = await session.execute(
                select(Writeback.state, func.count()).group_by(Writeback.state))
            return {str(s): int(n) for s, n in found.all()}
    finally:
        await db.dispose()


async def until_landed(db_url: str, *, timeout: float = 60) -> dict[str, int]:
    """Wait until no write-back is pending or retrying (the worker sends them)."""
    deadline = time.monotonic() + timeout
    states: dict[str, int] = {}
    while time.monotonic() < deadline:
        states = await writeback_states(db_url)
        if states and not set(states) & {"pending", "retrying"}:
            return states
        await asyncio.sleep(0.25)
    raise AssertionError(f"write-backs not landed: {states}")


def _kind(event: dict[str, Any]) -> str:
    return next((s["code"] for s in event.get("subtype") or []
                 if s.get("system") == EVENT_SYSTEM), "?")


def _refs(event: dict[str, Any]) -> list[str]:
    return [e.get("what", {}).get("reference", "") for e in event.get("entity") or []]


async def writeback(browser: Browser, stack: Stack, shots: Path | None) -> dict[str, Any]:
    subprocess.run(["ip", "addr", "add", LOOPBACK_EXTRA, "dev", "lo"], check=False,
                   capture_output=True)  # for the device test's aiortc peer
    fhir = Fhir(stack)
    base = stack.web("writeback")
    stack.procs.append(worker(stack))
    data = await seed(stack, fhir)

    provider = await new_page(browser)
    await provider.goto(on(base, data["provider_link"]))
    await provider.wait_for_selector('[data-step="call"]:not([hidden])')
    patient = await new_page(browser, phone=True)
    await patient_joins(patient, on(base, data["patient_link"]))
    patient_id = token_pid(data["patient_link"])
    await admit_from_panel(provider, patient_id)
    await patient.wait_for_selector('[data-step="call"]:not([hidden])')
    frames = {"patient": await decoding(patient, 1), "provider": await decoding(provider, 1)}
    await patient.click('.controls [data-action="leave"]')
    await patient.wait_for_selector('[data-step="end"]:not([hidden])')
    await provider.wait_for_selector(f'[data-participant="{patient_id}"].state-left')
    await provider.click('[data-action="end"]')
    await provider.click("#end-dialog [data-confirm-end]")
    await provider.wait_for_selector('[data-step="end"]:not([hidden])', timeout=15_000)
    await asyncio.sleep(0.5)  # the socket closes after the end: the header must not revert
    status_after_end = await provider.inner_text("[data-visit-status]")
    await shot(provider, shots, "writeback-provider-ended")
    for page in (patient, provider):
        await page.context.close()
    states_after_visit = await until_landed(stack.db_url)

    device = await new_page(browser, phone=True)
    await device.goto(f"{base}/devicetest?ctx={data['devicetest']}&lang=en")
    device_result = await _run_test(device)
    await device.context.close()
    states = await until_landed(stack.db_url)

    appointment_ref = f"Appointment/{data['appointment']}"
    events = sorted((e for e in fhir.all("AuditEvent") if appointment_ref in _refs(e)),
                    key=lambda e: (e["recorded"], e["meta"]["lastUpdated"]))
    tags = [t["code"] for rtype in ("AuditEvent", "Observation", "Communication")
            for r in fhir.all(rtype) for t in (r.get("meta") or {}).get("tag") or []
            if t.get("system") == TAG_SYSTEM]
    observations = [o for o in fhir.all("Observation")
                    if any(t.get("system") == TAG_SYSTEM for t in o["meta"].get("tag") or [])]
    return {
        "frames": frames, "status_after_end": status_after_end,
        "states_after_visit": states_after_visit, "states": states,
        "audit": [{"kind": _kind(e), "recorded": e["recorded"],
                   "agent": (e.get("agent") or [{}])[0].get("who", {}).get("reference"),
                   "encounter": f"Encounter/{data['encounter']}" in _refs(e)} for e in events],
        "encounter": fhir.http.get(f"Encounter/{data['encounter']}").json(),
        "appointment": fhir.http.get(appointment_ref).json(),
        "tags": tags,
        "observations": [{"value": o.get("valueCodeableConcept", {}).get("text"),
                          "components": sorted(c["code"]["coding"][0]["code"]
                                               for c in o.get("component") or [])}
                         for o in observations],
        "device_saved": device_result["saved"],
        "patient": f"Patient/{data['patient']}",
        "practitioner": f"Practitioner/{data['practitioner']}",
    }


def worker(stack: Stack) -> subprocess.Popen[bytes]:
    log = stack.workdir / "worker.log"
    return subprocess.Popen(
        [sys.executable, "-m", "openvisit", "worker"],
        env=stack.env(OPENVISIT_JOB_POLL_SECONDS="0.2"), stdout=log.open("wb"),
        stderr=subprocess.STDOUT, start_new_session=True)
