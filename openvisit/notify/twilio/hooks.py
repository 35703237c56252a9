"""Twilio webhooks: message status callbacks and incoming SMS (STOP/START/HELP).

Both verify ``X-Twilio-Signature`` with the SDK's ``RequestValidator`` over the URL Twilio
called, rebuilt from ``public_url`` (behind a proxy the request's own URL is not the one
Twilio signed) plus every form parameter. A request that fails is refused with 403 and
changes nothing.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from openvisit.errors import ConfigurationError, PermissionDenied
from openvisit.logs import get_logger
from openvisit.notify import inbound
from openvisit.notify.providers import twilio_sdk
from openvisit.web.deps import CtxDep
from openvisit.web.middleware import route_template

log = get_logger(__name__)
router = APIRouter(prefix="/hooks/twilio", tags=["notifications"], include_in_schema=False)

#: Twilio MessageStatus → message log status (None: not final news, nothing to record).
STATUS = {"queued": None, "accepted": None, "scheduled": None, "sending": None,
          "sent": "sent", "delivered": "delivered", "read": "delivered",
          "undelivered": "undelivered", "failed": "failed", "canceled": "failed"}
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


async def verified_form(request: Request, *, auth_token: str, public_url: str) -> Any:
    """The request's form parameters, if Twilio signed them; raises PermissionDenied."""
    form = await request.form()
    if not auth_token:
        raise PermissionDenied("Twilio webhooks are not configured on this deployment "
                               "(OPENVISIT_TWILIO_AUTH_TOKEN is empty).")
    try:
        # The SDK through providers' one lazy import: a deployment installed without the
        # twilio extra still starts, and says here what is missing.
        sdk = twilio_sdk()
    except ConfigurationError:
        raise PermissionDenied("Twilio webhooks need the Twilio SDK on this server: "
                               "pip install 'openvisit[twilio]'.") from None
    url = public_url + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not sdk.signature_valid(
            auth_token=auth_token, url=url, params=form, signature=signature,
            signature_settings=request.headers.get("X-Twilio-Webhooks-Signature-Settings", "")):
        log.warning("twilio_signature_rejected", route=route_template(request.scope))
        raise PermissionDenied("The request is not signed by Twilio.")
    return form


@router.post("/status")
async def status_callback(request: Request, ctx: CtxDep) -> Response:
    """Record a message's delivery status; 204."""
    settings = ctx.settings
    form = await verified_form(request, auth_token=settings.twilio_auth_token,
                               public_url=settings.public_url)
    sid = str(form.get("MessageSid") or form.get("SmsSid") or "")
    status = STATUS.get(str(form.get("MessageStatus") or form.get("SmsStatus") or ""))
    error = form.get("ErrorCode")
    if sid:
        await inbound.apply_status(
            ctx, provider="twilio", provider_message_id=sid, status=status,
            job_key=request.query_params.get("ref"), recipient=str(form.get("To") or ""),
            error=f"twilio error {error}" if error else None,
        )
    return Response(status_code=204)


@router.post("/inbound")
async def incoming_message(request: Request, ctx: CtxDep) -> Response:
    """Apply STOP/START (and recognise HELP) for the organisation owning the number.

    Answers empty TwiML: Twilio's own opt-out handling sends the carrier-mandated replies,
    and a second reply from us would only confuse the patient.
    """
    settings = ctx.settings
    form = await verified_form(request, auth_token=settings.twilio_auth_token,
                               public_url=settings.public_url)
    await inbound.apply_reply(
        ctx, from_number=str(form.get("From") or ""), to_number=str(form.get("To") or ""),
        text=str(form.get("Body") or ""), opt_out_type=str(form.get("OptOutType") or "") or None,
    )
    return Response(EMPTY_TWIML, media_type="application/xml")
