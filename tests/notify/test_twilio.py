"""Twilio: the SDK against Prism serving Twilio's own OpenAPI document (every request is
validated against the spec), and the webhooks' signature checks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from sqlalchemy import select
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator

from openvisit.context import AppContext
from openvisit.errors import OutboundError
from openvisit.models import OptOut, utcnow
from openvisit.notify import providers
from openvisit.notify.transport import OutcomeUnknown, RecipientRejected
from openvisit.notify.twilio.transport import _classify
from tests.notify.conftest import PUBLIC_URL
from tests.notify.support import logs, make_appointment, make_site, page_client, run_jobs
from tests.peers.fixtures import PrismTwilio

SENDER = "+15005550006"
PATIENT = "+420601123456"


@pytest.fixture
def twilio_app(configure: Callable[..., AppContext], prism_twilio: PrismTwilio) -> AppContext:
    return configure(twilio_account_sid=prism_twilio.account_sid,
                     twilio_auth_token=prism_twilio.auth_token,
                     twilio_base_url=prism_twilio.base_url)


async def test_it_sends_a_confirmation_through_twilio_as_its_spec_requires(
    twilio_app: AppContext, prism_twilio: PrismTwilio,
) -> None:
    site = await make_site(twilio_app, offsets=[], number=SENDER, number_provider="twilio")
    appt = await make_appointment(twilio_app, site, start_at=utcnow() + timedelta(days=2))
    await run_jobs(twilio_app)
    [log] = await logs(twilio_app, appt)
    # Prism answers a request that passed validation with the spec's example message.
    assert (log.status, log.provider) == ("sent", "twilio")
    assert log.provider_message_id is not None and log.provider_message_id.startswith("SM")
    prism_log = prism_twilio.log_path.read_text()
    assert "post /2010-04-01/Accounts/" in prism_log
    assert "The request passed the validation rules" in prism_log


async def test_it_asks_twilio_which_messages_went_out_when_in_doubt(
    twilio_app: AppContext,
) -> None:
    sms = providers.sms_transport(twilio_app, "twilio")
    since = datetime(2019, 5, 24, 17, 40, tzinfo=UTC)
    # Prism answers the list with the spec's example page: one outbound "testing" message.
    found = await sms.reconcile(to="+18182008801", body="testing", sender="+12019235161",
                                reference="k", since=since)
    assert [f.provider_message_id for f in found] == ["SMded05904ccb347238880ca9264e8fe1c"]
    assert await sms.reconcile(to="+18182008801", body="another text", sender="+12019235161",
                               reference="k", since=since) == []
    later = await sms.reconcile(to="+18182008801", body="testing", sender="+12019235161",
                                reference="k", since=since + timedelta(days=1))
    assert later == []  # created before this attempt began: not ours


@pytest.mark.parametrize(("status", "code", "expected", "permanent"), [
    (400, 21211, RecipientRejected, True),   # invalid 'To'
    (400, 21610, RecipientRejected, True),   # the recipient replied STOP
    (400, 21604, OutboundError, True),       # our request is wrong: an operator must look
    (401, 20003, OutboundError, False),      # credentials: retried for hours, not dropped
    (429, 20429, OutboundError, False),
    (500, 0, OutcomeUnknown, False),         # may have been created: reconcile first
])
def test_it_tells_lasting_from_passing_twilio_errors(
    status: int, code: int, expected: type[Exception], permanent: bool,
) -> None:
    error = _classify(TwilioRestException(status, "https://api.twilio.com/x", "no", code=code))
    assert type(error) is expected and error.permanent is permanent
    assert isinstance(error, RecipientRejected) is (expected is RecipientRejected)
    if code == 21610:
        assert isinstance(error, RecipientRejected) and error.opted_out


def _signed(token: str, path: str, params: dict[str, str]) -> dict[str, str]:
    signature = RequestValidator(token).compute_signature(PUBLIC_URL + path, params)
    return {"X-Twilio-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded"}


async def test_it_records_delivery_from_a_signed_status_callback_only(
    twilio_app: AppContext, prism_twilio: PrismTwilio,
) -> None:
    site = await make_site(twilio_app, offsets=[], number=SENDER, number_provider="twilio")
    appt = await make_appointment(twilio_app, site, start_at=utcnow() + timedelta(days=2))
    await run_jobs(twilio_app)
    [log] = await logs(twilio_app, appt)
    assert log.provider_message_id and log.job_key
    path = "/hooks/twilio/status?" + urlencode({"ref": log.job_key})
    params = {"MessageSid": log.provider_message_id, "MessageStatus": "delivered",
              "To": PATIENT, "From": SENDER, "AccountSid": prism_twilio.account_sid}
    async with page_client(twilio_app) as client:
        forged = await client.post(path, data=params, headers={
            **_signed("not-the-token", path, params), "Accept": "application/json"})
        assert forged.status_code == 403
        assert [m.status for m in await logs(twilio_app, appt)] == ["sent"]
        unsigned = await client.post(path, data=params)
        assert unsigned.status_code == 403
        good = await client.post(path, data=params,
                                 headers=_signed(prism_twilio.auth_token, path, params))
        assert good.status_code == 204
    assert [m.status for m in await logs(twilio_app, appt)] == ["delivered"]


async def test_it_opts_a_patient_out_of_one_organisation_on_a_signed_stop(
    twilio_app: AppContext, prism_twilio: PrismTwilio,
) -> None:
    ours = await make_site(twilio_app, slug="ours", number=SENDER, number_provider="twilio")
    theirs = await make_site(twilio_app, slug="theirs", number="+15005550007",
                             number_provider="twilio")
    path = "/hooks/twilio/inbound"
    stop = {"From": PATIENT, "To": SENDER, "Body": " stop ", "MessageSid": "SM1",
            "AccountSid": prism_twilio.account_sid}

    async def opted_out() -> set[object]:
        async with twilio_app.transaction() as session:
            return set((await session.scalars(select(OptOut.organisation_id))).all())

    async with page_client(twilio_app) as client:
        forged = await client.post(path, data=stop, headers=_signed("wrong", path, stop))
        assert forged.status_code == 403 and await opted_out() == set()
        answer = await client.post(path, data=stop,
                                   headers=_signed(prism_twilio.auth_token, path, stop))
        assert answer.status_code == 200 and "<Response>" in answer.text
        assert await opted_out() == {ours.organisation_id}
        assert theirs.organisation_id not in await opted_out()
        start = {**stop, "Body": "START"}
        await client.post(path, data=start, headers=_signed(prism_twilio.auth_token, path, start))
    assert await opted_out() == set()


async def test_it_logs_no_phone_number_even_at_debug(
    twilio_app: AppContext, caplog: pytest.LogCaptureFixture,
) -> None:
    sms = providers.sms_transport(twilio_app, "twilio")
    with caplog.at_level(logging.DEBUG):
        await sms.reconcile(to=PATIENT, body="x", sender=SENDER, reference="k", since=utcnow())
        await sms.send(to=PATIENT, body="Your visit", sender=SENDER, reference="k")
    assert "601123456" not in caplog.text and "Your visit" not in caplog.text
