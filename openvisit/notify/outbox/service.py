"""Reading the embedded outbox (the ``/ops/outbox`` page): what an operator may see of it.

Only an operator or org admin reads it, only their own organisation's messages; the text is
shown only in development and test (it holds the patient's join link), and every reading is
audited (``outbox.read``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.audit import record
from openvisit.context import AppContext
from openvisit.notify import repository as repo
from openvisit.portal.signin.sessions import Principal

#: Environments whose outbox page shows message text (with the patient's join link).
TEXT_ENVIRONMENTS = ("development", "test")


@dataclass(frozen=True)
class OutboxReading:
    """The newest messages (dicts as the page and the JSON show them) and the total."""

    total: int
    text_shown: bool
    messages: list[dict[str, Any]]


async def read_outbox(session: AsyncSession, *, app: AppContext, principal: Principal,
                      limit: int) -> OutboxReading:
    """The organisation's newest ``limit`` outbox messages (audited).

    Raises :class:`~openvisit.errors.PermissionDenied` for anyone but an operator or org admin.
    """
    principal.require("operator", "org_admin", doing="read the outbox")
    show_text = app.settings.environment in TEXT_ENVIRONMENTS
    rows = await repo.recent_outbox(session, organisation_id=principal.organisation_id,
                                    limit=limit)
    total = await repo.count_outbox(session, organisation_id=principal.organisation_id)
    messages: list[dict[str, Any]] = []
    for outbox, log in rows:
        item: dict[str, Any] = {
            "at": outbox.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            "template": log.template, "channel": outbox.channel,
            "to": outbox.recipient_masked, "status": log.status,
        }
        if show_text:
            item["sender"] = outbox.sender
            item["subject"] = (app.cipher.decrypt(outbox.subject_enc)
                               if outbox.subject_enc else None)
            item["text"] = app.cipher.decrypt(outbox.text_enc)
        messages.append(item)
    await record(session, actor=principal.actor, action="outbox.read", object_type="outbox",
                 organisation_id=principal.organisation_id,
                 after={"messages": len(messages), "text_shown": show_text})
    return OutboxReading(total=total, text_shown=show_text, messages=messages)
