"""``/devicetest?ctx=…`` (the page) and its two calls: the test call's offer/answer and the
result. The signed context token from the integration record opens all three; a forged or
damaged one is a 404 page, a withdrawn one a 410 page, both in the visitor's language."""

from __future__ import annotations

import math
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit import i18n
from openvisit.context import AppContext
from openvisit.devicetest.limits import ResultLimiter, TooManyResults
from openvisit.devicetest.loopback import RETRY_AFTER_SECONDS, CallsBusy, LoopbackCalls
from openvisit.devicetest.service import DeviceTestReport, frame_ancestors, record_result
from openvisit.devicetest.strings import devicetest_strings
from openvisit.errors import Gone, NotFound, OpenVisitError
from openvisit.i18n import gettext
from openvisit.logs import get_logger
from openvisit.models import ContextToken
from openvisit.portal.records.service import verify_context_token
from openvisit.signalling.limits import address_key
from openvisit.visits.turn import ice_config
from openvisit.visits.views import ROOM_HEADERS
from openvisit.web.deps import CtxDep
from openvisit.web.errors import render_error
from openvisit.web.security import page_needs
from openvisit.web.templating import json_for_script, templates

log = get_logger(__name__)
router = APIRouter(include_in_schema=False)


def loopback_calls(ctx: AppContext) -> LoopbackCalls:
    """This process's loop-back peers (closed with the context)."""
    calls = ctx.services.devicetest_calls
    if calls is None:
        calls = ctx.services.devicetest_calls = LoopbackCalls(ctx.settings)
    return calls


async def _token(session: AsyncSession, ctx: AppContext, value: str) -> ContextToken:
    """The live device-test token, or the reason in the page's language."""
    try:
        return await verify_context_token(session, app=ctx, value=value)
    except NotFound:
        raise NotFound(gettext(
            "This device-test link is not valid. Ask the clinic for a new link.")) from None
    except Gone:
        raise Gone(
            gettext("This device-test link was withdrawn by the clinic. Ask them for the "
                    "current link."),
            title=gettext("This link was withdrawn"),
        ) from None


@router.get("/devicetest", response_class=HTMLResponse)
async def devicetest_page(request: Request, ctx: CtxDep, lang: str | None = None) -> Response:
    """The device test page (``?ctx=``: the record's signed token)."""
    value = request.query_params.get("ctx", "")
    language = i18n.negotiate(lang, accept_language=request.headers.get("accept-language"))
    i18n.activate(language)
    async with ctx.db.read() as session:
        token = await _token(session, ctx, value)
        ancestors = await frame_ancestors(session, token=token)
    page_needs(request, media=True, frame_ancestors=ancestors)
    config = {
        "ctx": value,
        "lang": language,
        "callPath": "/api/devicetest/call",
        "resultPath": "/api/devicetest/results",
        "ice": ice_config(ctx.settings, participant_id=uuid.uuid4()),
        "callSeconds": 6,
    }
    return templates.TemplateResponse(
        request,
        "devicetest/page.html",
        {
            "config_json": json_for_script(config),
            "strings_json": json_for_script(devicetest_strings()),
            "language": language,
            "languages": i18n.LANGUAGES,
            "path": request.url.path,
            "ctx": value,
        },
        headers=ROOM_HEADERS,
    )


class CallOffer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ctx: str = Field(min_length=1, max_length=256)
    type: str = Field(pattern="^offer$")
    sdp: str = Field(min_length=10, max_length=64_000)

    @field_validator("sdp")
    @classmethod
    def _session_description(cls, value: str) -> str:
        lines = value.replace("\r\n", "\n").split("\n")
        if lines[0].strip() != "v=0" or not any(line.startswith("m=") for line in lines):
            raise ValueError("not a WebRTC session description (RFC 8866): reload the page")
        return value


def _retry_later(request: Request, exc: OpenVisitError, *, seconds: int) -> Response:
    """The error's usual JSON answer, with ``Retry-After`` (RFC 9110 §10.2.3)."""
    response = render_error(request, status=exc.status_code, code=exc.code,
                            message=exc.message, details=exc.details)
    response.headers["Retry-After"] = str(seconds)
    return response


@router.post("/api/devicetest/call", response_model=None)
async def devicetest_call(offer: CallOffer, ctx: CtxDep,
                          request: Request) -> dict[str, str] | Response:
    """Answer the page's test-call offer with a peer that sends its media back.

    503 with ``Retry-After`` when every call slot of this process is taken."""
    async with ctx.db.read() as session:
        endpoint_id = (await _token(session, ctx, offer.ctx)).endpoint_id
    try:
        holder = address_key(request.client.host if request.client else None)
        answer = await loopback_calls(ctx).answer(offer.sdp, holder=holder)
    except CallsBusy as exc:
        return _retry_later(request, exc, seconds=RETRY_AFTER_SECONDS)
    log.info("devicetest_call_answered", endpoint_id=str(endpoint_id))
    return {"type": "answer", "sdp": answer}


def result_limiter(ctx: AppContext) -> ResultLimiter:
    """This process's result-post counters."""
    limiter = ctx.services.devicetest_results
    if limiter is None:
        limiter = ctx.services.devicetest_results = ResultLimiter(
            per_token=ctx.settings.devicetest_results_per_token_per_hour,
            per_address=ctx.settings.devicetest_results_per_address_per_hour)
    return limiter


def _limit(ctx: AppContext, kind: str, key: str) -> None:
    wait = result_limiter(ctx).take(kind, key)
    if not wait:
        return
    minutes = max(1, math.ceil(wait / 60))
    log.warning("devicetest_results_limited", limit=kind)
    if kind == "address":
        message = gettext("Too many test results were sent from this network. Please wait "
                          "about %(minutes)s min, then send yours again.")
    else:
        message = gettext("This device-test link was used very often in the last hour. "
                          "Please try again in about %(minutes)s min, or ask the clinic.")
    raise TooManyResults(message % {"minutes": minutes}, retry_after=wait)


@router.post("/api/devicetest/results", status_code=201, response_model=None)
async def devicetest_results(report: DeviceTestReport, ctx: CtxDep,
                             request: Request) -> dict[str, object] | Response:
    """Keep the outcome for the clinic (a ``devicetest`` visit with one result event).

    Rate-limited per client address (before the link is even checked) and per link: 429
    with ``Retry-After`` and a message in the page's language."""
    i18n.activate(i18n.negotiate(report.language,
                                 accept_language=request.headers.get("accept-language")))
    try:
        _limit(ctx, "address", address_key(request.client.host if request.client else None))
        async with ctx.transaction() as session:
            token = await _token(session, ctx, report.ctx)
            _limit(ctx, "token", str(token.id))
            visit = await record_result(session, token=token, report=report)
            visit_id, endpoint_id = visit.id, token.endpoint_id
    except TooManyResults as exc:
        return _retry_later(request, exc, seconds=exc.retry_after)
    log.info("devicetest_result", visit_id=str(visit_id), endpoint_id=str(endpoint_id),
             passed=report.passed)
    return {"id": str(visit_id), "passed": report.passed}
