"""JSON API of the audit log (``/api/portal``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from openvisit.portal.audit import service as auditlog
from openvisit.portal.web import PrincipalDep
from openvisit.web.deps import SessionDep
from openvisit.web.schemas import error_responses

router = APIRouter(
    prefix="/api/portal", tags=["portal"], responses=error_responses(401, 403, 404, 409, 422, 429)
)


@router.get("/audit")
async def audit(
    session: SessionDep, principal: PrincipalDep,
    action: str | None = Query(None, max_length=64, description="An action "
                               "(endpoint.approve), or every action of a kind (endpoint.*)."),
    object_type: str | None = Query(None, max_length=64),
    object_id: str | None = Query(None, max_length=255),
    actor: str | None = Query(None, max_length=255,
                              description="e.g. staff:<uuid>, api_token:<uuid>, system"),
    since: str | None = Query(None, max_length=10, description="YYYY-MM-DD (inclusive)"),
    until: str | None = Query(None, max_length=10, description="YYYY-MM-DD (inclusive)"),
    page: int = Query(1, ge=1, le=100_000),
) -> dict[str, Any]:
    """The audit log, newest first, 50 per page: who, what, before, after, when."""
    where = auditlog.make_filter(action=action, object_type=object_type, object_id=object_id,
                                 actor=actor, since=since, until=until)
    entries, more = await auditlog.search(session, principal=principal, where=where, page=page)
    return {"page": page, "more": more, "entries": [e.as_json() for e in entries]}
