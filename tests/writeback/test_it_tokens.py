"""Backend-services tokens against the sandbox EHR's token endpoint: private_key_jwt signed
with OpenVisit's own launch keys, system/* scopes, cached until expiry, and the portal's test
write accepted by the sandbox's FHIR API with that token."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from openvisit.context import AppContext
from openvisit.launch.keys import public_jwks
from openvisit.models import EhrEndpoint, Organisation
from openvisit.outbound import OutboundPolicy, guarded_client
from openvisit.sandbox import SandboxClient, create_sandbox_app
from openvisit.writeback import service as writeback
from openvisit.writeback.tokens import BackendTokens, backend_tokens

BASE = "http://sandbox.test"


class Counting(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner, self.paths = inner, list[str]()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await self.inner.handle_async_request(request)


async def test_it_gets_caches_and_uses_a_backend_token(ctx: AppContext) -> None:
    jwks: dict[str, Any] = await public_jwks(ctx)
    sandbox = create_sandbox_app(
        base_url=BASE, provider_launch_url="http://127.0.0.1:9/launch",
        patient_launch_url="http://127.0.0.1:9/launch",
        clients=[SandboxClient(client_id="ov-writeback", jwks=jwks,
                               scopes=["system/AuditEvent.cruds"])])
    counting = Counting(httpx.ASGITransport(sandbox))
    ctx.services.portal_http = guarded_client(OutboundPolicy(allow_private=True),
                                              mounts={BASE: counting})
    async with ctx.transaction() as session:
        org = Organisation(slug=f"org-{uuid.uuid4().hex[:8]}", display_name="Clinic")
        session.add(org)
        await session.flush()
        endpoint = EhrEndpoint(organisation_id=org.id, name="Sandbox", fhir_base=f"{BASE}/fhir",
                               client_id="ov-writeback", state="approved",
                               options={"writeback": {"enabled": True,
                                                      "scopes": "system/AuditEvent.c"}})
        session.add(endpoint)
        await session.flush()

    tokens = backend_tokens(ctx)
    assert isinstance(tokens, BackendTokens)
    first = await tokens.token(ctx, endpoint, scope="system/AuditEvent.c")
    again = await tokens.token(ctx, endpoint, scope="system/AuditEvent.c")
    assert first and first == again
    assert counting.paths.count("/auth/token") == 1  # cached until near expiry

    answer = await writeback.test_write(ctx, endpoint=endpoint)
    assert answer.ok, answer.message
    assert answer.server_ref and answer.server_ref.startswith("AuditEvent/")
    assert counting.paths.count("/auth/token") == 1

    tokens.clock = lambda: 10**9  # far past expiry: a new token is asked for
    assert await tokens.token(ctx, endpoint, scope="system/AuditEvent.c")
    assert counting.paths.count("/auth/token") == 2
