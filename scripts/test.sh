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
# For the tests of read replicas, PgBouncer and point-in-time recovery it also
# gives the run, unless set already:
# - TEST_REPLICA_URL: a streaming replica of that server made for this run
#   (pg_basebackup -R into a temporary data directory, started with pg_ctl
#   as the postgres OS user on a free port; TEST_REPLICA_PGDATA is its data
#   directory, which tests may stop and start). It copies the whole server:
#   a few seconds for the test databases, longer if large databases were
#   left on it;
# - TEST_PGBOUNCER_URL: Debian's pgbouncer (installed when absent) in
#   transaction pooling mode in front of that server, on a free port;
# - TEST_PG_BINDIR: the server's programs (initdb, pg_ctl, pg_basebackup).
# Both are stopped and removed when the run ends.
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

# pg_bindir prints the directory of the server's programs.
pg_bindir() {
  if [ -n "${TEST_PG_BINDIR:-}" ]; then echo "$TEST_PG_BINDIR"; return; fi
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] || d=$(pg_config --bindir)
  echo "$d"
}

# free_port prints a TCP port nothing listens on.
free_port() {
  local p
  for _ in $(seq 1 100); do
    p=$(( 20000 + RANDOM % 20000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  log "no free port found"; exit 1
}

# as_postgres runs a command as the postgres OS user (PostgreSQL refuses
# to run as root), or as ourselves when we are not root.
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# q runs one query on the test server and prints its result, trying again
# for a while when the server is busy (too many clients) or restarting.
q() {
  local out
  for _ in $(seq 1 30); do
    if out=$(psql "$TEST_DATABASE_URL" -qAtc "$1" 2>/dev/null); then
      printf '%s\n' "$out"
      return 0
    fi
    sleep 1
  done
  log "query failed for 30 s: $1"
  psql "$TEST_DATABASE_URL" -qAtc "$1"
}

# drop_slot drops a replication slot of the test server, if it exists.
drop_slot() {
  q "select pg_drop_replication_slot(slot_name) from pg_replication_slots where slot_name = '$1'" >/dev/null 2>&1 || true
}

work=""
replica_slot=""
cleanup() {
  [ -n "$work" ] || return 0
  if [ -f "$work/replica/postmaster.pid" ]; then
    as_postgres "$(pg_bindir)/pg_ctl" -D "$work/replica" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  [ -z "$replica_slot" ] || drop_slot "$replica_slot"
  if [ -f "$work/pgbouncer/pgbouncer.pid" ]; then
    kill "$(cat "$work/pgbouncer/pgbouncer.pid")" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

make_work_dir() {
  [ -n "$work" ] && return
  work=$(mktemp -d /tmp/tracseq-test.XXXXXX)
  chmod 755 "$work"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$work"
  return 0
}

# ensure_replica starts a streaming replica of the test server.
ensure_replica() {
  if [ -n "${TEST_REPLICA_URL:-}" ]; then
    log "using TEST_REPLICA_URL"
    return
  fi
  local started=$SECONDS bindir port user
  bindir=$(pg_bindir)
  user="${PGUSER:-$(id -un)}"
  # The replica connects over TCP for replication: allow it.
  local hba
  hba=$(q 'show hba_file')
  if ! grep -Eq '^[[:space:]]*host[[:space:]]+replication[[:space:]]+all[[:space:]]+127\.0\.0\.1/32[[:space:]]+trust' "$hba"; then
    log "allowing replication connections from 127.0.0.1 in $hba"
    echo 'host replication all 127.0.0.1/32 trust' >>"$hba"
    q 'select pg_reload_conf()' >/dev/null
  fi
  make_work_dir
  port=$(free_port)
  # Slots of earlier runs whose script is gone (killed before its cleanup)
  # would keep WAL forever: drop them.
  local slot
  for slot in $(q "select slot_name from pg_replication_slots
      where slot_name like 'tracseq_test_replica_%' and not active"); do
    kill -0 "${slot##*_}" 2>/dev/null || drop_slot "$slot"
  done
  replica_slot="tracseq_test_replica_$$"
  local host dbport
  host=$(q "select coalesce(inet_server_addr()::text, '127.0.0.1')")
  dbport=$(q 'show port')
  # Other tests on the server may end connections (pg_terminate_backend):
  # a base backup cut short is taken again.
  local try
  for try in 1 2 3; do
    # A replication slot keeps the WAL the replica has not received yet,
    # even if its connection is cut for a while (dropped at the end).
    if as_postgres "$bindir/pg_basebackup" -h "${host%/*}" -p "$dbport" -U "$user" -D "$work/replica" -R -X stream -c fast \
      -C -S "$replica_slot"; then
      break
    fi
    [ "$try" -lt 3 ] || { log "pg_basebackup failed 3 times"; exit 1; }
    log "pg_basebackup was cut short: taking it again"
    rm -rf "$work/replica"
    drop_slot "$replica_slot"
  done
  # Debian keeps the configuration outside the data directory: give the
  # replica its own. A hot standby needs these limits at least as high as
  # the primary's.
  local limits
  limits=$(q "select string_agg(name || ' = ' || setting, E'\n') from pg_settings
    where name in ('max_connections', 'max_worker_processes', 'max_wal_senders', 'max_prepared_transactions', 'max_locks_per_transaction')")
  cat >"$work/replica/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work'
hot_standby = on
hot_standby_feedback = on
fsync = off
logging_collector = off
$limits
CONF
  printf 'local all all trust\nhost all all 127.0.0.1/32 trust\n' >"$work/replica/pg_hba.conf"
  : >"$work/replica/pg_ident.conf"
  chown postgres: "$work/replica/"*.conf 2>/dev/null || true
  as_postgres "$bindir/pg_ctl" -D "$work/replica" -l "$work/replica.log" -w -t 60 start >/dev/null
  export TEST_REPLICA_URL="postgres://${user}@127.0.0.1:${port}/postgres?sslmode=disable"
  export TEST_REPLICA_PGDATA="$work/replica"
  export TEST_PG_BINDIR="$bindir"
  log "replica streaming on 127.0.0.1:$port ($((SECONDS - started)) s)"
}

# ensure_pgbouncer starts PgBouncer in transaction pooling mode in front of
# the test server.
ensure_pgbouncer() {
  if [ -n "${TEST_PGBOUNCER_URL:-}" ]; then
    log "using TEST_PGBOUNCER_URL"
    return
  fi
  if ! command -v pgbouncer >/dev/null 2>&1 && [ ! -x /usr/sbin/pgbouncer ]; then
    log "pgbouncer absent: installing Debian's pgbouncer"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq pgbouncer >/dev/null
  fi
  local bin port user dbport
  bin=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
  user="${PGUSER:-$(id -un)}"
  dbport=$(q 'show port')
  make_work_dir
  mkdir -p "$work/pgbouncer"
  port=$(free_port)
  printf '"%s" ""\n' "$user" >"$work/pgbouncer/userlist.txt"
  cat >"$work/pgbouncer/pgbouncer.ini" <<CONF
[databases]
* = host=127.0.0.1 port=$dbport

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $work/pgbouncer/userlist.txt
pool_mode = transaction
max_client_conn = 2000
default_pool_size = 10
max_db_connections = 10
server_idle_timeout = 10
ignore_startup_parameters = extra_float_digits
logfile = $work/pgbouncer/pgbouncer.log
pidfile = $work/pgbouncer/pgbouncer.pid
CONF
  [ "$(id -u)" -eq 0 ] && chown -R postgres: "$work/pgbouncer"
  as_postgres "$bin" -d "$work/pgbouncer/pgbouncer.ini"
  export TEST_PGBOUNCER_URL="postgres://${user}@127.0.0.1:${port}/postgres?sslmode=disable"
  for _ in $(seq 1 50); do
    pg_answers "$TEST_PGBOUNCER_URL" && break
    sleep 0.1
  done
  log "pgbouncer $("$bin" --version | head -n 1 | awk '{print $2}') (transaction pooling) on 127.0.0.1:$port"
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
ensure_replica
ensure_pgbouncer
[ -n "${TEST_PG_BINDIR:-}" ] || export TEST_PG_BINDIR="$(pg_bindir)"

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
