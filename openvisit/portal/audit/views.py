"""Portal page of the audit log: every change, filterable."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from openvisit.errors import InvalidInput, OpenVisitError
from openvisit.portal.audit import service as auditlog
from openvisit.portal.web import PortalRoute, PrincipalDep, remember_session, render
from openvisit.web.deps import SessionDep

router = APIRouter(route_class=PortalRoute, include_in_schema=False,
                   dependencies=[Depends(remember_session)])


@router.get("/portal/audit")
async def audit_page(request: Request, session: SessionDep, principal: PrincipalDep,
                     action: str = "", object_type: str = "", object_id: str = "",
                     actor: str = "", since: str = "", until: str = "",
                     page: int = 1) -> Response:
    """Every change, newest first, filterable by action, object, person and dates."""
    values = {"action": action, "object_type": object_type, "object_id": object_id,
              "actor": actor, "since": since, "until": until}
    error: OpenVisitError | None = None
    try:
        where = auditlog.make_filter(**values)
        entries, more = await auditlog.search(session, principal=principal, where=where,
                                              page=page)
    except InvalidInput as exc:
        error, entries, more = exc, [], False
    query = urlencode({k: v for k, v in values.items() if v})
    return render(request, "portal/audit.html", {
        "entries": entries, "more": more, "page": max(page, 1), "values": values,
        "facets": await auditlog.facets(session, principal=principal), "error": error,
        "query": query}, principal=principal, status_code=error.status_code if error else 200)
