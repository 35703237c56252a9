"""Per-organisation retention (issue 18 item 4), enforced by the ``privacy.retention`` job.

What each organisation keeps, and for how long (``Organisation.retention_*_days``; the
defaults are documented in ``docs/privacy.md``):

- contact details (phone numbers, e-mail) and every copy of a message: until the visit
  ends plus ``contact_grace_hours`` (``notify.purge``, as before);
- visits with their seats, events, call-quality samples, stored chat, device tests and their
  write-back rows, and appointments with whatever is left of theirs: ``retention_visit_days``
  (400) after the visit or appointment ended;
- the message log (masked recipients, statuses) and sent write-back rows:
  ``retention_message_days`` (400);
- the audit log: ``retention_audit_days`` (2,190: six years).

Each run deletes at most :data:`BATCH` rows per kind and organisation, so a first run over a
years-old database is a series of short transactions rather than one long lock; the next
run goes on where it stopped. Running twice finds nothing left the second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.audit import record
from openvisit.errors import InvalidInput, NotFound
from openvisit.logs import get_logger
from openvisit.models import Organisation
from openvisit.models.base import utcnow
from openvisit.privacy import repository as repo

log = get_logger(__name__)

#: Rows deleted per kind, organisation and run.
BATCH = 2000
#: The bounds a person may set (days). The audit log keeps at least a month.
BOUNDS = {"visit": (1, 3650), "message": (1, 3650), "audit": (30, 3650)}


@dataclass(frozen=True)
class Retention:
    visit_days: int
    message_days: int
    audit_days: int

    @classmethod
    def of(cls, org: Organisation) -> Retention:
        return cls(org.retention_visit_days, org.retention_message_days,
                   org.retention_audit_days)


async def enforce_for(session: AsyncSession, org: Organisation, *,
                      now: datetime | None = None, batch: int = BATCH) -> dict[str, int]:
    """Delete one batch of what ``org`` keeps beyond its retention; the counts per kind."""
    now = now or utcnow()
    keep = Retention.of(org)
    visits_before = now - timedelta(days=keep.visit_days)
    visit_ids = await repo.old_visit_ids(session, organisation_id=org.id,
                                         before=visits_before, limit=batch)
    counts = {"visits": await repo.delete_visits(session, visit_ids)}
    appointment_ids = await repo.old_appointment_ids(session, organisation_id=org.id,
                                                     before=visits_before, limit=batch)
    counts["appointments"] = await repo.delete_appointments(session, appointment_ids,
                                                          with_messages=False)
    counts["messages"] = await repo.delete_old_messages(
        session, organisation_id=org.id, before=now - timedelta(days=keep.message_days),
        limit=batch)
    counts["audit"] = await repo.delete_old_audit(
        session, organisation_id=org.id, before=now - timedelta(days=keep.audit_days),
        limit=batch)
    return counts


async def enforce(session: AsyncSession, *, now: datetime | None = None,
                  batch: int = BATCH) -> dict[str, int]:
    """:func:`enforce_for` every organisation; the total counts (logged, ids only)."""
    totals: dict[str, int] = {}
    for org in await repo.organisations(session):
        counts = await enforce_for(session, org, now=now, batch=batch)
        if any(counts.values()):
            log.info("retention_enforced", organisation_id=str(org.id), **counts)
        for kind, n in counts.items():
            totals[kind] = totals.get(kind, 0) + n
    return totals


def checked(kind: str, value: int) -> int:
    """``value`` if it is within the bounds of ``kind`` (visit, message, audit); else
    :class:`InvalidInput` naming the bound and the field (``retention_<kind>_days``)."""
    low, high = BOUNDS[kind]
    if not low <= value <= high:
        what = {"visit": "Visits", "message": "The message log",
                "audit": "The audit log"}[kind]
        raise InvalidInput(f"{what} can be kept from {low} to {high} days; {value} is not "
                           "in that range.", details={"field": f"retention_{kind}_days"})
    return value


async def set_retention(session: AsyncSession, *, slug: str, actor: str,
                        visit_days: int | None = None, message_days: int | None = None,
                        audit_days: int | None = None) -> Retention:
    """Change what organisation ``slug`` keeps (audited, before and after). Raises
    :class:`NotFound` for an unknown organisation and :class:`InvalidInput` naming the
    bound a value is outside of."""
    org = await repo.organisation_by_slug(session, slug)
    if org is None:
        raise NotFound(f"There is no organisation {slug!r}.")
    before = Retention.of(org)
    for kind, value in (("visit", visit_days), ("message", message_days),
                        ("audit", audit_days)):
        if value is None:
            continue
        setattr(org, f"retention_{kind}_days", checked(kind, value))
    after = Retention.of(org)
    await session.flush()
    await record(session, actor=actor, action="organisation.retention", obj=org,
                 before=before.__dict__, after=after.__dict__, organisation_id=org.id)
    return after
