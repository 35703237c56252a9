"""Fixtures: OpenVisit's key set, the fake EHR and an httpx client wired to it in-process."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from openvisit.smart.discovery import SmartConfiguration
from openvisit.smart.keys import KeySet

from .fake_ehr import FakeEhr, smart_configuration


@pytest.fixture(scope="session")
def rsa_keys() -> KeySet:
    return KeySet.generate(alg="RS384")


@pytest.fixture
def client_keys(rsa_keys: KeySet) -> KeySet:
    return rsa_keys


@pytest.fixture
def ehr(client_keys: KeySet) -> FakeEhr:
    return FakeEhr(client_jwks=client_keys.public_jwks)


@pytest.fixture
async def http(ehr: FakeEhr) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ehr.app)) as client:
        yield client


@pytest.fixture
def config() -> SmartConfiguration:
    return SmartConfiguration.model_validate(smart_configuration())


@pytest.fixture
def closed_port() -> int:
    """A local port with nothing listening: connecting fails at once (a real refusal)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def silent_server() -> AsyncIterator[int]:
    """A real TCP server that accepts and never answers, to provoke real read timeouts."""
    writers: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    yield
