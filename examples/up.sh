#!/usr/bin/env bash
# `make up`: build kontena and the demo image, start a one-node grid on this
# machine's Docker engine in the background, and install the demo stack.
# Idempotent: run it again to upgrade the demo; `make down` stops the node.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/kontena}
DATA=${DATA:-$PWD/.kontena-data}
# The data dir holds the node's keys and the log may hold secrets: both are
# readable by this user only.
mkdir -p "$DATA"
chmod 700 "$DATA"
LOG="$DATA/kontena.log"
PID="$DATA/kontena.pid"

if [ -f "$PID" ] && kill -0 "$(cat "$PID")" 2>/dev/null; then
  echo "== node already running (pid $(cat "$PID"), log $LOG)"
else
  echo "== starting a one-node grid (log: $LOG)"
  (umask 077 && touch "$LOG") && chmod 600 "$LOG"
  # 127.0.0.1 keeps the API on this machine; --overlay on gives the
  # containers their WireGuard overlay and DNS even so.
  nohup "$BIN" up --data-dir "$DATA" --name "$(hostname -s | tr 'A-Z_' 'a-z-')" --bind 127.0.0.1 --overlay on >"$LOG" 2>&1 &
  echo $! >"$PID"
fi

echo "== waiting for the grid"
for _ in $(seq 60); do
  if "$BIN" grid health >/dev/null 2>&1; then break; fi
  if ! kill -0 "$(cat "$PID")" 2>/dev/null; then
    echo "the node exited; its log:" >&2; tail -20 "$LOG" >&2; exit 1
  fi
  sleep 1
done
"$BIN" grid health

echo "== demo image"
bash examples/demo/build-image.sh

echo "== demo stack"
if "$BIN" stack show shop >/dev/null 2>&1; then
  "$BIN" stack upgrade shop examples/demo/kontena.yml
else
  "$BIN" stack install examples/demo/kontena.yml
fi
"$BIN" service ls
cat <<MSG

The demo runs. Try:
  export PATH=\$PWD/bin:\$PATH
  kontena service logs shop/worker       # the worker fetching http://web:8080/ by DNS name
  kontena service scale shop/web 5
  kontena grid token                     # the join token for more machines (not in the log)
  make down                              # stop the node (containers keep running until removed)
MSG
