"""The reports' rules: who may see them, what the filters mean, how values are shown, the
CSV (RFC 4180, UTF-8 with a BOM so spreadsheets read it as UTF-8) and its audit entry.

The numbers are computed by SQL in :mod:`openvisit.reports.repository`; this module only
turns filters into a :class:`~openvisit.reports.repository.Scope` (local days → UTC), and
each result row into the cells of the page, the CSV and the JSON.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import Row, Select
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit import audit, i18n
from openvisit.config import Settings
from openvisit.crypto import FieldCipher
from openvisit.errors import InvalidInput, NotFound
from openvisit.i18n import gettext as _
from openvisit.logs import get_logger
from openvisit.models.base import utcnow
from openvisit.models.choices import ENVIRONMENTS, is_one_of
from openvisit.privacy.refs import PatientRefs
from openvisit.reports import repository as repo
from openvisit.reports.schemas import (
    DEVICETEST_COLUMNS,
    FUNNEL_COLUMNS,
    MESSAGE_COLUMNS,
    PATIENT_REFS_COLUMN,
    QUALITY_COLUMNS,
    USAGE_COLUMNS,
    Column,
    DeviceTestReport,
    Filters,
    FunnelReport,
    MessageReport,
    QualityReport,
    QualitySummary,
    ReportName,
    Table,
    UsageReport,
    UsageSummary,
    table,
)

log = get_logger(__name__)

#: CSV downloads are audited under this action.
CSV_ACTION = "report.csv_downloaded"
READ_ROLES = ("reporter", "org_admin")


class Caller(Protocol):
    """The signed-in person or API token (the portal's principal)."""

    @property
    def organisation_id(self) -> uuid.UUID: ...

    @property
    def actor(self) -> str: ...

    def require(self, *roles: str, doing: str) -> None: ...


def may_read(caller: Caller, *, doing: str = "see reports") -> None:
    caller.require(*READ_ROLES, doing=doing)


def use_language(accept_language: str | None) -> str:
    """Reports speak the reader's browser language (the portal has no setting of its own)."""
    language = i18n.negotiate(accept_language=accept_language)
    i18n.activate(language)
    return language


# ------------------------------------------------------------------ filters


@dataclass(frozen=True)
class Query:
    """Parsed filters, the SQL scope, the local calendar and the organisation's zone."""

    filters: Filters
    scope: repo.Scope
    zone: ZoneInfo
    days: list[tuple[str, datetime, datetime]]
    months: list[tuple[str, datetime, datetime]]
    #: Opens the sealed patient references of the usage report's opt-in column.
    refs: PatientRefs

    def query_string(self) -> str:
        from urllib.parse import urlencode
        return urlencode({k: v for k, v in self.filters.model_dump(mode="json").items()
                          if v not in (None, "")})


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError):
        return ZoneInfo("UTC")


def _day(text: str | None, *, field: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInput(_("Enter the date as YYYY-MM-DD."), details={"field": field}) from exc


def _local_start(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


async def parse(session: AsyncSession, *, settings: Settings, caller: Caller,
                params: Mapping[str, str | None], now: datetime | None = None) -> Query:
    """Filters from the query string. Dates are the organisation's local days (``until``
    included); the default is this month so far. Raises :class:`InvalidInput` naming the
    field for a malformed date, an inverted or too long range, or an unknown environment."""
    org = await repo.organisation(session, caller.organisation_id)
    if org is None:
        raise NotFound(_("This organisation no longer exists."))
    zone = _zone(org.timezone)
    today = (now or utcnow()).astimezone(zone).date()
    since = _day(params.get("since"), field="since") or today.replace(day=1)
    until = _day(params.get("until"), field="until") or max(today, since)
    if until < since:
        raise InvalidInput(_("The end date is before the start date."),
                           details={"field": "until"})
    if (until - since).days + 1 > settings.report_max_days:
        raise InvalidInput(_("A report covers at most %(n)s days; choose a shorter range.")
                           % {"n": settings.report_max_days}, details={"field": "since"})
    environment = params.get("environment") or None
    if environment is not None and not is_one_of(environment, ENVIRONMENTS):
        raise InvalidInput(_("Choose the test or the production environment."),
                           details={"field": "environment"})
    endpoint_text = params.get("endpoint") or None
    endpoint_id: uuid.UUID | None = None
    if endpoint_text is not None:
        try:
            endpoint_id = uuid.UUID(endpoint_text)
        except ValueError as exc:
            raise InvalidInput(_("Choose an EHR endpoint from the list."),
                               details={"field": "endpoint"}) from exc
    department = (params.get("department") or "").strip() or None
    staff = (params.get("staff") or "").strip() or None
    days = [((since + timedelta(n)).isoformat(), _local_start(since + timedelta(n), zone),
             _local_start(since + timedelta(n + 1), zone))
            for n in range((until - since).days + 1)]
    months: list[tuple[str, datetime, datetime]] = []
    first = since.replace(day=1)
    while first <= until:
        following = (first + timedelta(days=32)).replace(day=1)
        months.append((first.isoformat()[:7], _local_start(first, zone),
                       _local_start(following, zone)))
        first = following
    scope = repo.Scope(organisation_id=caller.organisation_id, start=days[0][1],
                       end=days[-1][2], department=department, staff=staff,
                       endpoint_id=endpoint_id, environment=environment)
    filters = Filters(since=since, until=until, department=department, staff=staff,
                      endpoint=str(endpoint_id) if endpoint_id else None,
                      environment=environment)
    return Query(filters=filters, scope=scope, zone=zone, days=days, months=months,
                 refs=PatientRefs(FieldCipher.from_settings(settings)))


async def choices(session: AsyncSession, *, caller: Caller) -> dict[str, Any]:
    """What the filter form offers: departments, staff ids and endpoints of the organisation."""
    return {
        "departments": await repo.departments(session, caller.organisation_id),
        "staff": await repo.staff_ids(session, caller.organisation_id),
        "endpoints": await repo.endpoints(session, caller.organisation_id),
        "environments": ENVIRONMENTS,
    }


# ------------------------------------------------------------------ cells


def show(value: Any, kind: str) -> str:
    """A cell as people read it (the page and the CSV alike)."""
    if value is None or value == "":
        return ""
    if kind == "time" and isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if kind == "seconds":
        seconds = max(0, round(float(value)))
        return f"{seconds // 60}:{seconds % 60:02d}"
    if kind == "number":
        number = float(value)
        return f"{number:.0f}" if number >= 100 or number == int(number) else f"{number:.1f}"
    if kind == "yesno":
        return _("yes") if value else _("no")
    if kind == "percent":
        return f"{float(value) * 100:.1f} %"
    return str(value)


def _local(value: datetime | None, zone: ZoneInfo) -> datetime | None:
    return value.astimezone(zone) if value is not None else None


def _open_refs(sealed: str | None, refs: PatientRefs) -> str | None:
    """The visit's patient references in clear, sorted (the SQL joins sealed copies)."""
    if not sealed:
        return None
    return ", ".join(sorted({ref for enc in sealed.split(", ")
                             if (ref := refs.open(enc.strip()))}))


def usage_cells(row: Row[Any], *, zone: ZoneInfo, limit: int | None,
                refs: PatientRefs | None = None) -> dict[str, Any]:
    m = row._mapping
    started = _local(m["started_at"], zone)
    ended_by = m["ended_by"] or ("system" if m["ended_at"] is not None else "")
    if limit is None:
        allocation = "no limit"
    else:
        allocation = "over" if m["over_allocation"] else "within"
    out = {
        "visit_id": str(m["visit_id"]), "date": started.date().isoformat() if started else None,
        "department": m["department"], "staff": m["staff"],
        "scheduled_at": _local(m["scheduled_at"], zone), "started_at": started,
        "duration_s": _round(m["duration_s"]),
        "n_provider": int(m["n_provider"]), "n_patient": int(m["n_patient"]),
        "n_interpreter": int(m["n_interpreter"]), "n_guest": int(m["n_guest"]),
        "lobby_wait_s": _round(m["lobby_wait_s"]), "ended_by": ended_by,
        "month_no": int(m["month_no"]), "allocation": allocation,
        "endpoint": m["endpoint"], "environment": m["environment"],
    }
    if "patient_refs" in m and refs is not None:
        out["patient_refs"] = _open_refs(m["patient_refs"], refs)
    return out


def _round(value: Any, digits: int = 1) -> float | None:
    return None if value is None else round(float(value), digits)


def quality_cells(row: Row[Any], *, zone: ZoneInfo) -> dict[str, Any]:
    m = row._mapping
    started = _local(m["started_at"], zone)
    out: dict[str, Any] = {
        "visit_id": str(m["visit_id"]), "date": started.date().isoformat() if started else None,
        "department": m["department"], "participant": m["label"] or m["role"],
        "samples": int(m["samples"]),
        "resolution": f"{m['width']}×{m['height']}" if m["width"] and m["height"] else None,
        "media_path": m["media_path"], "poor": bool(m["poor"]),
    }
    for metric in repo.METRICS:
        for p in ("median", "p95"):
            out[f"{metric}_{p}"] = _round(m[f"{metric}_{p}"])
    return out


def message_cells(row: Row[Any], *, zone: ZoneInfo) -> dict[str, Any]:
    m = row._mapping
    return {"created_at": _local(m["created_at"], zone), "template": m["template"],
            "channel": m["channel"], "recipient_masked": m["recipient_masked"],
            "provider": m["provider"], "status": m["status"], "error": m["error"],
            "receipt_at": _local(m["receipt_at"], zone), "language": m["language"],
            "department": m["department"]}


def funnel_cells(row: Row[Any], *, blank: str) -> dict[str, Any]:
    m = row._mapping
    out: dict[str, Any] = {"key": m["key"] or blank, "appointments": int(m["appointments"])}
    for step in (*repo.FUNNEL_STEPS, "no_show"):
        out[step] = int(m[step])
    return out


def devicetest_cells(row: Row[Any], *, zone: ZoneInfo,
                     endpoints: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    m = row._mapping
    data: dict[str, Any] = m["data"] if isinstance(m["data"], dict) else {}
    raw_call = data.get("call")
    call: dict[str, Any] = raw_call if isinstance(raw_call, dict) else {}
    name, environment = endpoints.get(str(data.get("endpoint_id")), ("", ""))
    width, height = call.get("frame_width"), call.get("frame_height")
    return {"at": _local(m["at"], zone), "endpoint": name, "environment": environment,
            "passed": bool(data.get("passed")), "camera": data.get("camera"),
            "microphone": data.get("microphone"), "speaker": data.get("speaker"),
            "call": call.get("status"), "rtt_ms": _round(call.get("rtt_ms")),
            "packet_loss_pct": _round(call.get("packet_loss_pct")),
            "resolution": f"{width}×{height}" if width and height else None,
            "candidate_type": call.get("candidate_type"), "language": data.get("language")}


async def _devicetest_plan(session: AsyncSession, query: Query, caller: Caller
                           ) -> tuple[Select[Any], Callable[[Row[Any]], dict[str, Any]]]:
    endpoints = await repo.endpoint_facts(session, caller.organisation_id)
    chosen: list[str] | None = None
    scope = query.scope
    if scope.endpoint_id is not None or scope.environment is not None:
        chosen = [eid for eid, (_name, env) in endpoints.items()
                  if (scope.endpoint_id is None or eid == str(scope.endpoint_id))
                  and (scope.environment is None or env == scope.environment)]
    stmt = repo.devicetest_rows(scope, endpoint_ids=chosen)
    return stmt, lambda r: devicetest_cells(r, zone=query.zone, endpoints=endpoints)


async def devicetests(session: AsyncSession, *, query: Query,
                      caller: Caller) -> DeviceTestReport:
    """The device tests patients ran from the clinic's links, newest last."""
    may_read(caller)
    await repo.prepare_report(session)
    stmt, cells = await _devicetest_plan(session, query, caller)
    rows = [cells(r) for r in await repo.all_rows(session, stmt)]
    return DeviceTestReport(filters=query.filters, rows=table(DEVICETEST_COLUMNS, rows),
                            tests=len(rows), passed=sum(1 for r in rows if r["passed"]))


# ------------------------------------------------------------------ the reports


def usage_columns(patient_refs: bool) -> tuple[Column, ...]:
    return (*USAGE_COLUMNS, PATIENT_REFS_COLUMN) if patient_refs else USAGE_COLUMNS


SUMMARY_COLUMNS = (Column("key", "Group"), Column("visits", "Visits", "int"),
                   Column("duration_s", "Total duration", "seconds"),
                   Column("avg_wait_s", "Average lobby wait", "seconds"),
                   Column("over_allocation", "Over allocation", "int"))


def _summary_cells(row: Row[Any], key: str) -> dict[str, Any]:
    m = row._mapping
    return {"key": m[key] if key in m else "", "visits": int(m["visits"]),
            "duration_s": _round(m["duration_s"]), "avg_wait_s": _round(m["avg_wait_s"]),
            "over_allocation": int(m["over_allocation"])}


async def usage_statement(session: AsyncSession, query: Query, caller: Caller
                           ) -> tuple[Select[Any], int | None, bool]:
    limit = await repo.allocation_limit(session, caller.organisation_id)
    refs = await repo.shows_patient_refs(session, caller.organisation_id)
    stmt = repo.usage_rows(query.scope, months=query.months, limit=limit, patient_refs=refs)
    return stmt, limit, refs


async def usage(session: AsyncSession, *, query: Query, caller: Caller) -> UsageReport:
    may_read(caller)
    await repo.prepare_report(session)
    stmt, limit, refs = await usage_statement(session, query, caller)
    found, total, by_dept, by_staff = await repo.usage_page(session, stmt, query.scope)
    rows = [usage_cells(r, zone=query.zone, limit=limit, refs=query.refs) for r in found]
    t = total._mapping
    return UsageReport(
        filters=query.filters, rows=table(usage_columns(refs), rows),
        totals=UsageSummary(visits=int(t["visits"]), duration_s=_round(t["duration_s"]) or 0.0,
                            avg_lobby_wait_s=_round(t["avg_wait_s"]),
                            over_allocation=int(t["over_allocation"]),
                            allocation_limit=limit),
        by_department=table(SUMMARY_COLUMNS, [_summary_cells(r, "key") for r in by_dept]),
        by_staff=table(SUMMARY_COLUMNS, [_summary_cells(r, "key") for r in by_staff]))


def _thresholds(settings: Settings) -> dict[str, float]:
    return {"rtt_ms": settings.report_poor_rtt_ms, "jitter_ms": settings.report_poor_jitter_ms,
            "packet_loss_pct": settings.report_poor_loss_pct}


def _quality_statement(session: AsyncSession, settings: Settings, query: Query
                       ) -> Select[Any]:
    return repo.quality_rows(query.scope, poor_rtt_ms=settings.report_poor_rtt_ms,
                             poor_jitter_ms=settings.report_poor_jitter_ms,
                             poor_loss_pct=settings.report_poor_loss_pct,
                             ordered_sets=repo.ordered_sets(session))


PER_DAY_COLUMNS = (Column("day", "Day", "date"), Column("visits", "Visits with samples", "int"),
                   Column("poor_visits", "Visits with poor quality", "int"))


async def quality(session: AsyncSession, *, settings: Settings, query: Query,
                  caller: Caller) -> QualityReport:
    may_read(caller)
    await repo.prepare_report(session)
    stmt = _quality_statement(session, settings, query)
    found, s, per_day = await repo.quality_page(session, stmt, query.days)
    rows = [quality_cells(r, zone=query.zone) for r in found]
    visits = int(s["visits"] or 0)
    return QualityReport(
        filters=query.filters, rows=table(QUALITY_COLUMNS, rows),
        summary=QualitySummary(
            visits=visits, poor_visits=int(s["poor_visits"] or 0),
            poor_share=round(int(s["poor_visits"] or 0) / visits, 4) if visits else None,
            participants=int(s["participants"] or 0),
            poor_participants=int(s["poor_participants"] or 0),
            thresholds=_thresholds(settings)),
        per_day=table(PER_DAY_COLUMNS, [{"day": r.day, "visits": int(r.visits),
                                          "poor_visits": int(r.poor_visits or 0)}
                                         for r in per_day]))


CHANNEL_COLUMNS = (Column("channel", "Channel"), Column("messages", "Messages", "int"),
                   Column("sent", "Accepted by the provider", "int"),
                   Column("delivered", "Delivered", "int"),
                   Column("failed", "Undelivered or failed", "int"),
                   Column("suppressed", "Not sent (opted out, no consent…)", "int"),
                   Column("receipts", "Delivery receipts", "int"))


async def messages(session: AsyncSession, *, query: Query, caller: Caller) -> MessageReport:
    may_read(caller)
    await repo.prepare_report(session)
    stmt = repo.message_rows(query.scope)
    rows = [message_cells(r, zone=query.zone) for r in await repo.all_rows(session, stmt)]
    by_channel, opt_outs = await repo.message_summary(session, stmt, query.scope)
    channel_rows = [{k: (int(v) if k != "channel" else v) for k, v in r._mapping.items()}
                    for r in by_channel]
    delivered = sum(r["delivered"] for r in channel_rows)
    outcomes = delivered + sum(r["failed"] for r in channel_rows)
    return MessageReport(
        filters=query.filters, rows=table(MESSAGE_COLUMNS, rows),
        by_channel=table(CHANNEL_COLUMNS, channel_rows),
        delivery_rate=round(delivered / outcomes, 4) if outcomes else None, opt_outs=opt_outs)


async def funnel(session: AsyncSession, *, query: Query, caller: Caller) -> FunnelReport:
    may_read(caller)
    await repo.prepare_report(session)
    total, by_department, by_language = await repo.funnel_groups(
        session, repo.funnel_rows(query.scope))

    def by(found: Sequence[Row[Any]], blank: str) -> Table:
        return table(FUNNEL_COLUMNS, [funnel_cells(r, blank=blank) for r in found])

    return FunnelReport(filters=query.filters, total=by(total, _("All")),
                        by_department=by(by_department, _("(no department)")),
                        by_language=by(by_language, _("(not known)")))


async def charts(session: AsyncSession, *, name: ReportName, settings: Settings, query: Query,
                 caller: Caller) -> dict[str, Any]:
    """The data behind a page's charts (the funnel and quality pages reuse their report)."""
    may_read(caller)
    await repo.prepare_report(session)
    if name == "usage":
        stmt, _limit, _refs = await usage_statement(session, query, caller)
        per_day = await repo.visits_per_day(session, query.scope, query.days)
        waits = {int(r.bucket): int(r.visits)
                 for r in await repo.wait_distribution(session, stmt)}
        return {"per_day": [(r.day, r.department, int(r.visits)) for r in per_day],
                "waits": [(label, waits.get(n, 0))
                          for n, (label, _bound) in enumerate(repo.WAIT_BUCKETS)]}
    return {}


# ------------------------------------------------------------------ CSV


def _csv_line(values: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(values)
    return buffer.getvalue()


async def csv_stream(app_read: Callable[[], Any], *, name: ReportName, settings: Settings,
                     query: Query, caller: Caller, language: str) -> AsyncIterator[bytes]:
    """The report's rows as CSV, read in batches through its own read-only session (the
    request's transaction has ended by the time the body is sent), with the headings in the
    ``language`` of the request (the body may be sent from another context)."""
    i18n.activate(language)
    async with app_read() as session:
        await repo.prepare_report(session)
        columns, statement, cells = await _csv_plan(session, name=name, settings=settings,
                                                    query=query, caller=caller)
        yield ("\ufeff" + _csv_line([_(c.label) for c in columns])).encode("utf-8")
        chunk: list[str] = []
        if statement is None:
            for cell_row in cells:
                chunk.append(_csv_line([show(cell_row.get(c.key), c.kind) for c in columns]))
        else:
            async for row in repo.stream_rows(session, statement):
                cell_row = cells(row)
                chunk.append(_csv_line([show(cell_row.get(c.key), c.kind) for c in columns]))
                if len(chunk) >= 500:
                    yield "".join(chunk).encode("utf-8")
                    chunk = []
        if chunk:
            yield "".join(chunk).encode("utf-8")


async def _csv_plan(session: AsyncSession, *, name: ReportName, settings: Settings,
                    query: Query, caller: Caller) -> tuple[tuple[Column, ...], Any, Any]:
    if name == "usage":
        stmt, limit, refs = await usage_statement(session, query, caller)
        return usage_columns(refs), stmt, lambda r: usage_cells(r, zone=query.zone, limit=limit,
                                                                  refs=query.refs)
    if name == "quality":
        return (QUALITY_COLUMNS, _quality_statement(session, settings, query),
                lambda r: quality_cells(r, zone=query.zone))
    if name == "messages":
        return MESSAGE_COLUMNS, repo.message_rows(query.scope), (
            lambda r: message_cells(r, zone=query.zone))
    if name == "devicetests":
        stmt, cells = await _devicetest_plan(session, query, caller)
        return DEVICETEST_COLUMNS, stmt, cells
    report = await funnel(session, query=query, caller=caller)
    rows = [*report.total.rows, *[{**r, "key": f"{_('Department')}: {r['key']}"}
                                  for r in report.by_department.rows],
            *[{**r, "key": f"{_('Language')}: {r['key']}"} for r in report.by_language.rows]]
    return FUNNEL_COLUMNS, None, rows


async def audit_csv(session: AsyncSession, *, name: ReportName, query: Query,
                    caller: Caller) -> str:
    """Record the download in the audit log (in the caller's transaction); the file name."""
    may_read(caller, doing="download reports")
    await audit.record(session, actor=caller.actor, action=CSV_ACTION, object_type="report",
                       object_id=name, organisation_id=caller.organisation_id,
                       after={"filters": query.filters.model_dump(mode="json")})
    log.info("report_csv", report=name, organisation_id=str(caller.organisation_id))
    return f"openvisit-{name}-{query.filters.since}-{query.filters.until}.csv"


# ------------------------------------------------------------------ settings


async def set_patient_refs(session: AsyncSession, *, caller: Caller, on: bool) -> None:
    """The organisation admin's switch: show patient references in the reports, or counts."""
    caller.require("org_admin", doing="change what the reports show")
    org = await repo.organisation(session, caller.organisation_id)
    if org is None:
        raise NotFound(_("This organisation no longer exists."))
    before = {"show_patient_refs": org.show_patient_refs}
    org.show_patient_refs = on
    await session.flush()
    await audit.record(session, actor=caller.actor, action="report.patient_refs_changed",
                       object_type="organisation", object_id=str(org.id),
                       organisation_id=org.id, before=before,
                       after={"show_patient_refs": on})


async def shows_patient_refs(session: AsyncSession, *, caller: Caller) -> bool:
    return await repo.shows_patient_refs(session, caller.organisation_id)
