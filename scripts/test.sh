#!/usr/bin/env bash
# Runs every test of the module against a real PostgreSQL.
#
# The database: TEST_DATABASE_URL when set; otherwise a server answering on
# 127.0.0.1:5432 or the local unix socket; otherwise the local Debian cluster
# is started (and Debian's postgresql installed first if it is absent).
# Each test package creates and drops its own database on that server. The
# database outage tests (e2e) also make clusters of their own with initdb
# and pg_ctl, so the server programs are installed when they are absent.
#
# The web console's browser test needs Debian's chromium: it is installed
# when no chromium is on PATH.
#
# Extra arguments go to `go test` (e.g. scripts/test.sh -run TestClaim ./postgres).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[test.sh] %s\n' "$*" >&2; }

pg_answers() { pg_isready -q -d "$1" -t 3 >/dev/null 2>&1; }

ensure_postgres() {
  if [ -n "${TEST_DATABASE_URL:-}" ]; then
    log "using TEST_DATABASE_URL"
    return
  fi
  if ! command -v pg_isready >/dev/null 2>&1; then
    log "PostgreSQL client tools absent: installing Debian's postgresql"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
  fi
  local user="${PGUSER:-$(id -un)}"
  local url="postgres://${user}@127.0.0.1:5432/postgres?sslmode=disable"
  if ! pg_answers "$url"; then
    if [ ! -d /etc/postgresql ] || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
      log "no local PostgreSQL cluster: installing Debian's postgresql"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
    fi
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    log "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    for _ in $(seq 1 30); do
      pg_answers "$url" && break
      sleep 1
    done
  fi
  if ! pg_answers "$url"; then
    log "PostgreSQL does not answer on 127.0.0.1:5432"
    exit 1
  fi
  # A fresh cluster knows only the postgres role: make sure ours exists.
  if ! psql "$url" -Atc 'select 1' >/dev/null 2>&1; then
    log "creating role $user"
    su postgres -c "psql -qc \"create role \\\"$user\\\" superuser login\"" || true
  fi
  export TEST_DATABASE_URL="$url"
}

# The e2e outage tests run initdb and pg_ctl (as the postgres OS user when
# run as root): make sure the server programs are there.
ensure_server_programs() {
  if command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    return
  fi
  log "PostgreSQL server programs (initdb, pg_ctl) absent: installing Debian's postgresql"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
}

ensure_chromium() {
  if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    return
  fi
  log "chromium absent (the console's browser test needs it): installing Debian's chromium"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
}

ensure_postgres
ensure_server_programs
ensure_chromium
log "TEST_DATABASE_URL=${TEST_DATABASE_URL}"

args=("$@")
[ ${#args[@]} -eq 0 ] && args=(./...)
# -p 2: two packages at a time on a 2-core machine; each has its own database.
status=0
# The race detector instruments every package; SQLite's engine
# (modernc.org/sqlite/lib, C translated to Go, no goroutines of its own) is
# left out: instrumented it runs 2-3 times slower and its memory is not
# ours to check. Our code around it, the driver's Go code included, is
# still instrumented. The e2e binary is built the same way (e2e/race_test.go).
export TRACSEQ_RACE_GCFLAGS='modernc.org/sqlite/lib=-race=false'
go test -race -gcflags="$TRACSEQ_RACE_GCFLAGS" -count=1 -p 2 -timeout 20m "${args[@]}" || status=$?

# compat/dtm is a module of its own (DTM's client and its dependencies stay
# out of the service's module), so ./... does not reach it: run it too when
# the whole module is tested, with the same flags.
for a in "${args[@]}"; do
  if [ "$a" = "./..." ]; then
    flags=()
    for f in "${args[@]}"; do
      case "$f" in -*) flags+=("$f") ;; esac
    done
    # The fuzz targets of hostile input, briefly each (their seed corpus
    # already ran above as ordinary tests). FUZZTIME=0 skips them.
    if [ "${FUZZTIME:-10s}" != "0" ]; then
      for target in FuzzDecodeDefinition FuzzListQuery; do
        log "fuzzing $target for ${FUZZTIME:-10s}"
        go test -run '^$' -fuzz "^${target}\$" -fuzztime "${FUZZTIME:-10s}" ./httpapi || status=$?
      done
    fi
    log "testing the nested module compat/dtm (DTM's own client against this service)"
    (cd compat/dtm && go test -race -count=1 -timeout 10m "${flags[@]}" ./...) || status=$?
    break
  fi
done
exit $status
