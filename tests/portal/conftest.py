"""Portal test fixtures: personas, signed-in HTTP clients, and the sandbox EHR in process.

Personas (STYLE: owner, member, outsider): ``admin`` (org admin), ``approver`` (the EHR
analyst), ``reporter`` — all of organisation ``acme`` — and ``outsider``, an org admin of
another organisation. Each gets its own cookie jar (its own "browser").

The OpenVisit app runs in process (httpx ASGI transport); its outbound HTTP client is mounted
on the sandbox EHR at ``http://ehr.test`` and on a small fake FHIR server at
``http://fhir.test`` (wrong versions, missing SMART configuration…), so the live check and the
approval flow talk to real ASGI servers, not mocks.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from openvisit import outbound
from openvisit.config import Settings
from openvisit.context import AppContext
from openvisit.launch.keys import ensure_keys, public_jwks
from openvisit.models import StaffAccount
from openvisit.portal.signin.service import get_or_create_organisation
from openvisit.sandbox import create_sandbox_app
from openvisit.sandbox.clients import SandboxClient
from tests.support.backend import make_settings

EHR = "http://ehr.test"
FHIR = f"{EHR}/fhir"
FAKE = "http://fhir.test"
#: How long http://fhir.test/slow takes to answer /metadata.
SLOW_SECONDS = 2.0
PASSWORD = "correct horse battery staple"
SECRET = "sandbox-client-secret-" + "s" * 16
PERSONAS = {
    "admin": ("acme", ["org_admin"]),
    "approver": ("acme", ["approver"]),
    "reporter": ("acme", ["reporter"]),
    "outsider": ("other", ["org_admin"]),
}


def fake_fhir() -> Starlette:
    """FHIR servers that are wrong in one way each, under http://fhir.test/<case>."""

    def metadata(version: str) -> dict[str, Any]:
        return {
            "resourceType": "CapabilityStatement",
            "fhirVersion": version,
            "status": "active",
            "kind": "instance",
            "software": {"name": "Fake"},
            "rest": [{"mode": "server"}],
        }

    async def route(request: Request) -> Response:
        case, rest = request.path_params["case"], request.path_params["rest"]
        if case == "slow" and rest == "metadata":
            await asyncio.sleep(SLOW_SECONDS)  # an R4 server that takes its time
        if rest == "metadata":
            if case == "dstu2":
                return JSONResponse(metadata("1.0.2"))
            if case == "login":
                return HTMLResponse("<html><body>Please sign in</body></html>")
            if case == "conformance":
                return JSONResponse({"resourceType": "Conformance", "fhirVersion": "1.0.2"})
            return JSONResponse(metadata("4.0.1"))
        if rest == ".well-known/smart-configuration" and case == "nopkce":
            return JSONResponse(
                {
                    "token_endpoint": f"{FAKE}/token",
                    "authorization_endpoint": f"{FAKE}/auth",
                    "capabilities": ["launch-ehr"],
                }
            )
        return JSONResponse({"error": "not found"}, status_code=404)

    return Starlette(routes=[Route("/{case}/{rest:path}", route)])


@dataclass
class Browser:
    """One persona's cookie jar against the in-process app."""

    http: httpx.AsyncClient
    csrf: str = ""

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        return await self.http.get(url, **kw)

    async def post(
        self, url: str, data: Mapping[str, Any] | None = None, *, csrf: bool = True, **kw: Any
    ) -> httpx.Response:
        """A form post with the page's CSRF field (unless ``csrf=False``)."""
        fields: dict[str, Any] = dict(data or {})
        if csrf:
            fields.setdefault("csrf_token", self.csrf)
        return await self.http.post(url, data=fields, **kw)

    async def api(self, method: str, url: str, **kw: Any) -> httpx.Response:
        """A JSON API call with the session cookie and the X-CSRF-Token header."""
        headers = {"X-CSRF-Token": self.csrf, **kw.pop("headers", {})}
        return await self.http.request(method, url, headers=headers, **kw)


async def sign_in(
    http: httpx.AsyncClient, username: str, password: str = PASSWORD
) -> httpx.Response:
    page = await http.get("/portal/signin")
    token = re.search(r'name="signin_token" value="([^"]+)"', page.text)
    assert token, page.text[:300]
    return await http.post(
        "/portal/signin",
        data={
            "username": username,
            "password": password,
            "signin_token": token.group(1),
            "next": "/portal",
        },
    )


@pytest.fixture
def settings(db_url: str) -> Settings:
    """The usual test settings; the outbox provider provisions numbers without waiting."""
    return make_settings(db_url, portal_outbox_provision_step_seconds=0.0)


@pytest.fixture
def sandbox_app(ctx: AppContext) -> Starlette:
    """The sandbox EHR with OpenVisit registered (secret and private_key_jwt both work)."""

    async def our_jwks(url: str) -> Mapping[str, Any]:
        # What GET /.well-known/jwks.json answers (read without the write lock).
        return await public_jwks(ctx)

    redirect = f"{ctx.settings.public_url}/portal/approval/callback"
    clients = [
        SandboxClient(
            client_id="openvisit",
            redirect_uris=[redirect],
            client_secret=SECRET,
            jwks_uri=f"{ctx.settings.public_url}/jwks",
            name="OpenVisit",
        )
    ]
    return create_sandbox_app(
        base_url=EHR,
        clients=clients,
        provider_launch_url=f"{ctx.settings.public_url}/launch",
        patient_launch_url=f"{ctx.settings.public_url}/launch/patient",
        jwks_fetcher=our_jwks,
    )


@pytest.fixture
async def app(ctx: AppContext, sandbox_app: Starlette) -> AsyncIterator[FastAPI]:
    from openvisit.app import create_app

    await ensure_keys(ctx)  # the start-up hook create_app's lifespan would run
    await ctx.http.aclose()
    ctx.http = httpx.AsyncClient(transport=NoNetwork(), mounts=peers(sandbox_app), timeout=5.0)
    # What portal users' URLs go through: the guard, in front of the same in-process peers.
    ctx.services.portal_http = outbound.guarded_client(
        outbound.OutboundPolicy.from_settings(ctx.settings), mounts=peers(sandbox_app),
        network_backend=LoopbackOnly())
    yield create_app(ctx=ctx)


def peers(sandbox_app: Starlette) -> dict[str, httpx.AsyncBaseTransport]:
    return {EHR: httpx.ASGITransport(app=sandbox_app), FAKE: httpx.ASGITransport(app=fake_fhir())}


class NoNetwork(httpx.AsyncBaseTransport):
    """Requests to hosts other than the in-process peers: loopback peers (Prism) only, never
    the network."""

    def __init__(self) -> None:
        self._real = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.host not in ("127.0.0.1", "localhost", "::1"):
            raise httpx.ConnectError(f"tests reach no network ({request.url.host})",
                                     request=request)
        return await self._real.handle_async_request(request)

    async def aclose(self) -> None:
        await self._real.aclose()


class LoopbackOnly(httpcore.AsyncNetworkBackend):
    """The real network for 127.0.0.1 and ::1; anything else fails the test."""

    def __init__(self) -> None:
        self._real = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        assert host in ("127.0.0.1", "::1"), f"a test tried to connect to {host}"
        return await self._real.connect_tcp(host, port, timeout=timeout,
                                            local_address=local_address,
                                            socket_options=socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        raise AssertionError("no unix sockets in tests")

    async def sleep(self, seconds: float) -> None:
        await self._real.sleep(seconds)


@functools.cache
def password_hash() -> str:
    """The shared test password as an argon2id hash at the lowest cost argon2 allows.

    Verifying uses the parameters stored in the hash, so the many sign-ins of the portal
    tests cost microseconds instead of the product's ~0.2 s of CPU each. The tests about what
    that cost does (timing of unknown names, hashing off the event loop, the lanes) use
    :func:`production_password_hash` through the ``persona_hash`` fixture."""
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)


@functools.cache
def production_password_hash() -> str:
    """The shared test password hashed the way the product hashes (argon2-cffi defaults)."""
    return PasswordHasher().hash(PASSWORD)


@pytest.fixture
def persona_hash() -> str:
    """The personas' password hash; a module about hashing cost overrides it."""
    return password_hash()


@pytest.fixture
async def personas(ctx: AppContext, persona_hash: str) -> dict[str, str]:
    """Create the four accounts; returns username → organisation slug."""
    async with ctx.transaction() as session:
        for name, (slug, roles) in PERSONAS.items():
            org = await get_or_create_organisation(session, slug, display_name=slug.title())
            session.add(
                StaffAccount(
                    organisation_id=org.id,
                    username=name,
                    password_hash=persona_hash,
                    roles=roles,
                )
            )
        await session.flush()
    return {name: slug for name, (slug, _) in PERSONAS.items()}


@pytest.fixture
async def browser(
    app: FastAPI, personas: dict[str, str]
) -> AsyncIterator[Callable[[str], Awaitable[Browser]]]:
    """``await browser("admin")`` → a signed-in :class:`Browser` for that persona."""
    opened: list[httpx.AsyncClient] = []

    async def make(name: str) -> Browser:
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        )
        opened.append(http)
        response = await sign_in(http, name)
        assert response.status_code == 303, response.text[:500]
        me = (await http.get("/api/portal/me")).json()
        return Browser(http=http, csrf=me["csrf_token"])

    yield make
    for http in opened:
        await http.aclose()


@pytest.fixture
async def anonymous(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as http:
        yield http


def endpoint_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "fhir_base": FHIR,
        "environment": "test",
        "vendor": "generic",
        "client_id": "openvisit",
        "auth_method": "client_secret_basic",
        "client_secret": SECRET,
        "name": "Sandbox test",
        "approver_ehr_user": "Practitioner/prac-1",
    }
    body.update(overrides)
    return body
