#!/bin/sh
# Stages the directory that manifests/manifest.yml pushes: the dsd binary
# and apt.yml. Usage: manifests/package.sh [path/to/dsd] [out-dir]
#
# Build the binary on the stack's Ubuntu release (cflinuxfs4 = 22.04), e.g. in
# the cloudfoundry/cflinuxfs4 image: a binary built on Debian bookworm needs
# glibc 2.36 and does not start on cflinuxfs4 (glibc 2.35).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${1:-$here/../build/dsd}
out=${2:-$here/../build/cf-app}
[ -x "$bin" ] || { echo "package.sh: $bin is not an executable" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out"
cp "$bin" "$out/dsd"
cp "$here/apt.yml" "$out/apt.yml"
echo "staged $out:"
ls -l "$out"
