"""``openvisit demo-setup`` (what `make demo` runs on every start): a second run changes
nothing, and the result is what the SMS path and the write-back of the demo need."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from sqlalchemy import func, select

from openvisit.context import AppContext
from openvisit.demo import DEMO_NUMBER, prepare
from openvisit.feed.service import hl7_options
from openvisit.models import AuditLog, EhrEndpoint, Organisation, PhoneNumber
from openvisit.notify import departments
from openvisit.notify.commands import notification_settings
from openvisit.outbound import OutboundPolicy, guarded_client
from openvisit.sandbox import create_sandbox_app
from openvisit.sandbox.clients import openvisit_registration
from openvisit.sandbox.runtime import DemoMode
from openvisit.writeback import service as writeback
from openvisit.writeback.settings import DEFAULT_SCOPES, settings_of
from openvisit.writeback.tokens import backend_tokens

SANDBOX = "http://127.0.0.1:9000"


async def test_it_sets_up_the_demo_once_and_again_without_change(ctx: AppContext) -> None:
    first = await prepare(ctx, sandbox_url="http://127.0.0.1:9000", slug="default",
                          name="Sandbox Family Clinic", timezone="Europe/Madrid")
    again = await prepare(ctx, sandbox_url="http://127.0.0.1:9000/", slug="default",
                          name="Sandbox Family Clinic", timezone="Europe/Madrid")
    assert again == first
    async with ctx.transaction() as session:
        [endpoint] = (await session.scalars(select(EhrEndpoint))).all()
        assert endpoint.state == "approved" and endpoint.fhir_base == "http://127.0.0.1:9000/fhir"
        assert hl7_options(endpoint)["senders"] == ["OVSANDBOX^SANDBOXCLINIC"]
        org = await session.scalar(select(Organisation))
        assert org is not None and org.display_name == "Sandbox Family Clinic"
        assert await session.scalar(select(func.count()).select_from(PhoneNumber)) == 1
        assert await departments.display_name(session, organisation_id=org.id,
                                              department="10501", language="es") == \
            "Medicina familiar"
    shown = await notification_settings(ctx, endpoint_id=str(first.endpoint_id))
    assert shown["enabled"] is True and DEMO_NUMBER in str(shown)


async def test_it_turns_write_back_on_once_and_leaves_an_admins_choice(
        ctx: AppContext) -> None:
    first = await prepare(ctx, sandbox_url=SANDBOX, slug="default",
                          name="Sandbox Family Clinic", timezone="UTC")
    assert first.writeback is True
    async with ctx.transaction() as session:
        endpoint = await session.get(EhrEndpoint, first.endpoint_id)
        assert endpoint is not None
        settings = settings_of(endpoint)
        assert settings.enabled and settings.appointment_status and settings.patient_arrived
        assert settings.audit_events and settings.encounter and settings.devicetest == \
            "observation"
        logged = (await session.scalars(select(AuditLog.actor).where(
            AuditLog.action == "endpoint.writeback"))).all()
        assert logged == ["cli"]
        # An admin turns it off; the next `make demo` keeps that.
        await writeback.update_settings(session, endpoint=endpoint,
                                        data={**settings.model_dump(), "enabled": False})
    again = await prepare(ctx, sandbox_url=SANDBOX, slug="default",
                          name="Sandbox Family Clinic", timezone="UTC")
    assert again.writeback is False


async def test_it_gets_a_backend_token_from_the_demo_sandbox(
        ctx: AppContext, client: httpx.AsyncClient) -> None:
    """The sandbox as `make demo` starts it (OpenVisit registered by `openvisit sandbox`, its
    JWKS fetched from OpenVisit) gives the demo endpoint a backend-services token for the
    scopes write-back asks for, and takes the portal's test write with it."""

    async def openvisit_jwks(url: str) -> Mapping[str, Any]:
        assert url == f"{ctx.settings.public_url.rstrip('/')}/.well-known/jwks.json"
        jwks: dict[str, Any] = (await client.get("/.well-known/jwks.json")).json()
        return jwks

    sandbox = create_sandbox_app(
        base_url=SANDBOX, clients=[openvisit_registration(openvisit_url=ctx.settings.public_url)],
        provider_launch_url=f"{ctx.settings.public_url}/launch",
        patient_launch_url=f"{ctx.settings.public_url}/launch/patient",
        jwks_fetcher=openvisit_jwks, demo=DemoMode())
    ctx.services.portal_http = guarded_client(
        OutboundPolicy(allow_private=True), mounts={SANDBOX: httpx.ASGITransport(sandbox)})
    done = await prepare(ctx, sandbox_url=SANDBOX, slug="default",
                         name="Sandbox Family Clinic", timezone="UTC")
    async with ctx.db.read() as session:
        endpoint = await session.get(EhrEndpoint, done.endpoint_id)
        assert endpoint is not None
        session.expunge(endpoint)
    settings = settings_of(endpoint)
    assert settings.enabled and settings.scope == DEFAULT_SCOPES
    token = await backend_tokens(ctx).token(ctx, endpoint, scope=settings.scope)
    assert token
    answer = await writeback.test_write(ctx, endpoint=endpoint)
    assert answer.ok, answer.message
    assert answer.server_ref and answer.server_ref.startswith("AuditEvent/")
