#!/usr/bin/env bash
# One-off measurement of cleanup at scale (docs/performance.md, "Retention"):
# fills a scratch database with N finished sagas (default 1,000,000: about
# 10 million event rows) by SQL, then
#   1. a load run alone (cmd/tracseq-load): the sagas/s baseline;
#   2. the same load run while `tracseq-tx cleanup --direct` deletes them all:
#      rows deleted per second and the load's sagas/s meanwhile;
#   3. table and index sizes and dead rows afterwards, and after VACUUM.
# Not part of CI. Needs a PostgreSQL at $ADMIN_URL (default the local one).
#
# N=100000 scripts/retention/measure.sh   # a quicker run
# KEEP=1 scripts/retention/measure.sh     # keep the scratch database
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${N:-1000000}
ADMIN_URL=${ADMIN_URL:-postgres://$(id -un)@127.0.0.1:5432/postgres?sslmode=disable}
DB=tracseq_retention
URL=${ADMIN_URL%/*}/$DB?sslmode=disable
LOAD_SECONDS=${LOAD_SECONDS:-40}
out=$(mktemp -d /tmp/tracseq-retention.XXXXXX)
log() { printf '[retention] %s\n' "$*" >&2; }

go build -o "$out/tracseq-tx" ./cmd/tracseq-tx
go build -o "$out/tracseq-load" ./cmd/tracseq-load
psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
DATABASE_URL=$URL "$out/tracseq-tx" migrate >/dev/null

log "generating $N finished sagas"
start=$SECONDS
psql "$URL" -q -v n="$N" -v days_ago=3 -f scripts/retention/generate.sql
log "generated in $((SECONDS - start)) s"
psql "$URL" -c "SELECT count(*) AS sagas, (SELECT count(*) FROM saga_events) AS events FROM sagas"
psql "$URL" -f scripts/retention/sizes.sql
rows_before=$(psql "$URL" -Atc "SELECT (SELECT count(*) FROM sagas) + (SELECT count(*) FROM saga_steps) + (SELECT count(*) FROM saga_compensations) + (SELECT count(*) FROM saga_checkpoints) + (SELECT count(*) FROM saga_events)")

load() {
  "$out/tracseq-load" --start --bin "$out/tracseq-tx" --database-url "$URL" -c 16 -d "${LOAD_SECONDS}s" \
    --warmup 3s --ceiling-duration 0 --verify 0 --stats-wait 1s --json 2>"$out/$1.err" >"$out/$1.json"
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('sagas/s', r.get('sagas_per_second'), 'p50_ms', r.get('latency_ms',{}).get('p50'), 'p99_ms', r.get('latency_ms',{}).get('p99'))" "$out/$1.json" || cat "$out/$1.json"
}

log "1. load alone (c=16, ${LOAD_SECONDS}s)"
load alone

log "2. load while cleanup --direct deletes every saga that ended more than 24 h ago"
load with_cleanup &
load_pid=$!
sleep 5
DATABASE_URL=$URL CLEANUP_AFTER_HOURS=24 LOG_LEVEL=error "$out/tracseq-tx" cleanup --direct --json >"$out/cleanup.json"
wait "$load_pid"
rows_after=$(psql "$URL" -Atc "SELECT (SELECT count(*) FROM sagas) + (SELECT count(*) FROM saga_steps) + (SELECT count(*) FROM saga_compensations) + (SELECT count(*) FROM saga_checkpoints) + (SELECT count(*) FROM saga_events)")
python3 - "$out/cleanup.json" "$rows_before" "$rows_after" <<'PY'
import json, sys
c = json.load(open(sys.argv[1]))
rows = int(sys.argv[2]) - int(sys.argv[3])  # the load's own sagas were added meanwhile: a lower bound
print("cleanup: %d sagas and at least %d rows deleted in %.1f s: %.0f sagas/s, %.0f rows/s"
      % (c["deleted"], rows, c["seconds"], c["deleted"] / c["seconds"], rows / c["seconds"]))
PY

log "3. sizes right after the cleanup, then after VACUUM (autovacuum would do the same)"
psql "$URL" -f scripts/retention/sizes.sql
start=$SECONDS
psql "$URL" -qc "VACUUM sagas, saga_steps, saga_compensations, saga_checkpoints, saga_events"
log "VACUUM took $((SECONDS - start)) s"
psql "$URL" -f scripts/retention/sizes.sql
log "results in $out"
# The scratch database is large: a streaming replica made of this server
# (scripts/test.sh makes one per run) would copy it. Drop it unless asked.
if [ -z "${KEEP:-}" ]; then
  psql "$ADMIN_URL" -qc "DROP DATABASE $DB WITH (FORCE)"
  log "dropped $DB (KEEP=1 keeps it)"
fi
