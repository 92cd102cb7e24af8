#!/usr/bin/env bash
# Starts the broker on a fresh Debian bookworm machine with the embedded
# default storage (file://$PWD/dsd-data) and development credentials, which
# it prints. Installs and builds what is needed first. Ctrl-C stops it.
#
# Override anything from the README's configuration table in the
# environment, e.g. PORT=9000 scripts/serve-dev.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DDSD_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)" --target dsd >/dev/null

export PORT="${PORT:-8080}"
export DSD_BROKER_USERNAME="${DSD_BROKER_USERNAME:-broker}"
if [ -z "${DSD_BROKER_PASSWORD:-}" ]; then
  DSD_BROKER_PASSWORD="dev-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  export DSD_BROKER_PASSWORD
fi
export DSD_STORAGE="${DSD_STORAGE:-file://$PWD/dsd-data}"
export DSD_ALLOW_DIRECT_URIS="${DSD_ALLOW_DIRECT_URIS:-all}"

cat <<MSG
dsd broker (development): http://localhost:$PORT
  username: $DSD_BROKER_USERNAME
  password: $DSD_BROKER_PASSWORD
  storage:  $DSD_STORAGE
  try:      curl -u "$DSD_BROKER_USERNAME:$DSD_BROKER_PASSWORD" -H 'X-Broker-API-Version: 2.17' http://localhost:$PORT/v2/catalog
MSG
exec build/dsd serve
