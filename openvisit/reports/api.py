"""JSON API of the reports (``/api/reports/...``), for API tokens with the reporter role.

The same reports as the portal pages, with the same filters as query parameters; values are
raw (seconds, ISO 8601 times in the organisation's zone, 0–1 shares) rather than formatted.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse

from openvisit.portal.web import PrincipalDep
from openvisit.reports import service
from openvisit.reports.schemas import (
    DeviceTestReport,
    FunnelReport,
    MessageReport,
    QualityReport,
    ReportName,
    UsageReport,
)
from openvisit.web.deps import CtxDep, SessionDep
from openvisit.web.schemas import error_responses

router = APIRouter(prefix="/api/reports", tags=["reports"],
                   responses=error_responses(401, 403, 422))

Since = Annotated[str | None, Query(description="First local day, YYYY-MM-DD (default: the "
                                                "first of this month).")]
Until = Annotated[str | None, Query(description="Last local day, YYYY-MM-DD, included "
                                                "(default: today).")]
Department = Annotated[str | None, Query(description="The appointment's department.")]
Staff = Annotated[str | None, Query(description="A clinician's EHR user id.")]
Endpoint = Annotated[str | None, Query(description="An EHR endpoint id.")]
Environment = Annotated[str | None, Query(description="test or production.")]


def _params(since: str | None, until: str | None, department: str | None, staff: str | None,
            endpoint: str | None, environment: str | None) -> dict[str, str | None]:
    return {"since": since, "until": until, "department": department, "staff": staff,
            "endpoint": endpoint, "environment": environment}


@router.get("/usage", response_model=UsageReport)
async def usage(request: Request, session: SessionDep, ctx: CtxDep, principal: PrincipalDep,
                since: Since = None,
                until: Until = None, department: Department = None, staff: Staff = None,
                endpoint: Endpoint = None, environment: Environment = None) -> UsageReport:
    """One row per visit that started in the range, the month's running count against the
    organisation's allocation, totals and per-department and per-staff summaries."""
    service.use_language(request.headers.get("accept-language"))
    query = await service.parse(session, settings=ctx.settings, caller=principal, params=_params(
        since, until, department, staff, endpoint, environment))
    return await service.usage(session, query=query, caller=principal)


@router.get("/quality", response_model=QualityReport)
async def quality(request: Request, session: SessionDep, ctx: CtxDep, principal: PrincipalDep,
                  since: Since = None, until: Until = None, department: Department = None,
                  staff: Staff = None, endpoint: Endpoint = None,
                  environment: Environment = None) -> QualityReport:
    """Per participant of each visit: median and 95th percentile of RTT, jitter, loss and
    bitrate, the median resolution and the media path; the share of poor visits."""
    service.use_language(request.headers.get("accept-language"))
    query = await service.parse(session, settings=ctx.settings, caller=principal, params=_params(
        since, until, department, staff, endpoint, environment))
    return await service.quality(session, settings=ctx.settings, query=query, caller=principal)


@router.get("/messages", response_model=MessageReport)
async def messages(request: Request, session: SessionDep, ctx: CtxDep, principal: PrincipalDep,
                   since: Since = None, until: Until = None, department: Department = None,
                   staff: Staff = None, endpoint: Endpoint = None,
                   environment: Environment = None) -> MessageReport:
    """Every SMS and e-mail (masked recipient), the delivery rate and opt-outs."""
    service.use_language(request.headers.get("accept-language"))
    query = await service.parse(session, settings=ctx.settings, caller=principal, params=_params(
        since, until, department, staff, endpoint, environment))
    return await service.messages(session, query=query, caller=principal)


@router.get("/devicetests", response_model=DeviceTestReport)
async def devicetests(request: Request, session: SessionDep, ctx: CtxDep,
                      principal: PrincipalDep, since: Since = None, until: Until = None,
                      department: Department = None, staff: Staff = None,
                      endpoint: Endpoint = None,
                      environment: Environment = None) -> DeviceTestReport:
    """Every device test patients ran from the clinic's links: outcomes and call figures."""
    service.use_language(request.headers.get("accept-language"))
    query = await service.parse(session, settings=ctx.settings, caller=principal, params=_params(
        since, until, department, staff, endpoint, environment))
    return await service.devicetests(session, query=query, caller=principal)


@router.get("/funnel", response_model=FunnelReport)
async def funnel(request: Request, session: SessionDep, ctx: CtxDep, principal: PrincipalDep,
                 since: Since = None, until: Until = None, department: Department = None,
                 staff: Staff = None, endpoint: Endpoint = None,
                 environment: Environment = None) -> FunnelReport:
    """Appointments with a patient link: how many reached each step, by department and by
    language, and the no-shows."""
    service.use_language(request.headers.get("accept-language"))
    query = await service.parse(session, settings=ctx.settings, caller=principal, params=_params(
        since, until, department, staff, endpoint, environment))
    return await service.funnel(session, query=query, caller=principal)


@router.get("/{name}.csv", response_class=StreamingResponse,
            responses={200: {"content": {"text/csv": {}},
                             "description": "RFC 4180, UTF-8 with a byte-order mark."}})
async def csv_download(name: ReportName, request: Request, session: SessionDep, ctx: CtxDep,
                       principal: PrincipalDep, since: Since = None, until: Until = None,
                       department: Department = None, staff: Staff = None,
                       endpoint: Endpoint = None, environment: Environment = None) -> Response:
    """The report's table as CSV, the same rows and columns as the portal page (audited)."""
    language = service.use_language(request.headers.get("accept-language"))
    query = await service.parse(session, settings=ctx.settings, caller=principal, params=_params(
        since, until, department, staff, endpoint, environment))
    filename = await service.audit_csv(session, name=name, query=query, caller=principal)
    body = service.csv_stream(ctx.db.read, name=name, settings=ctx.settings, query=query,
                              caller=principal, language=language)
    return StreamingResponse(body, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store"})
