"""The guard on outbound requests that portal users choose (issue 10, item 9: SSRF).

Real sockets on loopback only: a small HTTP server on 127.0.0.1 plays the hostile "EHR"
(50 MB bodies, gzip bombs, redirects away, trickling answers). Refused destinations
(169.254.169.254, 10.x…) are refused *before* any connection: the network backend under the
guard is a spy that fails the test if anything but loopback is ever dialled.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpcore
import httpx
import pytest
from sqlalchemy import select

from openvisit import outbound
from openvisit.context import AppContext
from openvisit.models import EhrEndpoint, Organisation
from openvisit.outbound import OutboundPolicy, OutboundRefused, ResponseTooLarge
from tests.portal.conftest import Browser
from tests.support.backend import make_settings

BrowserFactory = Callable[[str], Awaitable[Browser]]
BIG = 50 * 1024 * 1024
CAP = 1024 * 1024


class SpyBackend(httpcore.AsyncNetworkBackend):
    """The real network, for loopback only; records every address dialled."""

    def __init__(self) -> None:
        self.dialled: list[str] = []
        self._real = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[Any] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        self.dialled.append(host)
        assert host in ("127.0.0.1", "::1"), f"the guard let a connection to {host} through"
        return await self._real.connect_tcp(host, port, timeout=timeout,
                                            local_address=local_address,
                                            socket_options=socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[Any] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        raise AssertionError("no unix sockets")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass
class Hostile:
    """A raw HTTP/1.1 server on 127.0.0.1 with one misbehaviour per path."""

    port: int = 0
    connections: int = 0
    sent: dict[str, int] = field(default_factory=dict)
    #: Connections whose handler has not returned yet.
    open: int = 0

    async def quiet(self, *, timeout: float = 5.0) -> None:
        """Return once every connection's handler has returned (nothing more is sent)."""
        async with asyncio.timeout(timeout):
            while self.open:
                await asyncio.sleep(0.01)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode()
                await self.answer(path, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self.open -= 1

    async def answer(self, path: str, writer: asyncio.StreamWriter) -> None:
        def send(status: str, headers: dict[str, str], body: bytes = b"") -> None:
            lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()),
                     f"Content-Length: {len(body)}", "", ""]
            writer.write("\r\n".join(lines).encode() + body)

        if path == "/big":
            writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {BIG}\r\n\r\n".encode())
            chunk, sent = b"0" * 65536, 0
            while sent < BIG:
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
                self.sent[path] = sent
        elif path == "/bomb":
            send("200 OK", {"Content-Type": "application/json", "Content-Encoding": "gzip"},
                 gzip.compress(b" " * BIG))
        elif path == "/away":
            send("302 Found", {"Location": "http://elsewhere.example/fhir/metadata"})
        elif path == "/home":
            send("302 Found", {"Location": "/ok"})
        elif path == "/ok":
            send("200 OK", {"Content-Type": "application/json"}, json.dumps({"ok": 1}).encode())
        elif path == "/slow":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
            for _ in range(1000):
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.2)
        else:
            send("404 Not Found", {})
        await writer.drain()


@pytest.fixture
async def hostile() -> AsyncIterator[Hostile]:
    server = Hostile()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        await listener.wait_closed()


@pytest.fixture
def spy() -> SpyBackend:
    return SpyBackend()


def client(policy: OutboundPolicy, spy: SpyBackend, **kw: Any) -> httpx.AsyncClient:
    return outbound.guarded_client(policy, network_backend=spy, **kw)


PRODUCTION = OutboundPolicy(allow_private=False, max_bytes=CAP, timeout_seconds=2.0)
LOOPBACK_OK = OutboundPolicy(allow_private=True, max_bytes=CAP, timeout_seconds=1.5)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/fhir", "http://localhost/fhir", "http://[::1]/fhir",
    "http://169.254.169.254/latest/meta-data/", "http://10.1.2.3/fhir",
    "http://172.16.5.4/fhir", "http://192.168.1.10/fhir", "http://100.64.1.1/fhir",
    "http://[fd12:3456::1]/fhir", "http://[fe80::1]/fhir", "http://0.0.0.0/fhir",
    "http://224.0.0.251/fhir", "http://[::ffff:10.0.0.1]/fhir", "http://[64:ff9b::a9fe:a9fe]/",
    "http://2130706433/fhir",
])
async def test_it_refuses_internal_addresses_before_connecting(
    url: str, spy: SpyBackend,
) -> None:
    async with client(PRODUCTION, spy) as http:
        with pytest.raises(OutboundRefused) as refused:
            await http.get(url)
    assert "OpenVisit does not connect to" in refused.value.message
    assert "OPENVISIT_OUTBOUND_ALLOW_HOSTS" in refused.value.message
    assert spy.dialled == []


async def test_it_checks_the_address_it_connects_to_not_the_name(
    hostile: Hostile, spy: SpyBackend,
) -> None:
    lookups: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]  # a public-looking name that points inside

    async with client(PRODUCTION, spy, resolver=rebinding) as http:
        with pytest.raises(OutboundRefused) as refused:
            await http.get(f"http://ehr.rebind.test:{hostile.port}/ok")
    assert "ehr.rebind.test (127.0.0.1): it is a loopback address" in refused.value.message
    assert spy.dialled == [] and hostile.connections == 0 and lookups == ["ehr.rebind.test"]

    listed = OutboundPolicy(allow_hosts=frozenset({"ehr.rebind.test"}), max_bytes=CAP)
    async with client(listed, spy, resolver=rebinding) as http:
        answer = await http.get(f"http://ehr.rebind.test:{hostile.port}/ok")
    assert answer.json() == {"ok": 1}
    assert spy.dialled == ["127.0.0.1"]  # the checked address itself, resolved once
    assert lookups == ["ehr.rebind.test", "ehr.rebind.test"]


async def test_it_lets_an_allowed_network_through() -> None:
    import ipaddress

    policy = OutboundPolicy(allow_networks=(ipaddress.ip_network("10.20.0.0/16"),))
    assert policy.refusal("10.20.3.4", ipaddress.ip_address("10.20.3.4")) is None
    assert policy.refusal("10.21.3.4", ipaddress.ip_address("10.21.3.4"))
    assert policy.refusal("ehr.example", ipaddress.ip_address("93.184.216.34")) is None


async def test_it_does_not_follow_a_redirect_to_another_host(
    hostile: Hostile, spy: SpyBackend,
) -> None:
    async with client(LOOPBACK_OK, spy) as http:
        with pytest.raises(OutboundRefused) as refused:
            await http.get(f"{hostile.base}/away", follow_redirects=True)
        assert "does not follow redirects to another host" in refused.value.message
        assert "elsewhere.example" in refused.value.message
        same = await http.get(f"{hostile.base}/home", follow_redirects=True)
        assert same.json() == {"ok": 1}
    assert set(spy.dialled) == {"127.0.0.1"}


async def test_it_cuts_off_a_50_mb_body_and_a_gzip_bomb(
    hostile: Hostile, spy: SpyBackend,
) -> None:
    async with client(LOOPBACK_OK, spy) as http:
        started = time.monotonic()
        with pytest.raises(ResponseTooLarge) as big:
            await http.get(f"{hostile.base}/big")
        assert time.monotonic() - started < 5
        assert "larger than 1024 KiB" in big.value.message
        with pytest.raises(ResponseTooLarge):
            await http.get(f"{hostile.base}/bomb")
    await hostile.quiet()  # the client hung up: the server's sending is over
    assert hostile.sent["/big"] < 16 * 1024 * 1024  # the rest was never read


async def test_it_gives_a_trickling_server_a_total_time_limit(
    hostile: Hostile, spy: SpyBackend,
) -> None:
    async with client(LOOPBACK_OK, spy) as http:
        started = time.monotonic()
        with pytest.raises(httpx.TimeoutException):
            await http.get(f"{hostile.base}/slow")
    assert time.monotonic() - started < 3  # 1.5 s allowed, each byte well inside read timeout


# --- through the portal --------------------------------------------------------------------


@pytest.fixture
async def production_like(ctx: AppContext, app: Any, spy: SpyBackend) -> SpyBackend:
    """The app's settings are production's; its guarded client dials through the spy."""
    settings = ctx.settings
    ctx.settings = make_settings(settings.database_url, redis_url=settings.redis_url,
                                 environment="production")
    old = ctx.services.portal_http
    if old is not None:
        await old.aclose()
    ctx.services.portal_http = outbound.guarded_client(
        OutboundPolicy.from_settings(ctx.settings), network_backend=spy)
    return spy


def _check(fhir_base: str) -> dict[str, str]:
    return {"fhir_base": fhir_base, "environment": "test", "vendor": "generic",
            "auth_method": "client_secret_basic"}


async def test_it_lets_only_org_admins_run_the_live_check(browser: BrowserFactory) -> None:
    for persona in ("reporter", "approver"):
        user = await browser(persona)
        api = await user.api("POST", "/api/portal/checks", json=_check("http://10.0.0.8/fhir"))
        assert api.status_code == 403, persona
        assert "Only an org admin can" in api.json()["error"]["message"]
        page = await user.post("/portal/endpoints/check", _check("http://10.0.0.8/fhir"))
        assert page.status_code == 403
    admin = await browser("admin")
    made = await admin.api("POST", "/api/portal/endpoints", json={
        "fhir_base": "http://ehr.test/fhir", "client_id": "openvisit",
        "auth_method": "client_secret_basic", "client_secret": "x" * 24,
        "save_failed_check": True})
    assert made.status_code == 201
    approver = await browser("approver")
    again = await approver.api("POST", f"/api/portal/endpoints/{made.json()['id']}/check")
    assert again.status_code == 403


@pytest.mark.parametrize(("fhir_base", "kind"), [
    ("http://169.254.169.254/latest/meta-data", "link-local"),
    ("http://10.0.0.8/fhir", "private"),
    ("http://127.0.0.1:{port}/fhir", "loopback"),
])
async def test_it_refuses_internal_fhir_bases_with_a_clear_message_in_production(
    browser: BrowserFactory, production_like: SpyBackend, hostile: Hostile,
    fhir_base: str, kind: str,
) -> None:
    admin = await browser("admin")
    url = fhir_base.format(port=hostile.port)
    result = await admin.api("POST", "/api/portal/checks", json=_check(url))
    assert result.status_code == 200, result.text
    steps = {s["key"]: s for s in result.json()["steps"]}
    assert steps["metadata"]["status"] == "failed"
    assert f"it is a {kind} address" in steps["metadata"]["message"]
    assert steps["smart"]["status"] == "skipped"
    assert production_like.dialled == [] and hostile.connections == 0


async def test_it_guards_the_approval_discovery_too(
    browser: BrowserFactory, production_like: SpyBackend, ctx: AppContext,
) -> None:
    async with ctx.transaction() as session:
        org = await session.scalar(select(Organisation).where(Organisation.slug == "acme"))
        assert org is not None
        endpoint = EhrEndpoint(organisation_id=org.id, fhir_base="http://10.9.8.7/fhir",
                               client_id="openvisit", state="awaiting_approval",
                               approver_ehr_user="Practitioner/prac-1")
        session.add(endpoint)
    approver = await browser("approver")
    refused = await approver.post(f"/portal/endpoints/{endpoint.id}/approve")
    assert refused.status_code == 502
    assert "does not connect to 10.9.8.7: it is a private address" in refused.text
    assert production_like.dialled == []
