#!/usr/bin/env bash
# `make demo`: run OpenVisit on the embedded default (SQLite + in-process bus) in var/demo.
# Usage: scripts/demo.sh DIR HTTP_PORT SANDBOX_PORT MLLP_PORT
set -euo pipefail
dir=${1:-var/demo}; port=${2:-8000}; sandbox_port=${3:-9000}; mllp_port=${4:-2575}
repo=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$dir"
cd "$dir"
export OPENVISIT_ENVIRONMENT=development
export OPENVISIT_DATABASE_URL="sqlite+aiosqlite:///$(pwd)/openvisit.db"
export OPENVISIT_PUBLIC_URL="http://127.0.0.1:${port}"
export OPENVISIT_MLLP_PORT="$mllp_port"
ov="$repo/.venv/bin/openvisit"

"$ov" migrate
cat <<MSG

  OpenVisit demo (embedded default: SQLite in $(pwd), in-process bus)

    Home            http://127.0.0.1:${port}/
    Readiness       http://127.0.0.1:${port}/readyz
    API docs        http://127.0.0.1:${port}/api/docs
    HL7 MLLP        127.0.0.1:${mllp_port}

  Stop with Ctrl-C.

MSG
exec "$ov" serve --host 127.0.0.1 --port "$port"
