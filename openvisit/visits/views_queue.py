"""The clinic queue page: ``/v/{token}/queue`` for the clinician whose join link it is.

``/v/{token}/queue`` the page, ``…/rows`` its rows (an HTML fragment the page swaps in),
``…/events`` a Server-Sent Events stream that says "refetch" whenever a visit of the
organisation changes in the lobby, and ``POST …/visits/{visit_id}`` opens a visit of the
queue (303 to the clinician's join link of it).

Why Server-Sent Events rather than polling: the queue sits in a background tab all day, and
Chromium throttles a hidden tab's timers to once a minute after five minutes ("intensive
wake-up throttling"), so a poll would tell the clinician a minute late; a network event is
delivered at once. The stream carries no data, only a nudge: the rows are always read from
the database (so a nudge lost between processes costs nothing but latency, and the page
also refetches every 30 s and on reconnect). The nudge comes over the bus, so a patient
joining on another web process (Redis) reaches the queue too.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from openvisit import i18n
from openvisit.context import AppContext
from openvisit.models.base import utcnow
from openvisit.visits import queue
from openvisit.visits.strings import room_strings
from openvisit.visits.tx import transaction
from openvisit.web.deps import CtxDep
from openvisit.web.security import page_needs
from openvisit.web.templating import json_for_script, templates

router = APIRouter(include_in_schema=False)

HEADERS = {"Cache-Control": "no-store"}
#: A stream is closed after this long (the browser reconnects at once): a web process
#: restarting or shutting down never waits long on an idle queue page.
STREAM_SECONDS = 300.0
#: A comment line this often keeps proxies from closing an idle stream.
KEEPALIVE_SECONDS = 20.0


def _language(request: Request, lang: str | None) -> str:
    language = i18n.negotiate(lang, accept_language=request.headers.get("accept-language"))
    i18n.activate(language)
    return language


def _context(request: Request, *, token: str, clinician: queue.Clinician,
             found: list[queue.QueueRow], language: str) -> dict[str, Any]:
    now = utcnow()
    return {
        "rows": found, "token": token, "language": language, "now": now,
        "waiting_total": sum(len(row.waiting) for row in found),
        "time_of": lambda moment: queue.time_text(moment, clinician=clinician,
                                                  language=language),
        "waited": lambda since: _clock((now - since).total_seconds()) if since else "",
        "path": request.url.path,
    }


def _clock(seconds: float) -> str:
    """"m:ss" or "h:mm:ss", as the page's script writes it."""
    s = max(0, int(seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


@router.get("/v/{token}/queue", response_class=HTMLResponse)
async def queue_page(request: Request, token: str, ctx: CtxDep,
                     lang: str | None = None) -> Response:
    """Today's visits of the clinician whose link this is (403 for any other seat)."""
    language = _language(request, lang)
    async with transaction(ctx) as session:
        clinician = await queue.clinician_of(session, app=ctx, token=token)
        found = await queue.rows(session, clinician=clinician, language=language)
        frame_ancestors = await queue.frame_ancestors(session, clinician=clinician)
    page_needs(request, media=False, frame_ancestors=frame_ancestors)
    config = {"lang": language, "rowsUrl": f"/v/{token}/queue/rows?lang={language}",
              "eventsUrl": f"/v/{token}/queue/events", "role": "provider"}
    return templates.TemplateResponse(
        request, "visits/queue.html",
        {**_context(request, token=token, clinician=clinician, found=found,
                    language=language),
         "config_json": json_for_script(config), "strings_json": json_for_script(room_strings()),
         "languages": i18n.LANGUAGES},
        headers=HEADERS,
    )


@router.get("/v/{token}/queue/rows", response_class=HTMLResponse)
async def queue_rows(request: Request, token: str, ctx: CtxDep,
                     lang: str | None = None) -> Response:
    """The queue's rows, as the page shows them (swapped in by its script)."""
    language = _language(request, lang)
    async with transaction(ctx) as session:
        clinician = await queue.clinician_of(session, app=ctx, token=token)
        found = await queue.rows(session, clinician=clinician, language=language)
    return templates.TemplateResponse(
        request, "visits/_queue_rows.html",
        _context(request, token=token, clinician=clinician, found=found, language=language),
        headers=HEADERS,
    )


@router.get("/v/{token}/queue/events")
async def queue_events(token: str, ctx: CtxDep) -> Response:
    """``text/event-stream``: an ``update`` event whenever a visit of the organisation
    changes in the lobby (no data: the page refetches its rows, which are filtered)."""
    async with transaction(ctx) as session:
        clinician = await queue.clinician_of(session, app=ctx, token=token)
    return queue_event_stream(ctx, clinician.organisation_id)


def queue_event_stream(ctx: AppContext, organisation_id: uuid.UUID) -> Response:
    """The queue's nudge stream for an organisation (also the front desk's, in the portal):
    ``ready`` on (re)connect, ``update`` per lobby change, keep-alives, closed after
    :data:`STREAM_SECONDS` (the browser reconnects and the caller's check runs again)."""

    async def stream() -> AsyncIterator[bytes]:
        deadline = asyncio.get_running_loop().time() + STREAM_SECONDS
        async with ctx.bus.subscribe(queue.queue_channel(organisation_id), maxsize=100) as sub:
            yield b"retry: 2000\n\nevent: ready\ndata: {}\n\n"
            while (left := deadline - asyncio.get_running_loop().time()) > 0:
                try:
                    await sub.get(timeout=min(KEEPALIVE_SECONDS, left))
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                yield b"event: update\ndata: {}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={**HEADERS, "X-Accel-Buffering": "no"})


@router.post("/v/{token}/queue/visits/{visit_id}")
async def open_visit(token: str, visit_id: uuid.UUID, ctx: CtxDep) -> Response:
    """Open a visit of the queue: to the clinician's own link of it (404 if not theirs)."""
    async with transaction(ctx) as session:
        clinician = await queue.clinician_of(session, app=ctx, token=token)
        url = await queue.open_from_queue(session, app=ctx, clinician=clinician,
                                          visit_id=visit_id)
    return RedirectResponse(url, status_code=303)
