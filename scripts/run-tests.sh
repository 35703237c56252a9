#!/usr/bin/env bash
# The two passes of `make test`, side by side: the whole suite on SQLite (the embedded
# default) and every backend test on PostgreSQL + Redis. Most tests wait on sockets, browsers
# and peers rather than the CPU, so running the passes together keeps CI well inside its time
# budget on two cores. Each pass writes its own log; both are printed when both have ended
# (SQLite first), so the output ends with pytest's summary line of the PostgreSQL pass, and the
# command fails if either pass failed (pytest's exit code 5, "no tests", included).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
mkdir -p var
sqlite_log=var/test-sqlite.log
postgres_log=var/test-postgres.log
# Each pass has its own temporary root: pytest keeps only the three newest directories under
# the shared /tmp/pytest-of-$USER and deletes older ones, so a third pytest on the machine
# (a developer's run beside `make test`) could delete a running pass's databases.
sqlite_tmp=$(mktemp -d /tmp/ovt-s.XXXXXX)
postgres_tmp=$(mktemp -d /tmp/ovt-p.XXXXXX)
trap 'rm -rf "$sqlite_tmp" "$postgres_tmp"' EXIT
# shellcheck disable=SC2086
OPENVISIT_TEST_BACKEND=sqlite "$PY" -m pytest -p no:cacheprovider --basetemp="$sqlite_tmp/t" ${PYTEST_ARGS:-} >"$sqlite_log" 2>&1 &
sqlite_pid=$!
echo "run-tests: SQLite pass running (log: $sqlite_log); PostgreSQL + Redis pass running (log: $postgres_log)"
# shellcheck disable=SC2086
OPENVISIT_TEST_BACKEND=postgres "$PY" -m pytest -p no:cacheprovider --basetemp="$postgres_tmp/t" ${PYTEST_ARGS:-} >"$postgres_log" 2>&1
postgres_rc=$?
wait "$sqlite_pid"
sqlite_rc=$?
echo "===== SQLite pass (exit $sqlite_rc) ====="
cat "$sqlite_log"
echo "===== PostgreSQL + Redis pass (exit $postgres_rc) ====="
cat "$postgres_log"
if [ "$sqlite_rc" -ne 0 ] || [ "$postgres_rc" -ne 0 ]; then
  exit 1
fi
