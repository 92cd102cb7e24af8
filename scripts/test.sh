#!/usr/bin/env bash
# Runs every test on a fresh Debian bookworm machine: installs what is
# needed, builds dsd twice (normal, then ASan+UBSan) and runs the cmocka unit
# tests and the integration tests (real PostgreSQL, MariaDB and S3 servers
# started on loopback by the harness) with ctest. The last lines printed are
# ctest's summary of the sanitizer run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh --test

jobs=$(nproc)
echo "== build (RelWithDebInfo)"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDSD_TESTS=ON >/dev/null
cmake --build build -j"$jobs" 2>&1 | grep -E "error:|warning:" || true
cmake --build build -j"$jobs" >/dev/null

echo "== tests (normal build)"
ctest --test-dir build --output-on-failure -j"$jobs" ${DSD_CTEST_ARGS:-}

echo "== build (ASan+UBSan)"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DDSD_SANITIZE=ON -DDSD_TESTS=ON >/dev/null
cmake --build build-asan -j"$jobs" >/dev/null

echo "== tests (ASan+UBSan build)"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
ctest --test-dir build-asan --output-on-failure -j"$jobs" ${DSD_CTEST_ARGS:-}
