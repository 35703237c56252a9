"""``/devicetest?ctx=…`` (the page) and its two calls: the test call's offer/answer and the
result. The signed context token from the integration record opens all three; a forged or
damaged one is a 404 page, a withdrawn one a 410 page, both in the visitor's language."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit import i18n
from openvisit.context import AppContext
from openvisit.devicetest.loopback import LoopbackCalls
from openvisit.devicetest.service import DeviceTestReport, record_result
from openvisit.devicetest.strings import devicetest_strings
from openvisit.endpoints import repository as endpoints_repository
from openvisit.errors import Gone, NotFound
from openvisit.i18n import gettext
from openvisit.logging import get_logger
from openvisit.models import ContextToken
from openvisit.portal.records import verify_context_token
from openvisit.visits.turn import ice_config
from openvisit.visits.views import ROOM_HEADERS
from openvisit.web.deps import CtxDep
from openvisit.web.security import page_needs
from openvisit.web.templating import json_for_script, templates

log = get_logger(__name__)
router = APIRouter(include_in_schema=False)
_CALLS = "devicetest.calls"


def loopback_calls(ctx: AppContext) -> LoopbackCalls:
    """This process's loop-back peers (closed with the context)."""
    calls = ctx.extras.get(_CALLS)
    if calls is None:
        calls = ctx.extras[_CALLS] = LoopbackCalls(ctx.settings)
    assert isinstance(calls, LoopbackCalls)
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
        ancestors = await endpoints_repository.frame_ancestors_of(session, token.endpoint_id)
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


@router.post("/api/devicetest/call")
async def devicetest_call(offer: CallOffer, ctx: CtxDep) -> dict[str, str]:
    """Answer the page's test-call offer with a peer that sends its media back."""
    async with ctx.db.read() as session:
        endpoint_id = (await _token(session, ctx, offer.ctx)).endpoint_id
    answer = await loopback_calls(ctx).answer(offer.sdp)
    log.info("devicetest_call_answered", endpoint_id=str(endpoint_id))
    return {"type": "answer", "sdp": answer}


@router.post("/api/devicetest/results", status_code=201)
async def devicetest_results(report: DeviceTestReport, ctx: CtxDep) -> dict[str, object]:
    """Keep the outcome for the clinic (a ``devicetest`` visit with one result event)."""
    async with ctx.transaction() as session:
        token = await _token(session, ctx, report.ctx)
        visit = await record_result(session, token=token, report=report)
        visit_id, endpoint_id = visit.id, token.endpoint_id
    log.info("devicetest_result", visit_id=str(visit_id), endpoint_id=str(endpoint_id),
             passed=report.passed)
    return {"id": str(visit_id), "passed": report.passed}
