"""Alembic environment: runs on the connection OpenVisit hands over (SQLite or PostgreSQL)."""

from __future__ import annotations

from alembic import context

from openvisit.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("Run migrations with `openvisit migrate` (it provides the connection).")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("Offline SQL generation is not supported; run `openvisit migrate`.")
run_migrations_online()
