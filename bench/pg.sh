#!/usr/bin/env bash
# bench/pg.sh - dsd dump/restore against the standard PostgreSQL tools.
#
# Starts a throwaway PostgreSQL 15 cluster of its own (never touches a
# system instance), fills a database of about DSD_BENCH_MB MiB (pgbench
# tables plus a text table: md5/random strings that compress poorly and
# repeated words that compress well), then times, in DSD_BENCH_RUNS rounds
# (each round runs every command once, so a busy spell of the machine hits
# all of them alike):
#   dump:    dsd dump            vs  pg_dump | zstd -3   and  pg_dump -Fc
#            dsd dump with DSD_ZSTD_THREADS=0 (compression in the writing
#            thread, as before zstd threads) for comparison, and dsd dump
#            with 3 columns of the text table anonymized (its cost)
#   restore: dsd restore         vs  zstdcat dump.sql.zst | psql
# with /usr/bin/time -v (wall time, peak RSS of the process tree) and prints
# a table with the median seconds and peak RSS and the ratios dsd/standard,
# and the sizes of the archives. Results are recorded by hand in
# bench/README.md.
#
# Usage: bench/pg.sh            (100 MiB, 1 round)
#        DSD_BENCH_MB=1000 DSD_BENCH_RUNS=3 bench/pg.sh
# Environment: DSD_BIN (default build/dsd), DSD_BENCH_MB (default 100),
#   DSD_BENCH_RUNS (rounds, default 1), DSD_BENCH_WORKERS (dsd table
#   workers, default 2), DSD_PG_BINDIR (default /usr/lib/postgresql/15/bin),
#   DSD_BENCH_KEEP=1 keeps the files.
# Not run in CI; only `bash -n bench/pg.sh` is.

set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
DSD_BIN=${DSD_BIN:-$ROOT/build/dsd}
MB=${DSD_BENCH_MB:-100}
WORKERS=${DSD_BENCH_WORKERS:-2}
RUNS=${DSD_BENCH_RUNS:-1}
BINDIR=${DSD_PG_BINDIR:-/usr/lib/postgresql/15/bin}
TIME=/usr/bin/time

for tool in "$DSD_BIN" "$BINDIR/initdb" "$BINDIR/pgbench" "$TIME"; do
  [ -x "$tool" ] || { echo "bench/pg.sh: $tool is missing" >&2; exit 1; }
done
command -v zstd >/dev/null || { echo "bench/pg.sh: zstd is missing" >&2; exit 1; }

# ------------------------------------------------------------- the cluster
WORK=$(mktemp -d /tmp/dsd-bench-pg.XXXXXX)
PGDATA=$WORK/data
SOCK=$WORK/sock
mkdir -p "$SOCK"
PW=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
echo "$PW" >"$WORK/pw"
RUN=()
if [ "$(id -u)" = 0 ]; then
  # PostgreSQL refuses to run as root.
  chown -R postgres: "$WORK"
  chmod 755 "$WORK"
  chmod 777 "$SOCK"
  RUN=(runuser -u postgres --)
fi
PGPORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

cleanup() {
  "${RUN[@]}" "$BINDIR/pg_ctl" -D "$PGDATA" -m immediate stop >/dev/null 2>&1 || true
  if [ -z "${DSD_BENCH_KEEP:-}" ]; then rm -rf "$WORK"; else echo "kept $WORK"; fi
}
trap cleanup EXIT

"${RUN[@]}" "$BINDIR/initdb" -D "$PGDATA" -U postgres --pwfile="$WORK/pw" \
  --auth=scram-sha-256 -E UTF8 --locale=C --no-sync >/dev/null
rm -f "$WORK/pw"
cat >>"$PGDATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$SOCK'
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 256MB
max_wal_size = 4GB
maintenance_work_mem = 256MB
EOF
"${RUN[@]}" "$BINDIR/pg_ctl" -D "$PGDATA" -l "$WORK/server.log" -w start >/dev/null

export PGHOST=127.0.0.1 PGPORT PGUSER=postgres PGPASSWORD=$PW
PSQL=("$BINDIR/psql" -X -q -v ON_ERROR_STOP=1)
uri() { echo "postgresql://postgres:$PW@127.0.0.1:$PGPORT/$1"; }

# ------------------------------------------------------------- the data
echo "generating a ~${MB} MiB database..."
"${PSQL[@]}" -d postgres -c "CREATE DATABASE src"
# Half pgbench (scale 1 is about 15 MiB with indexes), half text rows of
# about 250 bytes on disk.
SCALE=$(( MB / 30 > 0 ? MB / 30 : 1 ))
TEXT_ROWS=$(( MB * 1024 * 1024 / 2 / 250 ))
"$BINDIR/pgbench" -q -i -s "$SCALE" -d src >/dev/null 2>&1
"${PSQL[@]}" -d src <<EOF
CREATE TABLE docs (id bigint PRIMARY KEY, k text, r text, body text, at timestamptz);
INSERT INTO docs
SELECT i, md5(i::text), md5(random()::text) || md5(random()::text),
       repeat((ARRAY['lorem ', 'ipsum ', 'dolor ', 'sit ', 'amet '])[1 + i % 5], 5 + i % 20),
       now() - (i || ' seconds')::interval
FROM generate_series(1, $TEXT_ROWS) AS i;
CREATE INDEX docs_k ON docs (k);
VACUUM ANALYZE;
EOF
DBSIZE=$("${PSQL[@]}" -At -d src -c "SELECT pg_database_size('src') / 1048576")
echo "database src: $DBSIZE MiB (pgbench scale $SCALE, $TEXT_ROWS text rows)"

# ------------------------------------------------------------- the runs
OUT=$WORK/out
mkdir -p "$OUT"
chmod 777 "$OUT"
declare -A SECS RSS ALL_SECS ALL_RSS

# measure NAME CMD...: runs CMD under /usr/bin/time -v, records wall time
# and peak RSS (largest process of the tree that bash waited for).
measure() {
  local name=$1; shift
  local log=$WORK/time-$name.txt
  if ! "$TIME" -v -o "$log" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"; then
    echo "bench/pg.sh: $name failed:" >&2
    tail -20 "$WORK/$name.err" >&2
    exit 1
  fi
  local wall secs rss
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$log")
  secs=$(echo "$wall" | awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.2f", s }')
  rss=$(awk '/Maximum resident set size/ { printf "%.1f", $NF / 1024 }' "$log")
  ALL_SECS[$name]="${ALL_SECS[$name]:-} $secs"
  ALL_RSS[$name]="${ALL_RSS[$name]:-} $rss"
  printf '  %-22s %8s s %8s MiB\n' "$name" "$secs" "$rss"
}

median() { tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{ v[NR] = $1 } END {
  if (NR == 0) print "-"; else if (NR % 2) printf "%.2f", v[(NR + 1) / 2];
  else printf "%.2f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

"${PSQL[@]}" -d postgres -c "CREATE DATABASE r_dsd" -c "CREATE DATABASE r_psql"
# Anonymization cost: three columns of the text table (about half the data).
cat >"$WORK/anon.json" <<'JSON'
{"salt": "bench-salt-123456",
 "tables": {"public.docs": {"k": "hash", "r": {"strategy": "mask", "keep_last": 4},
                            "at": {"strategy": "date_shift", "max_days": 30}}}}
JSON
for round in $(seq 1 "$RUNS"); do
  echo "round $round of $RUNS, dump:"
  rm -f "$OUT/dsd.tar.zst" "$OUT/dsd1.tar.zst"
  measure dsd_dump env DSD_SOURCE_URI="$(uri src)" "$DSD_BIN" dump --quiet \
    --workers "$WORKERS" --to "file://$OUT/dsd.tar.zst"
  measure pg_dump_zstd bash -c "set -o pipefail; '$BINDIR/pg_dump' -d src | zstd -q -3 >'$OUT/dump.sql.zst'"
  measure pg_dump_Fc "$BINDIR/pg_dump" -Fc -d src -f "$OUT/dump.custom"
  measure dsd_dump_1t env DSD_ZSTD_THREADS=0 DSD_SOURCE_URI="$(uri src)" "$DSD_BIN" dump \
    --quiet --workers "$WORKERS" --to "file://$OUT/dsd1.tar.zst"
  rm -f "$OUT/dsda.tar.zst"
  measure dsd_dump_anon env DSD_SOURCE_URI="$(uri src)" "$DSD_BIN" dump --quiet \
    --workers "$WORKERS" --anonymize "$WORK/anon.json" --to "file://$OUT/dsda.tar.zst"

  echo "round $round of $RUNS, restore:"
  if [ "$round" -gt 1 ]; then
    "${PSQL[@]}" -d postgres -c "DROP DATABASE r_dsd" -c "DROP DATABASE r_psql" \
      -c "CREATE DATABASE r_dsd" -c "CREATE DATABASE r_psql"
  fi
  measure dsd_restore env DSD_TARGET_URI="$(uri r_dsd)" "$DSD_BIN" restore --quiet \
    --from "file://$OUT/dsd.tar.zst"
  measure psql_restore bash -c "set -o pipefail; zstdcat '$OUT/dump.sql.zst' | '$BINDIR/psql' -X -q -v ON_ERROR_STOP=1 -d r_psql >/dev/null"
done
for name in "${!ALL_SECS[@]}"; do
  SECS[$name]=$(echo "${ALL_SECS[$name]}" | median)
  RSS[$name]=$(echo "${ALL_RSS[$name]}" | median)
done

# Both restores must hold the same rows.
for db in r_dsd r_psql; do
  n=$("${PSQL[@]}" -At -d "$db" -c "SELECT (SELECT count(*) FROM pgbench_accounts) + (SELECT count(*) FROM docs)")
  echo "  $db: $n rows in pgbench_accounts + docs"
done

# ------------------------------------------------------------- the table
size_mib() { awk -v b="$(stat -c %s "$1")" 'BEGIN { printf "%.1f", b / 1048576 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
echo
echo "PostgreSQL 15, database $DBSIZE MiB, dsd workers $WORKERS, $(nproc) CPUs, median of $RUNS round(s)"
printf '%-30s %9s %9s %12s %12s\n' operation seconds "RSS MiB" "time ratio" "RSS ratio"
row() { printf '%-30s %9s %9s %12s %12s\n' "$1" "${SECS[$2]}" "${RSS[$2]}" "$3" "$4"; }
row "dsd dump (zstd)" dsd_dump "" ""
row "pg_dump | zstd -3" pg_dump_zstd "$(ratio "${SECS[dsd_dump]}" "${SECS[pg_dump_zstd]}")" \
  "$(ratio "${RSS[dsd_dump]}" "${RSS[pg_dump_zstd]}")"
row "pg_dump -Fc" pg_dump_Fc "$(ratio "${SECS[dsd_dump]}" "${SECS[pg_dump_Fc]}")" \
  "$(ratio "${RSS[dsd_dump]}" "${RSS[pg_dump_Fc]}")"
row "dsd dump, DSD_ZSTD_THREADS=0" dsd_dump_1t "$(ratio "${SECS[dsd_dump_1t]}" "${SECS[pg_dump_zstd]}")" \
  "$(ratio "${RSS[dsd_dump_1t]}" "${RSS[pg_dump_zstd]}")"
row "dsd dump, 3 columns anonymized" dsd_dump_anon "$(ratio "${SECS[dsd_dump_anon]}" "${SECS[dsd_dump]}")" \
  "$(ratio "${RSS[dsd_dump_anon]}" "${RSS[dsd_dump]}")"
row "dsd restore" dsd_restore "" ""
row "zstdcat | psql" psql_restore "$(ratio "${SECS[dsd_restore]}" "${SECS[psql_restore]}")" \
  "$(ratio "${RSS[dsd_restore]}" "${RSS[psql_restore]}")"
echo "(ratios are dsd dump or restore / the standard tool on that row;"
echo " the DSD_ZSTD_THREADS=0 row is compared with pg_dump | zstd -3,"
echo " the anonymized row with the plain dsd dump: the cost of anonymizing)"
echo
echo "archive sizes (MiB): dsd.tar.zst $(size_mib "$OUT/dsd.tar.zst"), dump.sql.zst $(size_mib "$OUT/dump.sql.zst"), pg_dump -Fc $(size_mib "$OUT/dump.custom")"
