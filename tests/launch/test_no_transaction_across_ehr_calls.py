"""No transaction stays open while a launch waits on the EHR (issue 11, item 17).

A launch callback whose EHR takes 2 s at the token endpoint must not make the SIU feed wait:
the real MLLP listener, on the same database, still answers AA within 100 ms.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from openvisit.app import create_app
from openvisit.context import AppContext
from tests.launch.fake_wiring import authorize, wire
from tests.launch.lock_probe import acks_during, assert_unblocked
from tests.smart.fake_ehr import FHIR_BASE, FakeEhr

pytestmark = pytest.mark.peers

SLOW = 2.0


@pytest.fixture
async def ehr(ctx: AppContext) -> FakeEhr:
    fake = FakeEhr(client_jwks=lambda: {"keys": []})
    await wire(ctx, fake)
    return fake


@pytest.fixture
async def browser(ctx: AppContext, ehr: FakeEhr) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx=ctx)),
                                 base_url="http://testserver", timeout=30) as http:
        yield http


async def test_it_acknowledges_siu_bookings_while_a_launch_waits_on_a_slow_token_endpoint(
    ctx: AppContext, ehr: FakeEhr, browser: httpx.AsyncClient, db_url: str, tmp_path: Path,
) -> None:
    started = await browser.get(f"/launch?iss={FHIR_BASE}&launch=launch-123")
    callback = await authorize(ctx, started)
    ehr.token_delay = SLOW
    done, probe = await acks_during(ctx, db_url, tmp_path, browser.get(callback))
    assert done.status_code == 303 and "/v/" in done.headers["location"], done.text[:300]
    assert_unblocked(probe, slow_seconds=SLOW, what=f"a {SLOW} s token call")


async def test_it_acknowledges_siu_bookings_while_a_launch_begins_against_a_slow_discovery(
    ctx: AppContext, ehr: FakeEhr, browser: httpx.AsyncClient, db_url: str, tmp_path: Path,
) -> None:
    ehr.discovery_delay = SLOW  # not cached yet: the first launch fetches it
    started, probe = await acks_during(
        ctx, db_url, tmp_path, browser.get(f"/launch?iss={FHIR_BASE}&launch=launch-123"))
    assert started.status_code == 303, started.text[:300]
    assert_unblocked(probe, slow_seconds=SLOW, what=f"a {SLOW} s discovery")
