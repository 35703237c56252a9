"""Write-back against Medplum's FHIR router (the outside EHR): a visit's AuditEvents in
order, the Encounter finished with its period, the Appointment fulfilled, nothing twice; the
EHR down and back; a permanent 4xx stored with the EHR's message and re-run."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import update

from openvisit.context import AppContext
from openvisit.devicetest import service as devicetest
from openvisit.devicetest.service import CallReport, DeviceTestReport
from openvisit.jobs.worker import Worker
from openvisit.models import Appointment, ContextToken, Job, Writeback, utcnow
from openvisit.writeback import service as writeback
from tests.support.backend import subprocess_env
from tests.support.procs import Proc
from tests.writeback.support import (
    EXPECTED,
    FhirServer,
    NoAuthTokens,
    audit_kinds,
    drain,
    rows,
    run_visit,
    seed,
)


@pytest.fixture
def tokens(ctx: AppContext) -> NoAuthTokens:
    planted = NoAuthTokens()
    ctx.services.writeback_tokens = planted
    return planted


async def drain_until_failed(ctx: AppContext, visit_id: uuid.UUID) -> None:
    """Run jobs until every write of the visit is sent, failed or blocked behind a failure."""
    await drain(ctx, [visit_id])


async def test_it_writes_a_visit_in_order_once(ctx: AppContext, fhir_server: FhirServer,
                                               tokens: NoAuthTokens) -> None:
    chart = await seed(ctx, fhir_server, options={"patient_arrived": True})
    visit_id = await run_visit(ctx, chart)
    await drain(ctx, [visit_id])

    written = await rows(ctx, visit_id)
    assert {r.state for r in written} == {"sent"}, [(r.what, r.state, r.error) for r in written]
    assert audit_kinds(fhir_server, chart.appointment_id) == EXPECTED
    events = fhir_server.tagged("AuditEvent")
    assert [e["recorded"] for e in events] == sorted(e["recorded"] for e in events)
    patient_events = [e for e in events if e["agent"][0].get("who", {}).get("reference")
                      == f"Patient/{chart.patient_id}"]
    assert [e["subtype"][-1]["code"] for e in patient_events] == [
        "connected", "admitted", "disconnected"]
    assert all(e["action"] == "E" and e["outcome"] == "0" for e in events)
    assert all(f"Encounter/{chart.encounter_id}" in [x["what"].get("reference")
                                                     for x in e["entity"]] for e in events)

    encounter = fhir_server.call("GET", f"Encounter/{chart.encounter_id}").json()
    assert encounter["status"] == "finished"
    assert encounter["class"]["code"] == "VR"
    assert encounter["period"]["start"] <= encounter["period"]["end"]
    assert encounter["subject"] == {"reference": f"Patient/{chart.patient_id}"}  # kept
    appointment = fhir_server.call("GET", f"Appointment/{chart.appointment_id}").json()
    assert appointment["status"] == "fulfilled"
    assert tokens.asked >= 1
    (arrived,) = fhir_server.tagged("Communication")  # the patient waits: tell the clinician
    assert arrived["recipient"] == [{"reference": f"Practitioner/{chart.practitioner_id}"}]
    assert arrived["subject"] == {"reference": f"Patient/{chart.patient_id}"}

    # The same writes again (a worker that died after the EHR stored them): nothing new.
    async with ctx.transaction() as session:
        for row in written:
            held = await session.get(Writeback, row.id)
            assert held is not None
            held.state = "failed"
        await session.flush()
        for row in written:
            await writeback.rerun(session, row_id=row.id)
    await drain(ctx, [visit_id])
    assert audit_kinds(fhir_server, chart.appointment_id) == EXPECTED
    assert len({r.server_ref for r in await rows(ctx, visit_id)}) == len(
        {(r.what, r.server_ref) for r in written})


async def test_it_keeps_writes_while_the_ehr_is_down(ctx: AppContext, fhir_server: FhirServer,
                                                     tokens: NoAuthTokens) -> None:
    charts = [await seed(ctx, fhir_server) for _ in range(3)]
    fhir_server.stop()
    visit_ids = [await run_visit(ctx, chart) for chart in charts]
    worker = Worker(ctx, concurrency=4)
    await worker.claim_and_start()  # the first write of each visit, tried while down
    await asyncio.wait(worker._running)
    states = {r.state for v in visit_ids for r in await rows(ctx, v)}
    assert "retrying" in states and "sent" not in states, states
    failed_msgs = [r.error for v in visit_ids for r in await rows(ctx, v) if r.error]
    assert any("could not reach the EHR" in (m or "") for m in failed_msgs)

    fhir_server.start()
    async with ctx.transaction() as session:  # the backoff would wait; the EHR is back now
        await session.execute(update(Job).where(Job.state == "pending").values(due_at=utcnow()))
    await drain(ctx, visit_ids, timeout=120)
    for chart, visit_id in zip(charts, visit_ids, strict=True):
        assert {r.state for r in await rows(ctx, visit_id)} == {"sent"}
        assert audit_kinds(fhir_server, chart.appointment_id) == EXPECTED
        encounter = fhir_server.call("GET", f"Encounter/{chart.encounter_id}").json()
        assert encounter["status"] == "finished"


async def test_it_stores_a_permanent_refusal_and_reruns_it(
        ctx: AppContext, fhir_server: FhirServer, tokens: NoAuthTokens) -> None:
    chart = await seed(ctx, fhir_server)
    missing = f"gone-{uuid.uuid4().hex[:8]}"
    async with ctx.transaction() as session:
        appt = await session.get(Appointment, chart.appointment.id)
        assert appt is not None
        appt.encounter_id = missing  # the EHR has no such Encounter (yet)
    visit_id = await run_visit(ctx, chart)
    await drain_until_failed(ctx, visit_id)

    written = await rows(ctx, visit_id)
    failed = [r for r in written if r.state == "failed"]
    assert [r.what for r in failed] == ["encounter"]
    assert failed[0].http_status == 404 and failed[0].error and "404" in failed[0].error
    assert "Not found" in failed[0].error or "not found" in failed[0].error.lower()
    after = [r for r in written if r.id > failed[0].id]
    assert after and {r.state for r in after} == {"blocked"}  # order: nothing overtakes it
    async with ctx.db.read() as session:
        assert await writeback.count_failed(session) == 1
        listed = await writeback.recent(session, endpoint_id=chart.endpoint.id)
    assert any(v.state == "failed" and v.error == failed[0].error for v in listed)

    # The EHR is fixed (the Encounter now exists), then the admin re-runs the write.
    put = fhir_server.call("PUT", f"Encounter/{missing}", json={
        "resourceType": "Encounter", "id": missing, "status": "planned",
        "class": {"code": "AMB"}})
    assert put.status_code in (200, 201), put.text
    async with ctx.transaction() as session:
        await writeback.rerun(session, row_id=failed[0].id, endpoint_id=chart.endpoint.id)
    await drain(ctx, [visit_id])
    assert {r.state for r in await rows(ctx, visit_id)} == {"sent"}
    assert fhir_server.call("GET", f"Encounter/{missing}").json()["status"] == "finished"
    assert audit_kinds(fhir_server, chart.appointment_id) == EXPECTED


async def test_it_survives_a_worker_killed_mid_batch(ctx: AppContext, db_url: str,
                                                     fhir_server: FhirServer,
                                                     tmp_path: Path) -> None:
    """kill -9 of a worker process while it writes: a second one finishes, every write
    lands once and in order (the lease hands the jobs over; the tag finds what landed)."""
    charts = [await seed(ctx, fhir_server, options={"backend_token": False})
              for _ in range(3)]
    visit_ids = [await run_visit(ctx, chart) for chart in charts]
    total = 0
    for v in visit_ids:
        total += len(await rows(ctx, v))

    async def sent() -> int:
        count = 0
        for v in visit_ids:
            count += sum(1 for r in await rows(ctx, v) if r.state == "sent")
        return count

    async def until(condition: int, proc: Proc, what: str) -> None:
        deadline = time.monotonic() + 60
        while await sent() < condition:
            assert proc.popen.poll() is None, proc.tail(60)
            assert time.monotonic() < deadline, f"{what}: {await sent()}/{total}\n{proc.tail(60)}"
            await asyncio.sleep(0.02)

    env = subprocess_env(db_url, OPENVISIT_JOB_LEASE_SECONDS="2", OPENVISIT_JOB_POLL_SECONDS="0.1",
                         OPENVISIT_JOB_BACKOFF_BASE_SECONDS="0.1")
    first = Proc(["worker"], env=env, log=tmp_path / "worker1.log")
    try:
        await until(3, first, "the first writes")
        first.kill9()
    finally:
        first.stop()
    assert await sent() < total
    second = Proc(["worker"], env=env, log=tmp_path / "worker2.log")
    try:
        await until(total, second, "every write by the second worker")
    finally:
        second.stop()
    for chart in charts:
        assert audit_kinds(fhir_server, chart.appointment_id) == EXPECTED
    tags = [t["code"] for e in fhir_server.tagged("AuditEvent") for t in e["meta"]["tag"]]
    assert len(tags) == len(set(tags))


async def test_it_writes_device_tests_messages_and_the_portal_test(
        ctx: AppContext, fhir_server: FhirServer, tokens: NoAuthTokens) -> None:
    chart = await seed(ctx, fhir_server)
    async with ctx.transaction() as session:
        token = ContextToken(endpoint_id=chart.endpoint.id, purpose="devicetest")
        session.add(token)
        await session.flush()
        report = DeviceTestReport(ctx="x", camera="passed", microphone="passed",
                                  speaker="skipped", call=CallReport(
                                      status="passed", rtt_ms=21.0, frames_decoded=90))
        test_visit = await devicetest.record_result(session, token=token, report=report)
        appt = await session.get(Appointment, chart.appointment.id)
        assert appt is not None
        await writeback.on_message_sent(session, appointment=appt, channel="sms",
                                        template="reminder", message_key="m1")
        await writeback.on_message_sent(session, appointment=appt, channel="sms",
                                        template="reminder", message_key="m1")  # again: once
    await drain(ctx, [test_visit.id])
    async with ctx.db.read() as session:
        listed = await writeback.recent(session, endpoint_id=chart.endpoint.id)
    assert sorted(v.what for v in listed) == ["devicetest", "message"]
    (observation,) = fhir_server.tagged("Observation")
    assert observation["valueCodeableConcept"]["text"] == "passed"
    components = {c["code"]["coding"][0]["code"]: c for c in observation["component"]}
    assert components["speaker"]["valueCodeableConcept"]["text"] == "skipped"
    assert components["rtt_ms"]["valueQuantity"] == {"value": 21, "unit": "ms",
                                                     "system": "http://unitsofmeasure.org",
                                                     "code": "ms"}
    (message,) = fhir_server.tagged("Communication")
    assert message["status"] == "completed"
    assert message["about"] == [{"reference": f"Appointment/{chart.appointment_id}"}]
    assert message["medium"][0]["coding"][0]["code"] == "SMSWRIT"
    assert "payload" not in message

    answer = await writeback.test_write(ctx, endpoint=chart.endpoint)
    assert answer.ok and answer.server_ref and answer.server_ref.startswith("AuditEvent/")
    stored = fhir_server.call("GET", answer.server_ref).json()
    assert stored["resourceType"] == "AuditEvent"
