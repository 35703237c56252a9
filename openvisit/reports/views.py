"""Portal pages of the reports (``/portal/reports/...``) and their CSV downloads.

Rendered inside the portal's layout with :func:`openvisit.portal.web.render`, behind the
portal's sign-in (cookie session or API token). The CSV is the page's main table, streamed.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from openvisit.i18n import gettext as _
from openvisit.portal.web import (
    PortalRoute,
    PrincipalDep,
    form_bool,
    remember_session,
    render,
    savepoint,
    see_other,
)
from openvisit.reports import charts, service
from openvisit.reports.schemas import (
    DEVICETEST_COLUMNS,
    FUNNEL_COLUMNS,
    MESSAGE_COLUMNS,
    PATIENT_REFS_COLUMN,
    QUALITY_COLUMNS,
    REPORT_NAMES,
    USAGE_COLUMNS,
    ReportName,
    Table,
)
from openvisit.web.deps import CtxDep, SessionDep

router = APIRouter(route_class=PortalRoute, include_in_schema=False,
                   dependencies=[Depends(remember_session)])

TITLES: dict[str, str] = {"usage": "Usage", "quality": "Call quality",
                          "messages": "SMS and e-mail delivery", "funnel": "Patient drop-off",
                          "devicetests": "Device tests"}


def _params(request: Request) -> dict[str, str | None]:
    return {k: request.query_params.get(k) for k in
            ("since", "until", "department", "staff", "endpoint", "environment")}


def shown(t: Table, kinds: dict[str, str]) -> dict[str, Any]:
    """A table's rows as the strings people read (the same as the CSV's cells)."""
    return {"columns": [{**c, "label": _(c["label"])} for c in t.columns],
            "rows": [[service.show(r.get(c["key"]), kinds.get(c["key"], "text"))
                      for c in t.columns] for r in t.rows]}


def _num(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def _kinds(*groups: Any) -> dict[str, str]:
    return {c.key: c.kind for group in groups for c in group}


async def _usage(session: Any, ctx: Any, query: service.Query, principal: Any) -> dict[str, Any]:
    report = await service.usage(session, query=query, caller=principal)
    data = await service.charts(session, name="usage", settings=ctx.settings, query=query,
                                caller=principal)
    days = [d[0] for d in query.days]
    departments = sorted({d for _day, d, _n in data["per_day"]})
    counts = {(day, d): n for day, d, n in data["per_day"]}
    series = [(d or _("(no department)"), [float(counts.get((day, d), 0)) for day in days])
              for d in departments]
    per_day_chart = charts.stacked_bars(
        days, series, labels=[day[5:] for day in days], ident="per-day",
        title=_("Visits per day, by department"),
        desc=_("%(n)s visits from %(a)s to %(b)s.") % {
            "n": report.totals.visits, "a": query.filters.since, "b": query.filters.until})
    waits = data["waits"]
    wait_chart = charts.stacked_bars(
        [w[0] for w in waits], [(_("Visits"), [float(w[1]) for w in waits])],
        ident="waits", title=_("Lobby wait (first patient join to admit)"),
        desc=_("How long patients waited in the lobby, in visits per band."))
    kinds = _kinds(USAGE_COLUMNS, (PATIENT_REFS_COLUMN,), service.SUMMARY_COLUMNS)
    t = report.totals
    cards = [(_("Visits"), str(t.visits)),
             (_("Total duration"), service.show(t.duration_s, "seconds")),
             (_("Average lobby wait"), service.show(t.avg_lobby_wait_s, "seconds") or "—"),
             (_("Monthly allocation"), str(t.allocation_limit) if t.allocation_limit
              else _("no limit")),
             (_("Over the allocation"), str(t.over_allocation))]
    return {
        "cards": cards, "main": shown(report.rows, kinds),
        "charts": [
            {"svg": per_day_chart, "title": _("Visits per day, by department"),
             "table": {"columns": [{"label": _("Day")}, *[{"label": s[0]} for s in series]],
                       "rows": [[day, *[f"{s[1][i]:g}" for s in series]]
                                for i, day in enumerate(days)
                                if any(s[1][i] for s in series)]},
             "legend": [(s[0], charts.colour(k)) for k, s in enumerate(series)]},
            {"svg": wait_chart, "title": _("Lobby wait"),
             "table": {"columns": [{"label": _("Wait")}, {"label": _("Visits")}],
                       "rows": [[w[0], str(w[1])] for w in waits]}, "legend": []},
        ],
        "extra": [(_("By department"), shown(report.by_department, kinds)),
                  (_("By staff member (EHR user id)"), shown(report.by_staff, kinds))],
    }


async def _quality(session: Any, ctx: Any, query: service.Query,
                   principal: Any) -> dict[str, Any]:
    report = await service.quality(session, settings=ctx.settings, query=query,
                                   caller=principal)
    s = report.summary
    per_day = {str(r["day"]): r for r in report.per_day.rows}
    days = [d[0] for d in query.days]
    chart = charts.stacked_bars(
        days,
        [(_("Good"), [_num(per_day[d]["visits"]) - _num(per_day[d]["poor_visits"])
                      if d in per_day else 0.0 for d in days]),
         (_("Poor"), [_num(per_day[d]["poor_visits"]) if d in per_day else 0.0
                      for d in days])],
        labels=[d[5:] for d in days], ident="quality",
        title=_("Visits with good and poor call quality, per day"),
        desc=_("%(p)s of %(n)s visits with samples had poor quality.") % {
            "p": s.poor_visits, "n": s.visits})
    th = s.thresholds
    cards = [(_("Visits with samples"), str(s.visits)),
             (_("Poor quality"), service.show(s.poor_share, "percent") or "—"),
             (_("Participants"), str(s.participants)),
             (_("Poor when p95 is over"),
              f"{th['rtt_ms']:g} ms RTT · {th['jitter_ms']:g} ms jitter · "
              f"{th['packet_loss_pct']:g}% loss")]
    return {"cards": cards, "main": shown(report.rows, _kinds(QUALITY_COLUMNS)),
            "charts": [{"svg": chart, "title": _("Quality over time"),
                        "table": shown(report.per_day, _kinds(service.PER_DAY_COLUMNS)),
                        "legend": [(_("Good"), charts.colour(0)),
                                   (_("Poor"), charts.colour(1))]}],
            "extra": []}


async def _messages(session: Any, ctx: Any, query: service.Query,
                    principal: Any) -> dict[str, Any]:
    report = await service.messages(session, query=query, caller=principal)
    total = int(sum(_num(r["messages"]) for r in report.by_channel.rows))
    cards = [(_("Messages"), str(total)),
             (_("Delivery rate"), service.show(report.delivery_rate, "percent") or "—"),
             (_("Opt-outs (STOP)"), str(report.opt_outs))]
    return {"cards": cards, "main": shown(report.rows, _kinds(MESSAGE_COLUMNS)),
            "charts": [],
            "extra": [(_("By channel"), shown(report.by_channel,
                                               _kinds(service.CHANNEL_COLUMNS)))]}


async def _funnel(session: Any, ctx: Any, query: service.Query,
                  principal: Any) -> dict[str, Any]:
    report = await service.funnel(session, query=query, caller=principal)
    total = report.total.rows[0] if report.total.rows else {}
    steps = [c for c in report.total.columns if c["key"] not in ("key", "appointments",
                                                                "no_show")]
    items = [(_(c["label"]), _num(total.get(c["key"]))) for c in steps]
    appointments = _num(total.get("appointments"))
    chart = charts.horizontal_bars(
        items, total=appointments, ident="funnel",
        title=_("Where patients are lost"),
        desc=_("Of %(n)s appointments with a link, how many reached each step.") % {
            "n": int(appointments)})
    kinds = _kinds(FUNNEL_COLUMNS)
    cards = [(_("Appointments with a link"), str(int(appointments))),
             (_("Connected ≥ 1 minute"), f'{_num(total.get("connected_1min")):g}'),
             (_("No-shows"), f'{_num(total.get("no_show")):g}')]
    return {"cards": cards, "main": shown(report.by_department, kinds),
            "main_title": _("By department"),
            "charts": [{"svg": chart, "title": _("The funnel"),
                        "table": {"columns": [{"label": _("Step")}, {"label": _("Patients")}],
                                  "rows": [[label, f"{v:g}"] for label, v in items]},
                        "legend": []}],
            "extra": [(_("By language"), shown(report.by_language, kinds))]}


async def _devicetests(session: Any, ctx: Any, query: service.Query,
                       principal: Any) -> dict[str, Any]:
    report = await service.devicetests(session, query=query, caller=principal)
    share = report.passed / report.tests if report.tests else None
    cards = [(_("Device tests"), str(report.tests)), (_("All checks passed"), str(report.passed)),
             (_("Pass rate"), service.show(share, "percent") or "—")]
    return {"cards": cards, "main": shown(report.rows, _kinds(DEVICETEST_COLUMNS)),
            "main_title": _("Each test (outcomes only; nothing about the person)"),
            "charts": [], "extra": []}


BUILDERS = {"usage": _usage, "quality": _quality, "messages": _messages, "funnel": _funnel,
            "devicetests": _devicetests}


@router.get("/portal/reports")
async def reports_home(principal: PrincipalDep) -> Response:
    service.may_read(principal)
    return see_other("/portal/reports/usage")


@router.get("/portal/reports/{name}.csv")
async def report_csv(name: ReportName, request: Request, session: SessionDep, ctx: CtxDep,
                     principal: PrincipalDep) -> Response:
    """The report's main table as CSV; the download is in the audit log."""
    language = service.use_language(request.headers.get("accept-language"))
    query = await service.parse(session, settings=ctx.settings, caller=principal,
                                params=_params(request))
    filename = await service.audit_csv(session, name=name, query=query, caller=principal)
    body = service.csv_stream(ctx.db.read, name=name, settings=ctx.settings, query=query,
                              caller=principal, language=language)
    return StreamingResponse(body, media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store"})


@router.get("/portal/reports/{name}")
async def report_page(name: ReportName, request: Request, session: SessionDep, ctx: CtxDep,
                      principal: PrincipalDep) -> Response:
    service.use_language(request.headers.get("accept-language"))
    service.may_read(principal)
    query = await service.parse(session, settings=ctx.settings, caller=principal,
                                params=_params(request))
    content = await BUILDERS[name](session, ctx, query, principal)
    qs = query.query_string()
    return render(request, "reports/report.html", {
        "name": name, "title": _(TITLES[name]), "titles": TITLES, "names": REPORT_NAMES,
        "filters": query.filters, "choices": await service.choices(session, caller=principal),
        "query": qs, "csv_url": f"/portal/reports/{name}.csv" + (f"?{qs}" if qs else ""),
        "json_url": f"/api/reports/{name}" + (f"?{qs}" if qs else ""),
        "patient_refs": await service.shows_patient_refs(session, caller=principal),
        **content,
    }, principal=principal)


@router.post("/portal/reports/settings")
async def report_settings(request: Request, session: SessionDep,
                          principal: PrincipalDep) -> Response:
    """The organisation admin turns patient references in reports on or off."""
    form = await request.form()
    async with savepoint(session):
        await service.set_patient_refs(session, caller=principal,
                                       on=form_bool(form, "show_patient_refs"))
    back = str(form.get("back") or "/portal/reports/usage")
    if not back.startswith("/portal/reports/"):
        back = "/portal/reports/usage"
    return see_other(back)


__all__ = ["REPORT_NAMES", "router"]
