"""Azure Communication Services SMS over its REST API, signed with HMAC-SHA256.

``POST {endpoint}/sms?api-version=2021-03-07`` (learn.microsoft.com/rest/api/communication/sms)
with the ACS HMAC scheme: ``x-ms-date``, ``x-ms-content-sha256`` (base64 SHA-256 of the body)
and ``Authorization: HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=``
base64(HMAC-SHA256(base64-decoded access key, "POST\\n<path?query>\\n<date>;<host>;<hash>")).
Plain ``httpx`` rather than the ``azure-communication-sms`` SDK: one call does not justify
azure-core, and the signing is small and testable.

**Exactly-once.** ACS supports OASIS repeatable requests per recipient: a
``repeatabilityRequestId`` (here a UUIDv5 of the job key) and ``repeatabilityFirstSent`` (when
the first attempt began, identical on every retry). ACS remembers a request id for five
minutes, so any retry within that time is answered from the first outcome and never sent
twice. Beyond the window ACS answers 412 and cannot tell; we then send afresh (the message
is needed more than a duplicate is feared). Residual risk: an unknown outcome that is first
retried more than five minutes later (a worker outage longer than the lease plus backoff).

No real ACS can run here: the tests use an in-process ASGI fake that checks the signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import datetime
from email.utils import format_datetime
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from openvisit.context import AppContext
from openvisit.errors import ConfigurationError, OutboundError
from openvisit.models import utcnow
from openvisit.notify.transport import (
    OutcomeUnknown,
    RecipientRejected,
    SendResult,
    SmsTransport,
)

API_VERSION = "2021-03-07"
SIGNED_HEADERS = "x-ms-date;host;x-ms-content-sha256"
_NAMESPACE = uuid.UUID("7a4c7ad0-5a66-4f4e-9f0e-6f70656e7669")


def sign(
    *, method: str, url: str, body: bytes, access_key: str, date: str
) -> dict[str, str]:
    """The ACS HMAC-SHA256 headers for one request (pure; the fake verifies with it too)."""
    parts = urlsplit(url)
    path_and_query = parts.path + (f"?{parts.query}" if parts.query else "")
    content_hash = base64.b64encode(hashlib.sha256(body).digest()).decode()
    to_sign = f"{method.upper()}\n{path_and_query}\n{date};{parts.netloc};{content_hash}"
    key = base64.b64decode(access_key)
    signature = base64.b64encode(hmac.new(key, to_sign.encode(), hashlib.sha256).digest())
    return {
        "x-ms-date": date,
        "x-ms-content-sha256": content_hash,
        "Authorization": f"HMAC-SHA256 SignedHeaders={SIGNED_HEADERS}&Signature="
                         f"{signature.decode()}",
    }


def http_date(moment: datetime) -> str:
    """IMF-fixdate, as ``x-ms-date`` and ``repeatabilityFirstSent`` want it."""
    return format_datetime(moment.replace(microsecond=0), usegmt=True)


class AzureSms(SmsTransport):
    """Sends one SMS per request to one recipient."""

    name: ClassVar[str] = "azure"

    def __init__(self, app: AppContext, *, http: httpx.AsyncClient | None = None) -> None:
        settings = app.settings
        if not settings.azure_endpoint or not settings.azure_access_key:
            raise ConfigurationError(
                "SMS provider azure needs OPENVISIT_AZURE_ENDPOINT and "
                "OPENVISIT_AZURE_ACCESS_KEY (or OPENVISIT_AZURE_ACCESS_KEY_FILE)."
            )
        self._url = f"{settings.azure_endpoint.rstrip('/')}/sms?api-version={API_VERSION}"
        self._key = settings.azure_access_key
        self._http = http or app.http
        self._timeout = settings.notify_timeout_seconds

    async def send(
        self, *, to: str, body: str, sender: str, reference: str,
        retain_until: datetime | None = None, first_attempt_at: datetime | None = None,
    ) -> SendResult:
        first_sent = first_attempt_at or utcnow()
        item = await self._post(to=to, body=body, sender=sender, reference=reference,
                                first_sent=first_sent)
        if item.get("httpStatusCode") == 412:
            # Outside ACS's five-minute memory: it cannot tell, so send as a new request.
            item = await self._post(to=to, body=body, sender=sender, reference=reference,
                                    first_sent=utcnow())
        return _result(item)

    async def _post(self, *, to: str, body: str, sender: str, reference: str,
                    first_sent: datetime) -> dict[str, Any]:
        payload = {
            "from": sender,
            "smsRecipients": [{
                "to": to,
                "repeatabilityRequestId": str(uuid.uuid5(_NAMESPACE, reference)),
                "repeatabilityFirstSent": http_date(first_sent),
            }],
            "message": body,
            "smsSendOptions": {"enableDeliveryReport": True, "tag": "openvisit"},
        }
        content = json.dumps(payload, separators=(",", ":")).encode()
        headers = sign(method="POST", url=self._url, body=content, access_key=self._key,
                       date=http_date(utcnow()))
        headers["Content-Type"] = "application/json"
        try:
            response = await self._http.post(self._url, content=content, headers=headers,
                                             timeout=self._timeout)
        except httpx.ConnectError as exc:
            raise OutboundError("Azure Communication Services cannot be reached.") from exc
        except httpx.ConnectTimeout as exc:
            raise OutboundError("Azure Communication Services did not accept a connection."
                                ) from exc
        except httpx.HTTPError as exc:
            raise OutcomeUnknown(f"Azure call ended without an answer ({type(exc).__name__}).",
                                 code="azure_no_answer") from exc
        if response.status_code == 429:
            raise OutboundError("Azure asked us to slow down (429).", permanent=False)
        if response.status_code >= 500:
            raise OutcomeUnknown(f"Azure answered {response.status_code}.",
                                 code="azure_server_error")
        if response.status_code in (401, 403):
            raise OutboundError(f"Azure refused our signature ({response.status_code}); check "
                                "OPENVISIT_AZURE_ACCESS_KEY.", permanent=False)
        if response.status_code != 202:
            raise OutboundError(f"Azure refused the request ({response.status_code}).",
                                permanent=True)
        items = response.json().get("value") or []
        if not items:
            raise OutcomeUnknown("Azure accepted the request but named no message.")
        item: dict[str, Any] = items[0]
        return item


def _result(item: dict[str, Any]) -> SendResult:
    status = int(item.get("httpStatusCode") or 0)
    if item.get("successful") and item.get("messageId"):
        return SendResult(provider_message_id=str(item["messageId"]))
    if status == 400:
        raise RecipientRejected("Azure refused the recipient (400).")
    if status >= 500 or status == 0:
        raise OutcomeUnknown(f"Azure reported {status} for the recipient.")
    raise OutboundError(f"Azure did not send the message ({status}).", permanent=status != 429)


def sms_transport(app: AppContext) -> SmsTransport:
    return AzureSms(app)
