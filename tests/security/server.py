"""A real OpenVisit process in production mode, for the attack replay and the schema fuzzing.

``production_stack(tmp)`` gives an empty migrated database on this run's backend (SQLite file
or a PostgreSQL database + Redis), seeds an organisation with an org admin (local password)
and that admin's API token, and starts ``openvisit serve`` with ``OPENVISIT_ENVIRONMENT=
production`` on free ports. Everything it logs lands in one file the tests then read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from argon2 import PasswordHasher

from openvisit.db import Database
from openvisit.models import EhrEndpoint, Organisation, StaffAccount
from openvisit.portal.signin.sessions import Principal, create_api_token
from tests.peers.fixtures import free_port
from tests.support.backend import BACKEND, PG_ADMIN_URL, subprocess_env
from tests.support.procs import Proc, wait_for

ADMIN_PASSWORD = "correct horse battery staple"


@dataclass
class Stack:
    base: str
    db_url: str
    log: Path
    proc: Proc
    organisation_id: uuid.UUID
    endpoint_id: uuid.UUID
    admin_token: str
    #: Join tokens of a visit starting in 10 minutes: its clinician and its patient.
    provider_token: str
    patient_token: str
    visit_id: uuid.UUID
    #: Every secret handed out during the run (tokens, links): none may reach the log.
    secrets: list[str] = field(default_factory=list)

    def api(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return httpx.Client(base_url=self.base, headers=headers, timeout=30)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL + "/postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def fresh_database(template_url: str, tmp: Path) -> tuple[str, str | None]:
    """An empty migrated database copied from the session's template; (url, pg name)."""
    if BACKEND == "postgres":
        # Its own database (the template is shared by the other tests' connections).
        name = f"openvisit_sec_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
        base = PG_ADMIN_URL.replace("postgresql://", "postgresql+asyncpg://")
        url = f"{base}/{name}"
        asyncio.run(_migrate(url))
        return url, name
    src = Path(template_url.split("///", 1)[1])
    dst = tmp / "openvisit.db"
    shutil.copy(src, dst)
    return f"sqlite+aiosqlite:///{dst}", None


async def _migrate(url: str) -> None:
    from openvisit.migrate import upgrade_async

    db = Database(url)
    try:
        await upgrade_async(db)
    finally:
        await db.dispose()


@dataclass(frozen=True)
class Seeded:
    organisation_id: uuid.UUID
    endpoint_id: uuid.UUID
    admin_token: str
    visit_id: uuid.UUID
    provider_token: str
    patient_token: str


async def _seed(db_url: str, *, public_url: str) -> Seeded:
    from datetime import timedelta

    from openvisit.context import AppContext
    from openvisit.models import Appointment, utcnow
    from openvisit.visits.service import open_visit, seat_link
    from tests.support.backend import make_settings

    app = AppContext.create(make_settings(db_url, public_url=public_url))
    try:
        async with app.transaction() as session:
            org = Organisation(slug="acme", display_name="Acme Clinic")
            session.add(org)
            await session.flush()
            admin = StaffAccount(
                organisation_id=org.id,
                username="admin",
                password_hash=PasswordHasher().hash(ADMIN_PASSWORD),
                roles=["org_admin"],
            )
            endpoint = EhrEndpoint(
                organisation_id=org.id,
                name="Test EHR",
                vendor="generic",
                environment="test",
                fhir_base="https://ehr.invalid/fhir",
                client_id="openvisit",
            )
            session.add_all([admin, endpoint])
            await session.flush()
            principal = Principal(
                organisation_id=org.id,
                roles=frozenset({"org_admin"}),
                via="session",
                actor=f"staff:{admin.id}",
                display="admin",
                account_id=admin.id,
            )
            _, secret = await create_api_token(
                session, principal=principal, name="attack-replay", roles=["org_admin"]
            )
            appointment = Appointment(
                organisation_id=org.id,
                endpoint_id=endpoint.id,
                ehr_appointment_id="stack-appt",
                **app.refs.columns("Patient/stack-1"),
                start_at=utcnow() + timedelta(minutes=10),
            )
            session.add(appointment)
            await session.flush()
            visit = await open_visit(session, app=app, appointment=appointment)
            provider = await seat_link(
                session, app=app, visit=visit, role="provider", ehr_user_id="Practitioner/1"
            )
            patient = await seat_link(
                session, app=app, visit=visit, role="patient", patient_ref="Patient/stack-1"
            )
            return Seeded(
                organisation_id=org.id,
                endpoint_id=endpoint.id,
                admin_token=secret,
                visit_id=visit.id,
                provider_token=provider.rsplit("/v/", 1)[1],
                patient_token=patient.rsplit("/v/", 1)[1],
            )
    finally:
        await app.close()


@contextlib.contextmanager
def production_stack(template_url: str, tmp: Path, **extra_env: str) -> Iterator[Stack]:
    """``openvisit serve`` in production mode on a fresh database; stopped and dropped after."""
    db_url, pg_name = fresh_database(template_url, tmp)
    port, mllp = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    seeded = asyncio.run(_seed(db_url, public_url=base))
    env = subprocess_env(
        db_url,
        OPENVISIT_ENVIRONMENT="production",
        OPENVISIT_PUBLIC_URL=base,
        OPENVISIT_MLLP_PORT=str(mllp),
        OPENVISIT_LOG_LEVEL="INFO",
        OPENVISIT_JOB_POLL_SECONDS="0.2",
        **extra_env,
    )
    log = tmp / "openvisit.log"
    proc = Proc(["serve", "--host", "127.0.0.1", "--port", str(port)], env=env, log=log)
    try:

        def up() -> bool:
            try:
                return httpx.get(f"{base}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=60, what="openvisit serve (production) to be ready", proc=proc)
        yield Stack(
            base=base,
            db_url=db_url,
            log=log,
            proc=proc,
            organisation_id=seeded.organisation_id,
            endpoint_id=seeded.endpoint_id,
            admin_token=seeded.admin_token,
            provider_token=seeded.provider_token,
            patient_token=seeded.patient_token,
            visit_id=seeded.visit_id,
            secrets=[seeded.admin_token, seeded.provider_token, seeded.patient_token],
        )
    finally:
        proc.stop()
        if pg_name:
            asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))
