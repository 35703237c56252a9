"""FastAPI dependency aliases: the request owns one transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.context import AppContext


def get_app_context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the endpoint returns, else rolled back.

    Used with ``scope="function"``: the commit happens *before* the response is sent, so a
    commit that fails becomes an error answer, and a redirect never reaches a page (on
    another replica) before the rows it points at are committed.
    """
    async with get_app_context(request).transaction() as session:
        yield session


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A read-only session for pages and APIs that change nothing."""
    async with get_app_context(request).db.read() as session:
        yield session


CtxDep = Annotated[AppContext, Depends(get_app_context)]
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]
