#!/usr/bin/env bash
# Builds the demo image from Debian's busybox-static with no registry.
set -euo pipefail
img=${1:-kontena-demo-busybox}
bb=$(command -v busybox) || { echo "install busybox-static first: apt-get install -y busybox-static" >&2; exit 1; }
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
mkdir -p "$dir/bin" "$dir/tmp"
cp "$bb" "$dir/bin/busybox"
for a in sh httpd env date echo sleep cat mkdir hostname wget nc nslookup head timeout; do ln -s busybox "$dir/bin/$a"; done
tar -C "$dir" -c . | docker import -c 'ENV PATH=/bin' - "$img" >/dev/null
echo "built $img"
