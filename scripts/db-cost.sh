#!/usr/bin/env bash
# The database's work per saga: commits, statements, rows and index entries
# written, HOT updates, WAL and PostgreSQL CPU, for 2-step sagas on the
# success path and on the compensation path (step 2 refuses).
#
#   scripts/db-cost.sh            # or: make db-cost
#
# It makes a private PostgreSQL cluster under /tmp on a free port
# (pg_stat_statements preloaded, which the shared server may not have;
# otherwise configured like it: autovacuum off, wal_level replica,
# synchronous_commit on), starts cmd/tracseq-tx on a fresh database of it
# for each path, drives DBCOST_SAGAS sagas with cmd/tracseq-load at
# concurrency DBCOST_C, and takes deltas over the run of:
# - pg_stat_database (commits), pg_stat_statements (statements executed by
#   the service, BEGIN/COMMIT/SET included), pg_stat_user_tables (rows
#   inserted, updated, HOT-updated and deleted per table);
# - index entries written: per table, its index count times its rows
#   inserted plus its non-HOT updates (an upper bound: a partial index
#   takes only the rows it covers), and the indexes' growth in bytes;
# - WAL: pg_current_wal_lsn() and pg_stat_wal (records, full-page images);
# - PostgreSQL CPU: utime+stime of every process of the cluster
#   (/proc/<pid>/stat), sampled before the load and after it.
# Counts are read after the service has stopped: its backends flush their
# statistics as they exit.
#
# Environment (all optional):
#   DBCOST_SAGAS   sagas per path (default 3000)
#   DBCOST_C       concurrency (default 16)
#   DBCOST_PATHS   paths to measure (default "success compensation")
#   DBCOST_BINDIR  PostgreSQL's programs (default the newest /usr/lib/postgresql/*/bin)
#   DBCOST_TRACK   pg_stat_statements.track: top (default), or all to list the
#                  statements run inside others too (foreign key checks)
#   DBCOST_TX      a tracseq-tx binary to measure instead of building this tree's
#                  (an earlier build, for a before/after in one sitting)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
sagas=${DBCOST_SAGAS:-3000}
conc=${DBCOST_C:-16}
paths=${DBCOST_PATHS:-success compensation}
bindir=${DBCOST_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}
tck=$(getconf CLK_TCK)
export PGOPTIONS='-c client_min_messages=warning'

for tool in go psql jq awk; do
	command -v "$tool" >/dev/null || { echo "db-cost: $tool not found on PATH" >&2; exit 1; }
done
[ -x "$bindir/initdb" ] || { echo "db-cost: no initdb in $bindir (set DBCOST_BINDIR)" >&2; exit 1; }

as_postgres() { # PostgreSQL refuses to run as root
	if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
freeport() {
	local p
	for _ in $(seq 1 100); do
		p=$((20000 + RANDOM % 20000))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
	echo "db-cost: no free port" >&2
	exit 1
}
waitport() { # port pid
	for _ in $(seq 1 200); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

work=$(mktemp -d /tmp/tracseq-dbcost.XXXXXX)
chmod 755 "$work"
[ "$(id -u)" -eq 0 ] && chown postgres: "$work"
pgdata=$work/pgdata
txpid=""
cleanup() {
	if [ -n "$txpid" ]; then
		kill "$txpid" 2>/dev/null && wait "$txpid" 2>/dev/null || true
	fi
	if [ -f "$pgdata/postmaster.pid" ]; then
		as_postgres "$bindir/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null 2>&1 || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "building tracseq-tx and tracseq-load" >&2
(cd "$repo" && go build -o "$work/tracseq-tx" ./cmd/tracseq-tx && go build -o "$work/tracseq-load" ./cmd/tracseq-load)
if [ -n "${DBCOST_TX:-}" ]; then
	cp "$DBCOST_TX" "$work/tracseq-tx"
fi

port=$(freeport)
user=$(id -un)
as_postgres "$bindir/initdb" -D "$pgdata" -U "$user" -A trust >/dev/null
cat >>"$pgdata/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work'
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.max = 1000
pg_stat_statements.track = ${DBCOST_TRACK:-top}
autovacuum = off
wal_level = replica
synchronous_commit = on
fsync = on
max_connections = 100
logging_collector = off
CONF
as_postgres "$bindir/pg_ctl" -D "$pgdata" -l "$work/pg.log" -w -t 60 start >/dev/null
admin="postgres://$user@127.0.0.1:$port/postgres?sslmode=disable"
q() { psql "$1" -qAtX -v ON_ERROR_STOP=1 -c "$2"; }
# In template1, so that every database made for a run has the view.
q "postgres://$user@127.0.0.1:$port/template1?sslmode=disable" 'create extension pg_stat_statements' >/dev/null
postmaster=$(head -n 1 "$pgdata/postmaster.pid")

cluster_ticks() { # utime+stime of the postmaster and all its children
	local sum=0 p line
	for p in "$postmaster" $(pgrep -P "$postmaster"); do
		line=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		line=${line##*) }
		set -- $line
		sum=$((sum + ${12} + ${13}))
	done
	echo "$sum"
}

# snapshot DB: one line of cluster-wide and database counters, then one
# line per table (name, rows inserted, updated, HOT-updated, deleted,
# indexes, index bytes).
snapshot() {
	local url="postgres://$user@127.0.0.1:$port/$1?sslmode=disable"
	q "$url" "select 'db', pg_current_wal_lsn() - '0/0', w.wal_records, w.wal_fpi, d.xact_commit,
			coalesce((select sum(calls) from pg_stat_statements s
				where s.dbid = d.datid and s.query !~* 'pg_stat|pg_current_wal|pg_relation_size|pg_indexes'), 0)
		from pg_stat_wal w, pg_stat_database d where d.datname = current_database()"
	q "$url" "select 'table', t.relname, t.n_tup_ins, t.n_tup_upd, t.n_tup_hot_upd, t.n_tup_del,
			(select count(*) from pg_index i where i.indrelid = t.relid),
			(select coalesce(sum(pg_relation_size(i.indexrelid)), 0) from pg_index i where i.indrelid = t.relid)
		from pg_stat_user_tables t where t.relname not like 'goose%' order by t.relname"
}

results=$work/results
: >"$results"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for path in $paths; do
	db=dbcost_$path
	q "$admin" "create database $db" >/dev/null
	url="postgres://$user@127.0.0.1:$port/$db?sslmode=disable"
	hp=$(freeport)
	DATABASE_URL=$url HTTP_ADDR=127.0.0.1:$hp LOG_LEVEL=error "$work/tracseq-tx" >"$work/tx.$path.log" 2>&1 &
	txpid=$!
	waitport "$hp" "$txpid" || { echo "db-cost: tracseq-tx did not start:" >&2; cat "$work/tx.$path.log" >&2; exit 1; }
	failflags=()
	[ "$path" = compensation ] && failflags=(--fail-step 2)
	# A few sagas first, so that the service's statements are prepared and
	# its pool is open before the counts start.
	"$work/tracseq-load" --url "http://127.0.0.1:$hp" --database-url "$url" -c "$conc" -n 64 --warmup 0 \
		--verify 0 --stats-wait 0 --ceiling-duration 0 --json "${failflags[@]}" >/dev/null 2>"$work/load.$path.err"
	q "$url" 'checkpoint' >/dev/null
	q "$url" 'select pg_stat_statements_reset()' >/dev/null
	# Let the warm-up's statistics reach the shared counters (a busy
	# backend flushes them at most once a second, an idle one within 10 s).
	sleep 11
	snapshot "$db" >"$work/before.$path"
	c0=$(cluster_ticks)
	t0=$(date +%s.%N)
	"$work/tracseq-load" --url "http://127.0.0.1:$hp" --database-url "$url" -c "$conc" -n "$sagas" --warmup 0 \
		--verify 0 --stats-wait 0 --ceiling-duration 0 --json "${failflags[@]}" >"$work/load.$path.json" 2>>"$work/load.$path.err"
	t1=$(date +%s.%N)
	c1=$(cluster_ticks)
	kill "$txpid"
	wait "$txpid" 2>/dev/null || true
	txpid=""
	sleep 1
	snapshot "$db" >"$work/after.$path"
	q "$url" "select '$path', calls, rows, wal_bytes, total_exec_time,
			regexp_replace(left(regexp_replace(query, '\s+', ' ', 'g'), 70), '\|', '/', 'g')
		from pg_stat_statements s join pg_database d on d.oid = s.dbid
		where d.datname = current_database() and query !~* 'pg_stat|pg_current_wal|pg_relation_size|pg_indexes'
		order by calls desc" >"$work/statements.$path"
	done_sagas=$(jq -r '.sagas // .completed // empty' "$work/load.$path.json")
	errors=$(jq -r '(.errors // 0) + (.unexpected // 0)' "$work/load.$path.json")
	rate=$(jq -r '.sagas_per_second' "$work/load.$path.json")
	awk -F'|' -v OFS='\t' -v path="$path" -v n="${done_sagas:-$sagas}" -v cpu=$((c1 - c0)) -v hz="$tck" \
		-v el="$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" -v rate="$rate" -v errs="$errors" '
		FNR == 1 { file++ }
		$1 == "db" { d[file, "wal"] = $2; d[file, "rec"] = $3; d[file, "fpi"] = $4; d[file, "commit"] = $5; d[file, "stmt"] = $6 }
		$1 == "table" { t[$2] = 1; for (i = 3; i <= 8; i++) v[file, $2, i] = $i }
		END {
			dd = "wal rec fpi commit stmt"; split(dd, k, " ")
			for (i in k) x[k[i]] = (d[2, k[i]] - d[1, k[i]]) / n
			ins = upd = hot = del = idx = ib = 0
			for (tb in t) {
				ti = v[2, tb, 3] - v[1, tb, 3]; tu = v[2, tb, 4] - v[1, tb, 4]; th = v[2, tb, 5] - v[1, tb, 5]
				tdl = v[2, tb, 6] - v[1, tb, 6]; ni = v[2, tb, 7]; tib = v[2, tb, 8] - v[1, tb, 8]
				ins += ti; upd += tu; hot += th; del += tdl; idx += ni * (ti + tu - th); ib += tib
				if (ti + tu + tdl > 0)
					printf "table\t%s\t%s\t%.2f\t%.2f\t%.2f\t%.2f\t%d\t%.2f\t%.0f\n", path, tb, ti / n, tu / n, th / n, tdl / n, ni, ni * (ti + tu - th) / n, tib / n
			}
			printf "total\t%s\t%d\t%.1f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.0f\t%.0f\t%.2f\t%.3f\t%.3f\t%d\n", path, n, rate, x["commit"], x["stmt"],
				ins / n, upd / n, hot / n, del / n, idx / n, ib / n, x["wal"], x["rec"], x["fpi"], cpu / hz * 1000 / n, errs
		}' "$work/before.$path" "$work/after.$path" >>"$results"
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "Database work per saga, tracseq-tx ${DBCOST_TX:-$(cd "$repo" && git describe --always --dirty 2>/dev/null || echo tree)}, $(date -u +%Y-%m-%dT%H:%MZ)"
echo "PostgreSQL $(q "$admin" 'show server_version'), 2-step sagas, c=$conc, $sagas sagas per path, $(nproc) CPUs"
echo "load average (1/5/15 min): $load_start at the start, $load_end at the end"
echo
echo "| path | sagas/s | commits | statements | rows inserted | rows updated | of which HOT | rows deleted | index entries (≤) | index bytes | WAL bytes | WAL records | full-page images | PostgreSQL CPU ms | errors |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
awk -F'\t' '$1 == "total" { printf "| %s | %.0f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.0f | %.0f | %.2f | %.3f | %.3f | %d |\n", $2, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17 }' "$results"
echo
echo "Per table (per saga):"
echo
echo "| path | table | inserted | updated | HOT | deleted | indexes | index entries (≤) | index bytes |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
awk -F'\t' '$1 == "table" { printf "| %s | %s | %.2f | %.2f | %.2f | %.2f | %d | %.2f | %.0f |\n", $2, $3, $4, $5, $6, $7, $8, $9, $10 }' "$results" | sort
echo
echo "Statements (per saga; pg_stat_statements):"
echo
echo "| path | calls | rows | WAL bytes | exec ms | statement |"
echo "|---|---:|---:|---:|---:|---|"
for path in $paths; do
	awk -F'|' -v n="$sagas" '$2 / n >= 0.005 { printf "| %s | %.3f | %.2f | %.0f | %.3f | `%s` |\n", $1, $2 / n, $3 / n, $4 / n, $5 / n, $6 }' "$work/statements.$path"
done
