#!/usr/bin/env bash
# bench/follow.sh — issue 14: 100 `logs --follow` streams and 100 blocking
# queries held against one node for MINUTES minutes (default 10), sampling the
# node's memory: flat memory and no errors is the bar (Kontena's master
# leaked under this load). One node on 127.0.4.1 with this machine's Docker
# engine runs a chatty two-instance service; bench/followload drives the load.
#
#   bash bench/follow.sh
#   MINUTES=3 FOLLOWS=100 BLOCKING=100 bash bench/follow.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
. bench/lib.sh
MINUTES=${MINUTES:-10}
FOLLOWS=${FOLLOWS:-100}
BLOCKING=${BLOCKING:-100}
ADDR=${ADDR:-127.0.4.1}
WORK=$(mktemp -d /tmp/kontena-follow.XXXXXX)
NODE=
cleanup() {
	[ -n "$NODE" ] && KONTENA_CONFIG="$WORK/cli.json" "$WORK/kontena" stack rm chatty --force >/dev/null 2>&1 || true
	[ -n "$NODE" ] && kill -TERM "$NODE" 2>/dev/null && wait "$NODE" 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT
go build -o "$WORK/kontena" .
go build -o "$WORK/followload" ./bench/followload
bash examples/demo/build-image.sh kontena-demo-busybox >/dev/null
export KONTENA_CONFIG="$WORK/cli.json"
"$WORK/kontena" up --data-dir "$WORK/data" --name follow --grid follow --bind "$ADDR" --overlay off --dns-listen off \
	--log-level warn >"$WORK/node.log" 2>&1 &
NODE=$!
for _ in $(seq 1 100); do [ -s "$KONTENA_CONFIG" ] && break; sleep 0.2; done
cat >"$WORK/chatty.yml" <<'YML'
stack: bench/chatty
version: 1.0.0
services:
  talk:
    image: kontena-demo-busybox:latest
    instances: 2
    stop_signal: SIGKILL
    command: sh -c 'while true; do echo "line from $$KONTENA_NODE_NAME at $$(date +%s)"; sleep 0.2; done'
YML
"$WORK/kontena" stack install "$WORK/chatty.yml" --timeout 2m >/dev/null
TOKEN=$(python3 -c 'import json,sys;c=json.load(open(sys.argv[1]));print(c["grids"][c["current"]]["token"])' "$KONTENA_CONFIG")
python3 -c 'import json,sys;c=json.load(open(sys.argv[1]));print(c["grids"][c["current"]]["ca_cert"],end="")' "$KONTENA_CONFIG" >"$WORK/ca.pem"
OUT="$WORK/out.txt"
"$WORK/followload" -api "$ADDR:9700" -ca "$WORK/ca.pem" -token "$TOKEN" -service chatty/talk \
	-follows "$FOLLOWS" -blocking "$BLOCKING" -duration "${MINUTES}m" -pid "$NODE" -sample 30s | tee "$OUT"
SEC="$WORK/section.md"
{
	echo "## Follow load (issue 14)"
	echo
	echo "\`MINUTES=$MINUTES FOLLOWS=$FOLLOWS BLOCKING=$BLOCKING bash bench/follow.sh\` ($(date -u +%F), one node, this machine's Docker engine,"
	echo "a two-instance service printing 5 lines/s each): node RSS sampled every 30 s while $FOLLOWS log streams and"
	echo "$BLOCKING blocking queries are held open."
	echo
	echo '```'
	cat "$OUT"
	echo '```'
} >"$SEC"
write_section "$ROOT/bench/RESULTS.md" "## Follow load (issue 14)" "$SEC"
