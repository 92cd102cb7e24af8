#!/usr/bin/env bash
# bench/mysql.sh - dsd dump/restore against the standard MySQL tools.
#
# Starts a throwaway MariaDB server of its own (never touches a system
# instance: own datadir, socket and port under a temporary directory), fills
# a database of about DSD_BENCH_MB MiB (a text table with md5 strings that
# compress poorly and repeated words that compress well, plus a numeric
# table), then times, one after the other:
#   dump:    dsd dump     vs  mysqldump --single-transaction | zstd -3
#   restore: dsd restore  vs  zstdcat dump.sql.zst | mysql
# with /usr/bin/time -v (wall time, peak RSS of the largest process) and
# prints a table with seconds, peak RSS and the ratios dsd/standard, and the
# sizes of the archives. Results are recorded by hand in bench/README.md.
#
# Usage: bench/mysql.sh            (100 MiB)
#        DSD_BENCH_MB=1000 bench/mysql.sh
# Environment: DSD_BIN (default build/dsd), DSD_BENCH_MB (default 100),
#   DSD_BENCH_WORKERS (dsd table workers, default 2), DSD_BENCH_KEEP=1
#   keeps the files. Passwords go to the clients through MYSQL_PWD only.
# Not run in CI; only `bash -n bench/mysql.sh` is.

set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
DSD_BIN=${DSD_BIN:-$ROOT/build/dsd}
MB=${DSD_BENCH_MB:-100}
WORKERS=${DSD_BENCH_WORKERS:-2}
TIME=/usr/bin/time

pick() { for c in "$@"; do command -v "$c" 2>/dev/null && return; [ -x "/usr/sbin/$c" ] && { echo "/usr/sbin/$c"; return; }; done; echo ""; }
MYSQLD=$(pick mariadbd mysqld)
INSTALL_DB=$(pick mariadb-install-db mysql_install_db)
CLIENT=$(pick mariadb mysql)
DUMP=$(pick mariadb-dump mysqldump)
for tool in "$DSD_BIN" "$MYSQLD" "$INSTALL_DB" "$CLIENT" "$DUMP" "$TIME"; do
  [ -n "$tool" ] && [ -x "$tool" ] || { echo "bench/mysql.sh: a tool is missing (${tool:-mariadb})" >&2; exit 1; }
done
command -v zstd >/dev/null || { echo "bench/mysql.sh: zstd is missing" >&2; exit 1; }

# ------------------------------------------------------------- the server
WORK=$(mktemp -d /tmp/dsd-bench-my.XXXXXX)
DATADIR=$WORK/data
SOCK=$WORK/mysqld.sock
mkdir -p "$DATADIR"
PW=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
RUNAS=$(id -un)
if [ "$(id -u)" = 0 ]; then
  RUNAS=mysql
  chown -R mysql: "$WORK"
  chmod 755 "$WORK"
fi
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$WORK/init.sql" <<EOF
CREATE USER IF NOT EXISTS root@'127.0.0.1';
ALTER USER root@'127.0.0.1' IDENTIFIED BY '$PW';
GRANT ALL ON *.* TO root@'127.0.0.1' WITH GRANT OPTION;
EOF
chmod 600 "$WORK/init.sql"
[ "$(id -u)" = 0 ] && chown mysql: "$WORK/init.sql"
SERVER_PID=

cleanup() {
  if [ -n "$SERVER_PID" ]; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  if [ -z "${DSD_BENCH_KEEP:-}" ]; then rm -rf "$WORK"; else echo "kept $WORK"; fi
}
trap cleanup EXIT

"$INSTALL_DB" --no-defaults --datadir="$DATADIR" --user="$RUNAS" \
  --auth-root-authentication-method=normal --skip-test-db >/dev/null 2>&1
"$MYSQLD" --no-defaults --datadir="$DATADIR" --socket="$SOCK" --port="$PORT" \
  --bind-address=127.0.0.1 --user="$RUNAS" --skip-log-bin --skip-name-resolve \
  --pid-file="$WORK/mysqld.pid" --log-error="$WORK/server.log" \
  --innodb-buffer-pool-size=256M --innodb-log-file-size=256M \
  --innodb-flush-log-at-trx-commit=2 --max-allowed-packet=64M \
  --character-set-server=utf8mb4 --init-file="$WORK/init.sql" &
SERVER_PID=$!

export MYSQL_PWD=$PW
MY=("$CLIENT" --protocol=TCP -h 127.0.0.1 -P "$PORT" -u root)
for _ in $(seq 1 300); do
  "${MY[@]}" -e "SELECT 1" >/dev/null 2>&1 && break
  sleep 0.2
done
"${MY[@]}" -e "SELECT 1" >/dev/null
uri() { echo "mysql://root:$PW@127.0.0.1:$PORT/$1"; }

# ------------------------------------------------------------- the data
echo "generating a ~${MB} MiB database..."
TEXT_ROWS=$(( MB * 1024 * 1024 * 3 / 4 / 250 ))
NUM_ROWS=$(( MB * 1024 * 1024 / 4 / 60 ))
"${MY[@]}" -e "CREATE DATABASE src CHARACTER SET utf8mb4"
"${MY[@]}" src <<EOF
CREATE TABLE docs (id BIGINT PRIMARY KEY, k CHAR(32), r VARCHAR(64), body TEXT, at DATETIME(6),
                   KEY docs_k (k)) ENGINE=InnoDB;
INSERT INTO docs
SELECT seq, MD5(seq), CONCAT(MD5(RAND()), MD5(RAND())),
       REPEAT(ELT(1 + seq % 5, 'lorem ', 'ipsum ', 'dolor ', 'sit ', 'amet '), 5 + seq % 20),
       NOW(6) - INTERVAL seq SECOND
FROM seq_1_to_$TEXT_ROWS;
CREATE TABLE nums (id INT PRIMARY KEY, a BIGINT, b DECIMAL(12,2), c DOUBLE, d BINARY(8)) ENGINE=InnoDB;
INSERT INTO nums SELECT seq, seq * 7919, seq / 3, RAND() * 1e6, UNHEX(LPAD(HEX(seq), 16, '0'))
FROM seq_1_to_$NUM_ROWS;
ANALYZE TABLE docs, nums;
EOF
DBSIZE=$("${MY[@]}" -N -B -e "SELECT ROUND(SUM(DATA_LENGTH + INDEX_LENGTH) / 1048576)
  FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'src'")
echo "database src: $DBSIZE MiB ($TEXT_ROWS text rows, $NUM_ROWS numeric rows)"

# ------------------------------------------------------------- the runs
OUT=$WORK/out
mkdir -p "$OUT"
declare -A SECS RSS

measure() {
  local name=$1; shift
  local log=$WORK/time-$name.txt
  if ! "$TIME" -v -o "$log" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"; then
    echo "bench/mysql.sh: $name failed:" >&2
    tail -20 "$WORK/$name.err" >&2
    exit 1
  fi
  local wall
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$log")
  SECS[$name]=$(echo "$wall" | awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.2f", s }')
  RSS[$name]=$(awk '/Maximum resident set size/ { printf "%.1f", $NF / 1024 }' "$log")
  printf '  %-22s %8s s %8s MiB\n' "$name" "${SECS[$name]}" "${RSS[$name]}"
}

MYARGS="--protocol=TCP -h 127.0.0.1 -P $PORT -u root"
echo "dump:"
measure dsd_dump env DSD_SOURCE_URI="$(uri src)" "$DSD_BIN" dump --quiet \
  --workers "$WORKERS" --to "file://$OUT/dsd.tar.zst"
measure mysqldump_zstd bash -c "set -o pipefail; '$DUMP' $MYARGS --single-transaction \
  --routines --triggers --events --hex-blob src | zstd -q -3 >'$OUT/dump.sql.zst'"

echo "restore:"
"${MY[@]}" -e "CREATE DATABASE r_dsd CHARACTER SET utf8mb4; CREATE DATABASE r_mysql CHARACTER SET utf8mb4"
measure dsd_restore env DSD_TARGET_URI="$(uri r_dsd)" "$DSD_BIN" restore --quiet \
  --from "file://$OUT/dsd.tar.zst"
measure mysql_restore bash -c "set -o pipefail; zstdcat '$OUT/dump.sql.zst' | '$CLIENT' $MYARGS r_mysql"

for db in r_dsd r_mysql; do
  n=$("${MY[@]}" -N -B -e "SELECT (SELECT COUNT(*) FROM $db.docs) + (SELECT COUNT(*) FROM $db.nums)")
  echo "  $db: $n rows in docs + nums"
done

# ------------------------------------------------------------- the table
size_mib() { awk -v b="$(stat -c %s "$1")" 'BEGIN { printf "%.1f", b / 1048576 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
echo
echo "$("${MY[@]}" -N -B -e 'SELECT VERSION()'), database $DBSIZE MiB, dsd workers $WORKERS, $(nproc) CPUs"
printf '%-34s %9s %9s %12s %12s\n' operation seconds "RSS MiB" "time ratio" "RSS ratio"
row() { printf '%-34s %9s %9s %12s %12s\n' "$1" "${SECS[$2]}" "${RSS[$2]}" "$3" "$4"; }
row "dsd dump (zstd)" dsd_dump "" ""
row "mysqldump --single-transaction | zstd" mysqldump_zstd \
  "$(ratio "${SECS[dsd_dump]}" "${SECS[mysqldump_zstd]}")" \
  "$(ratio "${RSS[dsd_dump]}" "${RSS[mysqldump_zstd]}")"
row "dsd restore" dsd_restore "" ""
row "zstdcat | mysql" mysql_restore \
  "$(ratio "${SECS[dsd_restore]}" "${SECS[mysql_restore]}")" \
  "$(ratio "${RSS[dsd_restore]}" "${RSS[mysql_restore]}")"
echo "archive sizes: dsd.tar.zst $(size_mib "$OUT/dsd.tar.zst") MiB, dump.sql.zst $(size_mib "$OUT/dump.sql.zst") MiB"
