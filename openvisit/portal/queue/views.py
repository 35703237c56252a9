"""The front desk's clinic queue: ``/portal/queue`` for staff with the ``front_desk`` role.

The same page as the clinician's queue (``visits/queue.html``: rows by time, department and
seat, the chime, the count in the tab title, browser notifications, live by Server-Sent
Events), for the whole organisation or one department, and without "Open visit": front-desk
staff see who is waiting and tell the clinician; admitting stays a clinician seat's right.
The authority is the portal session (a role an org admin grants), checked on every request
of the page, its rows and its event stream.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from openvisit import i18n
from openvisit.models.base import utcnow
from openvisit.portal.signin.sessions import Principal
from openvisit.portal.web import PortalRoute, PrincipalDep, remember_session
from openvisit.visits import queue
from openvisit.visits.strings import room_strings
from openvisit.visits.views_queue import HEADERS, _clock, queue_event_stream
from openvisit.web.deps import CtxDep, SessionDep
from openvisit.web.security import page_needs
from openvisit.web.templating import json_for_script, templates

router = APIRouter(route_class=PortalRoute, include_in_schema=False,
                   dependencies=[Depends(remember_session)])

ROLE = "front_desk"


def _language(request: Request, lang: str | None) -> str:
    language = i18n.negotiate(lang, accept_language=request.headers.get("accept-language"))
    i18n.activate(language)
    return language


async def _rows(session: Any, principal: Principal, *, language: str,
                department: str) -> tuple[queue.FrontDesk, list[queue.QueueRow],
                                          list[tuple[str, str]]]:
    principal.require(ROLE, doing="see the clinic queue")
    desk = await queue.front_desk_of(session, organisation_id=principal.organisation_id)
    found, codes = await queue.desk_rows(session, desk=desk, language=language,
                                         department=department or None)
    return desk, found, codes


def _context(request: Request, *, desk: queue.FrontDesk, found: list[queue.QueueRow],
             language: str) -> dict[str, Any]:
    now = utcnow()
    return {
        "rows": found, "token": "", "language": language, "now": now, "front_desk": True,
        "waiting_total": sum(len(row.waiting) for row in found),
        "time_of": lambda moment: queue.time_text(moment, clinician=desk, language=language),
        "waited": lambda since: _clock((now - since).total_seconds()) if since else "",
        "path": request.url.path,
    }


@router.get("/portal/queue")
async def desk_page(request: Request, session: SessionDep, ctx: CtxDep,
                    principal: PrincipalDep, department: str = "",
                    lang: str | None = None) -> Response:
    """Today's visits of the organisation (or of one department), who is waiting."""
    language = _language(request, lang)
    desk, found, codes = await _rows(session, principal, language=language,
                                     department=department)
    page_needs(request, media=False,
               frame_ancestors=await queue.frame_ancestors(session, clinician=desk))
    query = urlencode({"lang": language, **({"department": department} if department else {})})
    config = {"lang": language, "rowsUrl": f"/portal/queue/rows?{query}",
              "eventsUrl": "/portal/queue/events", "role": ROLE}
    return templates.TemplateResponse(
        request, "visits/queue.html",
        {**_context(request, desk=desk, found=found, language=language),
         "departments": codes, "department": department,
         "config_json": json_for_script(config), "strings_json": json_for_script(room_strings()),
         "languages": i18n.LANGUAGES},
        headers=HEADERS,
    )


@router.get("/portal/queue/rows")
async def desk_rows(request: Request, session: SessionDep, principal: PrincipalDep,
                    department: str = "", lang: str | None = None) -> Response:
    """The rows, as the page shows them (swapped in by its script)."""
    language = _language(request, lang)
    desk, found, _codes = await _rows(session, principal, language=language,
                                      department=department)
    return templates.TemplateResponse(
        request, "visits/_queue_rows.html",
        _context(request, desk=desk, found=found, language=language), headers=HEADERS)


@router.get("/portal/queue/events")
async def desk_events(session: SessionDep, ctx: CtxDep, principal: PrincipalDep) -> Response:
    """``text/event-stream``: ``update`` whenever a visit of the organisation changes in the
    lobby (no data; the page refetches its rows). The session is checked when the stream
    opens; the stream ends after a few minutes and the browser reconnects, checking again."""
    principal.require(ROLE, doing="see the clinic queue")
    return queue_event_stream(ctx, principal.organisation_id)
