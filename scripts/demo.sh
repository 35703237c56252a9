#!/usr/bin/env bash
# `make demo`: the whole flow on one machine, on the embedded default (SQLite + in-process bus):
# the built-in sandbox EHR in demo mode (every appointment can be started at any time, "Reset
# demo", "Send booking (SIU)"), OpenVisit set up for it (approved test endpoint, the sandbox as
# HL7 sender, SMS into the outbox, write-back into the sandbox's chart), and OpenVisit serving
# web + worker (which sends the write-backs) + MLLP in one process.
# Everything binds to 127.0.0.1 only.
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
export OPENVISIT_MLLP_HOST=127.0.0.1
# OPENVISIT_BIN: another installed `openvisit` (the tests run this script with theirs).
ov=${OPENVISIT_BIN:-"$repo/.venv/bin/openvisit"}
sandbox_url="http://127.0.0.1:${sandbox_port}"

for p in "$port" "$sandbox_port" "$mllp_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "demo: port $p on 127.0.0.1 is already in use. Stop what uses it, or pick other ports:" >&2
    echo "      make demo DEMO_PORT=8100 SANDBOX_PORT=9100 MLLP_PORT=2675" >&2
    exit 1
  fi
done

echo "demo: [1/4] database ($(pwd)/openvisit.db)"
"$ov" migrate >/dev/null
echo "demo: [2/4] organisation, sandbox endpoint, HL7 sender, SMS outbox, write-back"
"$ov" demo-setup --sandbox-url "$sandbox_url" --org default \
  --org-name "Sandbox Family Clinic" >/dev/null
admin_password="openvisit-demo-password"
echo "$admin_password" | "$ov" admin create --username admin --org default \
  --org-name "Sandbox Family Clinic" --password-stdin >/dev/null 2>&1 || true

echo "demo: [3/4] sandbox EHR on ${sandbox_url}"
"$ov" sandbox --port "$sandbox_port" --openvisit-url "$OPENVISIT_PUBLIC_URL" \
  --state-dir "$(pwd)/sandbox" --demo --mllp-port "$mllp_port" > sandbox.log 2>&1 &
sandbox_pid=$!
trap 'kill "$sandbox_pid" 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 100); do
  curl -fsS "${sandbox_url}/fhir/.well-known/smart-configuration" >/dev/null 2>&1 && break
  sleep 0.1
done
echo "demo: [4/4] OpenVisit on ${OPENVISIT_PUBLIC_URL} (web + worker + MLLP :${mllp_port})"

cat <<MSG

  OpenVisit demo — embedded default (SQLite in $(pwd), in-process bus, 127.0.0.1 only)

  Play the clinician:  ${sandbox_url}/ehr/schedule    → "Start virtual visit" on any row
                       (an appointment that is not due is moved to now; "Reset demo" at the
                        top gives a fresh day)
  Play the patient:    ${sandbox_url}/portal          → "Begin visit"
                       (or the patient's link on the clinician's visit page, "Patient's link")
  See the write-back:  ${sandbox_url}/ehr/schedule    → "Chart" on the row: who connected,
                       visit started/ended, the Encounter's status, device test, messages,
                       as OpenVisit writes them into the sandbox (it refreshes by itself)
  Try the SMS path:    ${sandbox_url}/ehr/schedule    → "Send booking (SIU)" on a row, then
                       the outbox below shows the confirmation with the patient's join link
  Outbox (SMS/e-mail): ${OPENVISIT_PUBLIC_URL}/ops/outbox
  OpenVisit portal:    ${OPENVISIT_PUBLIC_URL}/portal     (sign in: admin / ${admin_password})
  Readiness:           ${OPENVISIT_PUBLIC_URL}/readyz
  HL7 MLLP listener:   127.0.0.1:${mllp_port}            (sender OVSANDBOX^SANDBOXCLINIC)

  Logs: $(pwd)/sandbox.log and this terminal.  Stop with Ctrl-C.
  Start from scratch: make demo-reset (deletes $(pwd)).

MSG
"$ov" serve --host 127.0.0.1 --port "$port"
