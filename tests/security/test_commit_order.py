"""A request commits before its response is sent (issue 11 item 16; STYLE transaction rule).

Every request of the test suite runs under the check in ``MetricsMiddleware`` (strict outside
production): a 2xx/3xx that starts while its transaction is open fails that request. These
tests show the check and the rule with a commit that fails only at commit time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

import httpx
from fastapi import Depends, FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.context import AppContext
from openvisit.models import Organisation
from openvisit.web.deps import SessionDep
from openvisit.web.middleware import MetricsMiddleware


async def late_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The old, wrong shape: the transaction ends after the response is sent."""
    async with request.app.state.ctx.transaction() as session:
        yield session


LateSessionDep = Annotated[AsyncSession, Depends(late_session, scope="request")]


def tiny_app(ctx: AppContext, *, strict: bool) -> FastAPI:
    app = FastAPI()
    app.state.ctx = ctx
    app.add_middleware(MetricsMiddleware, strict=strict)

    @app.post("/organisations/{slug}")
    async def add(slug: str, session: SessionDep) -> dict[str, str]:
        # No flush: a duplicate slug fails only when the wrapper commits.
        session.add(Organisation(slug=slug, display_name="Clinic"))
        return {"status": "created"}

    return app


async def test_it_never_answers_success_when_the_commit_fails(ctx: AppContext) -> None:
    transport = httpx.ASGITransport(app=tiny_app(ctx, strict=True), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        assert (await http.post("/organisations/dup")).status_code == 200
        again = await http.post("/organisations/dup")
    assert again.status_code == 500  # the unique violation at commit, not a 200


async def test_it_flags_a_success_sent_before_the_commit(ctx: AppContext) -> None:
    app = FastAPI()
    app.state.ctx = ctx
    app.add_middleware(MetricsMiddleware, strict=True)

    @app.get("/late")
    async def late(
        session: LateSessionDep,
    ) -> dict[str, str]:
        return {"status": "ok"}

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        answer = await http.get("/late")
    assert answer.status_code == 500, answer.text
