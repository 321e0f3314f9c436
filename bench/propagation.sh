#!/usr/bin/env bash
# bench/propagation.sh — issue 5: how fast a change reaches DNS on every node.
# Runs the integration tests that time it on real Docker-in-Docker grids
# (TestOverlay: scale up and down, with every node's resolver polled while
# the change runs; TestLifecycle: an instance whose http health check fails)
# ROUNDS times, and writes their MEASURED lines into the section
# "## DNS propagation (issue 5)" of bench/RESULTS.md.
#   ROUNDS=3 bench/propagation.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-3}
RESULTS=${RESULTS:-$ROOT/bench/RESULTS.md}
SECTION="## DNS propagation (issue 5)"
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
WORK=$(mktemp -d /tmp/kontena-propbench.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
log() { printf '[propagation.sh %s] %s\n' "$(date +%T)" "$*" >&2; }

CMD="go test -count=1 -v -run 'TestOverlay\$/DNS_follows|TestLifecycle\$/(install|stack_deploy|a_failing)' ./integration/"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq 1 "$ROUNDS"); do
	log "round $r/$ROUNDS: $CMD"
	(cd "$ROOT" && go test -count=1 -v -run 'TestOverlay$/DNS_follows|TestLifecycle$/(install|stack_deploy|a_failing)' ./integration/) >"$WORK/round$r.txt" 2>&1 ||
		{ tail -50 "$WORK/round$r.txt" >&2; exit 1; }
	grep -h 'MEASURED DNS\|MEASURED health check failure in DNS' "$WORK/round$r.txt" | sed 's/^ *[a-z_]*\.go:[0-9]*: MEASURED //' >"$WORK/m$r.txt"
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

{
	echo "$SECTION"
	echo
	echo "Command (from the repo root): \`ROUNDS=$ROUNDS bench/propagation.sh\`, which runs $ROUNDS times"
	echo
	echo "    $CMD"
	echo
	echo "Run on $(date +%F) — machine: $(nproc) cores, shared; load average $LOAD_START at the start, $LOAD_END at the end."
	echo "Three Docker-in-Docker nodes per grid, each with its own engine and its node's resolver; a"
	echo "poller queries the resolver of a node that runs none of the instances (dig, 1 s timeout) while"
	echo "the change runs. \"Reported running\" is the time the instance's node stamped on its report."
	echo "The issue asks for changes in DNS within 1 s. Timing assertions are not in the tests;"
	echo "these are the measurements, every round:"
	echo
	for r in $(seq 1 "$ROUNDS"); do
		while IFS= read -r line; do echo "- round $r: $line"; done <"$WORK/m$r.txt"
	done
} >"$WORK/section.md"
write_section "$RESULTS" "$SECTION" "$WORK/section.md"
log "wrote $SECTION to $RESULTS"
