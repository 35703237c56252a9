"""Failed local sign-ins are throttled per (name, address) and per address."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import httpx
import pytest
from argon2 import PasswordHasher
from fastapi import FastAPI
from sqlalchemy import select

from openvisit.context import AppContext
from openvisit.models import SigninFailure
from openvisit.portal.signin import service, throttle
from tests.portal.conftest import PASSWORD, sign_in

Client = Callable[[str], httpx.AsyncClient]


@pytest.fixture(autouse=True)
def cheap_unknown_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unknown names are checked against a stand-in hash at the product's cost (so they take
    as long as a wrong password; test_signin_hardening proves that). Here the counting is
    tested, over dozens of unknown names: the stand-in is hashed at argon2's lowest cost."""
    monkeypatch.setattr(service, "_DUMMY_HASH", PasswordHasher(
        time_cost=1, memory_cost=8, parallelism=1).hash("openvisit-no-such-account"))


@pytest.fixture
async def from_address(app: FastAPI) -> AsyncIterator[Client]:
    """``from_address("198.51.100.7")`` → a client whose requests come from that address."""
    opened: list[httpx.AsyncClient] = []

    def make(address: str) -> httpx.AsyncClient:
        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=(address, 40000)),
            base_url="http://testserver",
        )
        opened.append(http)
        return http

    yield make
    for http in opened:
        await http.aclose()


async def test_it_pauses_a_name_after_five_failures_from_one_address_only(
    from_address: Client, personas: dict[str, str]
) -> None:
    attacker, colleague = from_address("198.51.100.7"), from_address("203.0.113.9")
    for _ in range(throttle.PER_NAME):
        assert (await sign_in(attacker, "admin", "guess-guess-guess")).status_code == 401
    # Even the right password is refused now, without being checked, with the time to wait.
    paused = await sign_in(attacker, "admin", PASSWORD)
    assert paused.status_code == 429 and "Sign-in paused" in paused.text
    assert "Too many failed sign-ins from here. Wait 15 minutes" in paused.text
    assert 800 < int(paused.headers["retry-after"]) <= 901
    # The real administrator, elsewhere, is not locked out by the attacker.
    assert (await sign_in(colleague, "admin", PASSWORD)).status_code == 303


async def test_it_pauses_an_address_that_tries_many_names(
    from_address: Client, personas: dict[str, str]
) -> None:
    sprayer = from_address("198.51.100.8")
    for n in range(throttle.PER_ADDRESS):
        assert (await sign_in(sprayer, f"user{n}", "Summer2026!")).status_code == 401
    assert (await sign_in(sprayer, "admin", PASSWORD)).status_code == 429
    assert (await sign_in(from_address("198.51.100.99"), "admin", PASSWORD)).status_code == 303


async def test_it_forgets_failures_after_a_success_and_after_the_window(
    ctx: AppContext, from_address: Client, personas: dict[str, str]
) -> None:
    client = from_address("192.0.2.50")
    for _ in range(throttle.PER_NAME - 1):
        await sign_in(client, "admin", "nearly-right")
    assert (await sign_in(client, "admin", PASSWORD)).status_code == 303
    client = from_address("192.0.2.50")  # a fresh cookie jar, same address
    for _ in range(throttle.PER_NAME - 1):
        await sign_in(client, "admin", "nearly-right")
    assert (await sign_in(client, "admin", "nearly-right")).status_code == 401  # the 5th
    assert (await sign_in(client, "admin", PASSWORD)).status_code == 429

    # The window is over: move every counter 16 minutes into the past.
    async with ctx.transaction() as session:
        for row in await session.scalars(select(SigninFailure)):
            row.window_start -= timedelta(minutes=16)
    assert (await sign_in(client, "admin", PASSWORD)).status_code == 303


async def test_it_stores_neither_names_nor_addresses(
    ctx: AppContext, from_address: Client, personas: dict[str, str]
) -> None:
    await sign_in(from_address("198.51.100.7"), "admin", "wrong-password-1")
    async with ctx.db.read() as session:
        keys = [row.key for row in await session.scalars(select(SigninFailure))]
    assert len(keys) == 2
    assert all(len(k) == 64 and "admin" not in k and "198.51" not in k for k in keys)
