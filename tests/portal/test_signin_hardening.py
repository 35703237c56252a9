"""Sign-in under attack (issue 10, items 6 and 8 and the low items): concurrent guesses are
counted atomically before any password is checked, the counter is keyed on the canonical
account, hashing runs off the event loop, and nothing tells an unknown name from a wrong
password."""

from __future__ import annotations

import asyncio
import re
import statistics
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from fastapi import FastAPI

from openvisit.context import AppContext
from openvisit.models import StaffAccount
from openvisit.portal.signin import passwords, throttle
from openvisit.portal.signin import service as accounts
from tests.portal.conftest import PASSWORD, Browser, production_password_hash, sign_in

Client = Callable[[str], httpx.AsyncClient]
BrowserFactory = Callable[[str], Awaitable[Browser]]


@pytest.fixture
async def from_address(app: FastAPI) -> AsyncIterator[Client]:
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


@pytest.fixture
def persona_hash() -> str:
    """This module measures what hashing costs: the accounts are hashed as in production."""
    return production_password_hash()


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every password verification, as the id of the thread it ran on."""
    calls: list[int] = []
    real = accounts.verify_password
    lock = threading.Lock()

    def counting(password_hash: str, password: str) -> bool:
        with lock:
            calls.append(threading.get_ident())
        return real(password_hash, password)

    monkeypatch.setattr(accounts, "verify_password", counting)
    return calls


async def _form(http: httpx.AsyncClient) -> str:
    page = await http.get("/portal/signin")
    found = re.search(r'name="signin_token" value="([^"]+)"', page.text)
    assert found
    return found.group(1)


async def test_it_checks_at_most_the_limit_of_25_concurrent_guesses(
    from_address: Client, personas: dict[str, str], verifications: list[int],
) -> None:
    attacker = from_address("198.51.100.20")
    token = await _form(attacker)

    async def guess(n: int) -> int:
        response = await attacker.post("/portal/signin", data={
            "username": "admin", "password": f"guess-number-{n:04d}", "signin_token": token,
            "next": "/portal"})
        return response.status_code

    statuses = await asyncio.gather(*(guess(n) for n in range(25)))
    assert not [s for s in statuses if s >= 500], statuses
    assert set(statuses) <= {401, 429}, statuses
    assert len(verifications) <= throttle.PER_NAME, len(verifications)
    assert statuses.count(401) == len(verifications)
    # Still locked for the real password, without checking it.
    before = len(verifications)
    assert (await sign_in(attacker, "admin", PASSWORD)).status_code == 429
    assert len(verifications) == before


async def test_it_verifies_passwords_off_the_event_loop(
    from_address: Client, personas: dict[str, str], verifications: list[int],
) -> None:
    assert (await sign_in(from_address("192.0.2.1"), "admin")).status_code == 303
    assert (await sign_in(from_address("192.0.2.1"), "nobody", "x" * 12)).status_code == 401
    assert len(verifications) == 2
    assert threading.get_ident() not in verifications


async def test_it_counts_every_spelling_of_one_account_together(
    from_address: Client, personas: dict[str, str],
) -> None:
    client = from_address("198.51.100.21")
    spellings = ["ADMIN", " admin", "Admin ", "\uff41\uff44\uff4d\uff49\uff4e", "acme/admin"]
    assert len(spellings) == throttle.PER_NAME
    for spelling in spellings:
        assert (await sign_in(client, spelling, "not-the-password")).status_code == 401
    assert (await sign_in(client, "admin", PASSWORD)).status_code == 429
    # The same canonical spelling finds the account: any of them signs in elsewhere.
    assert (await sign_in(from_address("198.51.100.22"), "ACME/Admin ")).status_code == 303


async def test_it_refuses_a_second_account_that_differs_only_in_case(
    browser: BrowserFactory,
) -> None:
    admin = await browser("admin")
    first = await admin.post("/portal/staff", {"kind": "local", "username": "Dana",
                                               "password": PASSWORD, "roles": ["reporter"]})
    assert first.status_code == 303
    again = await admin.post("/portal/staff", {"kind": "local", "username": "DANA",
                                               "password": PASSWORD, "roles": ["reporter"]})
    assert again.status_code == 409 and "already an account named &#39;dana&#39;" in again.text


async def test_it_answers_an_unknown_or_shared_name_like_a_wrong_password(
    from_address: Client, personas: dict[str, str], ctx: AppContext,
    verifications: list[int],
) -> None:
    async with ctx.transaction() as session:
        for slug in ("acme", "other"):
            org = await accounts.get_or_create_organisation(session, slug)
            session.add(StaffAccount(organisation_id=org.id, username="shared",
                                     password_hash=production_password_hash(), roles=["reporter"]))
    timings: dict[str, list[float]] = {}
    bodies: dict[str, set[str]] = {}
    addresses = iter(range(1, 100))
    for _ in range(4):
        for name in ("admin", "nobody", "shared"):
            client = from_address(f"203.0.113.{next(addresses)}")
            started = time.perf_counter()
            response = await sign_in(client, name, "wrong-password-here")
            timings.setdefault(name, []).append(time.perf_counter() - started)
            assert response.status_code == 401, (name, response.text[:300])
            error = re.search(r'<div class="error-summary".*?</div>', response.text, re.S)
            assert error
            bodies.setdefault(name, set()).add(error.group(0))
    assert bodies["admin"] == bodies["nobody"] == bodies["shared"]
    assert "organisation/username" in next(iter(bodies["admin"]))
    assert len(verifications) == 12  # one verification each, known name or not
    medians = {name: statistics.median(t) for name, t in timings.items()}
    slowest, fastest = max(medians.values()), min(medians.values())
    # An answer without a verification would be ~10x faster; the margin is for a busy machine.
    assert slowest < 2.5 * fastest, medians
    # With the organisation named, the shared name still signs in.
    assert (await sign_in(from_address("203.0.113.99"), "other/shared")).status_code == 303


async def test_it_answers_busy_rather_than_queueing_sign_ins_without_bound(
    from_address: Client, personas: dict[str, str], ctx: AppContext,
) -> None:
    ctx.services.password_workers = passwords.PasswordWorkers(threads=1, queue=1)
    clients = [from_address(f"192.0.2.{100 + n}") for n in range(6)]
    responses = await asyncio.gather(*(sign_in(c, "admin", "wrong-password-x") for c in clients))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(401) >= 2 and not [s for s in statuses if s >= 500], statuses
    busy = [r for r in responses if r.status_code == 429]
    assert busy, statuses
    assert "Many people are signing in right now" in busy[0].text
    assert busy[0].headers["retry-after"] == "5"
