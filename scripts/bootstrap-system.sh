#!/usr/bin/env bash
# Ensure the Debian packages that OpenVisit's tests use as outside peers are installed:
#   chromium coturn janus iproute2 postgresql redis-server, and Node.js with npm.
# Idempotent and non-interactive. When every binary is already present it does not call
# apt-get at all (well under a second); otherwise it runs `apt-get update` once and
# installs only the missing packages. Must run as root (it is, on the project machines).
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

log() { printf 'bootstrap-system: %s\n' "$*" >&2; }

have() { command -v "$1" >/dev/null 2>&1; }

have_postgres_server() {
    have pg_ctlcluster || return 1
    compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}

missing=()
have chromium || missing+=(chromium)
have turnserver || missing+=(coturn)
have janus || missing+=(janus)
have ip || missing+=(iproute2)
have unshare || missing+=(util-linux)
have_postgres_server || missing+=(postgresql)
have psql || missing+=(postgresql-client)
have redis-server || missing+=(redis-server)
have redis-cli || missing+=(redis-tools)
# Node.js: keep whatever node is installed (the machines ship Node 20 with its own npm);
# only when there is none, take Debian's.
if ! have node; then
    missing+=(nodejs npm)
elif ! have npm; then
    missing+=(npm)
fi

if ((${#missing[@]} == 0)); then
    log "all system packages present"
else
    if [[ ${EUID} -ne 0 ]]; then
        log "missing ${missing[*]} and not root: run this script as root"
        exit 1
    fi
    log "installing: ${missing[*]}"
    # Keep the packages' own services (janus, coturn on 3478, ...) from starting at install
    # time: the tests start their peers themselves, and ensure-services.sh starts the
    # databases. Only when no policy is in place already; removed again on exit.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}"
fi

node_major=$(node -p 'process.versions.node.split(".")[0]')
if ((node_major < 20)); then
    log "WARNING: node $(node --version) is older than 20; the npm test peers" \
        "(oidc-provider 9, node-hl7-server) need Node 20 or newer"
fi
