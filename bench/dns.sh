#!/usr/bin/env bash
# bench/dns.sh — benchmark of issue 5: queries per second of the node resolver
# (package dns) next to dnsmasq serving the same records, measured with dnsperf.
#
#   bench/dns.sh                              # from the repo root or anywhere
#   DURATION=30 ROUNDS=3 CLIENTS=2 OUTSTANDING=200 bench/dns.sh
#
# It installs Debian's dnsperf and dnsmasq-base if missing (apt-get update
# first), builds dns/cmd/dnsbench, which serves a synthetic grid (STACKS x
# SERVICES x INSTANCES records) from the resolver on $OURS:$PORT with all
# cores and on $OURS1:$PORT with GOMAXPROCS=1, starts dnsmasq on $DNSMASQ:$PORT
# with the same records as a hosts file (--no-resolv, kontena.local local),
# checks that all three give the expected addresses for every name, runs
# dnsperf with the same query file against each (ROUNDS rounds of DURATION
# seconds, alternating; median kept), stops what it started and writes the
# section "## DNS resolver (issue 5)" of bench/RESULTS.md.
# Nothing is sent anywhere but 127.0.0.0/8 (apart from apt-get, if needed).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-30}       # seconds per dnsperf run
ROUNDS=${ROUNDS:-3}
CLIENTS=${CLIENTS:-2}          # dnsperf -c (sockets)
OUTSTANDING=${OUTSTANDING:-200} # dnsperf -q (queries in flight)
STACKS=${STACKS:-10}
SERVICES=${SERVICES:-100}
INSTANCES=${INSTANCES:-3}
OURS=${OURS:-127.0.0.53}       # resolver, GOMAXPROCS = all cores
OURS1=${OURS1:-127.0.0.55}     # resolver, GOMAXPROCS=1 (the core budget of single-threaded dnsmasq)
DNSMASQ=${DNSMASQ:-127.0.0.54}
PORT=${PORT:-5353}
RESULTS=${RESULTS:-$ROOT/bench/RESULTS.md}
SECTION="## DNS resolver (issue 5)"
CMDLINE="DURATION=$DURATION ROUNDS=$ROUNDS CLIENTS=$CLIENTS OUTSTANDING=$OUTSTANDING bench/dns.sh"

WORK=$(mktemp -d /tmp/kontena-dnsbench.XXXXXX)
PIDS=()
log() { printf '[dns.sh %s] %s\n' "$(date +%T)" "$*" >&2; }

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
	exit $rc
}
trap cleanup EXIT INT TERM

load1() { cut -d' ' -f1 /proc/loadavg; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# --- tools ---------------------------------------------------------------
missing=()
command -v dnsperf >/dev/null || missing+=(dnsperf)
command -v dnsmasq >/dev/null || missing+=(dnsmasq-base)
if [ ${#missing[@]} -gt 0 ]; then
	log "installing ${missing[*]}"
	SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
DNSPERF_VERSION=$(dpkg-query -W -f '${Version}' dnsperf 2>/dev/null || echo unknown)
DNSMASQ_VERSION=$(dnsmasq --version | sed -n '1s/^Dnsmasq version \([^ ]*\).*/\1/p')

log "building dns/cmd/dnsbench"
(cd "$ROOT" && go build -o "$WORK/dnsbench" ./dns/cmd/dnsbench)
GEN=(-stacks "$STACKS" -services "$SERVICES" -instances "$INSTANCES")
"$WORK/dnsbench" "${GEN[@]}" -write-only -hosts "$WORK/hosts" -queries "$WORK/queries" 2>/dev/null
NQ=$(wc -l <"$WORK/queries")
NH=$(wc -l <"$WORK/hosts")

wait_port() { # addr port
	for _ in $(seq 1 100); do
		ss -Hlun "src $1:$2" 2>/dev/null | grep -q . && return 0
		sleep 0.1
	done
	log "nothing listens on $1:$2"; return 1
}

# --- servers -------------------------------------------------------------
"$WORK/dnsbench" "${GEN[@]}" -addr "$OURS:$PORT" >"$WORK/ours.log" 2>&1 &
PIDS+=($!)
GOMAXPROCS=1 "$WORK/dnsbench" "${GEN[@]}" -addr "$OURS1:$PORT" >"$WORK/ours1.log" 2>&1 &
PIDS+=($!)
dnsmasq -k --no-resolv --no-hosts --addn-hosts="$WORK/hosts" --local=/kontena.local/ \
	--listen-address="$DNSMASQ" --port="$PORT" --bind-interfaces \
	--user=root --group=root --pid-file="$WORK/dnsmasq.pid" --log-facility="$WORK/dnsmasq.log" &
PIDS+=($!)
wait_port "$OURS" "$PORT"; wait_port "$OURS1" "$PORT"; wait_port "$DNSMASQ" "$PORT"
"$WORK/dnsbench" "${GEN[@]}" -write-only -check "$OURS:$PORT,$OURS1:$PORT,$DNSMASQ:$PORT" 2>&1 | tail -1 >&2

# --- runs ----------------------------------------------------------------
LOAD_START=$(loadavg)
ROUND_LOADS=""
declare -A QPS LAT LOST
run() { # name addr round
	local out="$WORK/$1.$3.txt"
	ROUND_LOADS+="${ROUND_LOADS:+, }$1 $(load1)"
	dnsperf -s "$2" -p "$PORT" -d "$WORK/queries" -l "$DURATION" -c "$CLIENTS" -q "$OUTSTANDING" -T 1 >"$out" 2>&1
	QPS[$1.$3]=$(awk '/Queries per second:/ {printf "%.0f", $4}' "$out")
	LAT[$1.$3]=$(awk '/Average Latency \(s\):/ {printf "%.3f", $4*1000}' "$out")
	LOST[$1.$3]=$(awk '/Queries lost:/ {print $3}' "$out")
	if ! grep -q 'NOERROR [0-9]* (100.00%)' "$out"; then
		log "$1: not all answers NOERROR:"; grep 'Response codes' "$out" >&2 || cat "$out" >&2
	fi
	log "round $3 $1 ($2): ${QPS[$1.$3]} qps, avg latency ${LAT[$1.$3]} ms, lost ${LOST[$1.$3]}"
}
for r in $(seq 1 "$ROUNDS"); do
	run kontena "$OURS" "$r"
	run dnsmasq "$DNSMASQ" "$r"
	run kontena1 "$OURS1" "$r"
done
LOAD_END=$(loadavg)

log "in-process answer path (go test -bench)"
BENCH=$(cd "$ROOT" && go test -run '^$' -bench 'BenchmarkResolve$/^(service|instance|nxdomain)' -benchtime 1000000x ./dns/ 2>&1 | awk '
	/^BenchmarkResolve\/(service|instance|nxdomain)/ {
		sub(/^BenchmarkResolve\//, "", $1); sub(/-[0-9]+$/, "", $1)
		printf "%s%s %s ns, %s allocs", sep, $1, $3, $7; sep = "; " }')

median() { # name field(QPS|LAT)
	local -n arr=$2
	for r in $(seq 1 "$ROUNDS"); do echo "${arr[$1.$r]}"; done | sort -n | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'
}
singles() { # name field
	local -n arr=$2
	local s=""
	for r in $(seq 1 "$ROUNDS"); do s+="${s:+ / }${arr[$1.$r]}"; done
	echo "$s"
}
lost_total() {
	local t=0
	for r in $(seq 1 "$ROUNDS"); do t=$((t + ${LOST[$1.$r]:-0})); done
	echo $t
}
Q_K=$(median kontena QPS); Q_D=$(median dnsmasq QPS); Q_K1=$(median kontena1 QPS)
L_K=$(median kontena LAT); L_D=$(median dnsmasq LAT); L_K1=$(median kontena1 LAT)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }

SECTION_FILE=$WORK/section.md
cat >"$SECTION_FILE" <<EOF
$SECTION

Command (from the repo root): \`$CMDLINE\`

Run on $(date -u +%Y-%m-%d) — machine: $(nproc) cores, shared with other engineers' builds and tests
(load average $LOAD_START at the start, $LOAD_END at the end; 1-min load when each run started: $ROUND_LOADS),
$(uname -sr), resolver built with $(go version | awk '{print $3}'), dnsmasq $DNSMASQ_VERSION and dnsperf $DNSPERF_VERSION (Debian).
Everything on one host over loopback: dnsperf (one thread) shares the $(nproc) cores with the server it measures
and with the other engineers' work, so read the ratios, not the absolute figures.

**Setup.** A synthetic grid of $STACKS stacks x $SERVICES services x $INSTANCES instances ($((STACKS * SERVICES * INSTANCES)) records, every stack
exposing one service): $NQ names — \`svcN.stackM.bench.kontena.local\` ($INSTANCES A records each),
\`svcN-I.stackM...\` (1), \`stackM.bench.kontena.local\` ($INSTANCES) and \`stackM-I.bench...\` (1).
kontena: \`dns/cmd/dnsbench\` serving them from the resolver (\`dns.Server\`, the code every node runs; UDP answers
shuffled per query) on $OURS:$PORT with GOMAXPROCS=$(nproc), and a second one with GOMAXPROCS=1 on $OURS1:$PORT.
dnsmasq: the same records as a hosts file ($NH lines), \`dnsmasq -k --no-resolv --no-hosts --addn-hosts=FILE
--local=/kontena.local/ --listen-address=$DNSMASQ --port=$PORT --bind-interfaces\` (single-threaded by design).
Before the runs every name was asked of all three servers and each gave exactly the expected addresses.
Load: \`dnsperf -s ADDR -p $PORT -d QUERYFILE -l $DURATION -c $CLIENTS -q $OUTSTANDING -T 1\` (the same query file — every name
once, shuffled, looped — no rate limit), $ROUNDS rounds alternating kontena, dnsmasq, kontena GOMAXPROCS=1; median shown.

| | kontena ($(nproc) cores) | dnsmasq | kontena (GOMAXPROCS=1) |
|---|---:|---:|---:|
| queries/s | $Q_K | $Q_D | $Q_K1 |
| vs dnsmasq | $(ratio "$Q_K" "$Q_D") | 1.00 | $(ratio "$Q_K1" "$Q_D") |
| avg latency (ms) | $L_K | $L_D | $L_K1 |
| queries lost (all runs) | $(lost_total kontena) | $(lost_total dnsmasq) | $(lost_total kontena1) |

Single runs (queries/s): kontena $(singles kontena QPS) — dnsmasq $(singles dnsmasq QPS) — kontena GOMAXPROCS=1 $(singles kontena1 QPS).

Reference point only, not measured here: CoreDNS publishes ~34k queries/s on 2 vCPUs
(kontena here: $(ratio "$Q_K" 34000)x that figure, on a shared and loaded machine with the load generator on the same cores).
In-process answer path, raw query in, raw response out, without sockets (\`go test -run '^\$' -bench 'BenchmarkResolve\$' ./dns/\`,
RunParallel on $(nproc) cores, wall time per query): ${BENCH:-not measured}.
EOF

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
write_section "$RESULTS" "$SECTION" "$SECTION_FILE"
log "wrote $SECTION to $RESULTS"
cat "$SECTION_FILE"
