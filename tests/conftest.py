"""Shared fixtures: a migrated database on the backend under test, an app context, a client.

Tests that touch the database or the bus use ``db_url``/``settings``/``ctx``/``client`` and are
marked ``backend``: they run on both backends. The rest run once, on the SQLite pass (or,
marked ``postgres_pass``, on the PostgreSQL pass, to even out the two passes' lengths).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from openvisit.config import Settings
from openvisit.context import AppContext
from tests.support.backend import BACKEND, PG_ADMIN_URL, make_settings

pytest_plugins = ["tests.peers.fixtures"]

# Warnings are errors (pyproject's filterwarnings). Authlib's first import adds
# simplefilter("always", AuthlibDeprecationWarning) in front of pytest's "error"; imported
# here, while pytest loads the configuration, that filter is discarded with the
# configuration's (and dropped outright should this run outside pytest's warning capture), so
# no test or collection can let an Authlib deprecation through (tests/test_warnings.py).
with contextlib.suppress(ImportError):  # authlib is a test peer (the dev extra)
    from authlib.deprecate import AuthlibDeprecationWarning

    warnings.filters[:] = [f for f in warnings.filters if f[2] is not AuthlibDeprecationWarning]

BACKEND_FIXTURES = {"ctx", "db_url", "client", "settings"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "backend: uses the database or the bus")
    config.addinivalue_line(
        "markers", "postgres_pass: needs no database, runs once, on the PostgreSQL pass "
        "(the two passes run side by side: this keeps them about as long as each other)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark backend tests; on the PostgreSQL pass keep only those."""
    for item in items:
        if BACKEND_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.backend)
    def here(item: pytest.Item) -> bool:
        if item.get_closest_marker("backend"):
            return True
        return (BACKEND == "postgres") == bool(item.get_closest_marker("postgres_pass"))

    deselected = [i for i in items if not here(i)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [i for i in items if here(i)]


async def _pg_exec(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_URL + "/postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def _template_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database made once per session: a SQLite file to copy, or a PG database."""
    from openvisit.db import Database
    from openvisit.migrate import upgrade_async

    name = f"openvisit_test_{os.getpid()}"
    if BACKEND == "postgres":
        asyncio.run(_pg_exec(f'DROP DATABASE IF EXISTS "{name}"'))
        asyncio.run(_pg_exec(f'CREATE DATABASE "{name}"'))
        url = PG_ADMIN_URL.replace("postgresql://", "postgresql+asyncpg://") + "/" + name
    else:
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'template.db'}"

    async def migrate() -> None:
        db = Database(url)
        await upgrade_async(db)
        await db.dispose()

    asyncio.run(migrate())
    yield url
    if BACKEND == "postgres":
        asyncio.run(_pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def db_url(_template_db: str, tmp_path: Path) -> str:
    """A migrated, empty database for one test."""
    if BACKEND == "postgres":
        from sqlalchemy import text

        from openvisit.db import Database
        from openvisit.models import Base

        tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)

        async def truncate() -> None:
            db = Database(_template_db)
            async with db.engine.begin() as conn:
                await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
            await db.dispose()

        asyncio.run(truncate())
        return _template_db
    src = Path(_template_db.split("///", 1)[1])
    dst = tmp_path / "openvisit.db"
    shutil.copy(src, dst)
    return f"sqlite+aiosqlite:///{dst}"


@pytest.fixture
def settings(db_url: str) -> Settings:
    return make_settings(db_url)


@pytest.fixture
async def ctx(settings: Settings) -> AsyncIterator[AppContext]:
    context = AppContext.create(settings)
    await context.start()
    try:
        yield context
    finally:
        await context.close()


@pytest.fixture
async def client(ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client bound in-process to a full app on this test's backend."""
    from openvisit.app import create_app

    app = create_app(ctx=ctx)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
