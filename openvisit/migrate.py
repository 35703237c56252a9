"""Schema migrations (Alembic), run programmatically on the deployment's own connection.

The migration scripts live inside the package (``openvisit/migrations``) rather than beside
it, so that an installed OpenVisit can bring its embedded SQLite database up to date on
start-up without a source checkout.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from openvisit.db import Database

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


async def _run(db: Database, action: str, target: str) -> None:
    cfg = alembic_config()

    def run(connection: Connection) -> None:
        cfg.attributes["connection"] = connection
        getattr(command, action)(cfg, target)

    async with db.engine.begin() as conn:
        await conn.run_sync(run)


async def upgrade_async(db: Database, target: str = "head") -> None:
    """Upgrade the schema to ``target`` (default: the newest revision)."""
    await _run(db, "upgrade", target)


async def downgrade_async(db: Database, target: str = "base") -> None:
    """Downgrade the schema to ``target`` (default: empty)."""
    await _run(db, "downgrade", target)


async def current_revision(db: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with db.engine.connect() as conn:
        return await conn.run_sync(read)
