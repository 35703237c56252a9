"""Buying a number from Twilio, against Prism serving Twilio's own OpenAPI document (it
refuses any request the spec does not allow and answers the spec's examples)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from openvisit.config import Settings
from openvisit.context import AppContext
from openvisit.jobs.worker import Worker
from tests.peers.fixtures import PrismTwilio
from tests.portal.conftest import Browser
from tests.support.backend import make_settings

BrowserFactory = Callable[[str], Awaitable[Browser]]
pytestmark = [pytest.mark.peers]


@pytest.fixture
def settings(db_url: str, prism_twilio: PrismTwilio) -> Settings:
    return make_settings(
        db_url,
        sms_provider="twilio",
        twilio_base_url=prism_twilio.base_url,
        twilio_account_sid=prism_twilio.account_sid,
        twilio_auth_token=prism_twilio.auth_token,
    )


async def test_it_buys_a_toll_free_number_from_twilio_in_steps(
    browser: BrowserFactory,
    ctx: AppContext,
    prism_twilio: PrismTwilio,
) -> None:
    admin = await browser("admin")
    await admin.api("PUT", "/api/portal/sms/consents", json={"send": True, "patients": True})
    started = await admin.api("POST", "/api/portal/numbers")
    assert started.status_code == 202 and started.json()["provider"] == "twilio"
    await Worker(ctx).run_until_empty(timeout=60)
    number = (await admin.api("GET", f"/api/portal/numbers/{started.json()['id']}")).json()
    assert number["state"] == "active", number
    assert number["e164"].startswith("+") and number["progress"] == 100
    assert number["verification_status"] == "unverified"  # toll-free verification is manual
    page = await admin.get("/portal/sms")
    assert "US carriers require toll-free verification" in page.text
    log = prism_twilio.log_path.read_text()
    assert "AvailablePhoneNumbers/US/TollFree.json" in log
    assert "IncomingPhoneNumbers.json" in log
