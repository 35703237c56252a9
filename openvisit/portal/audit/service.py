"""The audit log as the portal shows it: filtered, paged, with before → after differences."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.errors import InvalidInput
from openvisit.models import AuditLog, StaffAccount
from openvisit.portal import repository
from openvisit.portal.repository import AuditFilter
from openvisit.portal.signin.sessions import Principal, describe_account

PAGE_SIZE = 50
#: Fields not worth showing in a difference (timestamps of every write; the ids are
#: already in the entry's object column).
_NOISE = {"updated_at", "created_at", "id", "organisation_id"}


@dataclass(frozen=True)
class Change:
    field: str
    before: Any
    after: Any


@dataclass(frozen=True)
class AuditEntryView:
    entry: AuditLog
    actor_label: str
    changes: list[Change]

    def as_json(self) -> dict[str, Any]:
        e = self.entry
        return {"id": e.id, "at": e.at.isoformat(), "actor": e.actor,
                "actor_label": self.actor_label, "action": e.action,
                "object_type": e.object_type, "object_id": e.object_id,
                "before": e.before, "after": e.after,
                "changes": [{"field": c.field, "before": c.before, "after": c.after}
                            for c in self.changes]}


def differences(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[Change]:
    """Fields whose value differs (all of ``after`` when there is no ``before``)."""
    old, new = before or {}, after or {}
    keys = [k for k in dict.fromkeys([*new, *old]) if k not in _NOISE]
    return [Change(k, old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)]


def parse_day(text: str | None, *, field: str) -> date | None:
    """``YYYY-MM-DD`` or empty; raises :class:`InvalidInput` naming the field otherwise."""
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{text!r} is not a date; use YYYY-MM-DD.",
                           details={"field": field}) from None


def make_filter(*, action: str | None, object_type: str | None, object_id: str | None,
                actor: str | None, since: str | None, until: str | None) -> AuditFilter:
    """The repository filter from query parameters (``until`` is inclusive of that day)."""
    start, end = parse_day(since, field="since"), parse_day(until, field="until")
    return AuditFilter(
        action=action or None, object_type=object_type or None, object_id=object_id or None,
        actor=actor or None,
        since=datetime.combine(start, datetime.min.time(), UTC) if start else None,
        until=datetime.combine(end + timedelta(days=1), datetime.min.time(), UTC)
        if end else None,
    )


async def actor_labels(session: AsyncSession, actors: set[str]) -> dict[str, str]:
    """``staff:<id>`` → the account's username or IdP subject; others as they are."""
    labels: dict[str, str] = {}
    for actor in actors:
        kind, _, ident = actor.partition(":")
        label = actor
        if kind == "staff":
            try:
                account = await session.get(StaffAccount, uuid.UUID(ident))
            except ValueError:
                account = None
            if account is not None:
                label = describe_account(account)
        elif kind == "api_token":
            label = f"API token {ident[:8]}"
        labels[actor] = label
    return labels


async def search(
    session: AsyncSession, *, principal: Principal, where: AuditFilter, page: int = 1
) -> tuple[list[AuditEntryView], bool]:
    """One page of entries (newest first) and whether there is a next page."""
    principal.require("org_admin", "approver", "reporter", doing="read the audit log")
    page = max(1, page)
    rows = await repository.audit_entries(session, organisation_id=principal.organisation_id,
                                          where=where, limit=PAGE_SIZE + 1,
                                          offset=(page - 1) * PAGE_SIZE)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    labels = await actor_labels(session, {r.actor for r in rows})
    return [AuditEntryView(r, labels.get(r.actor, r.actor), differences(r.before, r.after))
            for r in rows], more


async def facets(session: AsyncSession, *, principal: Principal) -> dict[str, list[Any]]:
    actions, types, actors = await repository.audit_facets(
        session, organisation_id=principal.organisation_id)
    labels = await actor_labels(session, set(actors))
    groups: dict[str, list[str]] = {}
    for action in actions:
        groups.setdefault(action.partition(".")[0], []).append(action)
    return {"actions": actions, "action_groups": sorted(groups.items()), "object_types": types,
            "actors": sorted(((a, labels[a]) for a in actors), key=lambda p: p[1])}
