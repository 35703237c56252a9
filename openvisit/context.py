"""The application context: the long-lived objects one process shares.

Built once from :class:`~openvisit.config.Settings` by every process role (web, worker, mllp)
and handed to request dependencies and job handlers, so nothing reaches for globals.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from openvisit.bus import Bus, create_bus
from openvisit.config import Settings
from openvisit.crypto import FieldCipher, KeyedHasher
from openvisit.db import Database, after_commit

JOBS_CHANNEL = "jobs.wakeup"


@dataclass
class AppContext:
    settings: Settings
    db: Database
    bus: Bus
    cipher: FieldCipher
    hasher: KeyedHasher
    #: Per-process caches owned by domain packages (discovery, JWKS), keyed by package.
    extras: dict[str, Any] = field(default_factory=dict)
    http: httpx.AsyncClient = field(
        default_factory=lambda: httpx.AsyncClient(
            timeout=httpx.Timeout(10.0, connect=5.0),
            headers={"User-Agent": "OpenVisit"},
            follow_redirects=False,
        )
    )

    @classmethod
    def create(cls, settings: Settings) -> AppContext:
        return cls(
            settings=settings,
            db=Database(settings.database_url),
            bus=create_bus(settings.redis_url),
            cipher=FieldCipher.from_settings(settings),
            hasher=KeyedHasher(settings.secret_key),
        )

    async def start(self) -> None:
        """Connect the bus and, on the embedded default, bring the schema up to date."""
        if self.settings.should_auto_migrate:
            from openvisit.migrate import upgrade_async

            await upgrade_async(self.db)
        await self.bus.start()

    async def close(self) -> None:
        for extra in list(self.extras.values()):
            closer = getattr(extra, "aclose", None)
            if closer is not None:  # per-process services a package keeps here (device test)
                await closer()
        await self.bus.close()
        await self.http.aclose()
        await self.db.dispose()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A database transaction that wakes workers after commit if it enqueued jobs."""
        async with self.db.transaction() as session:
            session.info["openvisit.ctx"] = self
            yield session
            if session.info.get("openvisit.jobs_enqueued"):
                after_commit(session, self._wake_workers)

    async def _wake_workers(self) -> None:
        await self.bus.publish(JOBS_CHANNEL, {"wake": True})
