"""Single-use values shared by every replica: OAuth ``state``, pending sign-ins, JWT ``jti``.

Stored hashed (SHA-256), so the database never holds a value that would complete a sign-in.
Expired rows are deleted by the periodic ``nonces.purge`` job (:mod:`openvisit.launch.tasks`).
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit import repository
from openvisit.errors import Gone, InvalidInput
from openvisit.models import SeenNonce, utcnow

if TYPE_CHECKING:
    from openvisit.db import Database


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def put(
    session: AsyncSession, *, scope: str, value: str, data: dict[str, Any], ttl: timedelta
) -> None:
    """Remember ``value`` (with ``data``) until ``ttl`` from now."""
    session.add(SeenNonce(scope=scope, value=_digest(value), data=data, expires_at=utcnow() + ttl))
    await session.flush()


def _replayed() -> Gone:
    return Gone(
        "This sign-in response was already used (a replay, or the page was reloaded). "
        "Start again from the EHR.",
        code="state_replayed",
        title="Sign-in already used",
    )


async def check(session: AsyncSession, *, scope: str, value: str | None) -> SeenNonce:
    """The row of a live ``value`` (issued, unexpired, unused), without using it.

    Raises like :func:`take`. Safe in a read-only session: it only reads.
    """
    if not value:
        raise InvalidInput("The sign-in response has no state parameter.", code="state_missing")
    row = await repository.nonce(session, scope=scope, digest=_digest(value))
    if row is None:
        raise InvalidInput(
            "This sign-in does not match one OpenVisit started (state mismatch). Start again "
            "from the EHR; if it keeps happening, the browser may be blocking redirects.",
            code="state_mismatch",
            title="Sign-in could not be matched",
        )
    if row.expires_at < utcnow():
        raise Gone(
            "This sign-in took too long and expired. Start again from the EHR.",
            code="state_expired",
            title="Sign-in expired",
        )
    if row.used_at is not None:
        raise _replayed()
    return row


async def take(session: AsyncSession, *, scope: str, value: str | None) -> dict[str, Any]:
    """Consume ``value`` once and return its data.

    Raises :class:`InvalidInput` if it was never issued, :class:`Gone` if already used or
    expired. The conditional update makes two concurrent uses yield exactly one winner.
    """
    row = await check(session, scope=scope, value=value)
    if not await repository.mark_nonce_used(session, scope=scope, digest=row.value,
                                            now=utcnow()):
        raise _replayed()
    return dict(row.data)


async def spend(db: Database, *, scope: str, value: str | None) -> dict[str, Any]:
    """:func:`take` in a transaction of its own, committed before this returns.

    For OAuth ``state``: the value must stay spent even when the request it authorises then
    fails (an ``error=`` callback, a refused code) and its transaction rolls back; otherwise
    the same state could be replayed with another code. Call it before the caller's session
    has written anything (on SQLite a writer holds the database lock until it commits).
    """
    async with db.transaction() as session:
        return await take(session, scope=scope, value=value)


async def peek(session: AsyncSession, *, scope: str, value: str | None) -> dict[str, Any] | None:
    """The data of a live (issued, unexpired, unused) ``value`` without using it; else None."""
    if not value or len(value) > 512:
        return None
    row = await repository.nonce(session, scope=scope, digest=_digest(value))
    if row is None or row.used_at is not None or row.expires_at < utcnow():
        return None
    return dict(row.data)


async def remember_once(session: AsyncSession, *, scope: str, value: str, ttl: timedelta) -> bool:
    """Record ``value``; False if it was seen before and has not expired (replay check)."""
    digest = _digest(value)
    existing = await repository.nonce(session, scope=scope, digest=digest)
    if existing is not None and existing.expires_at >= utcnow():
        return False
    if existing is not None:
        await session.delete(existing)
        await session.flush()
    await put(session, scope=scope, value=value, data={}, ttl=ttl)
    return True


async def purge_expired(session: AsyncSession, *, limit: int = 5000) -> int:
    """Delete at most ``limit`` rows that expired before now; return how many went.

    Bounded so one run never holds the table (and, on SQLite, the database) for long; the
    periodic job runs again and takes the next batch. Idempotent: an expired row is dead for
    every caller (:func:`take` says "expired", :func:`remember_once` replaces it).
    """
    return await repository.delete_expired_nonces(session, before=utcnow(), limit=limit)
