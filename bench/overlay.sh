#!/usr/bin/env bash
# Overlay TCP throughput between two Docker-in-Docker nodes, in one run:
# the bare link, a plain wireguard-go tunnel (stock wireguard-go + wg), and
# the kontena overlay. Needs Docker, busybox-static, wireguard-tools, iperf3.
# Writes the "Overlay throughput" section of bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
out=$(mktemp); sec=$(mktemp); trap 'rm -f "$out" "$sec"' EXIT
go test -count=1 -timeout 20m ./integration -run '^$' -bench BenchmarkOverlayThroughput -benchtime 1x | tee "$out"
res=$(grep '^RESULT ' "$out" | tail -1)
[ -n "$res" ] || { echo "no RESULT line" >&2; exit 1; }
get() { echo "$res" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
cat >"$sec" <<MD
## Overlay throughput

\`bash bench/overlay.sh\` ($(date -u +%Y-%m-%d), $(nproc) cores): iperf3, one TCP stream, 5 s, between two
Docker-in-Docker nodes on one bridge; three alternating rounds of each, medians. The overlay path is node
address to node address through \`kontena0\` (embedded userspace wireguard-go; this machine has no kernel
WireGuard); the plain tunnel is the stock \`wireguard-go\` + \`wg\` between the same two nodes.

| path | Gbit/s (median) | rounds |
|---|---|---|
| bare link | $(get bare_gbps) | $(get rounds | cut -d/ -f1) |
| plain wireguard-go | $(get plain_wg_gbps) | $(get rounds | cut -d/ -f2) |
| kontena overlay | $(get kontena_gbps) | $(get rounds | cut -d/ -f3) |

Overlay / plain wireguard-go: **$(get overlay_vs_plain)×**; overlay / bare link: **$(get overlay_vs_bare)×**.
Peak RSS of the two kontena processes after the runs: $(get kontena_peak_rss_mb) MB (soft memory limit 128 MiB
while the userspace device runs).
MD
write_section bench/RESULTS.md "## Overlay throughput" "$sec"
echo "wrote bench/RESULTS.md"
