#!/usr/bin/env bash
# `make demo`: the whole flow on one machine, on the embedded default (SQLite + in-process bus):
# the built-in sandbox EHR, OpenVisit registered with it as an approved test endpoint, and
# OpenVisit serving web + worker + MLLP in one process.
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
sandbox_url="http://127.0.0.1:${sandbox_port}"

"$ov" migrate >/dev/null
if ! "$ov" endpoint list | grep -q "${sandbox_url}/fhir"; then
  "$ov" endpoint add --fhir-base "${sandbox_url}/fhir" --client-id openvisit \
    --environment test --vendor generic --name "Sandbox EHR" --approved >/dev/null
fi
admin_password="openvisit-demo-password"
echo "$admin_password" | "$ov" admin create --username admin --org default \
  --org-name "Sandbox Family Clinic" --password-stdin >/dev/null 2>&1 || true

"$ov" sandbox --port "$sandbox_port" --openvisit-url "$OPENVISIT_PUBLIC_URL" \
  --state-dir "$(pwd)/sandbox" > sandbox.log 2>&1 &
sandbox_pid=$!
trap 'kill "$sandbox_pid" 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 100); do
  curl -fsS "${sandbox_url}/fhir/.well-known/smart-configuration" >/dev/null 2>&1 && break
  sleep 0.1
done

cat <<MSG

  OpenVisit demo — embedded default (SQLite in $(pwd), in-process bus)

  Play the clinician:  ${sandbox_url}/ehr/schedule    → "Start virtual visit"
  Play the patient:    ${sandbox_url}/portal          → "Begin visit"
                       (or open the patient link the clinician copies from the visit page)
  OpenVisit:           ${OPENVISIT_PUBLIC_URL}/           (portal sign-in: admin / ${admin_password})
  Outbox (SMS/e-mail): ${OPENVISIT_PUBLIC_URL}/ops/outbox
                       (a portal page: sign in as admin / ${admin_password}; operators and
                        org admins only, each sees their own organisation's messages)
  Readiness:           ${OPENVISIT_PUBLIC_URL}/readyz
  HL7 MLLP listener:   127.0.0.1:${mllp_port}

  Stop with Ctrl-C.

MSG
"$ov" serve --host 127.0.0.1 --port "$port"
