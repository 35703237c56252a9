"""Buying a sending number from Twilio (REST API 2010-04-01, IncomingPhoneNumbers).

Steps: search ``AvailablePhoneNumbers/{country}/TollFree.json`` (SMS-capable), buy with
``POST IncomingPhoneNumbers.json``, name it with ``POST IncomingPhoneNumbers/{sid}.json``.
Twilio's purchase call takes no idempotency key, so a retried purchase first asks whether the
account already owns the number (``GET IncomingPhoneNumbers.json?PhoneNumber=``) and reuses it.
US toll-free numbers must be registered for verification since 1 October 2022; that happens
outside this API (Twilio console / Messaging API), so the status reported is ``unverified``
until an operator marks it.
"""

from __future__ import annotations

from typing import Any

import httpx

from openvisit.context import AppContext
from openvisit.errors import ConfigurationError, OutboundError

API = "/2010-04-01/Accounts/{sid}"


class TwilioNumbers:
    """Twilio's number provider (see :class:`openvisit.notify.transport.NumberProvider`)."""

    name = "twilio"

    def __init__(self, app: AppContext) -> None:
        settings = app.settings
        if not (settings.twilio_account_sid and settings.twilio_auth_token):
            raise ConfigurationError("Twilio is the SMS provider but OPENVISIT_TWILIO_ACCOUNT_SID "
                                     "or OPENVISIT_TWILIO_AUTH_TOKEN is empty.")
        self.app = app
        self._base = settings.twilio_base_url.rstrip("/") + API.format(
            sid=settings.twilio_account_sid)
        self._auth = (settings.twilio_account_sid, settings.twilio_auth_token)

    def step_delay(self) -> float:
        return 0.0

    async def _call(self, method: str, path: str, *, params: dict[str, str] | None = None,
                    data: dict[str, str] | None = None) -> dict[str, Any]:
        try:
            response = await self.app.http.request(
                method, self._base + path, params=params, data=data, auth=self._auth,
                timeout=self.app.settings.notify_timeout_seconds)
        except httpx.HTTPError as exc:
            raise OutboundError(f"Twilio could not be reached ({type(exc).__name__}).") from exc
        if response.status_code >= 400:
            try:
                message = str(response.json().get("message", ""))[:200]
            except ValueError:
                message = ""
            raise OutboundError(
                f"Twilio answered HTTP {response.status_code}" + (f": {message}" if message else "")
                + ".", permanent=response.status_code < 500 and response.status_code != 429)
        body: dict[str, Any] = response.json()
        return body

    async def search(self, *, country: str, exclude: set[str]) -> str:
        body = await self._call("GET", f"/AvailablePhoneNumbers/{country}/TollFree.json",
                                params={"SmsEnabled": "true", "PageSize": "20"})
        for item in body.get("available_phone_numbers") or []:
            number = item.get("phone_number") if isinstance(item, dict) else None
            if isinstance(number, str) and number not in exclude:
                return number
        raise OutboundError(f"Twilio has no SMS-capable toll-free number available in {country} "
                            "right now; try again later.", permanent=False)

    async def purchase(self, *, e164: str, idempotency_key: str) -> str:
        owned = await self._call("GET", "/IncomingPhoneNumbers.json",
                                 params={"PhoneNumber": e164, "PageSize": "1"})
        for item in owned.get("incoming_phone_numbers") or []:
            if isinstance(item, dict) and item.get("phone_number") == e164 and item.get("sid"):
                return str(item["sid"])
        bought = await self._call("POST", "/IncomingPhoneNumbers.json",
                                  data={"PhoneNumber": e164, "FriendlyName": "OpenVisit"})
        sid = bought.get("sid")
        if not isinstance(sid, str):
            raise OutboundError("Twilio's purchase answer has no number sid.", permanent=False)
        return sid

    async def configure(self, *, provider_ref: str, e164: str) -> None:
        await self._call("POST", f"/IncomingPhoneNumbers/{provider_ref}.json",
                         data={"FriendlyName": "OpenVisit patient notifications"})

    async def verification(self, *, provider_ref: str, e164: str) -> str:
        return "unverified"
