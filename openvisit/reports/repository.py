"""Every query of the reports: SQL aggregates (GROUP BY, window functions), never a loop over
rows in Python. The same statements run on SQLite and PostgreSQL; the two places where the
dialects differ (seconds between two timestamps, joining strings) are small compiled
functions below. Calendar buckets (days, months) are the organisation's local days, passed in
as a small table of UTC bounds, so daylight-saving changes fall where they really are.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    Integer,
    Row,
    RowMapping,
    Select,
    String,
    Subquery,
    and_,
    case,
    cast,
    exists,
    func,
    literal,
    literal_column,
    null,
    or_,
    select,
    text,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from openvisit.models import (
    Appointment,
    EhrEndpoint,
    MessageLog,
    OptOut,
    Organisation,
    Participant,
    QualitySample,
    Visit,
    VisitEvent,
)
from openvisit.models.base import UTCDateTime

# ------------------------------------------------------------------ portable functions


class seconds_between(FunctionElement[float]):
    """``seconds_between(a, b)``: b − a in seconds (NULL if either is NULL)."""

    type = Float()
    inherit_cache = True
    name = "seconds_between"


@compiles(seconds_between)
def _seconds_pg(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    a, b = list(element.clauses)
    return (f"EXTRACT(EPOCH FROM ({compiler.process(b, **kw)} - "
            f"{compiler.process(a, **kw)}))::float")


@compiles(seconds_between, "sqlite")
def _seconds_sqlite(element: seconds_between, compiler: SQLCompiler, **kw: Any) -> str:
    a, b = list(element.clauses)
    return (f"((julianday({compiler.process(b, **kw)}) - "
            f"julianday({compiler.process(a, **kw)})) * 86400.0)")


class joined(FunctionElement[str]):
    """``joined(x)``: the group's values joined by ", ", in order (PostgreSQL sorts them;
    SQLite's group_concat keeps the order of its input, which the callers sort)."""

    type = String()
    inherit_cache = True
    name = "joined"


@compiles(joined)
def _joined_pg(element: joined, compiler: SQLCompiler, **kw: Any) -> str:
    (x,) = list(element.clauses)
    value = compiler.process(x, **kw)
    return f"string_agg({value}, ', ' ORDER BY {value})"


@compiles(joined, "sqlite")
def _joined_sqlite(element: joined, compiler: SQLCompiler, **kw: Any) -> str:
    (x,) = list(element.clauses)
    return f"group_concat({compiler.process(x, **kw)}, ', ')"


def _rank(n: ColumnElement[int], percent: int) -> ColumnElement[int]:
    """Nearest-rank percentile position ⌈percent·n/100⌉ in integer arithmetic."""
    return (n * percent + 99) // 100


def _flag(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return case((condition, 1), else_=0)


# ------------------------------------------------------------------ filters


@dataclass(frozen=True)
class Scope:
    """What every report is narrowed to (the service builds it from the filters)."""

    organisation_id: uuid.UUID
    start: datetime
    end: datetime
    department: str | None = None
    staff: str | None = None
    endpoint_id: uuid.UUID | None = None
    environment: str | None = None

    @property
    def narrowed(self) -> bool:
        """Whether any filter needs the appointment (ad-hoc visits have none)."""
        return any(v is not None for v in (self.department, self.staff, self.endpoint_id,
                                           self.environment))


def calendar(buckets: Sequence[tuple[str, datetime, datetime]], name: str) -> Subquery:
    """A table (key, lo, hi, n) of half-open UTC intervals: local days or months; ``n`` is
    the bucket's position (0, 1, …)."""
    parts = [select(literal(key, String()).label("key"), literal(lo, UTCDateTime()).label("lo"),
                    literal(hi, UTCDateTime()).label("hi"), literal(n).label("n"))
             for n, (key, lo, hi) in enumerate(buckets)]
    if len(parts) == 1:
        return parts[0].subquery(name)
    return union_all(*parts).subquery(name)


def day_of(at: ColumnElement[Any], days: Sequence[tuple[str, datetime, datetime]],
           name: str) -> tuple[ColumnElement[Any], list[tuple[Subquery, ColumnElement[bool]]]]:
    """The local day (its key) an instant falls on, by equality joins: ``at``'s day is
    within one of the 24-hour count from the first day's start (a local day is 23-25 hours
    long; the offset drifts by at most a few hours over a range), so three joins on ``n``
    (hashable, unlike ``lo <= at < hi`` against every day, a nested loop of rows × days:
    2.9 s of the year's quality page) and a check of the true bounds find it. Returns the
    key and the (table, condition) pairs to outer-join."""
    start = days[0][1]
    # CAST rounds on PostgreSQL and truncates on SQLite: either way within one of the day.
    approx = cast(seconds_between(literal(start, UTCDateTime()), at) / 86400, Integer)
    joins: list[tuple[Subquery, ColumnElement[bool]]] = []
    whens: list[tuple[ColumnElement[bool], ColumnElement[Any]]] = []
    for shift in (0, -1, 1):
        cal = calendar(days, f"{name}_{shift + 1}")
        joins.append((cal, cal.c.n == approx + shift))
        whens.append((and_(at >= cal.c.lo, at < cal.c.hi), cal.c.key))
    return case(*whens, else_=None), joins


def _appointment_filters(scope: Scope) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if scope.department is not None:
        where.append(Appointment.department == scope.department)
    if scope.endpoint_id is not None:
        where.append(Appointment.endpoint_id == scope.endpoint_id)
    if scope.environment is not None:
        where.append(EhrEndpoint.environment == scope.environment)
    return where


def _visits(scope: Scope) -> Subquery:
    """The organisation's visits that started in the range, with their appointment's facts."""
    where: list[ColumnElement[bool]] = [
        Visit.organisation_id == scope.organisation_id, Visit.kind == "visit",
        Visit.started_at >= scope.start, Visit.started_at < scope.end,
        *_appointment_filters(scope)]
    if scope.staff is not None:
        where.append(exists().where(Participant.visit_id == Visit.id,
                                    Participant.role == "provider",
                                    Participant.ehr_user_id == scope.staff))
    stmt = (select(Visit.id, Visit.started_at, Visit.ended_at, Visit.media_backend,
                   Appointment.department, Appointment.start_at.label("scheduled_at"),
                   EhrEndpoint.name.label("endpoint"), EhrEndpoint.environment)
            .outerjoin(Appointment, Appointment.id == Visit.appointment_id)
            .outerjoin(EhrEndpoint, EhrEndpoint.id == Appointment.endpoint_id)
            .where(*where))
    return stmt.subquery("scope")


# ------------------------------------------------------------------ usage


async def allocation_limit(session: AsyncSession, organisation_id: uuid.UUID) -> int | None:
    org = await session.get(Organisation, organisation_id)
    return org.allocation_limit if org else None


async def shows_patient_refs(session: AsyncSession, organisation_id: uuid.UUID) -> bool:
    org = await session.get(Organisation, organisation_id)
    return bool(org and org.show_patient_refs)


def usage_rows(scope: Scope, *, months: Sequence[tuple[str, datetime, datetime]],
               limit: int | None, patient_refs: bool) -> Select[Any]:
    """One row per visit (see :data:`openvisit.reports.schemas.USAGE_COLUMNS`).

    The month's running count is over *all* the organisation's visits of that calendar month
    (the allocation is the organisation's), whatever the other filters narrow the rows to.
    """
    cal = calendar(months, "months")
    counted = (select(Visit.id.label("visit_id"),
                      func.row_number().over(partition_by=cal.c.key,
                                             order_by=(Visit.started_at, Visit.id))
                      .label("month_no"))
               .join(cal, and_(Visit.started_at >= cal.c.lo, Visit.started_at < cal.c.hi))
               .where(Visit.organisation_id == scope.organisation_id, Visit.kind == "visit")
               .subquery("counted"))
    v = _visits(scope)
    # Everything per visit is aggregated once over the range's rows (GROUP BY visit_id of
    # the range's seats, and of its events), then joined: no `IN (scope)` sub-select or
    # per-column aggregate over the whole seat and event tables.
    seat, ev = Participant, VisitEvent
    # The range's seats, read once (a CTE: the seat counts and the events both use them).
    seat_cols: list[Any] = [seat.id, seat.visit_id, seat.role, seat.admitted_at,
                            seat.ehr_user_id]
    if patient_refs:
        seat_cols.append(seat.patient_ref_enc)
    seat_range = _visits(scope)
    range_seats = (select(*seat_cols).join(seat_range, seat_range.c.id == seat.visit_id)
                   .cte("range_seats"))
    rs = range_seats.c
    # Ordered by (visit, EHR user id): SQLite's group_concat keeps that order.
    ranged = (select(range_seats).order_by(rs.visit_id, rs.ehr_user_id)
              .subquery("ranged_seats"))
    aggregates: list[Any] = [
        *[func.sum(_flag(and_(ranged.c.role == role, ranged.c.admitted_at.is_not(None))))
          .label(f"n_{role}") for role in ("provider", "patient", "interpreter", "guest")],
        joined(case((ranged.c.role == "provider", ranged.c.ehr_user_id))).label("staff")]
    if patient_refs:
        # Sealed copies (privacy.refs): the service opens and sorts them.
        aggregates.append(joined(case((ranged.c.role == "patient", ranged.c.patient_ref_enc)))
                          .label("patient_refs"))
    seats = (select(ranged.c.visit_id, *aggregates)
             .group_by(ranged.c.visit_id).subquery("seats"))
    # One pass over the range's events: the patients' first join and first admission (the
    # lobby wait) and who ended the visit.
    event_range = _visits(scope)
    patient_event = and_(rs.role == "patient", rs.visit_id == ev.visit_id)
    events = (select(ev.visit_id,
                     func.min(case((and_(ev.kind == "joined", patient_event), ev.at)))
                     .label("first_join"),
                     func.min(case((and_(ev.kind == "admitted", patient_event), ev.at)))
                     .label("first_admit"),
                     func.max(case((ev.kind == "ended", ev.data["by_role"].as_string())))
                     .label("ended_by"))
              .join(event_range, event_range.c.id == ev.visit_id)
              .outerjoin(range_seats, rs.id == ev.participant_id)
              .where(ev.kind.in_(("joined", "admitted", "ended")))
              .group_by(ev.visit_id).subquery("events"))
    over: ColumnElement[Any] = (counted.c.month_no > limit) if limit is not None else literal(
        False)
    columns: list[Any] = [
        v.c.id.label("visit_id"), v.c.started_at, v.c.department, seats.c.staff,
        v.c.scheduled_at, v.c.ended_at,
        seconds_between(v.c.started_at, v.c.ended_at).label("duration_s"),
        *[func.coalesce(seats.c[f"n_{r}"], 0).label(f"n_{r}")
          for r in ("provider", "patient", "interpreter", "guest")],
        seconds_between(events.c.first_join, events.c.first_admit).label("lobby_wait_s"),
        events.c.ended_by, counted.c.month_no, _flag(over).label("over_allocation"),
        v.c.endpoint, v.c.environment,
    ]
    if patient_refs:
        columns.append(seats.c.patient_refs)
    stmt = (select(*columns)
            .join(counted, counted.c.visit_id == v.c.id)
            .outerjoin(seats, seats.c.visit_id == v.c.id)
            .outerjoin(events, events.c.visit_id == v.c.id))
    return stmt.order_by(v.c.started_at, v.c.id)


async def usage_page(session: AsyncSession, rows: Select[Any], scope: Scope
                     ) -> tuple[Sequence[Row[Any]], Row[Any], Sequence[Row[Any]],
                                Sequence[Row[Any]]]:
    """The rows (in their order), the totals, per department and per staff member (a visit
    with two clinicians counts for each of them). A summary row's group is its ``key``; its
    ``duration_s`` and ``over_allocation`` are the sums of its visits', with ``visits`` and
    ``avg_wait_s``.

    One statement: the rows are a common table expression read by the rows part and the
    three groupings (PostgreSQL computes a CTE named more than once a single time), so the
    report's rows are computed once per page, not once more per summary."""
    sub = rows.order_by(None).cte("usage")
    seat = Participant
    who = (select(seat.visit_id, seat.ehr_user_id)
           .where(seat.role == "provider", seat.ehr_user_id.is_not(None))
           .subquery("who"))
    names = list(sub.c.keys())

    def summary(part: int, key: ColumnElement[Any]) -> Select[Any]:
        values: dict[str, Any] = {
            "duration_s": func.coalesce(func.sum(sub.c.duration_s), 0),
            "over_allocation": func.coalesce(func.sum(sub.c.over_allocation), 0)}
        return select(literal(part).label("part"),
                      *[values.get(name, null()).label(name) for name in names],
                      key.label("key"), func.count().label("visits"),
                      func.avg(sub.c.lobby_wait_s).label("avg_wait_s")).select_from(sub)

    dept = func.coalesce(sub.c.department, "")
    by_staff = (summary(3, who.c.ehr_user_id)
                .join(who, who.c.visit_id == sub.c.visit_id).group_by(who.c.ehr_user_id))
    if scope.staff is not None:
        by_staff = by_staff.where(who.c.ehr_user_id == scope.staff)
    every = union_all(
        select(literal(0).label("part"), *[sub.c[name] for name in names],
               null().label("key"), null().label("visits"), null().label("avg_wait_s")),
        summary(1, literal("", String())), summary(2, dept).group_by(dept), by_staff,
    ).subquery("page")
    found = (await session.execute(select(every).order_by(
        every.c.part, every.c.key, every.c.started_at, every.c.visit_id))).all()
    parts: list[list[Row[Any]]] = [[], [], [], []]
    for row in found:
        parts[row.part].append(row)
    return parts[0], parts[1][0], parts[2], parts[3]


async def visits_per_day(session: AsyncSession, scope: Scope,
                         days: Sequence[tuple[str, datetime, datetime]]) -> Sequence[Row[Any]]:
    """(day, department, visits) for the stacked chart."""
    v = _visits(scope)
    day, joins = day_of(v.c.started_at, days, "days")
    dept = func.coalesce(v.c.department, "")
    stmt = select(day.label("day"), dept.label("department"),
                  func.count().label("visits")).select_from(v)
    for table_, on in joins:
        stmt = stmt.outerjoin(table_, on)
    stmt = stmt.where(day.is_not(None)).group_by(day, dept).order_by(day, dept)
    return (await session.execute(stmt)).all()


#: Lobby-wait buckets (upper bounds in seconds) for the distribution chart.
WAIT_BUCKETS: tuple[tuple[str, float | None], ...] = (
    ("< 1 min", 60), ("1–2 min", 120), ("2–5 min", 300), ("5–10 min", 600),
    ("10–20 min", 1200), ("≥ 20 min", None))


async def wait_distribution(session: AsyncSession, rows: Select[Any]) -> Sequence[Row[Any]]:
    sub = rows.order_by(None).subquery("usage")
    whens = [(sub.c.lobby_wait_s < bound, n) for n, (_, bound) in enumerate(WAIT_BUCKETS)
             if bound is not None]
    bucket = case(*whens, else_=len(WAIT_BUCKETS) - 1)
    stmt = (select(bucket.label("bucket"), func.count().label("visits"))
            .where(sub.c.lobby_wait_s.is_not(None)).group_by(bucket).order_by(bucket))
    return (await session.execute(stmt)).all()


# ------------------------------------------------------------------ call quality

METRICS = ("rtt_ms", "jitter_ms", "packet_loss_pct", "bitrate_kbps")


class nearest_rank(FunctionElement[float]):
    """``nearest_rank(x, fraction)`` (PostgreSQL only): the group's value at the nearest
    rank ⌈fraction·n⌉ of its non-NULL values in ascending order, as
    ``percentile_disc(fraction) WITHIN GROUP (ORDER BY x)`` (which takes the row at
    ``ceil(fraction · n)`` in float arithmetic: exact for 0.5 and 0.95, whose product with
    an integer rounds to that integer whenever the exact product is one). ``fraction`` is
    a literal column, so it is part of the statement's cache key."""

    type = Float()
    inherit_cache = True
    name = "nearest_rank"


@compiles(nearest_rank)
def _nearest_rank_pg(element: nearest_rank, compiler: SQLCompiler, **kw: Any) -> str:
    x, fraction = list(element.clauses)
    return (f"percentile_disc({compiler.process(fraction, **kw)}) WITHIN GROUP "
            f"(ORDER BY {compiler.process(x, **kw)})")


def _nearest(x: ColumnElement[Any], percent: int) -> nearest_rank:
    return nearest_rank(x, literal_column(f"{percent / 100!r}"))


#: The median resolution is the frame of the sample at the median frame height; frame
#: sizes are far below this, so height·FRAME_KEY + width orders by height, then width.
FRAME_KEY = 65536


def _per_participant_ranked(samples: Select[Any]) -> Subquery:
    """Per (visit, participant): sample count, median and p95 of each metric, the median
    frame, the best media path — by window functions (row numbers per metric), for SQLite,
    which has no ordered-set aggregate."""
    qs = samples.subquery("samples")
    part = (qs.c.visit_id, qs.c.participant_id)
    ranks: list[Any] = []
    for m in (*METRICS, "frame_height"):
        col = qs.c[m]
        ranks += [
            func.row_number().over(partition_by=part,
                                   order_by=(case((col.is_(None), 1), else_=0), col))
            .label(f"{m}_rn"),
            func.count(col).over(partition_by=part).label(f"{m}_n"),
        ]
    ranked = select(qs, *ranks).subquery("ranked")
    r = ranked.c
    stats: list[Any] = [func.count().label("samples")]
    for m in METRICS:
        for percent, label in ((50, "median"), (95, "p95")):
            stats.append(func.max(case((r[f"{m}_rn"] == _rank(r[f"{m}_n"], percent), r[m])))
                         .label(f"{m}_{label}"))
    median_h = r["frame_height_rn"] == _rank(r["frame_height_n"], 50)
    stats += [func.max(case((median_h, r.frame_width))).label("width"),
              func.max(case((median_h, r.frame_height))).label("height"),
              func.max(case((r.media_path == "relay", 2), (r.media_path == "host", 1),
                            else_=0)).label("path_rank")]
    return (select(r.visit_id, r.participant_id, *stats)
            .group_by(r.visit_id, r.participant_id).subquery("per"))


def _per_participant_ordered(samples: Select[Any]) -> Subquery:
    """The same figures as :func:`_per_participant_ranked` in one GROUP BY with ordered-set
    aggregates (PostgreSQL): one pass over the samples instead of five sorts and windows."""
    qs = samples.subquery("samples")
    stats: list[Any] = [func.count().label("samples")]
    for m in METRICS:
        for percent, label in ((50, "median"), (95, "p95")):
            stats.append(_nearest(qs.c[m], percent).label(f"{m}_{label}"))
    frame = _nearest(qs.c.frame_height.cast(BigInteger) * FRAME_KEY
                     + func.coalesce(qs.c.frame_width, 0), 50)
    frame_n = frame.cast(BigInteger)
    stats += [func.nullif(frame_n % FRAME_KEY, 0).label("width"),
              (frame_n // FRAME_KEY).label("height"),
              func.max(case((qs.c.media_path == "relay", 2), (qs.c.media_path == "host", 1),
                            else_=0)).label("path_rank")]
    return (select(qs.c.visit_id, qs.c.participant_id, *stats)
            .group_by(qs.c.visit_id, qs.c.participant_id).subquery("per"))


def quality_rows(scope: Scope, *, poor_rtt_ms: float, poor_jitter_ms: float,
                 poor_loss_pct: float, ordered_sets: bool = False) -> Select[Any]:
    """One row per participant of each visit: sample count, median and p95 of each metric
    (nearest rank), the median resolution, the media path and whether it was poor.
    ``ordered_sets``: compute them with PostgreSQL's ordered-set aggregates (same values)."""
    v = _visits(scope)
    qs = QualitySample
    sample_range = _visits(scope)
    samples = (select(qs.visit_id, qs.participant_id, qs.media_path, qs.frame_width,
                      *[getattr(qs, m) for m in (*METRICS, "frame_height")])
               .join(sample_range, sample_range.c.id == qs.visit_id))
    per = (_per_participant_ordered if ordered_sets else _per_participant_ranked)(samples)
    poor = or_(per.c.rtt_ms_p95 > poor_rtt_ms, per.c.jitter_ms_p95 > poor_jitter_ms,
               per.c.packet_loss_pct_p95 > poor_loss_pct)
    path = case((v.c.media_backend != "mesh", "sfu"), (per.c.path_rank == 2, "relay"),
                (per.c.path_rank == 1, "host"), else_=None)
    stmt = (select(v.c.id.label("visit_id"), v.c.started_at, v.c.department,
                   Participant.role, Participant.label, Participant.seat_no, per.c.samples,
                   *[per.c[f"{m}_{p}"] for m in METRICS for p in ("median", "p95")],
                   per.c.width, per.c.height, path.label("media_path"),
                   _flag(poor).label("poor"))
            .join(per, per.c.visit_id == v.c.id)
            .outerjoin(Participant, Participant.id == per.c.participant_id)
            .order_by(v.c.started_at, v.c.id, Participant.role, Participant.seat_no))
    return stmt


async def quality_page(session: AsyncSession, rows: Select[Any],
                       days: Sequence[tuple[str, datetime, datetime]]
                       ) -> tuple[Sequence[Row[Any]], RowMapping, Sequence[Row[Any]]]:
    """The rows (in their order); the summary (visits with samples, visits where anyone's
    call was poor, participants, poor ones, the average median RTT); and (day, visits,
    poor visits) for the quality-over-time chart.

    One statement: the rows and their per-visit roll-up are common table expressions read
    by the three parts (PostgreSQL computes a CTE named more than once a single time), so
    the report's rows are computed once per page."""
    sub = rows.order_by(None).cte("quality")
    names = list(sub.c.keys())
    per_visit = (select(sub.c.visit_id, func.min(sub.c.started_at).label("started_at"),
                        func.max(sub.c.poor).label("poor"),
                        func.count().label("participants"),
                        func.sum(sub.c.poor).label("poor_participants"),
                        func.sum(sub.c.rtt_ms_median).label("rtt_sum"),
                        func.count(sub.c.rtt_ms_median).label("rtt_n"))
                 .group_by(sub.c.visit_id).cte("per_visit"))
    no_row = [null().label(name) for name in names]
    the_rows = select(literal(0).label("part"), *[sub.c[name] for name in names],
                      null().label("day"), null().label("visits"), null().label("poor_visits"),
                      null().label("participants"), null().label("poor_participants"),
                      null().label("avg_rtt_median"))
    total = select(literal(1), *no_row, literal(None, String()), func.count(),
                   func.coalesce(func.sum(per_visit.c.poor), 0),
                   func.coalesce(func.sum(per_visit.c.participants), 0),
                   func.coalesce(func.sum(per_visit.c.poor_participants), 0),
                   func.sum(per_visit.c.rtt_sum) / func.nullif(func.sum(per_visit.c.rtt_n), 0))
    day, joins = day_of(per_visit.c.started_at, days, "days")
    per_day = (select(literal(2), *no_row, day, func.count(),
                      func.sum(per_visit.c.poor), null(), null(), null())
               .select_from(per_visit))
    for table_, on in joins:
        per_day = per_day.outerjoin(table_, on)
    per_day = per_day.where(day.is_not(None)).group_by(day)
    every = union_all(the_rows, total, per_day).subquery("page")
    c = every.c
    found = (await session.execute(select(every).order_by(
        c.part, c.day, c.started_at, c.visit_id, c.role, c.seat_no))).all()
    parts: list[list[Row[Any]]] = [[], [], []]
    for row in found:
        parts[row.part].append(row)
    return parts[0], parts[1][0]._mapping, parts[2]


# ------------------------------------------------------------------ messages


def message_rows(scope: Scope) -> Select[Any]:
    """Every SMS and e-mail of the range (masked recipient only)."""
    ml = MessageLog
    where: list[ColumnElement[bool]] = [
        ml.organisation_id == scope.organisation_id, ml.created_at >= scope.start,
        ml.created_at < scope.end, *_appointment_filters(scope)]
    if scope.staff is not None:
        where.append(Appointment.provider_ehr_id == scope.staff)
    columns: list[Any] = [ml.created_at, ml.template, ml.channel, ml.recipient_masked,
                          ml.provider, ml.status, ml.error, ml.receipt_at, ml.language,
                          Appointment.department]
    stmt = (select(*columns)
            .outerjoin(Appointment, Appointment.id == ml.appointment_id)
            .outerjoin(EhrEndpoint, EhrEndpoint.id == Appointment.endpoint_id)
            .where(*where).order_by(ml.created_at, ml.id))
    return stmt


async def message_summary(session: AsyncSession, rows: Select[Any],
                          scope: Scope) -> tuple[Sequence[Row[Any]], int]:
    """Per channel: messages, sent (accepted by the provider), delivered, undelivered or
    failed, suppressed; and the opt-outs received in the range."""
    sub = rows.order_by(None).subquery("messages")
    stmt = (select(sub.c.channel, func.count().label("messages"),
                   func.sum(_flag(sub.c.status.in_(("sent", "delivered", "undelivered"))))
                   .label("sent"),
                   func.sum(_flag(sub.c.status == "delivered")).label("delivered"),
                   func.sum(_flag(sub.c.status.in_(("undelivered", "failed")))).label("failed"),
                   func.sum(_flag(sub.c.status == "suppressed")).label("suppressed"),
                   func.sum(_flag(sub.c.receipt_at.is_not(None))).label("receipts"))
            .group_by(sub.c.channel).order_by(sub.c.channel))
    by_channel = (await session.execute(stmt)).all()
    opt_outs = (await session.execute(
        select(func.count()).select_from(OptOut)
        .where(OptOut.organisation_id == scope.organisation_id,
               OptOut.opted_out_at >= scope.start, OptOut.opted_out_at < scope.end)
    )).scalar_one()
    return by_channel, int(opt_outs)


# ------------------------------------------------------------------ drop-off funnel

FUNNEL_STEPS = ("link_sent", "link_opened", "device_ready", "joined", "admitted",
                "connected_1min")


def funnel_rows(scope: Scope) -> Select[Any]:
    """One row per appointment of the range that has a patient link: a 0/1 flag for each
    step the patient reached, and whether the EHR marked it a no-show (S26)."""
    a, v, seat, ev = Appointment, Visit, Participant, VisitEvent
    where: list[ColumnElement[bool]] = [
        a.organisation_id == scope.organisation_id, a.start_at >= scope.start,
        a.start_at < scope.end, *_appointment_filters(scope)]
    if scope.staff is not None:
        where.append(a.provider_ehr_id == scope.staff)
    # Each step is aggregated once per visit of the range (GROUP BY over that range's seats)
    # and joined, rather than an EXISTS per step and appointment, which PostgreSQL plans as
    # hashed sub-plans over the whole event table.
    range_visits = (select(v.id).join(a, a.id == v.appointment_id)
                    .outerjoin(EhrEndpoint, EhrEndpoint.id == a.endpoint_id).where(*where))
    steps = (select(seat.visit_id,
                    func.max(_flag(ev.kind == "link_opened")).label("link_opened"),
                    func.max(_flag(and_(ev.kind == "joined",
                                        ev.data["devices"].as_string() == "ready")))
                    .label("device_ready"),
                    func.max(_flag(ev.kind == "joined")).label("joined"),
                    func.max(_flag(ev.kind == "admitted")).label("admitted"))
             .join(ev, ev.participant_id == seat.id)
             .where(seat.role == "patient", seat.visit_id.in_(range_visits),
                    ev.kind.in_(("link_opened", "joined", "admitted")))
             .group_by(seat.visit_id).subquery("steps"))
    stayed = seconds_between(seat.admitted_at,
                             func.coalesce(seat.left_at, v.ended_at, seat.last_seen_at))
    seats = (select(seat.visit_id,
                    func.max(_flag(and_(seat.admitted_at.is_not(None), stayed >= 60)))
                    .label("connected_1min"))
             .join(v, v.id == seat.visit_id)
             .where(seat.role == "patient", seat.visit_id.in_(range_visits))
             .group_by(seat.visit_id).subquery("patients"))
    sent = (select(MessageLog.appointment_id, func.max(1).label("link_sent"))
            .where(MessageLog.organisation_id == scope.organisation_id,
                   MessageLog.appointment_id.in_(
                       select(v.appointment_id).where(v.id.in_(range_visits))),
                   MessageLog.status.in_(("sent", "delivered")))
            .group_by(MessageLog.appointment_id).subquery("sent"))
    columns: list[Any] = [
        a.id.label("appointment_id"), func.coalesce(a.department, "").label("department"),
        func.coalesce(a.language, "").label("language"),
        func.coalesce(sent.c.link_sent, 0).label("link_sent"),
        *[func.coalesce(steps.c[k], 0).label(k)
          for k in ("link_opened", "device_ready", "joined", "admitted")],
        seats.c.connected_1min, _flag(a.status == "noshow").label("no_show")]
    stmt = (select(*columns)
            .join(v, v.appointment_id == a.id)
            .join(seats, seats.c.visit_id == v.id)
            .outerjoin(steps, steps.c.visit_id == v.id)
            .outerjoin(sent, sent.c.appointment_id == a.id)
            .outerjoin(EhrEndpoint, EhrEndpoint.id == a.endpoint_id)
            .where(*where))
    return stmt


async def funnel_groups(session: AsyncSession, rows: Select[Any]
                        ) -> tuple[Sequence[Row[Any]], Sequence[Row[Any]], Sequence[Row[Any]]]:
    """The funnel in total (one row, ``key`` ''), by department and by language (each row's
    group is its ``key``), in one statement: the rows are a CTE read by the three groupings
    (computed once on PostgreSQL), not the rows statement run once per grouping."""
    sub = rows.cte("funnel")
    sums = [func.coalesce(func.sum(sub.c[s]), 0).label(s) for s in (*FUNNEL_STEPS, "no_show")]

    def grouped(part: int, key: ColumnElement[Any] | None) -> Select[Any]:
        head = [literal(part).label("part"),
                (literal("", String()) if key is None else key).label("key"),
                func.count().label("appointments"), *sums]
        stmt = select(*head).select_from(sub)
        return stmt if key is None else stmt.group_by(key)

    both = union_all(grouped(0, None), grouped(1, sub.c.department),
                     grouped(2, sub.c.language)).subquery("funnels")
    found = (await session.execute(select(both).order_by(both.c.part, both.c.key))).all()
    total, by_department, by_language = ([r for r in found if r.part == part]
                                         for part in (0, 1, 2))
    return total, by_department, by_language


# ------------------------------------------------------------------ execution

#: Settings of a report's transaction on PostgreSQL (``SET LOCAL``: they end with it),
#: measured with ``EXPLAIN ANALYZE`` on the benchmark's data (bench/README.md):
#: no JIT — a report statement is planned and run once, and over a year's rows its cost
#: passes ``jit_above_cost``, so PostgreSQL spent ~0.9 s of the year's 2.5 s usage statement
#: compiling it; 32 MB per sort or hash instead of the default 4 MB — a year's rows
#: (100,000 visits, 300,000 samples) were sorted on disk ("external merge"): the year's
#: quality statement went from 1.3-1.5 s to 0.9-1.0 s.
REPORT_SETTINGS: tuple[str, ...] = ("SET LOCAL jit = off", "SET LOCAL work_mem = '32MB'")


def ordered_sets(session: AsyncSession) -> bool:
    """Whether the session's database has ordered-set aggregates (PostgreSQL)."""
    return session.get_bind().dialect.name == "postgresql"


async def prepare_report(session: AsyncSession) -> None:
    """Apply :data:`REPORT_SETTINGS` to the session's transaction (PostgreSQL only)."""
    if session.get_bind().dialect.name == "postgresql":
        for setting in REPORT_SETTINGS:
            await session.execute(text(setting))


def devicetest_rows(scope: Scope, *, endpoint_ids: Sequence[str] | None = None) -> Select[Any]:
    """Every device-test result of the range (a ``devicetest`` visit's one
    ``devicetest_result`` event: outcomes and call figures, nothing about the person).
    ``endpoint_ids``: only those endpoints' links (the endpoint and environment filters);
    department and staff do not apply to a device test."""
    where: list[ColumnElement[bool]] = [
        Visit.organisation_id == scope.organisation_id, Visit.kind == "devicetest",
        VisitEvent.kind == "devicetest_result", VisitEvent.at >= scope.start,
        VisitEvent.at < scope.end]
    if endpoint_ids is not None:
        where.append(VisitEvent.data["endpoint_id"].as_string().in_(list(endpoint_ids)))
    return (select(VisitEvent.at, VisitEvent.data)
            .join(Visit, Visit.id == VisitEvent.visit_id)
            .where(*where).order_by(VisitEvent.at, VisitEvent.id))


async def endpoint_facts(session: AsyncSession,
                         organisation_id: uuid.UUID) -> dict[str, tuple[str, str]]:
    """Endpoint id (text) → (name, environment) of the organisation's endpoints."""
    stmt = (select(EhrEndpoint.id, EhrEndpoint.name, EhrEndpoint.environment)
            .where(EhrEndpoint.organisation_id == organisation_id))
    return {str(r.id): (r.name, r.environment) for r in (await session.execute(stmt)).all()}


async def all_rows(session: AsyncSession, stmt: Select[Any]) -> Sequence[Row[Any]]:
    """Every row, through the session's connection: the statements select columns, not
    entities, and Core's result skips the ORM's loading of each row (a third of the time
    a year's 100,000 quality rows took in Python)."""
    connection = await session.connection()
    rows: Sequence[Row[Any]] = (await connection.execute(stmt)).all()
    return rows


async def stream_rows(session: AsyncSession, stmt: Select[Any], *,
                      batch: int = 2000) -> AsyncIterator[Row[Any]]:
    """Rows through a server-side cursor (PostgreSQL) in batches: memory stays flat."""
    connection = await session.connection()
    result = await connection.stream(stmt.execution_options(yield_per=batch))
    async for row in result:
        yield row


async def departments(session: AsyncSession, organisation_id: uuid.UUID) -> Sequence[str]:
    stmt = (select(Appointment.department).distinct()
            .where(Appointment.organisation_id == organisation_id,
                   Appointment.department.is_not(None)).order_by(Appointment.department))
    return [d for d in (await session.execute(stmt)).scalars().all() if d]


async def staff_ids(session: AsyncSession, organisation_id: uuid.UUID) -> Sequence[str]:
    stmt = (select(Appointment.provider_ehr_id).distinct()
            .where(Appointment.organisation_id == organisation_id,
                   Appointment.provider_ehr_id.is_not(None))
            .order_by(Appointment.provider_ehr_id))
    return [s for s in (await session.execute(stmt)).scalars().all() if s]


async def endpoints(session: AsyncSession,
                    organisation_id: uuid.UUID) -> Sequence[tuple[uuid.UUID, str]]:
    stmt = (select(EhrEndpoint.id, EhrEndpoint.name)
            .where(EhrEndpoint.organisation_id == organisation_id).order_by(EhrEndpoint.name))
    return [(row.id, row.name) for row in (await session.execute(stmt)).all()]


async def organisation(session: AsyncSession, organisation_id: uuid.UUID) -> Organisation | None:
    return await session.get(Organisation, organisation_id)


__all__ = ["FUNNEL_STEPS", "METRICS", "WAIT_BUCKETS", "Scope", "calendar"]
