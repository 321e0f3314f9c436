#!/usr/bin/env bash
# Long linearizability run: HISTORIES histories (default 100) of label
# writes and consistent reads against three voters on Docker-in-Docker
# nodes, each under a nemesis (kill -9 the leader, freeze a follower, cut
# the leader off, kill -9 every node), checked with porcupine. A history
# that is not linearizable is saved as /tmp/kontena-history-N.jsonl (keep
# it as a regression test) with a visualization beside it.
#
#   bash bench/chaos.sh            # 100 histories (about 45 s each)
#   HISTORIES=12 bash bench/chaos.sh
set -euo pipefail
cd "$(dirname "$0")/.."
n=${HISTORIES:-100}
timeout=$(( n * 3 + 10 ))m
KONTENA_LIN_HISTORIES=$n go test -count=1 -timeout "$timeout" -run 'TestLinearizable$' -v ./integration/ 2>&1 |
  tee /tmp/kontena-chaos.log | grep -E 'MEASURED|not linearizable|^(--- |ok|FAIL)'
