#!/usr/bin/env bash
# Make sure PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) are up for the tests.
#   PostgreSQL: started if not accepting connections; on a machine where it was just
#     installed, a cluster is created if none exists, 127.0.0.1/::1 get trust auth, and a
#     superuser role `root` is created. The database `openvisit_test` is created if missing.
#   Redis: started (no persistence) if it does not answer PING.
# Idempotent; bounded waits (WAIT_SECONDS, default 30) with clear failure messages.
set -euo pipefail

WAIT_SECONDS=${WAIT_SECONDS:-30}
PGHOST_ADDR=127.0.0.1
PGPORT_NUM=5432
REDIS_PORT=6379
TEST_DB=openvisit_test

log() { printf 'ensure-services: %s\n' "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# ---------------------------------------------------------------- PostgreSQL
pg_accepting() { pg_isready -q -h "$PGHOST_ADDR" -p "$PGPORT_NUM" -t 1; }

pg_version() {
    # the newest installed cluster version directory, e.g. 15
    local v
    v=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)
    if [[ -z $v ]]; then
        v=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)
    fi
    printf '%s' "$v"
}

pg_as_postgres() { runuser -u postgres -- "$@"; }

ensure_pg_trust() {
    # 127.0.0.1 and ::1 must use trust auth for the local tests
    local hba=$1
    if ! grep -Eq '^[[:space:]]*host[[:space:]]+all[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
        log "adding trust auth for 127.0.0.1 and ::1 to $hba"
        local tmp
        tmp=$(mktemp)
        {
            echo '# added by openvisit scripts/ensure-services.sh for local tests'
            echo 'host all all 127.0.0.1/32 trust'
            echo 'host all all ::1/128 trust'
            cat "$hba"
        } >"$tmp"
        cat "$tmp" >"$hba"
        rm -f "$tmp"
        return 0
    fi
    return 1
}

start_postgres() {
    command -v pg_ctlcluster >/dev/null || die "PostgreSQL is not installed: run scripts/bootstrap-system.sh (or make test)"
    local ver
    ver=$(pg_version)
    [[ -n $ver ]] || die "no PostgreSQL version found under /etc/postgresql or /usr/lib/postgresql"
    if [[ ! -f /etc/postgresql/$ver/main/postgresql.conf ]]; then
        log "creating PostgreSQL $ver cluster 'main'"
        pg_createcluster "$ver" main --port "$PGPORT_NUM" -- --auth-local=trust --auth-host=trust >/dev/null
    fi
    ensure_pg_trust "/etc/postgresql/$ver/main/pg_hba.conf" || true
    log "starting PostgreSQL $ver/main"
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start ||
        log "pg_ctlcluster start returned non-zero (it may already be starting); waiting for the port"
    local i
    for ((i = 0; i < WAIT_SECONDS * 2; i++)); do
        pg_accepting && return 0
        sleep 0.5
    done
    log "last lines of the PostgreSQL log:"
    tail -n 20 "/var/log/postgresql/postgresql-$ver-main.log" >&2 2>/dev/null || true
    die "PostgreSQL did not accept connections on $PGHOST_ADDR:$PGPORT_NUM within ${WAIT_SECONDS}s"
}

psql_pg() { psql -X -q -w -h "$PGHOST_ADDR" -p "$PGPORT_NUM" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }

ensure_postgres() {
    if ! pg_accepting; then
        start_postgres
    fi
    if ! psql_pg -tAc 'select 1' >/dev/null 2>&1; then
        # running, but 127.0.0.1 wants a password (fresh Debian install): switch to trust
        local hba
        hba=$(pg_as_postgres psql -X -tA -c 'show hba_file' 2>/dev/null) ||
            die "cannot log in to PostgreSQL as postgres over $PGHOST_ADDR nor over the local socket"
        if ensure_pg_trust "$hba"; then
            pg_as_postgres psql -X -q -c 'select pg_reload_conf()' >/dev/null
            sleep 0.5
        fi
        psql_pg -tAc 'select 1' >/dev/null ||
            die "cannot log in to PostgreSQL as postgres on $PGHOST_ADDR:$PGPORT_NUM (check $hba)"
    fi
    if [[ $(psql_pg -tAc "select 1 from pg_roles where rolname = 'root'") != 1 ]]; then
        log "creating PostgreSQL role root"
        psql_pg -c 'create role root superuser login' >/dev/null ||
            [[ $(psql_pg -tAc "select 1 from pg_roles where rolname = 'root'") == 1 ]]
    fi
    if [[ $(psql_pg -tAc "select 1 from pg_database where datname = '$TEST_DB'") != 1 ]]; then
        log "creating database $TEST_DB"
        # a concurrent run may create it first: that is fine
        psql_pg -c "create database $TEST_DB owner root" >/dev/null 2>&1 ||
            [[ $(psql_pg -tAc "select 1 from pg_database where datname = '$TEST_DB'") == 1 ]] ||
            die "could not create database $TEST_DB"
    fi
    log "PostgreSQL ready on $PGHOST_ADDR:$PGPORT_NUM (database $TEST_DB)"
}

# --------------------------------------------------------------------- Redis
redis_pong() {
    if command -v redis-cli >/dev/null; then
        [[ $(timeout 2 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]
    else
        local reply
        reply=$(timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$REDIS_PORT; printf 'PING\r\n' >&3; head -c 5 <&3" 2>/dev/null) || return 1
        [[ $reply == +PONG ]]
    fi
}

ensure_redis() {
    if redis_pong; then
        log "Redis ready on 127.0.0.1:$REDIS_PORT"
        return 0
    fi
    command -v redis-server >/dev/null || die "redis-server is not installed: run scripts/bootstrap-system.sh (or make test)"
    mkdir -p /var/lib/redis /var/log/redis
    log "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" \
        --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null
    local i
    for ((i = 0; i < WAIT_SECONDS * 2; i++)); do
        if redis_pong; then
            log "Redis ready on 127.0.0.1:$REDIS_PORT"
            return 0
        fi
        sleep 0.5
    done
    tail -n 20 /var/log/redis/ci.log >&2 2>/dev/null || true
    die "Redis did not answer PING on 127.0.0.1:$REDIS_PORT within ${WAIT_SECONDS}s"
}

ensure_postgres
ensure_redis
