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
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import event, text

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
            patient_ref_hash, provider_ehr_id, department, start_at, status, language, source,
            created_at, updated_at)
            SELECT md5('a' || n)::uuid, '{org}', '{endpoint}', 'A' || n, md5('Patient/' || n),
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
        f"""INSERT INTO participant (id, visit_id, role, lobby_state, ehr_user_id,
            patient_ref_hash,
            label, connected, admitted_at, left_at, token_version, seat_no, rev,
            record_budget, created_at, updated_at)
            SELECT md5(r || n)::uuid, md5('v' || n)::uuid, r,
            'left', CASE WHEN r = 'provider' THEN 'Practitioner/' || (n % 40) END,
            CASE WHEN r = 'patient' THEN md5('Patient/' || n) END, r, false,
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


class Captured:
    """The SQL text and parameters OpenVisit's driver received for the last statement run
    (recorded by a ``before_cursor_execute`` listener), so psql runs exactly that."""

    def __init__(self) -> None:
        self.sql = ""
        self.params: tuple[Any, ...] = ()

    def __call__(self, conn: Any, cursor: Any, statement: str, parameters: Any,
                 context: Any, executemany: bool) -> None:
        self.sql, self.params = statement, tuple(parameters or ())


def sql_literal(value: Any) -> str:
    """A parameter as an SQL literal for ``EXECUTE`` (the statement casts every ``$n``)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def psql(dbname: str, script: str) -> str:
    """Run a psql script; raise with psql's own message on any error (``ON_ERROR_STOP``)."""
    done = subprocess.run(["psql", "-X", "-h", "127.0.0.1", "-U", "postgres", "-d", dbname,
                           "-v", "ON_ERROR_STOP=1", "-qAt"], input=script,
                          capture_output=True, text=True)
    if done.returncode != 0 or done.stderr.strip():
        raise RuntimeError(f"psql failed (exit {done.returncode}): {done.stderr.strip()}")
    return done.stdout


def psql_ms(dbname: str, captured: Captured, runs: int, *, expect_rows: int,
            settings: str = "") -> list[float]:
    """The statement OpenVisit sent, with the same parameters, prepared and executed
    ``runs`` times by psql (``\\timing``: server time plus the transfer to psql, like
    OpenVisit's). The rows go to a file and are counted: a run that did not return the same
    number of rows as OpenVisit's is an error, not a time."""
    with tempfile.NamedTemporaryFile("r", suffix=".out") as rows_file:
        execute = f"EXECUTE q({', '.join(sql_literal(v) for v in captured.params)});" \
            if captured.params else "EXECUTE q;"
        script = (f"BEGIN READ ONLY;\n{settings}PREPARE q AS {captured.sql};\n"
                  f"\\o {rows_file.name}\n\\timing on\n"
                  + "\n".join([execute] * runs) + "\n\\timing off\n\\o\nROLLBACK;\n")
        out = psql(dbname, script)
        got = sum(1 for _line in rows_file)
    times = [float(m) for m in re.findall(r"^Time: ([0-9.]+) ms", out, flags=re.M)]
    if len(times) != runs:
        raise RuntimeError(f"psql printed {len(times)} timings for {runs} runs: {out[:500]}")
    if got != expect_rows * runs:
        raise RuntimeError(f"psql returned {got} rows for {runs} runs, OpenVisit "
                           f"{expect_rows} per run")
    return times


def psql_explain(dbname: str, captured: Captured, settings: str = "") -> str:
    """``EXPLAIN (ANALYZE, BUFFERS)`` of the statement OpenVisit sent, same parameters."""
    execute = f"EXECUTE q({', '.join(sql_literal(v) for v in captured.params)})" \
        if captured.params else "EXECUTE q"
    return psql(dbname, f"BEGIN READ ONLY;\n{settings}PREPARE q AS {captured.sql};\n"
                        f"EXPLAIN (ANALYZE, BUFFERS) {execute};\nROLLBACK;\n")


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * 95 // 100) - 1)]


#: What OpenVisit's report transactions set, so psql runs under the same settings.
SETTINGS = "".join(f"{setting};\n" for setting in repo.REPORT_SETTINGS)
RANGES = (("month", "2030-03-01", "2030-03-31"), ("year", "2030-01-01", "2030-12-31"))
#: "usage+charts" is the usage page in HTML (the JSON API is "usage" alone): its charts read
#: the visits per day and the lobby-wait distribution as well.
REPORTS = ("usage", "usage+charts", "quality", "messages", "funnel")


async def page(session: Any, ctx: AppContext, report: str, query: Any, caller: Caller) -> None:
    """One report page's data, through the service exactly as the page gets it."""
    if report in ("usage", "usage+charts"):
        await service.usage(session, query=query, caller=caller)
        if report == "usage+charts":
            await service.charts(session, name="usage", settings=ctx.settings, query=query,
                                 caller=caller)
    elif report == "quality":
        await service.quality(session, settings=ctx.settings, query=query, caller=caller)
    elif report == "messages":
        await service.messages(session, query=query, caller=caller)
    else:
        await service.funnel(session, query=query, caller=caller)


async def rows_statement(session: Any, ctx: AppContext, report: str, query: Any,
                         caller: Caller) -> Any:
    """The statement behind a report's rows (the part the CSV streams)."""
    if report == "usage":
        return (await service.usage_statement(session, query, caller))[0]
    if report == "quality":
        return service._quality_statement(session, ctx.settings, query)
    return repo.message_rows(query.scope)


async def compare_psql(ctx: AppContext, name: str, report: str, query: Any, caller: Caller,
                       runs: int, *, explain: bool) -> tuple[float, float]:
    """Median ms of the report's rows statement through OpenVisit and the same statement
    and parameters run by psql, alternating, in this run."""
    captured = Captured()
    ours: list[float] = []
    bare: list[float] = []
    for _run in range(runs):
        async with ctx.db.read() as session:
            stmt = await rows_statement(session, ctx, report, query, caller)
            await repo.prepare_report(session)
            event.listen(ctx.db.engine.sync_engine, "before_cursor_execute", captured)
            try:
                t = time.perf_counter()
                rows = await repo.all_rows(session, stmt)
                ours.append((time.perf_counter() - t) * 1000)
            finally:
                event.remove(ctx.db.engine.sync_engine, "before_cursor_execute", captured)
        bare += psql_ms(name, captured, 1, expect_rows=len(rows),
                        settings=SETTINGS)
    if explain:
        print(psql_explain(name, captured, settings=SETTINGS))
    return statistics.median(ours), statistics.median(bare)


async def main(visits: int, runs: int, *, database: str | None, keep: bool, explain: bool,
               reports: list[str]) -> None:
    name = database or f"openvisit_bench_{uuid.uuid4().hex[:8]}"
    admin = Database(f"{PG}/postgres")
    async with admin.engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        exists = (await conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                     {"n": name})).first() is not None
        if not exists:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{PG}/{name}"
    try:
        db = Database(url)
        async with db.engine.connect() as conn:
            org_row = (await conn.execute(text(
                "SELECT id FROM organisation WHERE slug = 'bench'"))).first() if exists else None
        if org_row is None:
            await upgrade_async(db)
            org, endpoint = uuid.uuid4(), uuid.uuid4()
            started = time.perf_counter()
            await seed(db, org, endpoint, visits)
            print(f"seeded {visits} visits, {visits * 10} events, {visits * 3} messages "
                  f"in {time.perf_counter() - started:.1f} s into {name}")
        else:
            org = org_row[0]
            print(f"reusing {name}")
        await db.dispose()
        print(f"load average {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
        ctx = AppContext.create(make_settings(url, redis_url="redis://127.0.0.1:6379/15"))
        await ctx.start()
        caller = Caller(org)
        try:
            for label, since, until in RANGES:
                async with ctx.db.read() as session:
                    query = await service.parse(session, settings=ctx.settings, caller=caller,
                                                params={"since": since, "until": until})
                for report in reports:
                    times: list[float] = []
                    for _run in range(runs):
                        async with ctx.db.read() as session:
                            t = time.perf_counter()
                            await page(session, ctx, report, query, caller)
                            times.append((time.perf_counter() - t) * 1000)
                    line = (f"{label:5} {report:8} page p95 {p95(times):8.1f} ms "
                            f"(median {statistics.median(times):.1f})")
                    if report in ("usage", "quality", "messages"):
                        ours, bare = await compare_psql(ctx, name, report, query, caller,
                                                        runs, explain=explain)
                        line += (f"; rows statement {ours:.1f} ms, psql {bare:.1f} ms: "
                                 f"{bare / ours:.2f}x psql's speed")
                    print(line, flush=True)
            async with ctx.db.read() as session:
                year = await service.parse(session, settings=ctx.settings, caller=caller,
                                           params={"since": RANGES[1][1],
                                                   "until": RANGES[1][2]})
            rss_before, rss_peak, rows, size = rss_kib(), 0, 0, 0
            t = time.perf_counter()
            async for chunk in service.csv_stream(ctx.db.read, name="usage",
                                                  settings=ctx.settings, query=year,
                                                  caller=caller, language="en"):
                size += len(chunk)
                rows += chunk.count(b"\r\n")
                rss_peak = max(rss_peak, rss_kib())
            csv_s = time.perf_counter() - t
            print(f"usage CSV (year): {rows - 1} rows, {size / 1e6:.1f} MB in {csv_s:.2f} s; "
                  f"RSS {rss_before / 1024:.0f} MiB before, peak {rss_peak / 1024:.0f} MiB")
        finally:
            await ctx.close()
    finally:
        if not keep:
            async with admin.engine.connect() as conn:
                await (await conn.execution_options(isolation_level="AUTOCOMMIT")).execute(
                    text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--visits", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--database", help="reuse this database if it is seeded (else seed "
                        "it); with --keep, later runs skip the seeding")
    parser.add_argument("--keep", action="store_true", help="do not drop the database")
    parser.add_argument("--explain", action="store_true",
                        help="print EXPLAIN (ANALYZE, BUFFERS) of each rows statement")
    parser.add_argument("--reports", default=",".join(REPORTS))
    args = parser.parse_args()
    asyncio.run(main(args.visits, args.runs, database=args.database, keep=args.keep,
                     explain=args.explain, reports=args.reports.split(",")))
