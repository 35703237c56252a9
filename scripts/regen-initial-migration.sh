#!/usr/bin/env bash
# Regenerate migrations/versions/0001 from the models. Only while no release has shipped:
# after the first release, schema changes get their own new revision instead.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -f openvisit/migrations/versions/0001_initial_schema.py
.venv/bin/python - "$tmp/gen.db" <<'PY'
import asyncio, sys
from alembic import command
from openvisit.db import Database
from openvisit.migrate import alembic_config

async def main() -> None:
    db = Database(f"sqlite+aiosqlite:///{sys.argv[1]}")
    cfg = alembic_config()
    def run(conn):
        cfg.attributes["connection"] = conn
        command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")
    async with db.engine.begin() as conn:
        await conn.run_sync(run)
    await db.dispose()

asyncio.run(main())
PY
f=openvisit/migrations/versions/0001_initial_schema.py
sed -i 's/openvisit\.models\.base\.UTCDateTime(timezone=True)/sa.DateTime(timezone=True)/g; /^import openvisit/d; s/^Create Date: .*/Create Date: (regenerated)/' "$f"
echo "regenerated $f"
