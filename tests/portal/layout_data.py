"""A realistic organisation for the portal layout checks (issue 15 item 15) and their
screenshots: every portal page with the long values real EHRs give it.

:func:`build` starts from the March clinic of :mod:`tests.reports.conftest` (feed → notify
jobs → outbox messages with join links, visits, quality samples, receipts, STOP: what the
reports and the outbox show) and adds, through the same services where there is one, endpoints
in each approval state with hospital-length FHIR base URLs, approver ids and check messages,
SMS numbers in several states, certificates, write-backs the EHR refused, API tokens and audit
entries with long before/after values. :func:`serve` runs the app on loopback, in a thread of
its own, for a synchronous Playwright test.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import uvicorn
from sqlalchemy import select

from openvisit.app import create_app
from openvisit.audit import record
from openvisit.certificates import store_certificate
from openvisit.context import AppContext
from openvisit.db import Database
from openvisit.launch.epic_config import save_link_key
from openvisit.migrate import upgrade_async
from openvisit.models import (
    EhrEndpoint,
    Organisation,
    PhoneNumber,
    PhoneNumberEndpoint,
    SmsSettings,
    StaffAccount,
    Writeback,
    utcnow,
)
from openvisit.models.organisation import ApiToken
from openvisit.notify import providers
from tests.portal.certs import make_certificate
from tests.portal.conftest import password_hash
from tests.reports.conftest import build_march
from tests.support.backend import make_settings

#: The account the checks sign in as: an org admin holding every other role too (the longest
#: header, every button).
ADMIN = "grace.hopper-administrator"
#: The reports' month (tests.reports.conftest).
REPORT_QUERY = "since=2030-03-01&until=2030-03-31"

EPIC_PRD = "https://epicproxy.hospital-network.example.org/interconnect-prd-oauth2/api/FHIR/R4"
ORACLE_TST = ("https://fhir-ehr-code.cerner.example.com/r4/"
              "ec2458f2-1e24-41c8-b71b-0e701af7583d")
DRAFT_BASE = "https://ehr-staging.regional-health-authority.example.net/fhir-r4/sandbox/api"
APPROVER = "https://fhir.epic.example/interconnect-prd/api/FHIR/R4/Practitioner/eM5CWtq15N0WJeuCet5bJlQ3"

WRITEBACKS = [  # what, event kind, state, attempts, http status, error, server ref
    ("audit", "joined", "sent", 1, None, None, "AuditEvent/7d1c0b9e-1f7a-4b8e-9a55-3c2a1d0e6f11"),
    ("encounter", "started", "failed", 1, 404,
     "HTTP 404: Not found (Encounter/enc-4471-8c2f-0000-UNKNOWN-TO-THIS-EHR does not exist; "
     "OperationOutcome.issue[0].diagnostics=ResourceNotFoundException)", None),
    ("audit", "admitted", "blocked", 0, None,
     "Waits for write-back 2 of the same visit, which failed.", None),
    ("audit", "joined", "retrying", 4, 503, "HTTP 503: Service unavailable", None),
    ("message", "reminder", "sent", 1, None, None, "Communication/51be02c3"),
]


@dataclass(frozen=True)
class Seeded:
    """Ids of the rows the checks visit."""

    organisation_id: str
    approved: str  # Epic production, approved, write-back on
    awaiting: str  # Oracle Health test, awaiting approval
    draft: str  # generic test, check failed, no approver
    number: str  # the clinic's active sending number


def _check(base: str, environment: str, *, ok: bool) -> dict[str, object]:
    """What ``endpoint.options["check"]`` keeps after a live check (CheckResult.as_dict)."""
    steps = [
        {"key": "shape", "title": "URL shape", "status": "ok", "message": ""},
        {"key": "metadata", "title": "FHIR R4 CapabilityStatement", "status": "ok",
         "message": "FHIR 4.0.1 · Example EHR Interconnect 2024.1.0.0"},
        {"key": "smart", "title": "SMART configuration", "status": "ok" if ok else "failed",
         "message": "" if ok else (
             f"{base}/.well-known/smart-configuration answered HTTP 404 with an HTML sign-in "
             "page (text/html;charset=UTF-8): the EHR's SMART discovery document is not at "
             "this FHIR base. Check that the URL ends at the FHIR base (…/api/FHIR/R4).")},
        {"key": "capabilities", "title": "SMART capabilities", "status": "ok" if ok
         else "skipped", "message": ""},
    ]
    return {"fhir_base": base, "environment": environment, "steps": steps,
            "warnings": [] if ok else [
                "The URL says “staging” and “sandbox” but the endpoint is marked test; "
                "check it is not a production server."],
            "fhir_version": "4.0.1", "software": "Example EHR", "ok": ok,
            "checked_at": utcnow().isoformat()}


async def build(ctx: AppContext) -> Seeded:
    """The March clinic plus everything the other portal pages show (see the module)."""
    march = await build_march(ctx, create_app(ctx=ctx))
    org_id = march.site.organisation_id
    now = utcnow()
    async with ctx.transaction() as session:
        org = await session.get(Organisation, org_id)
        assert org is not None
        org.display_name = "Krajská nemocnice Tomáše Bati — Regional Teaching Hospital"
        org.sms_consent_send_at = org.sms_consent_patients_at = now
        org.frame_ancestors = ["https://ehr.hospital.example",
                               "https://*.epic-interconnect.regional-health-authority.example"]
        admin = StaffAccount(organisation_id=org_id, username=ADMIN,
                             password_hash=password_hash(), last_login_at=now,
                             roles=["org_admin", "approver", "reporter", "operator"])
        session.add(admin)
        clinic = await session.get(EhrEndpoint, march.site.endpoint_id)
        assert clinic is not None
        clinic.name, clinic.approver_ehr_user = "Test EHR", "Practitioner/prac-1"
        clinic.state, clinic.approved_at = "approved", now
        clinic.approved_by = "Practitioner/prac-1"
        clinic.options = {"check": _check(clinic.fhir_base, "test", ok=True)}

        approved = EhrEndpoint(
            organisation_id=org_id, name="Epic Interconnect — production (all departments)",
            vendor="epic", environment="production", fhir_base=EPIC_PRD,
            client_id="0f8e2b7c-4d51-4a8e-9f2a-6b1c3d5e7f90", auth_method="private_key_jwt",
            approver_ehr_user=APPROVER, state="approved", approved_at=now - timedelta(days=3),
            approved_by=APPROVER, timezone="Europe/Prague",
            options={"check": _check(EPIC_PRD, "production", ok=True),
                     "writeback": {"enabled": True, "patient_arrived": True,
                                   "appointment_status": True}})
        awaiting = EhrEndpoint(
            organisation_id=org_id, name="Oracle Health (Cerner) code sandbox", vendor="oracle",
            environment="test", fhir_base=ORACLE_TST,
            client_id="openvisit-telehealth-integration-client", auth_method="private_key_jwt",
            approver_ehr_user="Practitioner/12742069", state="awaiting_approval",
            options={"check": _check(ORACLE_TST, "test", ok=True)})
        draft = EhrEndpoint(
            organisation_id=org_id, name="Regional health authority staging", vendor="generic",
            environment="test", fhir_base=DRAFT_BASE, client_id="openvisit",
            auth_method="client_secret_basic", state="draft",
            options={"check": _check(DRAFT_BASE, "test", ok=False)})
        session.add_all([approved, awaiting, draft])
        await session.flush()
        await save_link_key(session, app=ctx, endpoint=approved, kind="provider",
                            secret="bGF5b3V0LWNoZWNrLWVwaWMta2V5LTMyLWJ5dGVzISE=",
                            key_format="base64", mode="gcm", actor=f"staff:{ADMIN}")
        session.add(SmsSettings(endpoint_id=approved.id, enabled=True,
                                reminder_offsets_minutes=[2880, 1440, 120, 30],
                                quiet_hours_start="21:00", quiet_hours_end="07:30"))
        start = now - timedelta(minutes=30)
        for i, (what, kind, state, attempts, status, error, ref) in enumerate(WRITEBACKS):
            session.add(Writeback(endpoint_id=approved.id, order_key="v1", key=f"layout.{i}",
                                  what=what, event_kind=kind, state=state, attempts=attempts,
                                  http_status=status, error=error, server_ref=ref,
                                  created_at=start + timedelta(minutes=i),
                                  sent_at=start + timedelta(minutes=i, seconds=1) if ref
                                  else None))

        sender = (await session.scalars(
            select(PhoneNumber).where(PhoneNumber.organisation_id == org_id))).one()
        for e in (approved, awaiting):
            session.add(PhoneNumberEndpoint(phone_number_id=sender.id, endpoint_id=e.id))
        session.add_all([
            PhoneNumber(organisation_id=org_id, e164="+18885550123", provider="twilio",
                        state="active", verification_status="pending_review",
                        provider_ref="PN3f2a9c8e7d6b5a4f3e2d1c0b9a8f7e6d5"),
            PhoneNumber(organisation_id=org_id, e164=None, provider="outbox",
                        state="provisioning", progress=40),
            PhoneNumber(organisation_id=org_id, e164="+420700000002", provider="outbox",
                        state="failed", verification_status="not_required",
                        error="The provider refused the number: NumberNotAvailableForRegion "
                              "(the Czech Republic needs a local address on file)."),
        ])

        pem, _key = make_certificate(
            common_name="OpenVisit telehealth — Epic Interconnect client (test, 2030)")
        await store_certificate(session, organisation_id=org_id, environment="test", data=pem,
                                actor=f"staff:{ADMIN}", now=now)
        for name, roles, used in (
                ("terraform-production-pipeline (infrastructure team)",
                 ["org_admin", "approver"], now),
                ("nightly-report-export", ["reporter"], None)):
            session.add(ApiToken(organisation_id=org_id, name=name,
                                 token_hash=f"{name:x<64}"[:64], prefix="ovt_8f3a",
                                 roles=roles, created_by=f"staff:{ADMIN}", account_id=admin.id,
                                 last_used_at=used,
                                 expires_at=now + timedelta(days=90)))
        await record(session, actor=f"staff:{ADMIN}", action="endpoint.update",
                     object_type="ehr_endpoint", object_id=str(approved.id),
                     organisation_id=org_id,
                     before={"fhir_base": EPIC_PRD.replace("prd", "tst"),
                             "approver_ehr_user": "Practitioner/eM5CWtq15N0WJeuCet5bJlQ3-old",
                             "options": {"check": {"ok": False}}},
                     after={"fhir_base": EPIC_PRD, "approver_ehr_user": APPROVER,
                            "options": {"check": {"ok": True}}})
        await record(session, actor=f"staff:{ADMIN}", action="organisation.update",
                     object_type="organisation", object_id=str(org_id),
                     organisation_id=org_id, before={"frame_ancestors": []},
                     after={"frame_ancestors": org.frame_ancestors,
                            "display_name": org.display_name})
        return Seeded(str(org_id), str(approved.id), str(awaiting.id), str(draft.id),
                      str(sender.id))


@dataclass(frozen=True)
class Served:
    base: str
    seeded: Seeded


@contextlib.contextmanager
def serve(tmp: Path) -> Iterator[Served]:
    """The seeded app on a loopback port, served from a thread with its own event loop (the
    caller drives a synchronous browser); stopped when the block ends."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    url = f"sqlite+aiosqlite:///{tmp}/layout.db"
    ready, stop = threading.Event(), threading.Event()
    box: dict[str, object] = {}

    async def run() -> None:
        db = Database(url)
        await upgrade_async(db)
        await db.dispose()
        ctx = AppContext.create(make_settings(url, public_url=base))
        await ctx.start()
        try:
            # In a task of its own: the seeding opens patient pages in Spanish, and the
            # language it leaves in its context must not become every portal page's.
            box["seeded"] = await asyncio.create_task(build(ctx))
            server = uvicorn.Server(uvicorn.Config(create_app(ctx=ctx), host="127.0.0.1",
                                                   port=port, lifespan="off", log_config=None))
            serving = asyncio.create_task(server.serve())
            while not server.started:
                await asyncio.sleep(0.05)
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)
            server.should_exit = True
            await serving
        finally:
            await providers.close_all(ctx)
            await ctx.close()

    def main() -> None:
        try:
            asyncio.run(run())
        except BaseException as exc:  # shown by the caller, who would otherwise just wait
            box["error"] = exc
            ready.set()

    thread = threading.Thread(target=main, name="layout-server", daemon=True)
    thread.start()
    ready.wait(120)
    if "error" in box:
        raise RuntimeError("the layout server did not start") from box["error"]  # type: ignore[arg-type]
    assert "seeded" in box, "the layout server did not start in time"
    try:
        yield Served(base, box["seeded"])  # type: ignore[arg-type]
    finally:
        stop.set()
        thread.join(30)
