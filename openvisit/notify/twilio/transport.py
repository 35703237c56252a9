"""Twilio Programmable Messaging through the official ``twilio`` SDK.

The SDK is synchronous (``requests``), so every call runs in a thread. Its HTTP client is
subclassed only to rewrite the API host to ``twilio_base_url``: tests point it at Prism
serving Twilio's own OpenAPI document, which validates each request against the spec.

**Exactly-once.** Twilio's Messages API has no idempotency key. Each message therefore carries
a status callback URL with our reference (``?ref=<job key>``), and when an attempt's outcome
is unknown (a read timeout, a 5xx) the next attempt reconciles before sending:
it lists the newest 50 messages To the recipient From our sender and takes those created
since the attempt began whose body is ours (the body is frozen between attempts and carries
the patient's own join link). It does not filter on ``DateSent``: that field stays empty while
a message waits in Twilio's queue, which is precisely when a crash leaves us in doubt.
Residual risk: a message accepted by Twilio but not yet visible in the list a moment later
(not observed; Twilio's create is synchronous), or a second identical body to the same
person in the same window (the job picks an id no other message claimed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit, urlunsplit

import requests
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator, get_signature_algorithm
from twilio.rest import Client

from openvisit.context import AppContext
from openvisit.errors import ConfigurationError, OutboundError
from openvisit.notify.transport import (
    OutcomeUnknown,
    RecipientRejected,
    SendResult,
    SmsTransport,
)

#: Twilio error codes that mean "never deliverable to this recipient".
#: https://www.twilio.com/docs/api/errors - 21211 invalid To, 21214 To cannot be reached,
#: 21612 cannot route, 21614 not a mobile number, 21610 recipient replied STOP.
RECIPIENT_ERRORS = {21211, 21214, 21612, 21614, 21610, 21408, 30006}
OPTED_OUT_ERROR = 21610
STATUS_PATH = "/hooks/twilio/status"
#: How far the clocks of Twilio and this server may disagree when matching by creation time.
CLOCK_SKEW = timedelta(minutes=2)


#: The SDK logs each request's query at INFO (``To=+420…`` when listing messages): PHI.
_SDK_LOG = logging.getLogger("openvisit.notify.twilio.sdk")
_SDK_LOG.setLevel(logging.WARNING)
# urllib3, under the SDK, logs each request line (path and query) at DEBUG.
logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)


class RebasedHttpClient(TwilioHttpClient):  # type: ignore[misc]  # untyped SDK
    """``TwilioHttpClient`` that sends every request to ``base_url`` instead of twilio.com."""

    def __init__(self, base_url: str, *, timeout: float) -> None:
        super().__init__(timeout=timeout, logger=_SDK_LOG)
        self._base = urlsplit(base_url.rstrip("/"))

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        parts = urlsplit(url)
        rebased = urlunsplit(
            (self._base.scheme, self._base.netloc, self._base.path + parts.path, parts.query,
             parts.fragment)
        )
        return super().request(method, rebased, *args, **kwargs)


class TwilioSms(SmsTransport):
    """Sends through ``POST /2010-04-01/Accounts/{sid}/Messages.json``."""

    name: ClassVar[str] = "twilio"

    def __init__(self, app: AppContext) -> None:
        settings = app.settings
        if not settings.twilio_account_sid or not settings.twilio_auth_token:
            raise ConfigurationError(
                "SMS provider twilio needs OPENVISIT_TWILIO_ACCOUNT_SID and "
                "OPENVISIT_TWILIO_AUTH_TOKEN (or OPENVISIT_TWILIO_AUTH_TOKEN_FILE)."
            )
        self._http = RebasedHttpClient(settings.twilio_base_url,
                                       timeout=settings.notify_timeout_seconds)
        self._client = Client(settings.twilio_account_sid, settings.twilio_auth_token,
                              http_client=self._http)
        self._callback_base = settings.public_url + STATUS_PATH

    def status_callback(self, reference: str) -> str:
        """The status webhook for one message; ``ref`` ties early callbacks to our row."""
        return f"{self._callback_base}?ref={quote(reference, safe='')}"

    async def send(
        self, *, to: str, body: str, sender: str, reference: str,
        retain_until: datetime | None = None, first_attempt_at: datetime | None = None,
    ) -> SendResult:
        kwargs: dict[str, Any] = {"to": to, "body": body,
                                  "status_callback": self.status_callback(reference)}
        # A Messaging Service SID picks the sending number from its pool.
        if sender.startswith("MG"):
            kwargs["messaging_service_sid"] = sender
        else:
            kwargs["from_"] = sender
        try:
            message = await asyncio.to_thread(self._client.messages.create, **kwargs)
        except TwilioRestException as exc:
            raise _classify(exc) from exc
        except requests.exceptions.ConnectTimeout as exc:
            raise OutboundError("Twilio could not be reached (connect timeout).") from exc
        except requests.exceptions.RequestException as exc:
            # The request may have been written before the connection broke or timed out.
            raise OutcomeUnknown(f"Twilio call ended without an answer ({type(exc).__name__}).",
                                 code="twilio_no_answer") from exc
        segments = int(message.num_segments) if str(message.num_segments or "").isdigit() else 1
        return SendResult(provider_message_id=str(message.sid), parts=segments)

    async def reconcile(
        self, *, to: str, body: str, sender: str, reference: str, since: datetime
    ) -> list[SendResult]:
        """Messages with our body sent to ``to`` since ``since`` (see the module docstring)."""
        filters: dict[str, Any] = {"to": to, "page_size": 50}
        if not sender.startswith("MG"):
            filters["from_"] = sender

        def newest_page() -> list[Any]:
            # One page, newest first: older messages cannot be this attempt's.
            return list(self._client.messages.page(**filters))

        try:
            messages = await asyncio.to_thread(newest_page)
        except TwilioRestException as exc:
            raise OutboundError(f"Twilio refused the message list ({exc.status}).",
                                permanent=False) from exc
        except requests.exceptions.RequestException as exc:
            raise OutboundError(f"Twilio message list failed ({type(exc).__name__}).") from exc
        found = [
            m for m in messages
            if m.body == body and (m.date_created is None or m.date_created >= since - CLOCK_SKEW)
        ]
        found.sort(key=lambda m: m.date_created or since)
        return [SendResult(provider_message_id=str(m.sid)) for m in found]

    async def aclose(self) -> None:
        if self._http.session is not None:
            self._http.session.close()


def _classify(exc: TwilioRestException) -> OutboundError:
    """Map a Twilio error answer to what a retry should do."""
    code = int(exc.code) if exc.code else 0
    if code in RECIPIENT_ERRORS:
        return RecipientRejected(f"Twilio refused the recipient (error {code}).",
                                 opted_out=code == OPTED_OUT_ERROR)
    if exc.status == 429:
        return OutboundError("Twilio asked us to slow down (429).", permanent=False)
    if exc.status >= 500:
        return OutcomeUnknown(f"Twilio answered {exc.status}.", code="twilio_server_error")
    if exc.status in (401, 403):
        # Retried with backoff for hours, not dead-lettered at once: rotating a token at
        # night should not lose the night's reminders.
        return OutboundError(
            f"Twilio refused our credentials ({exc.status}, error {code}); check "
            "OPENVISIT_TWILIO_ACCOUNT_SID and OPENVISIT_TWILIO_AUTH_TOKEN.", permanent=False)
    return OutboundError(f"Twilio refused the request ({exc.status}, error {code}).",
                         permanent=True)


def sms_transport(app: AppContext) -> SmsTransport:
    return TwilioSms(app)


def signature_valid(*, auth_token: str, url: str, params: Mapping[str, Any], signature: str,
                    signature_settings: str) -> bool:
    """Whether ``signature`` (``X-Twilio-Signature``) is Twilio's over ``url`` and ``params``.

    ``signature_settings`` is the ``X-Twilio-Webhooks-Signature-Settings`` header, which
    chooses the algorithm; the SDK's ``RequestValidator`` does the checking.
    """
    algorithm = get_signature_algorithm(signature_settings)
    return bool(RequestValidator(auth_token).validate(url, params, signature,
                                                      algorithm=algorithm))
