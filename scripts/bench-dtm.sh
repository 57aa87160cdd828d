#!/usr/bin/env bash
# Side by side, in one sitting: DTM v1.19.0 on PostgreSQL (durable branch
# writes, UpdateBranchSync: 1, and its default UpdateBranchSync: 0) against
# this service through its DTM-compatible endpoint (/api/dtmsvr, driven by the
# same DTM-protocol client, ../shared/bench/dtm-loadgen) and through its native
# API (cmd/tracseq-load), at c = 1, 16, 64, success and compensation. Prints
# the single-row commit ceiling and one table: sagas/s, p50, p99, CPU per saga
# of each server and of PostgreSQL (from /proc/<pid>/stat utime+stime), and
# the ratios to DTM (durable).
#
#   scripts/bench-dtm.sh            # or: make bench-dtm
#
# Environment (all optional):
#   BENCH_DURATION   measured time per run (default 5s)
#   BENCH_WARMUP     load before each measurement (default 1s)
#   BENCH_CONC       concurrencies (default "1 16 64")
#   BENCH_PG         admin URL of the PostgreSQL to use (default postgres://$(id -un)@127.0.0.1:5432/postgres)
#   BENCH_SHARED     the directory holding bench/ (default ../shared next to the repository)
#   BENCH_CACHE      where DTM is built (default ${XDG_CACHE_HOME:-~/.cache}/tracseq-bench)
#
# PostgreSQL's CPU is summed over the backends connected to the run's scratch
# database and the shared writer processes (walwriter, checkpointer,
# background writer); on a shared machine the writers also serve others.
#
# Commits per saga and statements per saga are deltas over the measured
# phase of the counters of each run's own database: pg_stat_database's
# xact_commit, and pg_stat_statements' calls when the server preloads it
# (shared_preload_libraries); otherwise the table shows rows written per
# saga instead (pg_stat_database tup_inserted + tup_updated + tup_deleted).
# A busy backend publishes its counts at most once a second, so these are
# good to about a second's worth of the phase.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
shared=${BENCH_SHARED:-$(cd "$repo/.." && pwd)/shared}
bench=$shared/bench
dur=${BENCH_DURATION:-5s}
warm=${BENCH_WARMUP:-1s}
concs=${BENCH_CONC:-1 16 64}
pgadmin=${BENCH_PG:-postgres://$(id -un)@127.0.0.1:5432/postgres?sslmode=disable}
cache=${BENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tracseq-bench}
tck=$(getconf CLK_TCK)
export PGOPTIONS='-c client_min_messages=warning'

for tool in go psql jq awk; do
	command -v "$tool" >/dev/null || { echo "bench-dtm: $tool not found on PATH" >&2; exit 1; }
done
[ -d "$bench/dtm-loadgen" ] || { echo "bench-dtm: $bench/dtm-loadgen not found (set BENCH_SHARED)" >&2; exit 1; }

secs() { # 5s / 500ms / 1m -> seconds
	case $1 in
	*ms) awk -v v="${1%ms}" 'BEGIN{print v/1000}' ;;
	*s) echo "${1%s}" ;;
	*m) awk -v v="${1%m}" 'BEGIN{print v*60}' ;;
	*) echo "bench-dtm: cannot read duration $1 (use 5s, 500ms or 1m)" >&2; exit 1 ;;
	esac
}
dsec=$(secs "$dur")
wsec=$(secs "$warm")

work=$(mktemp -d)
suffix=$$
dbs=()
pids=()
cleanup() {
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
	done
	for d in "${dbs[@]}"; do
		psql "$pgadmin" -qAtc "drop database if exists $d with (force)" >/dev/null 2>&1 || true
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

dburl() { # database name -> URL on the same server as $pgadmin
	echo "$pgadmin" | sed -E "s#^(postgres(ql)?://[^/]*)/[^?]*#\1/$1#"
}
newdb() { # kind -> sets db to a fresh scratch database (not in a subshell: cleanup drops $dbs)
	db=bench_${1}_$suffix
	dbs+=("$db")
	psql "$pgadmin" -qAtc "drop database if exists $db with (force)" >/dev/null
	psql "$pgadmin" -qAtc "create database $db" >/dev/null
}
freeport() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
		echo $((20000 + RANDOM % 20000))
}
waitport() { # port pid
	for _ in $(seq 1 200); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}
ticks() { # pids... -> utime+stime summed, in clock ticks (processes gone count 0)
	local sum=0 p line
	for p in "$@"; do
		line=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		line=${line##*) }
		set -- $line
		sum=$((sum + ${12} + ${13}))
	done
	echo "$sum"
}
statements=false
if [ -n "$(psql "$pgadmin" -qAtc "select 1 from pg_settings where name = 'shared_preload_libraries' and setting ~ 'pg_stat_statements'")" ]; then
	statements=true
fi
dbcounts() { # database -> commits, and statements executed (or rows written), so far
	local url
	url=$(dburl "$1")
	if $statements; then
		psql "$url" -qAtc "create extension if not exists pg_stat_statements" >/dev/null 2>&1 || true
		psql "$url" -qAt -F ' ' -c "select d.xact_commit, coalesce((select sum(calls) from pg_stat_statements s
			where s.dbid = d.datid and s.query !~* 'pg_stat'), 0) from pg_stat_database d where d.datname = '$1'"
	else
		psql "$url" -qAt -F ' ' -c "select xact_commit, tup_inserted + tup_updated + tup_deleted
			from pg_stat_database where datname = '$1'"
	fi
}
pgpids() { # database -> PIDs of its backends and of the shared writers
	psql "$pgadmin" -qAtc "select pid from pg_stat_activity where datname = '$1' and pid <> pg_backend_pid()
		or backend_type in ('walwriter', 'checkpointer', 'background writer')"
}

echo "building: tracseq-tx, tracseq-load, dtm-loadgen, DTM v1.19.0 (cached in $cache)" >&2
(cd "$repo" && go build -o "$work/tracseq-tx" ./cmd/tracseq-tx && go build -o "$work/tracseq-load" ./cmd/tracseq-load)
(cd "$bench/dtm-loadgen" && go build -o "$work/dtm-loadgen" .)
mapfile -t dtmout < <("$bench/build-dtm.sh" "$cache/dtm-v1.19.0")
dtmbin=${dtmout[0]}
dtmschema=${dtmout[1]}
[ -x "$dtmbin" ] && [ -f "$dtmschema" ] || { echo "bench-dtm: DTM build failed ($dtmbin, $dtmschema)" >&2; exit 1; }

results=$work/results.tsv
: >"$results"

# measure LABEL MODE C SERVERPID DB CMD...: runs the load client, samples CPU
# inside its measured phase and appends one result line.
measure() {
	local label=$1 mode=$2 c=$3 spid=$4 db=$5
	shift 5
	local out=$work/out.$label.$mode.$c
	"$@" >"$out" 2>"$out.err" &
	local cpid=$!
	pids+=("$cpid")
	sleep "$(awk -v w="$wsec" 'BEGIN{print w+0.3}')"
	local pg
	mapfile -t pg < <(pgpids "$db")
	local t0 s0 p0 t1 s1 p1 d0 d1
	t0=$(date +%s.%N)
	s0=$(ticks "$spid")
	p0=$(ticks "${pg[@]}")
	d0=$(dbcounts "$db")
	sleep "$(awk -v d="$dsec" 'BEGIN{print (d>1)?d-0.6:d/2}')"
	t1=$(date +%s.%N)
	s1=$(ticks "$spid")
	p1=$(ticks "${pg[@]}")
	d1=$(dbcounts "$db")
	local rc=0
	wait "$cpid" || rc=$?
	local rate p50 p99 errs
	if [ "$label" = native ]; then
		rate=$(jq -r '.sagas_per_second' "$out")
		p50=$(jq -r '.latency_ms.p50' "$out")
		p99=$(jq -r '.latency_ms.p99' "$out")
		errs=$(jq -r '.errors + .unexpected' "$out")
	else
		local line
		line=$(grep -m1 'sagas/s=' "$out" || true)
		rate=$(echo "$line" | sed -nE 's#.*sagas/s=([0-9.]+).*#\1#p')
		p50=$(echo "$line" | sed -nE 's#.* p50=([0-9.]+).*#\1#p')
		p99=$(echo "$line" | sed -nE 's#.* p99=([0-9.]+).*#\1#p')
		errs=$(echo "$line" | sed -nE 's#.*errors=([0-9]+).*#\1#p')
	fi
	if [ "${errs:-0}" != 0 ]; then
		grep -m3 'error x' "$out" >&2 || true
	fi
	if [ -z "$rate" ] || [ "$rc" -ne 0 ]; then
		echo "bench-dtm: $label $mode c=$c failed (exit $rc); its output:" >&2
		cat "$out" "$out.err" >&2
		rate=0 p50=0 p99=0 errs=-1
	fi
	awk -v OFS='\t' -v l="$label" -v m="$mode" -v c="$c" -v r="$rate" -v p50="$p50" -v p99="$p99" -v e="$errs" \
		-v t0="$t0" -v t1="$t1" -v sd=$((s1 - s0)) -v pd=$((p1 - p0)) -v hz="$tck" -v d0="$d0" -v d1="$d1" 'BEGIN{
			el = t1 - t0; n = r * el
			split(d0, a, " "); split(d1, b, " ")
			print l, m, c, r, p50, p99, (n > 0 ? sd / hz * 1000 / n : 0), (n > 0 ? pd / hz * 1000 / n : 0), e,
				(n > 0 ? (b[1] - a[1]) / n : 0), (n > 0 ? (b[2] - a[2]) / n : 0)
		}' >>"$results"
	printf '  %-12s %-12s c=%-3s %8.1f sagas/s  p50 %s ms  p99 %s ms  errors %s\n' "$label" "$mode" "$c" "$rate" "$p50" "$p99" "$errs" >&2
}

# dtm_loads LABEL SERVERPID DB URL: the DTM-protocol client at every c, both modes.
dtm_loads() {
	local label=$1 spid=$2 db=$3 url=$4 mode c fail
	for mode in success compensation; do
		fail=false
		[ "$mode" = compensation ] && fail=true
		for c in $concs; do
			measure "$label" "$mode" "$c" "$spid" "$db" "$work/dtm-loadgen" -dtm "$url" -listen "127.0.0.1:$(freeport)" \
				-c "$c" -d "$dur" -warmup "$warm" -fail="$fail" -dtmpid "$spid" -prefix "$label-$mode-$c-$suffix"
		done
	done
}

stop() { # pid
	kill "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)

for sync in 1 0; do
	label=dtm-sync$sync
	echo "DTM v1.19.0, UpdateBranchSync: $sync" >&2
	newdb "dtm$sync"
	psql "$(dburl "$db")" -qX -v ON_ERROR_STOP=1 -f "$dtmschema" >/dev/null
	hp=$(freeport)
	u=$(echo "$pgadmin" | sed -nE 's#^postgres(ql)?://([^:@/]*).*#\2#p')
	h=$(echo "$pgadmin" | sed -nE 's#^postgres(ql)?://([^@/]*@)?([^:/]*).*#\3#p')
	pt=$(echo "$pgadmin" | sed -nE 's#^postgres(ql)?://([^@/]*@)?[^:/]*:([0-9]+).*#\3#p')
	# DTM builds its DSN as "password=%s dbname=…": an empty password would
	# swallow the database name, so give one (trust authentication ignores it).
	cat >"$work/dtm$sync.yml" <<EOF
Store: {Driver: postgres, Host: ${h:-127.0.0.1}, Port: ${pt:-5432}, User: ${u:-$(id -un)}, Password: ${BENCH_PG_PASSWORD:-unused}, Db: $db, Schema: public, MaxOpenConns: 80, MaxIdleConns: 80}
LogLevel: error
HttpPort: $hp
GrpcPort: $(freeport)
JsonRpcPort: $(freeport)
UpdateBranchSync: $sync
EOF
	"$dtmbin" -c "$work/dtm$sync.yml" >"$work/dtm$sync.log" 2>&1 &
	dpid=$!
	pids+=("$dpid")
	waitport "$hp" "$dpid" || { echo "bench-dtm: DTM did not start:" >&2; cat "$work/dtm$sync.log" >&2; exit 1; }
	dtm_loads "$label" "$dpid" "$db" "http://127.0.0.1:$hp/api/dtmsvr"
	stop "$dpid"
done

echo "this service ($(cd "$repo" && git describe --always --dirty 2>/dev/null || echo tree)), PostgreSQL store" >&2
newdb tx
tp=$(freeport)
DATABASE_URL=$(dburl "$db") HTTP_ADDR=127.0.0.1:$tp LOG_LEVEL=error "$work/tracseq-tx" >"$work/tx.log" 2>&1 &
tpid=$!
pids+=("$tpid")
waitport "$tp" "$tpid" || { echo "bench-dtm: tracseq-tx did not start:" >&2; cat "$work/tx.log" >&2; exit 1; }
sleep 1
echo "ceiling: single-row INSERT commits/s" >&2
ceiling=""
for c in 1 64; do
	"$work/tracseq-load" --url "http://127.0.0.1:$tp" --database-url "$(dburl "$db")" -c "$c" -n 1 --warmup 0 \
		--verify 0 --stats-wait 0 --ceiling-duration 3s --json >"$work/ceil.$c" 2>"$work/ceil.$c.err" || true
	v=$(jq -r '.ceiling.commits_per_second // empty | floor' "$work/ceil.$c" 2>/dev/null || true)
	ceiling="$ceiling c=$c: ${v:-n/a}"
done
dtm_loads dtmapi "$tpid" "$db" "http://127.0.0.1:$tp/api/dtmsvr"
for mode in success compensation; do
	failflags=()
	[ "$mode" = compensation ] && failflags=(--fail-step 2)
	for c in $concs; do
		measure native "$mode" "$c" "$tpid" "$db" "$work/tracseq-load" --url "http://127.0.0.1:$tp" --database-url "$(dburl "$db")" \
			-c "$c" -d "$dur" --warmup "$warm" --verify 0 --stats-wait 0 --ceiling-duration 0 --json "${failflags[@]}"
	done
done
stop "$tpid"
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "DTM v1.19.0 vs tracseq-tx, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, ${dur} per run after ${warm} warmup"
echo "load average (1/5/15 min): $load_start at the start, $load_end at the end"
echo "single-row INSERT commit ceiling (commits/s):$ceiling"
echo
per=$($statements && echo "statements/saga" || echo "rows written/saga")
$statements || echo "(pg_stat_statements is not preloaded on this server: rows written per saga stand in for statements)"
echo "| mode | c | server | sagas/s | p50 ms | p99 ms | server CPU ms/saga | PostgreSQL CPU ms/saga | commits/saga | $per | sagas/s ÷ DTM | p50 ÷ DTM | errors |"
echo "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
awk -F'\t' '
	{ k = $2 SUBSEP $3; if ($1 == "dtm-sync1") { br[k] = $4; bp[k] = $5 }; rows[NR] = $0 }
	END {
		order["dtm-sync1"] = 1; order["dtm-sync0"] = 2; order["dtmapi"] = 3; order["native"] = 4
		name["dtm-sync1"] = "DTM (UpdateBranchSync 1)"; name["dtm-sync0"] = "DTM (default, UpdateBranchSync 0)"
		name["dtmapi"] = "tracseq /api/dtmsvr"; name["native"] = "tracseq native API"
		n = 0
		for (i = 1; i <= NR; i++) {
			split(rows[i], f, "\t")
			key[++n] = sprintf("%d %06d %d", f[2] == "success" ? 0 : 1, f[3], order[f[1]]); line[n] = rows[i]
		}
		for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (key[j] < key[i]) {
			t = key[i]; key[i] = key[j]; key[j] = t; t = line[i]; line[i] = line[j]; line[j] = t
		}
		for (i = 1; i <= n; i++) {
			split(line[i], f, "\t"); k = f[2] SUBSEP f[3]
			rr = (br[k] > 0) ? sprintf("%.2f×", f[4] / br[k]) : "n/a"
			pr = (bp[k] > 0) ? sprintf("%.2f×", f[5] / bp[k]) : "n/a"
			printf "| %s | %d | %s | %.1f | %.2f | %.2f | %.3f | %.3f | %.2f | %.2f | %s | %s | %s |\n", f[2], f[3], name[f[1]], f[4], f[5], f[6], f[7], f[8], f[10], f[11], rr, pr, f[9]
		}
	}' "$results"
