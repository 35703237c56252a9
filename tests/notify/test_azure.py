"""Azure Communication Services SMS against an in-process fake of its REST API.

No real ACS can run here, so the fake is a small ASGI app that does what the service
documents: it checks the HMAC-SHA256 signature and content hash, and honours repeatable
requests (a repeat within five minutes is answered from the first outcome; later, 412).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from openvisit.context import AppContext
from openvisit.errors import OutboundError
from openvisit.models import utcnow
from openvisit.notify import providers
from openvisit.notify.azure.transport import AzureSms
from tests.notify.support import logs, make_appointment, make_site, run_jobs

ENDPOINT = "https://acs.example.test"
KEY = base64.b64encode(secrets.token_bytes(32)).decode()
WINDOW = timedelta(minutes=5)


class FakeAcs:
    """Verifies each request like ACS and records the messages it would send."""

    def __init__(self, key: str) -> None:
        self.key = base64.b64decode(key)
        self.sent: list[dict[str, Any]] = []
        self.seen: dict[str, tuple[str, dict[str, Any]]] = {}
        self.app = Starlette(routes=[Route("/sms", self.send, methods=["POST"])])

    async def send(self, request: Request) -> JSONResponse:
        body = await request.body()
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
        date = request.headers.get("x-ms-date", "")
        to_sign = (f"POST\n/sms?{request.url.query}\n{date};{request.headers['host']};"
                   f"{digest}")
        expected = base64.b64encode(hmac.new(self.key, to_sign.encode(),
                                             hashlib.sha256).digest()).decode()
        auth = request.headers.get("authorization", "")
        wanted = ("HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature="
                  + expected)
        if request.headers.get("x-ms-content-sha256") != digest or auth != wanted:
            return JSONResponse({"error": {"code": "Denied"}}, status_code=401)
        if request.query_params.get("api-version") != "2021-03-07":
            return JSONResponse({"error": {"code": "BadVersion"}}, status_code=400)
        payload = json.loads(body)
        results = []
        for recipient in payload["smsRecipients"]:
            request_id = recipient["repeatabilityRequestId"]
            first_sent = recipient["repeatabilityFirstSent"]
            if utcnow() - parsedate_to_datetime(first_sent) > WINDOW:
                results.append({"to": recipient["to"], "httpStatusCode": 412,
                                "successful": False, "repeatabilityResult": "rejected"})
                continue
            if request_id in self.seen and self.seen[request_id][0] == first_sent:
                results.append({**self.seen[request_id][1], "repeatabilityResult": "accepted"})
                continue
            item = {"to": recipient["to"], "messageId": f"Outgoing_{len(self.sent) + 1}",
                    "httpStatusCode": 202, "repeatabilityResult": "accepted", "successful": True}
            self.sent.append({"to": recipient["to"], "from": payload["from"],
                              "message": payload["message"]})
            self.seen[request_id] = (first_sent, item)
            results.append(item)
        return JSONResponse({"value": results}, status_code=202)


@pytest.fixture
def acs() -> FakeAcs:
    return FakeAcs(KEY)


@pytest.fixture
async def azure_app(
    configure: Callable[..., AppContext], acs: FakeAcs,
) -> AsyncIterator[AppContext]:
    app = configure(sms_provider="azure", sms_sender="+18005550100", azure_endpoint=ENDPOINT,
                    azure_access_key=KEY)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=acs.app)) as http:
        providers.install(app, channel="sms", provider="azure",
                          transport=AzureSms(app, http=http))
        yield app


async def test_it_sends_a_signed_request(azure_app: AppContext, acs: FakeAcs) -> None:
    site = await make_site(azure_app, offsets=[])
    appt = await make_appointment(azure_app, site, start_at=utcnow() + timedelta(days=2))
    await run_jobs(azure_app)
    assert [(m["to"], m["from"]) for m in acs.sent] == [("+420601123456", "+18005550100")]
    assert "/v/" in acs.sent[0]["message"]
    [log] = await logs(azure_app, appt)
    assert (log.status, log.provider, log.provider_message_id) == ("sent", "azure", "Outgoing_1")


async def test_it_sends_once_when_a_request_is_repeated_in_time(
    azure_app: AppContext, acs: FakeAcs,
) -> None:
    sms = providers.sms_transport(azure_app, "azure")
    first = datetime.now().astimezone() - timedelta(seconds=30)
    results = [await sms.send(to="+420601000001", body="Hi", sender="+18005550100",
                              reference="notify:x", first_attempt_at=first) for _ in range(3)]
    assert len(acs.sent) == 1
    assert {r.provider_message_id for r in results} == {"Outgoing_1"}


async def test_it_sends_afresh_once_azure_has_forgotten_the_request(
    azure_app: AppContext, acs: FakeAcs,
) -> None:
    sms = providers.sms_transport(azure_app, "azure")
    stale = utcnow() - timedelta(minutes=10)
    result = await sms.send(to="+420601000002", body="Hi", sender="+18005550100",
                            reference="notify:y", first_attempt_at=stale)
    assert result.provider_message_id == "Outgoing_1" and len(acs.sent) == 1


async def test_it_retries_when_azure_refuses_the_signature(
    configure: Callable[..., AppContext], acs: FakeAcs,
) -> None:
    app = configure(azure_endpoint=ENDPOINT,
                    azure_access_key=base64.b64encode(b"k" * 32).decode())
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=acs.app))
    sms = AzureSms(app, http=http)
    with pytest.raises(OutboundError) as caught:
        await sms.send(to="+420601000003", body="Hi", sender="+18005550100", reference="z")
    assert caught.value.permanent is False and acs.sent == []
    await http.aclose()
