"""Write-back as the portal manages it: an endpoint's profile and switches, the test write,
the recent write-backs and the re-run of a failed one (issue 13 item 5).

Roles: org admins change the settings and re-run; org admins, approvers and operators read
the page (an operator is who is paged when ``openvisit_writeback_failed`` rises). Every change
is in the audit log, the webhook secret never (only that one is stored).

The test write goes over the network, so it runs with no transaction open: the endpoint is
read detached (:func:`~openvisit.portal.endpoints.service.snapshot_for`), then written to.
It is refused for a production endpoint: a test AuditEvent in real charts would mislead.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.audit import record
from openvisit.context import AppContext
from openvisit.errors import InvalidInput
from openvisit.models import EhrEndpoint
from openvisit.models.choices import WRITEBACK_PROFILES
from openvisit.portal.endpoints import service as endpoints
from openvisit.portal.signin.sessions import Principal
from openvisit.writeback import service as writeback
from openvisit.writeback.service import TestWriteResult, WritebackView
from openvisit.writeback.settings import WritebackSettings

READERS = ("org_admin", "approver", "operator")
#: What the form's switches are called (the settings' field names) and say.
SWITCHES = ("audit_events", "encounter", "appointment_status", "messages", "message_text",
            "patient_arrived", "backend_token")
DEVICETEST_CHOICES = ("observation", "communication", "off")
PROFILE_LABELS = {"generic": "Generic FHIR R4", "epic": "Epic",
                  "oracle": "Oracle Health (Cerner Millennium)"}
#: The settings the audit log shows (never the encrypted webhook secret).
_AUDITED = ("enabled", "profile", *SWITCHES, "devicetest", "webhook_url", "scopes")


@dataclass(frozen=True)
class SettingsInput:
    """What the page or the API asks to store; ``webhook_secret`` empty keeps the stored one."""

    enabled: bool
    profile: str
    devicetest: str
    switches: dict[str, bool]
    webhook_url: str = ""
    webhook_secret: str = ""
    clear_webhook_secret: bool = False
    scopes: str = ""


@dataclass(frozen=True)
class WritebackPage:
    """Everything the page shows for one endpoint."""

    settings: WritebackSettings
    profile: str
    has_webhook_secret: bool
    recent: list[WritebackView]
    failed: int
    waiting: int


def _audited(settings: WritebackSettings) -> dict[str, Any]:
    data = settings.model_dump()
    return {k: data[k] for k in _AUDITED}


def _check_url(url: str, *, production: bool) -> str:
    url = url.strip()
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise InvalidInput("The webhook address must be a full https:// address, e.g. "
                           "https://paging.example.org/openvisit.",
                           details={"field": "webhook_url"})
    if production and parts.scheme != "https":
        raise InvalidInput("A production endpoint's webhook must use https:// (the request "
                           "says which patient is waiting for which clinician).",
                           details={"field": "webhook_url"})
    if parts.username or parts.password:
        raise InvalidInput("Put no user name or password in the webhook address: the "
                           "webhook is signed with its secret instead.",
                           details={"field": "webhook_url"})
    return url


async def page(session: AsyncSession, *, principal: Principal,
               endpoint: EhrEndpoint, limit: int = 50) -> WritebackPage:
    principal.require(*READERS, doing="see write-backs")
    settings = writeback.read_settings(endpoint)
    recent = await writeback.recent(session, endpoint_id=endpoint.id, limit=limit)
    counts = await writeback.state_counts(session, endpoint_id=endpoint.id)
    return WritebackPage(settings=settings, profile=settings.profile_for(endpoint),
                         has_webhook_secret=bool(settings.webhook_secret_enc), recent=recent,
                         failed=counts.get("failed", 0) + counts.get("blocked", 0),
                         waiting=counts.get("pending", 0) + counts.get("retrying", 0))


async def save(session: AsyncSession, *, app: AppContext, principal: Principal,
               endpoint: EhrEndpoint, data: SettingsInput) -> WritebackSettings:
    """Validate and store the settings; raises :class:`InvalidInput` naming the field."""
    principal.require("org_admin", doing="change what is written back to the EHR")
    if data.profile not in WRITEBACK_PROFILES:
        raise InvalidInput("Choose the EHR's write-back profile: generic, epic or oracle.",
                           details={"field": "profile"})
    if data.devicetest not in DEVICETEST_CHOICES:
        raise InvalidInput("Choose how device-test results are written: as an Observation, "
                           "a Communication, or not at all.", details={"field": "devicetest"})
    unknown = sorted(set(data.switches) - set(SWITCHES))
    if unknown:
        raise InvalidInput(f"Unknown write-back switches: {', '.join(unknown)}.",
                           details={"field": unknown[0]})
    url = _check_url(data.webhook_url, production=endpoint.environment == "production")
    before = writeback.read_settings(endpoint)
    secret_enc = "" if data.clear_webhook_secret else before.webhook_secret_enc
    if data.webhook_secret:
        if len(data.webhook_secret) < 32:
            raise InvalidInput("The webhook secret must be at least 32 characters long "
                               "(e.g. openssl rand -hex 32).",
                               details={"field": "webhook_secret"})
        secret_enc = app.cipher.encrypt(data.webhook_secret)
    if url and not secret_enc:
        raise InvalidInput("A webhook needs a secret to sign its requests with (at least 32 "
                           "characters), so the receiver can tell them from forgeries.",
                           details={"field": "webhook_secret"})
    values: dict[str, Any] = {
        **before.model_dump(), "enabled": data.enabled, "profile": data.profile,
        "devicetest": data.devicetest, "webhook_url": url, "webhook_secret_enc": secret_enc,
        "scopes": " ".join(data.scopes.split()),
        **{name: bool(data.switches.get(name, False)) for name in SWITCHES}}
    after = await writeback.update_settings(session, endpoint=endpoint, data=values)
    audited = {**_audited(after), "webhook_secret": "changed" if data.webhook_secret else (
        "removed" if data.clear_webhook_secret and before.webhook_secret_enc else "kept")}
    await record(session, actor=principal.actor, action="writeback.configure",
                 object_type="ehr_endpoint", object_id=str(endpoint.id),
                 organisation_id=endpoint.organisation_id, before=_audited(before),
                 after=audited)
    return after


async def rerun(session: AsyncSession, *, principal: Principal, endpoint: EhrEndpoint,
                row_id: int) -> WritebackView:
    """Send a failed (or blocked) write-back again, after the cause was fixed."""
    principal.require("org_admin", doing="re-run a write-back")
    row = await writeback.rerun(session, row_id=row_id, endpoint_id=endpoint.id)
    await record(session, actor=principal.actor, action="writeback.rerun",
                 object_type="writeback", object_id=str(row.id),
                 organisation_id=endpoint.organisation_id,
                 after={"what": row.what, "reruns": row.reruns})
    return WritebackView.of(row)


async def test_write(app: AppContext, *, principal: Principal,
                     endpoint_id: uuid.UUID) -> TestWriteResult:
    """One AuditEvent written to a *test* endpoint now; the EHR's answer, whatever it is."""
    principal.require("org_admin", "approver", doing="test write-back")
    endpoint = await endpoints.snapshot_for(app, principal=principal, endpoint_id=endpoint_id)
    if endpoint.environment == "production":
        raise InvalidInput("The test write is for test endpoints only: it would put an "
                           "AuditEvent of no real visit into production charts. Use the "
                           "test endpoint of this EHR.")
    result = await writeback.test_write(app, endpoint=endpoint)
    async with app.transaction() as session:
        await record(session, actor=principal.actor, action="writeback.test",
                     object_type="ehr_endpoint", object_id=str(endpoint.id),
                     organisation_id=endpoint.organisation_id,
                     after={"ok": result.ok, "http_status": result.http_status,
                            "server_ref": result.server_ref})
    return result
