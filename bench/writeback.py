"""EHR write-back benchmark: write-backs/s through `openvisit worker` processes against a plain
httpx loop sending the same requests, and the lag from a visit event to its write in the EHR.

Runs on a fresh PostgreSQL database with Redis as the bus. The EHR is Medplum's FHIR router
(tests/peers/fhir_server.mjs, the write-back tests' peer), a fresh server per measurement, each
seeded with the same number of charts (patient, practitioner, booked Appointment, planned
Encounter), all on one clinic's endpoint with write-back on (AuditEvents, Encounter,
Appointment.status; no token: the router checks none).

1. **Throughput.** ``--visits`` visits are recorded (tests/writeback/support.run_visit: patient
   joins, clinician joins and admits, patient drops, visit ends; 10 writes each) with their
   jobs held back; ``--workers`` `openvisit worker` processes are started with the production
   job settings (poll 1 s, 8 jobs at a time unless ``--concurrency``/``--poll``); then every
   job is made due at once (as after an outage longer than ``WAIT_BEHIND``) and the workers
   woken. Measured: writes/s from that moment to the last ``sent_at``.
2. **Lag** (EHR healthy, the offered load under the workers' capacity). ``--lag-visits`` more
   visits, started ``--lag-interval`` s apart, each step ``--step-gap`` s after the previous:
   the lag of each write is ``writeback.created_at`` (the event's transaction) → ``sent_at``.
3. **Reference.** The same writes (the rows of step 1, remapped to the reference server's
   charts, new tags) sent by a plain ``httpx.AsyncClient`` loop: the same resources (built by
   ``openvisit.writeback.resources``, not validated), the same headers (``If-None-Exist`` on the
   tag, ``Prefer``, ``If-Match``), the same read-before-update of Encounter and Appointment;
   once sequentially (one request at a time) and once with as many visits in flight as the
   workers have job slots (``workers × concurrency``), each visit's writes in order.

    bash scripts/bootstrap-npm.sh          # once: node_modules under tests/peers
    .venv/bin/python bench/writeback.py [--visits 200] [--workers 2] [--lag-visits 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select, update

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.hl7_floor import cpu_seconds, postgres_cpu
from bench.hl7_mllp import drop_database, pg_database
from openvisit.context import JOBS_CHANNEL, AppContext
from openvisit.db import Database
from openvisit.logs import configure_logging
from openvisit.migrate import upgrade_async
from openvisit.models import EhrEndpoint, Job, Organisation, Writeback, utcnow
from openvisit.writeback import resources as res
from openvisit.writeback.generic.adapter import (
    APPOINTMENT_STATUS_FOR,
    ENCOUNTER_STATUS_FOR,
    when,
)
from openvisit.writeback.service import SEND_JOB
from tests.support.backend import REDIS_URL, make_settings, subprocess_env
from tests.writeback.support import Chart, FhirServer, run_visit, seed

FHIR_JSON = "application/fhir+json"
PREFER = {"Prefer": "return=representation"}


@dataclass
class Stage:
    name: str
    writes: int
    seconds: float
    requests: int
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.writes / self.seconds

    def line(self) -> str:
        cpu = ", ".join(f"{k} {v * 1000 / self.writes:.2f} ms" for k, v in self.cpu.items())
        return (f"{self.name:<44} {self.rate:7.1f} writes/s  ({self.writes} writes, "
                f"{self.requests} requests, {self.seconds:.2f} s; CPU/write: {cpu})")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def clinic(ctx: AppContext, server: FhirServer) -> EhrEndpoint:
    """One organisation with one endpoint on ``server``, write-back on, no token."""
    wb = {"enabled": True, "appointment_status": True, "backend_token": False}
    async with ctx.transaction() as session:
        org = Organisation(slug="bench-clinic", display_name="Clinic", timezone="UTC")
        session.add(org)
        await session.flush()
        endpoint = EhrEndpoint(organisation_id=org.id, name="Medplum", vendor="generic",
                               environment="test", fhir_base=server.base, client_id="openvisit",
                               state="approved", options={"writeback": wb})
        session.add(endpoint)
    return endpoint


def start_server(root: Path, name: str) -> FhirServer:
    (root / name).mkdir()
    server = FhirServer(root / name)
    server.start()
    return server


async def rows_of(ctx: AppContext, since_id: int = 0) -> list[Writeback]:
    async with ctx.db.read() as session:
        found = list((await session.scalars(
            select(Writeback).where(Writeback.id > since_id).order_by(Writeback.id))).all())
        session.expunge_all()
        return found


async def until_sent(ctx: AppContext, *, since_id: int, count: int, timeout: float,
                     workers: list[subprocess.Popen[bytes]]) -> list[Writeback]:
    """Wait until ``count`` rows after ``since_id`` are sent (a count every 0.2 s: the
    bench must not take the CPU it measures); returns them."""
    deadline = time.monotonic() + timeout
    while True:
        async with ctx.db.read() as session:
            states = dict((await session.execute(
                select(Writeback.state, func.count()).where(Writeback.id > since_id)
                .group_by(Writeback.state))).all())
        if states.get("sent", 0) >= count and set(states) == {"sent"}:
            return await rows_of(ctx, since_id)
        if states.keys() & {"failed", "blocked"}:
            bad = [r for r in await rows_of(ctx, since_id) if r.state in ("failed", "blocked")]
            raise SystemExit(f"write-backs failed: {[(r.id, r.state, r.error) for r in bad][:5]}")
        if any(w.poll() is not None for w in workers):
            raise SystemExit("a worker exited (see its log; --keep keeps the logs)")
        if time.monotonic() > deadline:
            raise SystemExit(f"write-backs not all sent after {timeout} s: {states}")
        await asyncio.sleep(0.2)


def request_count(server: FhirServer) -> int:
    return sum(1 for r in server.requests() if r["path"] != "/__requests")


def log_counts(logs: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for log in logs.glob("worker-*.log"):
        for line in log.read_text(errors="replace").splitlines():
            for event in ("job_deferred", "job_done", "job_failed", "writeback_sent"):
                if f" {event} " in line:
                    counts[event] += 1
    return counts


# ------------------------------------------------------------------- the reference loop

@dataclass(frozen=True)
class RefWrite:
    what: str
    event_kind: str
    key: str
    payload: dict[str, Any]


def ref_charts_ids(chart: Chart) -> dict[str, str]:
    return {"id": chart.appointment_id, "encounter": chart.encounter_id,
            "patient": f"Patient/{chart.patient_id}",
            "practitioner": f"Practitioner/{chart.practitioner_id}"}


def remap(found: list[Writeback], charts: dict[str, Chart],
          ref: list[Chart]) -> list[list[RefWrite]]:
    """The rows of each visit (in order), pointed at the reference server's charts."""
    by_visit: dict[str, list[Writeback]] = {}
    for row in found:
        by_visit.setdefault(row.order_key, []).append(row)
    out: list[list[RefWrite]] = []
    for (_visit, rows), target in zip(sorted(by_visit.items()), ref, strict=False):
        source = charts[str(rows[0].payload["appointment"]["id"])]
        mapping = {f"Patient/{source.patient_id}": f"Patient/{target.patient_id}",
                   f"Practitioner/{source.practitioner_id}":
                   f"Practitioner/{target.practitioner_id}"}
        writes = []
        for row in rows:
            payload = dict(row.payload)
            payload["appointment"] = ref_charts_ids(target)
            agent = payload.get("agent")
            if agent:
                payload["agent"] = {**agent, "value": mapping.get(agent["value"], agent["value"])}
            writes.append(RefWrite(row.what, row.event_kind, f"ref.{row.key}", payload))
        out.append(writes)
    return out


class PlainLoop:
    """The requests OpenVisit's generic profile sends, over one plain httpx client."""

    def __init__(self, http: httpx.AsyncClient, base: str) -> None:
        self.http = http
        self.base = base
        self.requests = 0

    async def call(self, method: str, path: str, *, body: Any = None,
                   headers: dict[str, str] | None = None,
                   content_type: str = FHIR_JSON) -> httpx.Response:
        sent = {"Accept": FHIR_JSON, **(headers or {})}
        content = None
        if body is not None:
            sent["Content-Type"] = content_type
            content = json.dumps(body, separators=(",", ":")).encode()
        self.requests += 1
        answer = await self.http.request(method, f"{self.base}/{path}", headers=sent,
                                         content=content)
        if answer.status_code >= 300:
            raise SystemExit(f"reference {method} {path}: HTTP {answer.status_code}")
        return answer

    async def write(self, w: RefWrite) -> None:
        p = w.payload
        facts = res.Facts(appointment_id=p["appointment"]["id"],
                          encounter_id=p["appointment"]["encounter"],
                          patient_ref=p["appointment"]["patient"],
                          practitioner_ref=p["appointment"]["practitioner"])
        at = when(p["at"])
        assert at is not None
        if w.what == "audit":
            agent = p.get("agent")
            resource = res.audit_event(
                key=w.key, event_kind=w.event_kind, at=at, facts=facts,
                agent_ref=res.reference(agent["type"], agent["value"]) if agent else None,
                agent_role=p.get("role"))
            await self.call("POST", "AuditEvent", body=resource,
                            headers={"If-None-Exist": res.if_none_exist(w.key), **PREFER})
        elif w.what == "encounter":
            current = await self.call("GET", f"Encounter/{facts.encounter_id}")
            updated = res.encounter_update(current.json(),
                                           status=ENCOUNTER_STATUS_FOR[w.event_kind],
                                           started_at=when(p.get("started_at")),
                                           ended_at=when(p.get("ended_at")))
            await self.call("PUT", f"Encounter/{facts.encounter_id}", body=updated,
                            headers={"If-Match": current.headers["etag"], **PREFER})
        elif w.what == "appointment_status":
            current = await self.call("GET", f"Appointment/{facts.appointment_id}")
            ops = res.appointment_status_ops(current.json(),
                                             status=APPOINTMENT_STATUS_FOR[w.event_kind])
            if ops:
                await self.call("PATCH", f"Appointment/{facts.appointment_id}", body=ops,
                                headers={"If-Match": current.headers["etag"], **PREFER},
                                content_type="application/json-patch+json")
        else:
            raise SystemExit(f"the reference loop has no write {w.what!r}")


async def reference(name: str, server: FhirServer, visits: list[list[RefWrite]], *,
                    in_flight: int) -> Stage:
    """Send every visit's writes in order, ``in_flight`` visits at a time."""
    limits = httpx.Limits(max_connections=max(in_flight, 1) * 2)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        loop = PlainLoop(http, server.base)
        queue: asyncio.Queue[list[RefWrite]] = asyncio.Queue()
        for visit in visits:
            queue.put_nowait(visit)

        async def lane() -> None:
            while not queue.empty():
                for w in queue.get_nowait():
                    await loop.write(w)

        pid = server.peer.pid if server.peer else 0
        node0, own0 = cpu_seconds(pid), time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(in_flight)))
        seconds = time.perf_counter() - started
        cpu = {"loop": time.process_time() - own0, "FHIR server": cpu_seconds(pid) - node0}
    return Stage(name, sum(len(v) for v in visits), seconds, loop.requests, cpu)


async def fhir_charts(server: FhirServer, n: int) -> list[Chart]:
    """``n`` charts on the server only (the reference loop needs no OpenVisit rows)."""
    out = []
    for _ in range(n):
        patient = server.create({"resourceType": "Patient", "active": True})
        practitioner = server.create({"resourceType": "Practitioner", "active": True})
        appointment = server.create({
            "resourceType": "Appointment", "status": "booked",
            "start": "2026-12-02T10:00:00Z", "end": "2026-12-02T10:20:00Z",
            "participant": [{"actor": {"reference": f"Patient/{patient}"},
                             "status": "accepted"},
                            {"actor": {"reference": f"Practitioner/{practitioner}"},
                             "status": "accepted"}]})
        encounter = server.create({
            "resourceType": "Encounter", "status": "planned",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                      "code": "AMB"},
            "subject": {"reference": f"Patient/{patient}"},
            "appointment": [{"reference": f"Appointment/{appointment}"}]})
        out.append(Chart(None, None, patient, practitioner, encounter,  # type: ignore[arg-type]
                         appointment))
    return out


# ------------------------------------------------------------------------------- main

def start_worker(env: dict[str, str], log: Path, *,
                 profile: Path | None) -> subprocess.Popen[bytes]:
    """``openvisit worker`` (under cProfile, its stats written to ``profile`` at SIGTERM)."""
    run = ["-m", "cProfile", "-o", str(profile)] if profile else []
    return subprocess.Popen([sys.executable, *run, "-m", "openvisit", "worker"], env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_started(log: Path, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while "worker_started" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"worker did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--visits", type=int, default=200, help="visits of the throughput run")
    parser.add_argument("--workers", type=int, default=2, help="`openvisit worker` processes")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="OPENVISIT_JOB_CONCURRENCY of each worker (production default 8)")
    parser.add_argument("--poll", type=float, default=None,
                        help="OPENVISIT_JOB_POLL_SECONDS (default: the production 1 s)")
    parser.add_argument("--lag-visits", type=int, default=40)
    parser.add_argument("--lag-interval", type=float, default=1.0,
                        help="seconds between the starts of the lag run's visits")
    parser.add_argument("--step-gap", type=float, default=2.0,
                        help="seconds between the steps of one visit in the lag run")
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the logs directory")
    parser.add_argument("--profile", type=Path, default=None,
                        help="run the workers under cProfile; stats to DIR/worker-N.prof")
    args = parser.parse_args()
    configure_logging(level="WARNING")

    logs = Path(tempfile.mkdtemp(prefix="writeback-bench-"))
    url = await pg_database()
    db = Database(url)
    await upgrade_async(db)
    await db.dispose()
    ctx = AppContext.create(make_settings(url, redis_url=REDIS_URL))
    await ctx.start()
    servers: list[FhirServer] = []
    workers: list[subprocess.Popen[bytes]] = []
    stages: list[Stage] = []
    lag: list[tuple[str, float]] = []
    counts: Counter[str] = Counter()
    try:
        ehr = start_server(logs, "openvisit")
        servers.append(ehr)
        endpoint = await clinic(ctx, ehr)
        charts = [await seed(ctx, ehr, endpoint=endpoint)
                  for _ in range(args.visits + args.lag_visits)]
        by_appointment = {c.appointment_id: c for c in charts}
        for chart in charts[:args.visits]:
            await run_visit(ctx, chart)
        async with ctx.transaction() as session:  # held back until the workers are up
            await session.execute(update(Job).where(Job.kind == SEND_JOB).values(
                due_at=utcnow() + timedelta(days=1)))
        burst = await rows_of(ctx)

        extra = {"OPENVISIT_REDIS_URL": REDIS_URL, "OPENVISIT_LOG_LEVEL": "INFO",
                 "OPENVISIT_JOB_CONCURRENCY": str(args.concurrency),
                 # The visits' seats stay "connected"; the presence sweep must not end them.
                 "OPENVISIT_PRESENCE_TIMEOUT_SECONDS": "86400"}
        if args.poll is not None:
            extra["OPENVISIT_JOB_POLL_SECONDS"] = str(args.poll)
        env = subprocess_env(url, **extra)
        for i in range(args.workers):
            log = logs / f"worker-{i}.log"
            profile = args.profile / f"worker-{i}.prof" if args.profile else None
            workers.append(start_worker(env, log, profile=profile))
            wait_started(log, workers[-1])
        await asyncio.sleep(1)  # past each worker's first (idle) claim and periodic jobs
        pids = [w.pid for w in workers]
        node_pid = ehr.peer.pid if ehr.peer else 0
        requests0 = request_count(ehr)
        cpu0 = (sum(map(cpu_seconds, pids)), postgres_cpu(), cpu_seconds(node_pid))
        counts0 = log_counts(logs)
        async with ctx.transaction() as session:
            await session.execute(update(Job).where(Job.kind == SEND_JOB).values(
                due_at=utcnow()))
        go = utcnow()
        await ctx.bus.publish(JOBS_CHANNEL, {"wake": True})
        sent = await until_sent(ctx, since_id=0, count=len(burst), timeout=900, workers=workers)
        last = max(r.sent_at for r in sent if r.sent_at is not None)
        cpu1 = (sum(map(cpu_seconds, pids)), postgres_cpu(), cpu_seconds(node_pid))
        stages.append(Stage(
            f"openvisit, {args.workers} workers x {args.concurrency} jobs", len(sent),
            (last - go).total_seconds(), request_count(ehr) - requests0,
            {"workers": cpu1[0] - cpu0[0], "PostgreSQL": cpu1[1] - cpu0[1],
             "FHIR server": cpu1[2] - cpu0[2]}))
        counts = log_counts(logs) - counts0

        # The lag: visits spread out, the EHR healthy, the workers mostly idle.
        since = max(r.id for r in sent)

        async def paced(i: int, chart: Chart) -> None:
            await asyncio.sleep(i * args.lag_interval)
            await run_visit(ctx, chart, gap=args.step_gap)

        await asyncio.gather(*(paced(i, c) for i, c in enumerate(charts[args.visits:])))
        lagged = await until_sent(ctx, since_id=since, count=args.lag_visits * 10, timeout=300,
                                  workers=workers)
        event_lag = []
        for row in lagged:
            assert row.sent_at is not None
            lag.append((row.what, (row.sent_at - row.created_at).total_seconds() * 1000))
            at = datetime.fromisoformat(row.payload["at"])
            event_lag.append((row.sent_at - at).total_seconds() * 1000)
        for w in workers:
            w.terminate()
            w.wait(timeout=30)
        workers.clear()
        ehr.stop()

        if not args.no_reference:
            ref_visits: list[list[RefWrite]] = []
            slots = args.workers * args.concurrency
            for name, in_flight in (("plain httpx loop, sequential", 1),
                                    (f"plain httpx loop, {slots} visits in flight", slots)):
                server = start_server(logs, f"ref-{in_flight}")
                servers.append(server)
                ref_charts = await fhir_charts(server, args.visits + args.lag_visits)
                ref_visits = remap(burst, by_appointment, ref_charts)
                stages.append(await reference(name, server, ref_visits, in_flight=in_flight))
                server.stop()
    finally:
        for w in workers:
            w.terminate()
            w.wait(timeout=30)
        for server in servers:
            server.stop()
        await ctx.close()
        await drop_database(url)
        if not args.keep:
            shutil.rmtree(logs, ignore_errors=True)

    print(f"{args.visits} visits, {len(burst)} writes ({dict(Counter(r.what for r in burst))}); "
          f"{os.cpu_count()} CPUs shared by workers, PostgreSQL, Redis, the FHIR server and "
          f"this script; load average {os.getloadavg()[0]:.1f}")
    for stage in stages:
        print(stage.line())
    ours = stages[0]
    for peer in stages[1:]:
        print(f"ratio openvisit / {peer.name}: {ours.rate / peer.rate:.2f}x")
    print(f"worker log during the throughput run: {counts['writeback_sent']} sent, "
          f"{counts['job_deferred']} deferrals ({counts['job_deferred'] / max(ours.writes, 1):.1f}"
          f" per write), {counts['job_failed']} failures")
    values = [ms for _, ms in lag]
    offered = 10 / args.lag_interval if args.lag_interval else float("inf")
    print(f"lag created_at -> sent_at, {args.lag_visits} visits {args.lag_interval} s apart, "
          f"steps {args.step_gap} s apart (~{offered:.0f} writes/s offered; {len(values)} "
          f"writes): p50 {pct(values, 0.5):.0f} ms, "
          f"p95 {pct(values, 0.95):.0f} ms, max {max(values, default=0):.0f} ms; "
          f"event.at -> sent_at p50 {pct(event_lag, 0.5):.0f} ms, "
          f"p95 {pct(event_lag, 0.95):.0f} ms")
    for what in sorted({w for w, _ in lag}):
        some = [ms for w, ms in lag if w == what]
        print(f"  {what:<20} p50 {pct(some, 0.5):6.0f} ms  p95 {pct(some, 0.95):6.0f} ms  "
              f"max {max(some):6.0f} ms")
    if args.keep:
        print(f"logs: {logs}")


if __name__ == "__main__":
    asyncio.run(main())
