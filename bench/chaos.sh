#!/usr/bin/env bash
# Long fault runs on Docker-in-Docker nodes.
#
#   bash bench/chaos.sh                 # 100 linearizability histories (about 45 s each):
#                                       # label writes and consistent reads against three
#                                       # voters, each under a nemesis (kill -9 the leader,
#                                       # freeze a follower, cut the leader off, kill -9 every
#                                       # node), checked with porcupine
#   HISTORIES=12 bash bench/chaos.sh
#   bash bench/chaos.sh --minutes 10    # stacks installed, scaled, upgraded and removed while
#                                       # nodes are killed, frozen and cut off at random; then
#                                       # the grid must converge
#
# A history that is not linearizable is saved as /tmp/kontena-history-N.jsonl (keep it as a
# regression test) with a visualization beside it. Results go in bench/RESULTS.md by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--minutes" ]; then
  m=${2:?--minutes N}
  KONTENA_CHAOS_SECONDS=$(( m * 60 )) go test -count=1 -timeout "$(( m + 20 ))m" -run 'TestChaosDeploy$' -v ./integration/ 2>&1 |
    tee /tmp/kontena-chaos.log | grep -E 'MEASURED|chaos_test|^(--- |ok|FAIL)'
  exit "${PIPESTATUS[0]}"
fi
n=${HISTORIES:-100}
KONTENA_LIN_HISTORIES=$n go test -count=1 -timeout "$(( n * 3 + 10 ))m" -run 'TestLinearizable$' -v ./integration/ 2>&1 |
  tee /tmp/kontena-chaos.log | grep -E 'MEASURED|not linearizable|^(--- |ok|FAIL)'
exit "${PIPESTATUS[0]}"
