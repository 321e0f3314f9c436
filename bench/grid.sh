#!/usr/bin/env bash
# bench/grid.sh — benchmark of issue 2: grid write throughput/latency next to
# a 3-member etcd, and the idle memory of a voter and of a worker.
#
#   bench/grid.sh                      # from the repo root or anywhere
#   CLIENTS=16 DURATION=20s ROUNDS=3 IDLE=20 bench/grid.sh
#   PROFILE=/tmp/prof bench/grid.sh    # also: CPU profiles of the three voters
#                                      # during the first kontena round
#
# It installs Debian's etcd-server if missing, builds kontena and the load
# generator (bench/gridwrite), starts a 3-voter + 1-worker grid on
# $KNET.1-4 and a 3-member etcd on $ENET.1-3 (all loopback, data in a temp
# dir), measures idle RSS, runs the loads alternately (kontena, etcd, ...;
# ROUNDS each, median taken), stops everything it started and writes the
# section "## Grid writes and node memory (issue 2)" of bench/RESULTS.md.
# Nothing is sent anywhere but 127.0.0.0/8 (apart from apt-get, if needed).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLIENTS=${CLIENTS:-16}
DURATION=${DURATION:-20s}
ROUNDS=${ROUNDS:-5}
WARMUP_OPS=${WARMUP_OPS:-12000} # writes per system before the rounds (fills kontena's audit log)
IDLE=${IDLE:-20}            # seconds of idleness before reading RSS
KNET=${KNET:-127.0.2}       # kontena nodes on $KNET.1..4 (ports 9700-9702)
ENET=${ENET:-127.0.3}       # etcd members on $ENET.1..3 (ports 2379/2380)
RESULTS=${RESULTS:-$ROOT/bench/RESULTS.md}
PROFILE=${PROFILE:-}        # a directory: write path CPU profiles (pprof) of n1-n3 go there
SECTION="## Grid writes and node memory (issue 2)"
CMDLINE="CLIENTS=$CLIENTS DURATION=$DURATION ROUNDS=$ROUNDS IDLE=$IDLE WARMUP_OPS=$WARMUP_OPS bench/grid.sh"

WORK=$(mktemp -d /tmp/kontena-gridbench.XXXXXX)
PIDS=()
log() { printf '[grid.sh %s] %s\n' "$(date +%T)" "$*" >&2; }

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for _ in $(seq 1 50); do
		local alive=0
		for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
		[ "$alive" = 0 ] && break
		sleep 0.2
	done
	for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ "$rc" != 0 ]; then
		log "failed (exit $rc); last lines of the logs:"
		for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "== $f" >&2; tail -n 15 "$f" >&2; }; done
	fi
	if [ "${KEEP:-0}" = 1 ]; then log "kept $WORK"; else rm -rf "$WORK"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_for SECONDS WHAT CMD... : poll CMD until it succeeds.
wait_for() {
	local secs=$1 what=$2; shift 2
	local end=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		[ "$SECONDS" -ge "$end" ] && { log "timed out after ${secs}s waiting for $what"; return 1; }
		sleep 0.5
	done
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
anon_kb() { awk '/^RssAnon:/ {print $2}' "/proc/$1/status"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# --- prerequisites ----------------------------------------------------------
if [ -n "$PROFILE" ] && ! [[ ${DURATION%s} =~ ^[0-9]+$ && ${DURATION%s} -ge 8 ]]; then
	log "PROFILE needs DURATION in seconds, at least 8s (got $DURATION)"; exit 1
fi
if ! command -v etcd >/dev/null; then
	log "installing etcd-server"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
fi
ETCD_VERSION=$(etcd --version | awk '/etcd Version/ {print $3}')

for ip in "$KNET".{1..4}; do
	for port in 9700 9701 9702; do
		if ss -Htln "src $ip:$port" 2>/dev/null | grep -q .; then log "$ip:$port is in use"; exit 1; fi
	done
done
for ip in "$ENET".{1..3}; do
	for port in 2379 2380; do
		if ss -Htln "src $ip:$port" 2>/dev/null | grep -q .; then log "$ip:$port is in use"; exit 1; fi
	done
done

log "building kontena and gridwrite into $WORK"
(cd "$ROOT" && CGO_ENABLED=0 go build -o "$WORK/kontena" . && CGO_ENABLED=0 go build -o "$WORK/gridwrite" ./bench/gridwrite)
KONTENA=$WORK/kontena
GRIDWRITE=$WORK/gridwrite
export KONTENA_CONFIG=$WORK/cli.json
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# --- kontena grid: 3 voters + 1 worker ----------------------------------------
log "starting kontena n1 (bootstrap, initial size 3)"
pprof_flag() { [ -n "$PROFILE" ] && echo "--pprof=127.0.0.1:$((6170 + $1))"; return 0; }
"$KONTENA" up --data-dir "$WORK/n1" --name n1 --bind "$KNET.1" --initial-size 3 $(pprof_flag 1) >"$WORK/n1.log" 2>&1 &
PIDS+=($!); KPID[1]=$!
wait_for 60 "n1 to bootstrap" "$KONTENA" grid token
TOKEN=$("$KONTENA" grid token)
for i in 2 3 4; do
	log "starting kontena n$i (join)"
	"$KONTENA" up --data-dir "$WORK/n$i" --name "n$i" --bind "$KNET.$i" --join "$KNET.1" --token "$TOKEN" $(pprof_flag "$i") >"$WORK/n$i.log" 2>&1 &
	PIDS+=($!); KPID[$i]=$!
	sleep 1
done
all_online() { [ "$("$KONTENA" node ls -o json | grep -Eo '"status": ?"online"' | wc -l)" = 4 ] && "$KONTENA" grid health; }
wait_for 120 "4 nodes online and grid health ok" all_online
"$KONTENA" node ls >"$WORK/nodes.txt"
"$KONTENA" grid health >"$WORK/health.txt" || true
log "grid up: $(tr '\n' ' ' <"$WORK/nodes.txt")"
roles=$("$KONTENA" node ls -o json | tr -d ' \n' | grep -Eo '"name":"n[0-9]","number":[0-9]+,"role":"[a-z]+"' || true)
grep -q '"name":"n4","number":[0-9]*,"role":"worker"' <<<"$roles" || { log "n4 is not a worker: $roles"; exit 1; }

# --- etcd: 3 members ----------------------------------------------------------
CLUSTER="e1=http://$ENET.1:2380,e2=http://$ENET.2:2380,e3=http://$ENET.3:2380"
for i in 1 2 3; do
	log "starting etcd e$i"
	etcd --name "e$i" --data-dir "$WORK/e$i" \
		--listen-client-urls "http://$ENET.$i:2379" --advertise-client-urls "http://$ENET.$i:2379" \
		--listen-peer-urls "http://$ENET.$i:2380" --initial-advertise-peer-urls "http://$ENET.$i:2380" \
		--initial-cluster "$CLUSTER" --initial-cluster-state new --initial-cluster-token kontena-bench \
		--logger zap --log-level warn >"$WORK/e$i.log" 2>&1 &
	PIDS+=($!); EPID[$i]=$!
done
etcd_healthy() { for i in 1 2 3; do curl -fsS "http://$ENET.$i:2379/health" | grep -q '"health":"true"' || return 1; done; }
wait_for 60 "etcd health" etcd_healthy

# --- idle memory right after formation -----------------------------------------
log "idle ${IDLE}s, then reading RSS"
sleep "$IDLE"
for i in 1 2 3 4; do RSS0[$i]=$(rss_kb "${KPID[$i]}"); ANON0[$i]=$(anon_kb "${KPID[$i]}"); done
for i in 1 2 3; do ERSS0[$i]=$(rss_kb "${EPID[$i]}"); done

# --- loads, alternating ---------------------------------------------------------
KADDRS="$KNET.1:9700,$KNET.2:9700,$KNET.3:9700"
EADDRS="$ENET.1:2379,$ENET.2:2379,$ENET.3:2379"
gw() { # gw TARGET DURATION [gridwrite flags]
	local t=$1 d=$2; shift 2
	if [ "$t" = kontena ]; then
		"$GRIDWRITE" -target kontena -clients "$CLIENTS" -duration "$d" -addrs "$KADDRS" -node n4 \
			-pids "${KPID[1]},${KPID[2]},${KPID[3]}" "$@"
	else
		"$GRIDWRITE" -target etcd -clients "$CLIENTS" -duration "$d" -addrs "$EADDRS" \
			-pids "${EPID[1]},${EPID[2]},${EPID[3]}" "$@"
	fi
}
log "warm-up ($WARMUP_OPS writes each, at most 120s)"
gw kontena 120s -max-ops "$WARMUP_OPS" | tee "$WORK/warmup.jsonl" >&2
gw etcd 120s -max-ops "$WARMUP_OPS" | tee -a "$WORK/warmup.jsonl" >&2
: >"$WORK/runs.jsonl"
ROUND_LOADS=""
for r in $(seq 1 "$ROUNDS"); do
	for t in kontena etcd; do
		log "round $r/$ROUNDS: $t, $CLIENTS clients, $DURATION (load $(cut -d' ' -f1 /proc/loadavg))"
		ROUND_LOADS+="${ROUND_LOADS:+, }$t $(cut -d' ' -f1 /proc/loadavg)"
		CURLS=()
		if [ -n "$PROFILE" ] && [ "$t" = kontena ] && [ "$r" = 1 ]; then
			mkdir -p "$PROFILE"
			secs=$(( ${DURATION%s} - 4 ))
			for i in 1 2 3; do
				(sleep 2; curl -fsS -o "$PROFILE/cpu-n$i.pprof" "http://127.0.0.1:$((6170 + i))/debug/pprof/profile?seconds=$secs") &
				CURLS+=($!)
			done
		fi
		gw "$t" "$DURATION" | tee -a "$WORK/runs.jsonl" >&2
		if [ ${#CURLS[@]} -gt 0 ]; then
			wait "${CURLS[@]}"
			cp "$KONTENA" "$PROFILE/kontena"
			for i in 1 2 3; do
				go tool pprof -top -cum -nodecount=60 "$PROFILE/kontena" "$PROFILE/cpu-n$i.pprof" >"$PROFILE/top-n$i.txt" 2>/dev/null || true
			done
			log "profiles of n1-n3 in $PROFILE (cpu-n*.pprof, top-n*.txt; go tool pprof $PROFILE/kontena FILE)"
		fi
	done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
"$KONTENA" grid health >"$WORK/health-after.txt" 2>&1 || log "grid health after the load is not ok: $(cat "$WORK/health-after.txt")"
LEADER=$(awk '/^leader:/ {print $2}' "$WORK/health-after.txt")

# --- idle memory after the load --------------------------------------------------
log "idle ${IDLE}s after the load, then reading RSS"
sleep "$IDLE"
for i in 1 2 3 4; do RSS1[$i]=$(rss_kb "${KPID[$i]}"); ANON1[$i]=$(anon_kb "${KPID[$i]}"); done
for i in 1 2 3; do ERSS1[$i]=$(rss_kb "${EPID[$i]}"); done

TABLE=$("$GRIDWRITE" -summarize <"$WORK/runs.jsonl")

# --- RESULTS.md ----------------------------------------------------------------------
max3() { printf '%s\n' "$@" | sort -n | tail -1; }
min3() { printf '%s\n' "$@" | sort -n | head -1; }
VMIN0=$(min3 "${RSS0[1]}" "${RSS0[2]}" "${RSS0[3]}"); VMAX0=$(max3 "${RSS0[1]}" "${RSS0[2]}" "${RSS0[3]}")
VMIN1=$(min3 "${RSS1[1]}" "${RSS1[2]}" "${RSS1[3]}"); VMAX1=$(max3 "${RSS1[1]}" "${RSS1[2]}" "${RSS1[3]}")
EMAX0=$(max3 "${ERSS0[1]}" "${ERSS0[2]}" "${ERSS0[3]}"); EMAX1=$(max3 "${ERSS1[1]}" "${ERSS1[2]}" "${ERSS1[3]}")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
KSERVER_LO=$((800 * 1024)); KSERVER_HI=$((1600 * 1024)); KAGENT=$((250 * 1024))

SECTION_FILE=$WORK/section.md
cat >"$SECTION_FILE" <<EOF
$SECTION

Command (from the repo root): \`$CMDLINE\`

Run on $(date -u +%Y-%m-%d) — machine: $(nproc) cores, shared with other engineers' builds and tests
(load average $LOAD_START before the benchmark started, i.e. others' work; $LOAD_END at the end; 1-min load when
each round started, which includes the benchmark's own ~8 processes: $ROUND_LOADS), $(awk '/MemTotal/ {printf "%.0f GB", $2/1048576}' /proc/meminfo) RAM,
$(uname -sr), kontena built with $(go version | awk '{print $3}'), etcd $ETCD_VERSION (Debian etcd-server, default settings).
Everything on one host over loopback, so network latency is ~0 and both systems share the same disk and 2 cores
with their load generator: read the ratios, not the absolute figures.

**Setup.** kontena: 3 voters (n1-n3 on $KNET.1-3) + 1 worker (n4 on $KNET.4); etcd: 3 members on $ENET.1-3.
$CLIENTS concurrent clients (\`bench/gridwrite\`), each with its own keep-alive connection and one write in flight;
client *c* always writes through member *c mod 3*, so writes go round-robin to all three members and two thirds
of them are forwarded by a follower to the leader, on both systems. A kontena write is
\`PATCH /v1/nodes/n4 {"add_labels":["k<c>=<seq>"]}\` (one Raft commit that changes a label of n4), an etcd write is
\`POST /v3/kv/put\` of \`bench/k<c>\` = \`<seq>\` via etcd's JSON gateway. kontena is HTTPS with a bearer token that is
checked on every request (by the follower and again by the leader); etcd is plain HTTP without auth —
the comparison favours etcd. Warm-up: $WARMUP_OPS writes per system (enough to fill kontena's audit log of
10000 records and event log of 2000, so the rounds measure the steady state of a grid in use), then $ROUNDS rounds of $DURATION alternating
kontena, etcd, kontena, etcd, ...; the table shows the median of the rounds. Failed writes are counted, not retried.
"Server CPU per write" is the user+system CPU time the three members used during a round (from /proc/<pid>/stat)
divided by the successful writes: unlike writes/s it hardly depends on what else runs on the machine.
Raft leader of the grid after the load: ${LEADER:-unknown}.

$TABLE

**Idle memory** (VmRSS from /proc/<pid>/status, after ${IDLE}s without load; "anon" is RssAnon, the rest is
file-backed: the executable and, on voters, the memory-mapped Raft log raft.db, which the kernel can drop):

| process | after formation | after the write load |
|---|---:|---:|
| kontena voter n1 | $(mb "${RSS0[1]}") MB (anon $(mb "${ANON0[1]}")) | $(mb "${RSS1[1]}") MB (anon $(mb "${ANON1[1]}")) |
| kontena voter n2 | $(mb "${RSS0[2]}") MB (anon $(mb "${ANON0[2]}")) | $(mb "${RSS1[2]}") MB (anon $(mb "${ANON1[2]}")) |
| kontena voter n3 | $(mb "${RSS0[3]}") MB (anon $(mb "${ANON0[3]}")) | $(mb "${RSS1[3]}") MB (anon $(mb "${ANON1[3]}")) |
| kontena worker n4 | $(mb "${RSS0[4]}") MB (anon $(mb "${ANON0[4]}")) | $(mb "${RSS1[4]}") MB (anon $(mb "${ANON1[4]}")) |
| etcd member (largest of 3) | $(mb "$EMAX0") MB | $(mb "$EMAX1") MB |

Against k3s's published requirements (server 0.8-1.6 GB, agent ~250 MB): an idle kontena voter uses
$(ratio "$VMAX0" "$KSERVER_LO")× of the low end of a k3s server ($(mb "$VMIN0")-$(mb "$VMAX0") MB after formation,
$(mb "$VMIN1")-$(mb "$VMAX1") MB after the load, i.e. $(ratio "$VMAX1" "$KSERVER_LO")× of 800 MB and $(ratio "$VMAX1" "$KSERVER_HI")× of 1.6 GB);
an idle kontena worker uses $(ratio "${RSS0[4]}" "$KAGENT")× of a k3s agent ($(mb "${RSS0[4]}") MB; $(mb "${RSS1[4]}") MB after the load).
The k3s figures are its documented requirements, not measured here. The kontena nodes run their container agent
(connected to this host's Docker engine) but no containers and no overlay network yet: measure again when they do.
EOF

# Replace our section (up to the next "## " heading) or append it; leave the rest alone.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
write_section "$RESULTS" "$SECTION" "$SECTION_FILE"
log "wrote $SECTION to $RESULTS"
cat "$SECTION_FILE"
