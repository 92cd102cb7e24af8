#!/usr/bin/env bash
# Installs what dsd needs on Debian bookworm: build tools, the libraries of
# DESIGN.md, and (with --test) the servers and Node packages the tests start.
# Idempotent: packages already present are skipped by apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."

runtime_pkgs=(build-essential cmake pkg-config
  libmicrohttpd-dev libpq-dev default-libmysqlclient-dev libmongoc-dev libbson-dev
  libcurl4-openssl-dev libarchive-dev libjansson-dev libssl-dev libcmocka-dev libzstd-dev
  postgresql-client zstd ca-certificates)
test_pkgs=(postgresql mariadb-server mariadb-client python3 nodejs npm clang chromium
  libclang-rt-14-dev time openssl valgrind)

want=("${runtime_pkgs[@]}")
if [ "${1:-}" = "--test" ]; then
  want+=("${test_pkgs[@]}")
fi

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm may come with the machine's own Node.js rather than Debian's.
if command -v npm >/dev/null 2>&1; then
  missing=("${missing[@]/#npm/}")
  missing=("${missing[@]/#nodejs/}")
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
packages=$(printf '%s\n' "${missing[@]}" | grep -v '^$' || true)
if [ -n "$packages" ]; then
  echo "setup: installing $(echo $packages | tr '\n' ' ')"
  $sudo apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $packages >/dev/null
fi

if [ "${1:-}" = "--test" ] && [ -f tests/harness/package.json ]; then
  if [ ! -d tests/harness/node_modules ]; then
    echo "setup: installing the S3 test servers from npm"
    (cd tests/harness && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
fi
