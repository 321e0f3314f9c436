#!/usr/bin/env bash
# Runs every fuzz target of issue #10 for FUZZTIME each (default 10m), one
# after the other, and keeps what they find: a crashing input lands in the
# package's testdata/fuzz/<Target>/ and is then a regression test of the
# ordinary `go test` run. Prints one line per target with its executions.
#   FUZZTIME=10m bash bench/fuzz.sh            # all targets
#   FUZZTIME=1m bash bench/fuzz.sh fsm FuzzApply
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-10m}
targets=(
  "stack FuzzValidateSpec"
  "stack FuzzLoad"
  "fsm FuzzDecode"
  "fsm FuzzApply"
  "fsm FuzzRestore"
  "httpapi FuzzDecodeBody"
)
if [ $# -eq 2 ]; then targets=("$1 $2"); fi
for t in "${targets[@]}"; do
  set -- $t
  log=$(mktemp)
  echo "== $1 $2 for $FUZZTIME"
  if ! go test "./$1" -run '^$' -fuzz "^$2\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 5s -parallel 1 >"$log" 2>&1; then
    tail -30 "$log"; echo "FAIL $1 $2"; exit 1
  fi
  if ! grep -q "fuzz: elapsed" "$log"; then
    tail -5 "$log"; echo "FAIL $1 $2: no such fuzz target ran"; exit 1
  fi
  grep -E "fuzz: elapsed" "$log" | tail -1
  echo "ok $1 $2"
done
