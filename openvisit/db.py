"""Database engine and the transaction wrapper: the only place that commits or rolls back.

Services receive an ``AsyncSession`` and ``flush()``; the request wrapper (``SessionDep``) or
the job runner owns the transaction. Work that must happen only once the change is durable
(publishing on the bus, waking workers) is registered with :func:`after_commit` and runs after
a successful commit, never after a rollback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

from openvisit.logs import get_logger

log = get_logger(__name__)

AfterCommit = Callable[[], Awaitable[None]]
_HOOKS_KEY = "openvisit.after_commit"


def after_commit(session: AsyncSession, hook: AfterCommit) -> None:
    """Run ``hook`` once the session's current transaction has committed."""
    session.info.setdefault(_HOOKS_KEY, []).append(hook)


async def insert_ignoring_conflicts(
    session: AsyncSession, model: Any, rows: list[dict[str, Any]], *, on: tuple[str, ...]
) -> None:
    """Insert ``rows`` into ``model``'s table in one statement per batch of rows, skipping any
    whose ``on`` columns (a unique key) already exist: ``INSERT ... ON CONFLICT DO NOTHING``
    on both PostgreSQL and SQLite. Every row must name the same columns."""
    if not rows:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(model).on_conflict_do_nothing(index_elements=list(on))
    await session.execute(statement, rows)


def rowcount(result: Any) -> int:
    """Rows an UPDATE or DELETE matched (0 where the driver does not say)."""
    return int(getattr(result, "rowcount", 0) or 0)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control away from the sqlite3 module: left to itself it begins
    # transactions lazily, so a SAVEPOINT could start (and its RELEASE commit) the outer
    # transaction. We emit BEGIN ourselves in _sqlite_begin.
    dbapi_connection.isolation_level = None
    # WAL lets readers proceed while a writer commits; busy_timeout makes concurrent writers
    # (web + worker + mllp in one process, or a second CLI) wait instead of failing.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # IMMEDIATE takes the write lock up front. A deferred transaction that reads and then
    # writes can fail at once with SQLITE_BUSY when another connection committed meanwhile;
    # an immediate one waits (busy_timeout) instead. Read-only work opts into DEFERRED
    # (Database.read): in WAL mode it never waits for, nor blocks, a writer.
    mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
    conn.exec_driver_sql(f"BEGIN {mode}")


def create_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> AsyncEngine:
    """An async engine for SQLite (aiosqlite) or PostgreSQL (asyncpg)."""
    if url.startswith("sqlite"):
        # hide_parameters: a database error's text must never carry the row's values (contacts,
        # references) into a log line.
        engine = create_async_engine(url, echo=echo, poolclass=NullPool, hide_parameters=True)
        sync_engine: Engine = engine.sync_engine
        event.listen(sync_engine, "connect", _sqlite_pragmas)
        event.listen(sync_engine, "begin", _sqlite_begin)
        return engine
    return create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        hide_parameters=True,
    )


#: Per request, how many of its write transactions are open (set by the web middleware). A
#: list, so every task the request starts shares the same counter.
OPEN_TRANSACTIONS: ContextVar[list[int] | None] = ContextVar("open_transactions", default=None)


class Database:
    """Engine + session factory of one deployment."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine = create_engine(url, echo=echo)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessionmaker = async_sessionmaker(
            self.engine.execution_options(sqlite_begin="DEFERRED"), expire_on_commit=False
        )

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """Open a session, commit on success, roll back on any exception.

        After-commit hooks run after the commit; a failing hook is logged, never raised,
        because the change it follows is already durable.
        """
        counter = OPEN_TRANSACTIONS.get()
        if counter is not None:
            counter[0] += 1
        try:
            async with self.sessionmaker() as session:
                try:
                    yield session
                    await session.commit()
                except BaseException:
                    await session.rollback()
                    session.info.pop(_HOOKS_KEY, None)
                    raise
                hooks: list[AfterCommit] = session.info.pop(_HOOKS_KEY, [])
        finally:
            if counter is not None:
                counter[0] -= 1
        for hook in hooks:
            try:
                await hook()
            except Exception:
                log.exception("after_commit_hook_failed")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read-only session: never blocks behind (or blocks) a writer; always rolled back."""
        async with self.read_sessionmaker() as session:
            try:
                yield session
            finally:
                await session.rollback()

    async def ping(self) -> None:
        """Raise if the database cannot answer a trivial query."""

        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
