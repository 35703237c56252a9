"""Lobby messages and in-visit chat: what is recorded and what is kept (issue 15 items 4-5).

Both travel over the signalling socket and the bus (:mod:`openvisit.signalling.messages`);
this is their database side.

- A **lobby message** (a clinician to a seat waiting in the lobby) is recorded as a visit
  event ``lobby_message`` and an audit entry ``visit.lobby_message`` holding its kind (the
  preset's id, or ``"text"``), never the text.
- **Chat** is not stored unless the organisation turned ``store_chat`` on. Then each message
  is encrypted with the field cipher (like contacts, :mod:`openvisit.crypto`) and kept until
  ``purge_at``: the visit's end (or, while it runs, the end of its join window) plus
  ``contact_grace_hours``, as a contact is kept until its appointment is over plus the same
  grace. Ending the visit brings ``purge_at`` forward; ``visits.chat_purge`` deletes what is
  due; deleting the visit deletes its chat (foreign key cascade). Chat text never reaches a
  log or an event.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.audit import record
from openvisit.context import AppContext
from openvisit.errors import NotFound
from openvisit.models.base import utcnow
from openvisit.models.organisation import Organisation
from openvisit.models.visit import ChatMessage, Visit
from openvisit.visits import repository as repo
from openvisit.visits.service import append_event


@dataclass(frozen=True)
class StoredChat:
    """One stored chat message, decrypted."""

    participant_id: uuid.UUID | None
    at: datetime
    text: str


async def lobby_message_sent(session: AsyncSession, *, app: AppContext, visit_id: uuid.UUID,
                             actor_id: uuid.UUID, target_id: uuid.UUID,
                             preset: str | None) -> None:
    """Record that clinician seat ``actor_id`` sent seat ``target_id`` a lobby message (a
    preset id, or free text when ``preset`` is None): a visit event and an audit entry."""
    visit = await repo.visit_by_id(session, visit_id)
    target = await repo.participant_by_id(session, target_id)
    actor = await repo.participant_by_id(session, actor_id)
    if visit is None or target is None or actor is None:
        return
    kind = preset or "text"
    await append_event(session, app=app, visit=visit, kind="lobby_message",
                       participant=target, data={"by": str(actor.id), "message": kind})
    await record(session, actor=actor.ehr_user_id or f"seat:{actor.id}",
                 action="visit.lobby_message", object_type="participant",
                 object_id=str(target.id), organisation_id=visit.organisation_id,
                 after={"visit_id": str(visit.id), "role": target.role, "message": kind})


def _purge_at(app: AppContext, visit: Visit, now: datetime) -> datetime:
    grace = timedelta(hours=app.settings.contact_grace_hours)
    if visit.ended_at is not None:
        return visit.ended_at + grace
    return max(now, visit.window_end or now) + grace


async def store(session: AsyncSession, *, app: AppContext, visit_id: uuid.UUID,
                participant_id: uuid.UUID, text: str, at: datetime | None = None) -> bool:
    """Keep one chat message, encrypted, if the visit's organisation stores chat; True if
    it was stored. (The caller checks the option too, so a visit whose organisation does not
    store chat costs no query per message.)"""
    visit = await repo.visit_by_id(session, visit_id)
    if visit is None:
        return False
    org = await repo.organisation_by_id(session, visit.organisation_id)
    if org is None or not org.store_chat:
        return False
    now = at or utcnow()
    repo.add_chat_message(session, ChatMessage(
        visit_id=visit.id, participant_id=participant_id, at=now,
        text_enc=app.cipher.encrypt(text), purge_at=_purge_at(app, visit, now)))
    await session.flush()
    return True


async def set_store_chat(session: AsyncSession, *, slug: str, on: bool,
                         actor: str) -> Organisation:
    """Turn keeping the chat on or off for organisation ``slug`` (audited). Rooms already
    open pick the change up when they next reload; messages kept so far stay until their
    ``purge_at``. Raises :class:`NotFound` for an unknown organisation."""
    org = await repo.organisation_by_slug(session, slug)
    if org is None:
        raise NotFound(f"There is no organisation {slug!r}.")
    before = {"store_chat": org.store_chat}
    org.store_chat = on
    await session.flush()
    await record(session, actor=actor, action="organisation.store_chat", obj=org,
                 before=before, after={"store_chat": on}, organisation_id=org.id)
    return org


async def stored(session: AsyncSession, *, app: AppContext,
                 visit_id: uuid.UUID) -> list[StoredChat]:
    """The visit's stored chat, oldest first, decrypted."""
    return [StoredChat(participant_id=m.participant_id, at=m.at,
                       text=app.cipher.decrypt(m.text_enc))
            for m in await repo.chat_messages_of(session, visit_id)]


async def visit_ended(session: AsyncSession, *, app: AppContext, visit: Visit) -> None:
    """The visit ended: its stored chat goes ``contact_grace_hours`` from now."""
    await repo.set_chat_purge_at(session, visit_id=visit.id,
                                 purge_at=_purge_at(app, visit, utcnow()))


async def purge(session: AsyncSession, *, now: datetime | None = None) -> int:
    """Delete the stored chat whose time is up; how many messages."""
    return await repo.purge_chat(session, now=now or utcnow())
