#!/usr/bin/env bash
# Install the npm test peers (tests/peers/package-lock.json, exact versions) with `npm ci`,
# only when tests/peers/node_modules is missing or was installed from another lock file
# (the lock file's sha256 is kept in node_modules/.lockhash).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
peers="$here/../tests/peers"
cd "$peers"

log() { printf 'bootstrap-npm: %s\n' "$*" >&2; }

command -v npm >/dev/null || {
    log "ERROR: npm not found: run scripts/bootstrap-system.sh first"
    exit 1
}
[[ -f package-lock.json ]] || {
    log "ERROR: $peers/package-lock.json is missing"
    exit 1
}

want=$(sha256sum package-lock.json | cut -d' ' -f1)
have=$(cat node_modules/.lockhash 2>/dev/null || true)

if [[ -d node_modules && $want == "$have" ]]; then
    log "node_modules up to date"
    exit 0
fi

log "running npm ci in $peers"
npm ci --no-audit --no-fund --loglevel=error
printf '%s\n' "$want" >node_modules/.lockhash
log "installed"
