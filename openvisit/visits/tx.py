"""Transactions of the visit room (pages, actions, sockets): one at a time per process on SQLite.

On the embedded default every transaction begins with ``BEGIN IMMEDIATE`` (see
:mod:`openvisit.db`), so SQLite runs them one after another anyway. When hundreds of sockets
say hello at once, letting them all wait inside SQLite means each polls the lock with its
busy handler (sleeping up to 100 ms between tries) on its own thread: throughput collapses
and memory grows. Queuing them on an asyncio lock first keeps one SQLite connection busy
and the rest waiting cheaply, in order. PostgreSQL needs no gate.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.context import AppContext


def _gate(ctx: AppContext) -> asyncio.Lock | None:
    if not ctx.db.is_sqlite:
        return None
    gate = ctx.services.sqlite_gate
    if gate is None:
        gate = ctx.services.sqlite_gate = asyncio.Lock()
    return gate


@asynccontextmanager
async def transaction(ctx: AppContext) -> AsyncIterator[AsyncSession]:
    """``ctx.transaction()``, queued behind this process's other ones on SQLite.

    The gate is held until after-commit hooks ran (they publish on the bus, not the DB).
    """
    gate = _gate(ctx)
    if gate is None:
        async with ctx.transaction() as session:
            yield session
        return
    async with gate, ctx.transaction() as session:
        yield session
