"""``/ops/outbox``: the embedded outbox, for operators and for newcomers running ``make demo``.

A portal page, in every environment: only a signed-in **operator** or **org admin** reads it
(anonymous browsers are sent to the portal sign-in and come back; ``Accept:
application/json`` clients get 401/403 JSON), and only their own organisation's messages. In
development and test it shows each message's text, join link included, so the demo can be
clicked through; in production it shows no text at all, only metadata (time, template,
channel, masked recipient, status): the text never leaves the database there. Every reading
is audited (``outbox.read``).

The web role also holds the SMPP receiver bind here (router lifespan) when SMPP is
configured: receipts and STOP replies must be heard while workers come and go.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from markupsafe import Markup, escape

from openvisit.context import AppContext
from openvisit.notify.outbox.service import read_outbox
from openvisit.portal.web import PortalRoute, PrincipalDep, remember_session, render
from openvisit.web.deps import CtxDep, SessionDep
from openvisit.web.errors import wants_json

_URL = re.compile(r"https?://[^\s<>\"]+")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Hold an SMPP receiver while this web process runs, if SMPP is configured."""
    ctx: AppContext = app.state.ctx
    settings = ctx.settings
    if settings.smpp_receiver and settings.smpp_host and settings.smpp_system_id:
        # The optional smpplib is imported only where SMPP is configured.
        from openvisit.notify.smpp import receiver

        async with receiver.running_receiver(ctx):
            yield
    else:
        yield


router = APIRouter(tags=["operations"], lifespan=lifespan)
pages = APIRouter(route_class=PortalRoute, include_in_schema=False,
                  dependencies=[Depends(remember_session)])


def linkify(text: str) -> Markup:
    """Escape ``text`` and make its URLs clickable."""
    out, last = [], 0
    for match in _URL.finditer(text):
        out.append(escape(text[last:match.start()]))
        url = escape(match.group(0))
        out.append(Markup('<a href="{0}">{0}</a>').format(url))
        last = match.end()
    out.append(escape(text[last:]))
    return Markup("").join(out)


@pages.get("/ops/outbox")
async def outbox_page(
    request: Request, session: SessionDep, ctx: CtxDep, principal: PrincipalDep,
    limit: int = Query(50, ge=1, le=500),
) -> Response:
    """The organisation's newest ``limit`` outbox messages (text only in development and test).

    Answers JSON to ``Accept: application/json``. Raises :class:`PermissionDenied` (403) for
    anyone but an operator or org admin.
    """
    reading = await read_outbox(session, app=ctx, principal=principal, limit=limit)
    messages, total, show_text = reading.messages, reading.total, reading.text_shown
    if wants_json(request):
        return JSONResponse({"total": total, "text_shown": show_text, "messages": messages},
                            headers={"Cache-Control": "no-store"})
    for item in messages:
        if "text" in item:
            item["text"] = linkify(item["text"])
    return render(request, "notify/outbox.html", {
        "messages": messages, "total": total, "show_text": show_text, "limit": limit,
        "environment": ctx.settings.environment}, principal=principal)


router.include_router(pages)
