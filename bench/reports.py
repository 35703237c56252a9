"""Reports at scale on PostgreSQL: one organisation with 100,000 visits, 1,000,000 visit events
and 300,000 messages; each report timed for a month and for a year (p95 of N runs), the usage
CSV (100,000 rows) streamed with the process's RSS sampled, next to the same SQL statement run
bare by ``psql`` in the same run.

    .venv/bin/python bench/reports.py [--visits 100000] [--runs 5]

Needs PostgreSQL on 127.0.0.1:5432 (trust) as the tests do; makes and drops its own database.
Seeding is done by ``INSERT … SELECT generate_series`` in the database (seconds, not hours);
the reports themselves run through ``openvisit.reports.service`` exactly as the pages do.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects import postgresql

from openvisit.context import AppContext
from openvisit.db import Database
from openvisit.migrate import upgrade_async
from openvisit.models import EhrEndpoint, Organisation
from openvisit.reports import repository as repo
from openvisit.reports import service
from tests.support.backend import make_settings

PG = "postgresql+asyncpg://postgres@127.0.0.1:5432"


class Caller:
    """A reporter of the benchmark's organisation."""

    def __init__(self, organisation_id: uuid.UUID) -> None:
        self.organisation_id = organisation_id
        self.actor = "bench"

    def require(self, *roles: str, doing: str) -> None:
        return None


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def seed(db: Database, org: uuid.UUID, endpoint: uuid.UUID, visits: int) -> None:
    events_per_visit = 10
    messages = visits * 3
    async with db.transaction() as session:
        session.add(Organisation(id=org, slug="bench", display_name="Bench",
                                 timezone="Europe/Prague", allocation_limit=5000))
        await session.flush()
        session.add(EhrEndpoint(id=endpoint, organisation_id=org, name="Bench EHR",
                                vendor="generic", environment="production",
                                fhir_base="https://ehr.example/fhir", client_id="openvisit",
                                timezone="Europe/Prague"))
    statements = [
        # Appointments and visits spread over the year, one every ~5 minutes.
        f"""INSERT INTO appointment (id, organisation_id, endpoint_id, ehr_appointment_id,
            patient_ref, provider_ehr_id, department, start_at, status, language, source,
            created_at, updated_at)
            SELECT md5('a' || n)::uuid, '{org}', '{endpoint}', 'A' || n, 'Patient/' || n,
            'Practitioner/' || (n % 40), 'Dept ' || (n % 12),
            timestamptz '2030-01-01' + (n * interval '315 seconds'),
            CASE WHEN n % 17 = 0 THEN 'noshow' ELSE 'booked' END,
            CASE WHEN n % 3 = 0 THEN 'es' ELSE 'en' END, 'hl7', now(), now()
            FROM generate_series(1, {visits}) n""",
        f"""INSERT INTO visit (id, organisation_id, appointment_id, status, kind, started_at,
            ended_at, media_backend, created_at, updated_at)
            SELECT md5('v' || n)::uuid, '{org}', md5('a' || n)::uuid, 'ended', 'visit',
            timestamptz '2030-01-01' + (n * interval '315 seconds') + interval '2 minutes',
            timestamptz '2030-01-01' + (n * interval '315 seconds') + interval '20 minutes',
            'mesh', now(), now() FROM generate_series(1, {visits}) n""",
        f"""INSERT INTO participant (id, visit_id, role, lobby_state, ehr_user_id, patient_ref,
            label, connected, admitted_at, left_at, token_version, seat_no, rev,
            record_budget, created_at, updated_at)
            SELECT md5(r || n)::uuid, md5('v' || n)::uuid, r,
            'left', CASE WHEN r = 'provider' THEN 'Practitioner/' || (n % 40) END,
            CASE WHEN r = 'patient' THEN 'Patient/' || n END, r, false,
            timestamptz '2030-01-01' + (n * interval '315 seconds') + interval '2 minutes',
            timestamptz '2030-01-01' + (n * interval '315 seconds') + interval '19 minutes',
            0, 1, 0, '{{}}', now(), now()
            FROM generate_series(1, {visits}) n, (VALUES ('provider'), ('patient')) v(r)""",
        f"""INSERT INTO visit_event (visit_id, participant_id, kind, at, data)
            SELECT md5('v' || n)::uuid, md5('patient' || n)::uuid,
            (ARRAY['link_opened','joined','connected','admitted','disconnected','connected',
                   'left','joined','admitted','ended'])[k],
            timestamptz '2030-01-01' + (n * interval '315 seconds') + k * interval '20 seconds',
            CASE WHEN k = 2 THEN '{{"devices": "ready"}}'::json
                 WHEN k = 10 THEN '{{"by_role": "provider"}}'::json ELSE '{{}}'::json END
            FROM generate_series(1, {visits}) n, generate_series(1, {events_per_visit}) k""",
        f"""INSERT INTO quality_sample (visit_id, participant_id, at, media_path, rtt_ms,
            jitter_ms, packet_loss_pct, bitrate_kbps, frame_width, frame_height)
            SELECT md5('v' || n)::uuid, md5('patient' || n)::uuid,
            timestamptz '2030-01-01' + (n * interval '315 seconds') + k * interval '10 seconds',
            'host', 40 + (n * k) % 300, (n + k) % 40, ((n * k) % 50) / 10.0, 800 + k * 10,
            640, 480 FROM generate_series(1, {visits}) n, generate_series(1, 3) k""",
        f"""INSERT INTO message_log (id, organisation_id, appointment_id, channel, provider,
            recipient_masked, recipient_hash, template, language, status, created_at,
            updated_at, receipt_at)
            SELECT md5('m' || n)::uuid, '{org}', md5('a' || ((n % {visits}) + 1))::uuid,
            CASE WHEN n % 4 = 0 THEN 'email' ELSE 'sms' END, 'outbox', '+1*******' || (n % 1000),
            md5('r' || n), 'booked', 'en',
            (ARRAY['sent','delivered','delivered','undelivered'])[(n % 4) + 1],
            timestamptz '2030-01-01' + (n * interval '105 seconds'), now(),
            timestamptz '2030-01-01' + (n * interval '105 seconds') + interval '8 seconds'
            FROM generate_series(1, {messages}) n""",
        "ANALYZE",
    ]
    async with db.engine.begin() as conn:
        for sql in statements[:-1]:
            await conn.execute(text(sql))
    async with db.engine.connect() as conn:
        await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
            text("ANALYZE"))


def psql_ms(dbname: str, sql: str, runs: int) -> list[float]:
    """The same statement, bare, by psql (``\\timing``), ``runs`` times."""
    script = "\\timing on\n" + "\n".join([f"{sql};"] * runs) + "\n"
    out = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", dbname, "-qAt",
                          "-o", "/dev/null"], input=script, capture_output=True, text=True,
                         check=True).stdout
    return [float(m) for m in re.findall(r"Time: ([0-9.]+) ms", out)]


def literal_sql(stmt: Any) -> str:
    return str(stmt.compile(dialect=postgresql.dialect(),  # type: ignore[no-untyped-call]
                            compile_kwargs={"literal_binds": True}))


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * 95 // 100) - 1)]


async def main(visits: int, runs: int) -> None:
    name = f"openvisit_bench_{uuid.uuid4().hex[:8]}"
    admin = Database(f"{PG}/postgres")
    async with admin.engine.connect() as conn:
        await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
            text(f'CREATE DATABASE "{name}"'))
    url = f"{PG}/{name}"
    try:
        db = Database(url)
        await upgrade_async(db)
        org, endpoint = uuid.uuid4(), uuid.uuid4()
        started = time.perf_counter()
        await seed(db, org, endpoint, visits)
        print(f"seeded {visits} visits, {visits * 10} events, {visits * 3} messages "
              f"in {time.perf_counter() - started:.1f} s")
        await db.dispose()
        ctx = AppContext.create(make_settings(url, redis_url="redis://127.0.0.1:6379/15"))
        await ctx.start()
        caller = Caller(org)
        try:
            for label, since, until in (("month", "2030-03-01", "2030-03-31"),
                                        ("year", "2030-01-01", "2030-12-31")):
                async with ctx.db.read() as session:
                    query = await service.parse(session, settings=ctx.settings, caller=caller,
                                                params={"since": since, "until": until})
                for report in ("usage", "quality", "messages", "funnel"):
                    times: list[float] = []
                    for _run in range(runs):
                        async with ctx.db.read() as session:
                            t = time.perf_counter()
                            if report == "usage":
                                await service.usage(session, query=query, caller=caller)
                            elif report == "quality":
                                await service.quality(session, settings=ctx.settings,
                                                      query=query, caller=caller)
                            elif report == "messages":
                                await service.messages(session, query=query, caller=caller)
                            else:
                                await service.funnel(session, query=query, caller=caller)
                            times.append((time.perf_counter() - t) * 1000)
                    print(f"{label:5} {report:8} p95 {p95(times):8.1f} ms "
                          f"(median {statistics.median(times):.1f})")
            async with ctx.db.read() as session:
                year = await service.parse(session, settings=ctx.settings, caller=caller,
                                           params={"since": "2030-01-01",
                                                   "until": "2030-12-31"})
                stmt, _limit, _refs = await service.usage_statement(session, year, caller)
            rss_before, rss_peak, rows, size = rss_kib(), 0, 0, 0
            t = time.perf_counter()
            async for chunk in service.csv_stream(ctx.db.read, name="usage",
                                                  settings=ctx.settings, query=year,
                                                  caller=caller, language="en"):
                size += len(chunk)
                rows += chunk.count(b"\r\n")
                rss_peak = max(rss_peak, rss_kib())
            csv_s = time.perf_counter() - t
            print(f"usage CSV: {rows - 1} rows, {size / 1e6:.1f} MB in {csv_s:.2f} s; RSS "
                  f"{rss_before / 1024:.0f} MiB before, peak {rss_peak / 1024:.0f} MiB")
            bare = psql_ms(name, literal_sql(stmt), runs)
            ours: list[float] = []
            for _run in range(runs):
                async with ctx.db.read() as session:
                    t = time.perf_counter()
                    await repo.all_rows(session, stmt)
                    ours.append((time.perf_counter() - t) * 1000)
            print(f"usage rows (year) via OpenVisit median {statistics.median(ours):.0f} ms, "
                  f"psql median {statistics.median(bare):.0f} ms: "
                  f"{statistics.median(bare) / statistics.median(ours):.2f}x psql's speed")
        finally:
            await ctx.close()
    finally:
        async with admin.engine.connect() as conn:
            await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
                text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--visits", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.visits, args.runs))

