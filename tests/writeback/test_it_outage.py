"""Issue 13's "done when" at scale: the EHR down during 50 visits, every write lands once it
is back, in order per visit, none twice, and kill -9 of a worker mid-batch changes nothing.

The issue says "down for 10 minutes". A suite cannot wait 10 minutes, and the minutes
themselves are not what is tested: what a long outage does to the queue is that every write
fails, backs off and fails again, round after round, while later writes of the same visit
wait behind it. So the outage here is compressed in time, not in kind: the job backoff starts
at 0.5 s and is capped at 4 s (production: 5 s doubling up to an hour), and the EHR stays
down until the first write of every visit has failed ``ROUNDS_DOWN`` times - about 10-20 s of
wall time, several backoff rounds per job, the same code path as 10 minutes (or a day: with
the production backoff ``MAX_ATTEMPTS`` is about a day of outage).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from openvisit.context import AppContext
from openvisit.models import Job, Writeback
from openvisit.writeback.service import SEND_JOB
from tests.support.backend import BACKEND, subprocess_env
from tests.support.procs import Proc
from tests.writeback.support import EXPECTED, FhirServer, audit_kinds, run_visit, seed

pytestmark = [
    pytest.mark.peers, pytest.mark.slow, pytest.mark.timeout(300),
    # The scale run is the PostgreSQL deployment's (several worker processes on one shared
    # database); on SQLite a worker killed mid-batch is tests/writeback/test_it_medplum.py's
    # test_it_survives_a_worker_killed_mid_batch, and the outage its test_it_keeps_writes_
    # while_the_ehr_is_down. Running it on both cost the suite ~80 s for no other path.
    pytest.mark.skipif(BACKEND != "postgres", reason="the 50-visit scale run is PostgreSQL's"),
]

VISITS = 50
#: Failed tries of each visit's first write while the EHR is down (backoff rounds).
ROUNDS_DOWN = 5
#: The resource types OpenVisit creates (tagged); Encounter and Appointment are updated.
CREATED_TYPES = ("AuditEvent", "Communication", "Observation")
WORKER_ENV = {
    "OPENVISIT_JOB_LEASE_SECONDS": "2",  # the killed worker's jobs are taken over after 2 s
    "OPENVISIT_JOB_POLL_SECONDS": "0.1",
    "OPENVISIT_JOB_BACKOFF_BASE_SECONDS": "0.5",  # tries 0.25-0.5 s, 0.5-1 s, 1-2 s, 2-4 s…
    "OPENVISIT_JOB_BACKOFF_MAX_SECONDS": "4",
    "OPENVISIT_JOB_CONCURRENCY": "8",
    # The clinicians' seats stay "connected" after run_visit; on a slow run the presence
    # sweep would disconnect them (a seventh AuditEvent), which is not what is tested here.
    "OPENVISIT_PRESENCE_TIMEOUT_SECONDS": "3600",
}


async def all_rows(ctx: AppContext) -> list[Writeback]:
    """Every write-back row (this test's database holds only this test's), by id."""
    async with ctx.db.read() as session:
        found = list((await session.scalars(select(Writeback).order_by(Writeback.id))).all())
        session.expunge_all()
        return found


async def send_jobs(ctx: AppContext) -> list[Job]:
    async with ctx.db.read() as session:
        found = list((await session.scalars(
            select(Job).where(Job.kind == SEND_JOB).order_by(Job.id))).all())
        session.expunge_all()
        return found


async def states(ctx: AppContext) -> Counter[str]:
    """How many write-back rows are in each state (one query: it is polled)."""
    async with ctx.db.read() as session:
        found = await session.execute(
            select(Writeback.state, func.count()).group_by(Writeback.state))
        return Counter(dict(found.all()))


async def fewest_tries_of_first_writes(ctx: AppContext) -> int:
    """The fewest attempts of any visit's first write (0 until every visit has one)."""
    firsts = select(func.min(Writeback.id)).group_by(Writeback.order_key)
    async with ctx.db.read() as session:
        visits = await session.scalar(select(func.count(func.distinct(Writeback.order_key))))
        fewest = await session.scalar(
            select(func.min(Writeback.attempts)).where(Writeback.id.in_(firsts)))
    return int(fewest or 0) if visits == VISITS else 0


def by_visit(found: list[Writeback]) -> dict[str, list[Writeback]]:
    grouped: dict[str, list[Writeback]] = defaultdict(list)
    for row in found:
        grouped[row.order_key].append(row)
    return grouped


async def until(check: Callable[[], Awaitable[bool]], *, timeout: float, what: str,
                procs: list[Proc], ehr: FhirServer | None = None) -> float:
    """Poll ``check`` until true; returns the seconds it took. Fails when a worker (or the
    EHR, once it is back) died or on timeout, with the workers' last log lines."""
    started = time.monotonic()
    while not await check():
        for proc in procs:
            assert proc.popen.poll() is None, f"worker exited: {proc.tail(60)}"
        if ehr is not None:
            assert ehr.peer is not None and ehr.peer.running, (
                f"the EHR exited: {ehr.log.read_text(errors='replace')[-3000:]}")
        if time.monotonic() - started > timeout:
            tails = "\n".join(p.tail(30) for p in procs)
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{tails}")
        await asyncio.sleep(0.2)
    return time.monotonic() - started


async def test_it_lands_every_write_after_an_outage_and_a_kill_9(
        ctx: AppContext, db_url: str, fhir_server: FhirServer, tmp_path: Path) -> None:
    """50 visits recorded while the EHR is down and two worker processes retry; the EHR
    comes back (with everything it had stored), one worker is killed with SIGKILL while the
    writes flow and a fresh one started: every row ``sent``, each visit's AuditEvents in the
    visit's order, each Encounter finished and Appointment fulfilled, no tag stored twice."""
    charts = [await seed(ctx, fhir_server, options={"backend_token": False})
              for _ in range(VISITS)]
    fhir_server.stop()
    env = subprocess_env(db_url, **WORKER_ENV)
    workers = {name: Proc(["worker"], env=env, log=tmp_path / f"worker-{name}.log")
               for name in ("a", "b")}
    try:
        down_since = time.monotonic()
        visit_ids: list[uuid.UUID] = [await run_visit(ctx, chart) for chart in charts]
        total = len(await all_rows(ctx))
        assert total == VISITS * 10, total  # 6 AuditEvents, 2 Encounter, 2 Appointment

        async def down_long_enough() -> bool:
            return await fewest_tries_of_first_writes(ctx) >= ROUNDS_DOWN

        await until(down_long_enough, timeout=90, what=f"{ROUNDS_DOWN} tries of every "
                    "visit's first write", procs=list(workers.values()))
        outage = time.monotonic() - down_since
        during = by_visit(await all_rows(ctx))
        assert set(during) == {str(v) for v in visit_ids}
        for visit_rows in during.values():
            first, *later = visit_rows
            assert first.state == "retrying", (first.state, first.error)
            assert first.error and "could not reach the EHR" in first.error, first.error
            # The later writes of the visit waited behind the first: never tried.
            assert {(r.state, r.attempts) for r in later} == {("pending", 0)}
        assert {j.state for j in await send_jobs(ctx)} <= {"pending", "running"}

        # Read before the EHR is back: a worker's retry may land the moment it listens.
        journal_lines = len(fhir_server.journal.read_text().splitlines())
        assert journal_lines == VISITS * 4  # the seeded charts only: nothing landed while down
        fhir_server.start()

        async def some_landed() -> bool:
            return (await states(ctx))["sent"] >= total // 10

        await until(some_landed, timeout=60, what="the first writes after the EHR came back",
                    procs=list(workers.values()), ehr=fhir_server)
        killed = workers.pop("a")
        killed.kill9()
        killed.stop()
        landed_at_kill = (await states(ctx))["sent"]
        assert landed_at_kill < total  # mid-batch
        orphaned = [j for j in await send_jobs(ctx)
                    if j.state == "running" and f":{killed.pid}:" in (j.locked_by or "")]
        workers["c"] = Proc(["worker"], env=env, log=tmp_path / "worker-c.log")

        async def all_sent() -> bool:
            now = await states(ctx)
            return set(now) == {"sent"} and now["sent"] >= total

        drained = await until(all_sent, timeout=120, what="every write sent",
                              procs=list(workers.values()), ehr=fhir_server)
    finally:
        for proc in workers.values():
            proc.stop()

    final = by_visit(await all_rows(ctx))
    for visit_rows in final.values():
        # Sent in id order (the visit's order), each first write after its failed rounds.
        sent_at = [r.sent_at for r in visit_rows if r.sent_at is not None]
        assert len(sent_at) == len(visit_rows) and sent_at == sorted(sent_at)
        assert visit_rows[0].attempts >= ROUNDS_DOWN + 1
    assert {j.state for j in await send_jobs(ctx)} == {"done"}

    events = fhir_server.tagged("AuditEvent")
    for chart in charts:
        assert audit_kinds(fhir_server, chart.appointment_id, events) == EXPECTED
        encounter = fhir_server.call("GET", f"Encounter/{chart.encounter_id}").json()
        assert encounter["status"] == "finished"
        assert encounter["period"]["start"] <= encounter["period"]["end"]
        appointment = fhir_server.call("GET", f"Appointment/{chart.appointment_id}").json()
        assert appointment["status"] == "fulfilled"
    tags = Counter(tag["code"] for kind in CREATED_TYPES for r in fhir_server.tagged(kind)
                   for tag in r["meta"]["tag"])
    assert max(tags.values()) == 1, [t for t, n in tags.items() if n > 1]
    assert sorted(tags) == sorted(r.key for rs in final.values() for r in rs
                                  if r.what == "audit")
    print(f"outage {outage:.1f} s ({ROUNDS_DOWN}+ failed tries per visit's first write); "
          f"kill -9 at {landed_at_kill}/{total} landed with {len(orphaned)} jobs in hand; "
          f"drained {drained:.1f} s after the kill")
