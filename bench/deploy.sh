#!/usr/bin/env bash
# bench/deploy.sh — issue 4: time from the command to all instances running, kontena against
# Docker Swarm mode on the same Docker engine, with the same locally built image:
#   1. deploy 10 services x 3 instances (kontena stack install / docker stack deploy)
#   2. scale one service from 1 to 30 instances (kontena service scale / docker service scale)
# Both are timed the same way: from starting the command until `docker ps` shows every
# instance running (polled every 100 ms). Rounds alternate; medians and ratios go into the
# section "## Deploys vs Docker Swarm (issue 4)" of bench/RESULTS.md. Both overlay modes run
# in one invocation (MODES="on off", the default): with it on, kontena's containers join the
# WireGuard overlay and Swarm's scaled service an overlay network, as its stack services do.
#   ROUNDS=3 bench/deploy.sh
# It puts this host's engine into swarm mode for the run and leaves swarm mode again,
# unless the engine was already a swarm manager (then it only removes what it created).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
ROUNDS=${ROUNDS:-3}
RESULTS=${RESULTS:-$ROOT/bench/RESULTS.md}
SECTION="## Deploys vs Docker Swarm (issue 4)"
IMAGE=kontena-bench-busybox
WORK=$(mktemp -d /tmp/kontena-deploybench.XXXXXX)
SECTION_FILE=$WORK/section.md
export KONTENA_CONFIG=$WORK/cli.json
log() { echo "[deploy.sh $(date +%T)] $*" >&2; }

SWARM_BEFORE=$(docker info --format '{{.Swarm.LocalNodeState}}')
KPID=""
cleanup() {
	set +e
	[ -n "$KPID" ] && "$WORK/kontena" stack rm kbench --force >/dev/null 2>&1
	[ -n "$KPID" ] && "$WORK/kontena" stack rm kscale --force >/dev/null 2>&1
	sleep 1
	[ -n "$KPID" ] && kill "$KPID" 2>/dev/null && wait "$KPID" 2>/dev/null
	docker ps -aq --filter label=io.kontena.managed=true --filter label=io.kontena.stack.name=kbench | xargs -r docker rm -f >/dev/null
	docker ps -aq --filter label=io.kontena.managed=true --filter label=io.kontena.stack.name=kscale | xargs -r docker rm -f >/dev/null
	docker stack rm sbench >/dev/null 2>&1
	docker service rm sscale >/dev/null 2>&1
	docker network rm sbench-net >/dev/null 2>&1
	if [ "$SWARM_BEFORE" != "active" ]; then docker swarm leave --force >/dev/null 2>&1; fi
	rm -rf "$WORK"
}
trap cleanup EXIT

log "building kontena and the image"
CGO_ENABLED=0 go build -o "$WORK/kontena" .
bash examples/demo/build-image.sh "$IMAGE" >/dev/null

# The same 10 x 3 services for both: a shell that sleeps, stopped with SIGKILL.
{
	echo "stack: bench/kbench"
	echo "version: 1.0.0"
	echo "services:"
	for i in $(seq 1 10); do
		printf '  s%d:\n    image: %s\n    command: sleep 1000000\n    instances: 3\n    stop_signal: SIGKILL\n' "$i" "$IMAGE"
	done
} >"$WORK/kontena.yml"
{
	echo "version: '3.8'"
	echo "services:"
	for i in $(seq 1 10); do
		printf '  s%d:\n    image: %s\n    command: sleep 1000000\n    stop_signal: SIGKILL\n    deploy:\n      replicas: 3\n' "$i" "$IMAGE"
	done
} >"$WORK/compose.yml"
printf 'stack: bench/kscale\nversion: 1.0.0\nservices:\n  s:\n    image: %s\n    command: sleep 1000000\n    instances: 1\n    stop_signal: SIGKILL\n' "$IMAGE" >"$WORK/scale.yml"

# wait_running FILTER N: seconds since START until N containers matching FILTER run.
wait_running() {
	local filter=$1 want=$2 n
	for _ in $(seq 1 3000); do
		n=$(docker ps -q --filter "$filter" | wc -l)
		if [ "$n" -ge "$want" ]; then
			echo "$(date +%s.%N) - $START" | bc
			return 0
		fi
		sleep 0.1
	done
	log "timed out waiting for $want containers with $filter (have $n)"
	return 1
}
wait_gone() {
	for _ in $(seq 1 600); do
		[ "$(docker ps -aq --filter "$1" | wc -l)" -eq 0 ] && return 0
		sleep 0.1
	done
}

[ "$SWARM_BEFORE" = "active" ] || docker swarm init --advertise-addr 127.0.0.1 >/dev/null
# Swarm's stack deploy puts its services on an overlay network; the scaled
# service joins one too when kontena's containers are on its overlay.
docker network create -d overlay --attachable sbench-net >/dev/null 2>&1 || true

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
fmt() { printf '%.2f' "$1"; }
ratio() { printf "%.2f" "$(echo "scale=4; $1 / $2" | bc)"; }

# run_mode on|off: a fresh one-node grid with the overlay on or off, then
# ROUNDS alternating rounds; appends its table rows to $WORK/rows.md.
run_mode() {
	local mode=$1 r
	log "starting a one-node grid on this engine (overlay $mode)"
	rm -f "$KONTENA_CONFIG"
	"$WORK/kontena" up --data-dir "$WORK/node-$mode" --bind 127.0.0.1 --api-port 9740 --raft-port 9741 --gossip-port 9742 \
		--overlay "$mode" --wireguard-port 9743 --log-level warn >"$WORK/kontena-$mode.log" 2>&1 &
	KPID=$!
	for _ in $(seq 1 100); do [ -s "$KONTENA_CONFIG" ] && break; sleep 0.1; done
	local K_DEPLOY=() S_DEPLOY=() K_SCALE=() S_SCALE=() net=() onnet=""
	[ "$mode" = on ] && net=(--network sbench-net)
	for r in $(seq 1 "$ROUNDS"); do
		log "overlay $mode, round $r/$ROUNDS: kontena deploy 10x3 (load $(cut -d' ' -f1 /proc/loadavg))"
		START=$(date +%s.%N)
		"$WORK/kontena" stack install "$WORK/kontena.yml" --no-wait >/dev/null
		K_DEPLOY+=("$(wait_running label=io.kontena.stack.name=kbench 30)")
		# Proof of the mode: how many of the 30 joined the overlay network.
		onnet=$(docker ps -q --filter label=io.kontena.stack.name=kbench --filter network=kontena | wc -l)
		"$WORK/kontena" stack rm kbench --force >/dev/null
		wait_gone label=io.kontena.stack.name=kbench

		log "overlay $mode, round $r/$ROUNDS: swarm deploy 10x3"
		START=$(date +%s.%N)
		docker stack deploy --resolve-image never -c "$WORK/compose.yml" sbench >/dev/null 2>&1
		S_DEPLOY+=("$(wait_running label=com.docker.stack.namespace=sbench 30)")
		docker stack rm sbench >/dev/null
		wait_gone label=com.docker.stack.namespace=sbench

		log "overlay $mode, round $r/$ROUNDS: kontena scale 1 -> 30"
		"$WORK/kontena" stack install "$WORK/scale.yml" >/dev/null
		START=$(date +%s.%N)
		"$WORK/kontena" service scale kscale/s 30 --no-wait >/dev/null
		K_SCALE+=("$(wait_running label=io.kontena.stack.name=kscale 30)")
		"$WORK/kontena" stack rm kscale --force >/dev/null
		wait_gone label=io.kontena.stack.name=kscale

		log "overlay $mode, round $r/$ROUNDS: swarm scale 1 -> 30"
		docker service create --detach --name sscale "${net[@]}" --replicas 1 --stop-signal SIGKILL "$IMAGE" sleep 1000000 >/dev/null
		wait_running label=com.docker.swarm.service.name=sscale 1 >/dev/null
		START=$(date +%s.%N)
		docker service scale --detach sscale=30 >/dev/null
		S_SCALE+=("$(wait_running label=com.docker.swarm.service.name=sscale 30)")
		docker service rm sscale >/dev/null
		wait_gone label=com.docker.swarm.service.name=sscale
	done
	kill "$KPID" 2>/dev/null && wait "$KPID" 2>/dev/null
	KPID=""
	local kd sd ks ss swarmnet="no network"
	kd=$(median "${K_DEPLOY[@]}"); sd=$(median "${S_DEPLOY[@]}")
	ks=$(median "${K_SCALE[@]}"); ss=$(median "${S_SCALE[@]}")
	[ "$mode" = on ] && swarmnet="overlay network"
	{
		echo "| deploy 10 services x 3 instances, overlay $mode ($onnet of 30 on kontena's overlay) | $(fmt "$kd") | $(fmt "$sd") | $(ratio "$kd" "$sd") |"
		echo "| scale one service 1 -> 30, overlay $mode (Swarm service: $swarmnet) | $(fmt "$ks") | $(fmt "$ss") | $(ratio "$ks" "$ss") |"
	} >>"$WORK/rows.md"
	echo "- overlay $mode: kontena deploy ${K_DEPLOY[*]}; Swarm deploy ${S_DEPLOY[*]}; kontena scale ${K_SCALE[*]}; Swarm scale ${S_SCALE[*]}" >>"$WORK/singles.md"
}

: >"$WORK/rows.md"
: >"$WORK/singles.md"
for m in ${MODES:-on off}; do run_mode "$m"; done

cat >"$SECTION_FILE" <<EOF
$SECTION

Command (from the repo root): \`ROUNDS=$ROUNDS bench/deploy.sh\` (both overlay modes in one run; \`MODES=on\` for one)

Run on $(date +%F) — machine: $(nproc) cores, Docker Engine $(docker version --format '{{.Server.Version}}'),
load average at the end $(cut -d' ' -f1-3 /proc/loadavg). One kontena node (voter, its agent on this engine) and Docker
Swarm mode (single manager) on the same engine, the same ~2 MB busybox image built locally (no registry, no pulls),
containers \`sleep 1000000\` stopped with SIGKILL. Timed from starting the command (\`kontena stack install --no-wait\`,
\`docker stack deploy --resolve-image never\`, \`kontena service scale --no-wait\`, \`docker service scale --detach\`)
until \`docker ps\` shows every instance running, polled every 100 ms; rounds alternate kontena and Swarm; medians.
With the overlay on, kontena's containers join its WireGuard overlay with a fixed address and the node's DNS
(the table says how many were seen on the overlay network), and Swarm's scaled service is created on an attachable
overlay network, as its stack deploy's services are; with it off, kontena's containers use the engine's default
bridge and the scaled Swarm service has no network.

| | kontena (s) | Docker Swarm (s) | kontena / Swarm |
|---|---:|---:|---:|
$(cat "$WORK/rows.md")

Single rounds (s):
$(cat "$WORK/singles.md")

Below 1.00 kontena is faster. Both run their containers on one engine of this host: the comparison is of the
orchestration (placement, per-node agent, engine calls), not of a network between nodes.
EOF
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
write_section "$RESULTS" "$SECTION" "$SECTION_FILE"
log "wrote $SECTION to $RESULTS"
cat "$SECTION_FILE"
