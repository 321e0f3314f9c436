#!/usr/bin/env bash
# bench/lb.sh — the grid's load balancer (package lb, `kontena lb`) next to
# HAProxy 2.6 (Debian) in the same run, on the same machine, to the same two
# backends (bench/lbbackend): plain HTTP/1.1 keep-alive and TLS with wrk,
# HTTP/2 over TLS with h2load.
#
#   bench/lb.sh
#   DURATION=20 ROUNDS=3 CONNS=64 bench/lb.sh
#
# Fairness: each load balancer gets one core (taskset -c 1; HAProxy
# nbthread 1, kontena GOMAXPROCS=1), wrk/h2load and the backends share the
# other. Both add X-Forwarded-For. Rounds alternate between the two; the
# median of ROUNDS is kept. Besides requests/s and latency the script reads
# each load balancer's CPU time from /proc and reports CPU per request, which
# does not depend on whether the client side saturated first.
# Nothing leaves 127.0.0.1 (apart from apt-get, if needed).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-15}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
H2CONNS=${H2CONNS:-16}
H2STREAMS=${H2STREAMS:-16}
RESULTS=${RESULTS:-$ROOT/bench/RESULTS.md}
SECTION="## Load balancer against HAProxy (issue 12)"
CMDLINE="DURATION=$DURATION ROUNDS=$ROUNDS CONNS=$CONNS H2CONNS=$H2CONNS H2STREAMS=$H2STREAMS bench/lb.sh"
source "$ROOT/bench/lib.sh"

WORK=$(mktemp -d /tmp/kontena-lbbench.XXXXXX)
PIDS=()
log() { printf '[lb.sh %s] %s\n' "$(date +%T)" "$*" >&2; }
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

need() { command -v "$1" >/dev/null || { log "installing $2"; apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
need haproxy haproxy
need wrk wrk
need h2load nghttp2-client
need taskset util-linux

log "building kontena and the backend"
(cd "$ROOT" && CGO_ENABLED=0 go build -o "$WORK/kontena" . && go build -o "$WORK/lbbackend" ./bench/lbbackend)

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=bench.test \
	-addext subjectAltName=DNS:bench.test -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/bundle.pem"

taskset -c 0 "$WORK/lbbackend" -ports 9101,9102 & PIDS+=($!)

cat >"$WORK/haproxy.cfg" <<CFG
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  option forwardfor
frontend fe
  bind 127.0.0.1:8081
  bind 127.0.0.1:8444 ssl crt $WORK/bundle.pem alpn h2,http/1.1
  default_backend be
backend be
  balance roundrobin
  http-reuse always
  server b1 127.0.0.1:9101
  server b2 127.0.0.1:9102
CFG
taskset -c 1 haproxy -f "$WORK/haproxy.cfg" -db & PIDS+=($!); HAPROXY=$!

cat >"$WORK/routing.json" <<JSON
{"services":[{"name":"bench/web","mode":"http","balance":"roundrobin","internal_port":80,
 "backends":[{"id":"b1","addr":"127.0.0.1:9101"},{"id":"b2","addr":"127.0.0.1:9102"}]}]}
JSON
SSL_CERTS="$(cat "$WORK/bundle.pem")" GOMAXPROCS=1 taskset -c 1 "$WORK/kontena" lb --routing "$WORK/routing.json" \
	--http 127.0.0.1:8082 --https 127.0.0.1:8445 --stats '' --log-level warn & PIDS+=($!); KONTENA=$!

for port in 8081 8082 8444 8445; do
	for _ in $(seq 50); do (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.1; done
done
sleep 2 # the load balancer's first health checks
curl -sf http://127.0.0.1:8081/ >/dev/null && curl -sf http://127.0.0.1:8082/ >/dev/null
curl -sfk --http2 https://127.0.0.1:8445/ -o /dev/null -w '%{http_version}\n' | grep -q 2 || { log "kontena lb does not speak h2"; exit 1; }

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

# run_wrk NAME PID URL -> "rps p50ms p99ms cpu_us_per_req"
run_wrk() {
	local pid=$2 url=$3 before after out
	before=$(cpu_ticks "$pid")
	out=$(taskset -c 0 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$url")
	after=$(cpu_ticks "$pid")
	echo "$out" | awk -v t=$((after - before)) -v hz="$hz" '
		function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
		/Requests\/sec/ { rps = $2 }
		/^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) }
		/requests in/ { n = $1 }
		/Non-2xx|Socket errors/ { err = err " " $0 }
		END { printf "%.0f %.3f %.3f %.1f%s\n", rps, p50, p99, (t / hz) * 1e6 / n, (err ? " ERR" : "") }'
}

# run_h2 PID URL -> "rps p50ms p99ms cpu_us_per_req"
run_h2() {
	local pid=$1 url=$2 before after n rps
	before=$(cpu_ticks "$pid")
	rm -f "$WORK/h2.log"
	out=$(taskset -c 0 h2load -D "$DURATION" -c "$H2CONNS" -m "$H2STREAMS" --log-file="$WORK/h2.log" "$url" 2>&1)
	after=$(cpu_ticks "$pid")
	rps=$(echo "$out" | awk '/finished in/ { gsub(",", "", $4); print $4 }')
	n=$(echo "$out" | awk '/requests:/ { print $8 }')
	# the log: start time (us), status, time to response (us)
	sort -n -k3 "$WORK/h2.log" | awk -v rps="$rps" -v t=$((after - before)) -v hz="$hz" -v ok="$n" '
		{ v[NR] = $3 } END { printf "%.0f %.3f %.3f %.1f\n", rps, v[int(NR*0.5)]/1000, v[int(NR*0.99)]/1000, (t / hz) * 1e6 / ok }'
}

declare -A R
for round in $(seq "$ROUNDS"); do
	for who in haproxy kontena; do
		if [ $who = haproxy ]; then pid=$HAPROXY http=8081 https=8444; else pid=$KONTENA http=8082 https=8445; fi
		log "round $round: $who"
		R[$who,http,$round]=$(run_wrk $who "$pid" "http://127.0.0.1:$http/")
		R[$who,tls,$round]=$(run_wrk $who "$pid" "https://127.0.0.1:$https/")
		R[$who,h2,$round]=$(run_h2 "$pid" "https://127.0.0.1:$https/")
		log "  http ${R[$who,http,$round]} | tls ${R[$who,tls,$round]} | h2 ${R[$who,h2,$round]}"
	done
done

# median of a column over rounds
med() {
	local who=$1 kind=$2 col=$3
	for r in $(seq "$ROUNDS"); do echo "${R[$who,$kind,$r]}" | awk -v c="$col" '{print $c}'; done | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'
}

SEC="$WORK/section.md"
{
	echo "$SECTION"
	echo
	echo "Command: \`$CMDLINE\` ($(date -u +%F), $(nproc) cores, $(haproxy -v | head -1 | awk '{print $1, $3}'), one core each"
	echo "for the load balancers, the other for wrk/h2load and the two backends; median of $ROUNDS rounds of ${DURATION}s)."
	echo
	echo "| traffic | HAProxy req/s | kontena req/s | ratio | HAProxy p50 / p99 ms | kontena p50 / p99 ms | p99 ratio | CPU µs/req HAProxy / kontena |"
	echo "|---|---|---|---|---|---|---|---|"
	for kind in http tls h2; do
		hr=$(med haproxy $kind 1) kr=$(med kontena $kind 1)
		h50=$(med haproxy $kind 2) k50=$(med kontena $kind 2) h99=$(med haproxy $kind 3) k99=$(med kontena $kind 3)
		hc=$(med haproxy $kind 4) kc=$(med kontena $kind 4)
		label=$(case $kind in http) echo "HTTP/1.1 keep-alive, $CONNS conns";; tls) echo "TLS (HTTP/1.1), $CONNS conns";; h2) echo "HTTP/2, $H2CONNS conns x $H2STREAMS streams";; esac)
		awk -v l="$label" -v hr="$hr" -v kr="$kr" -v h50="$h50" -v k50="$k50" -v h99="$h99" -v k99="$k99" -v hc="$hc" -v kc="$kc" \
			'BEGIN { printf "| %s | %d | %d | %.2f× | %.2f / %.2f | %.2f / %.2f | %.2f× | %.1f / %.1f |\n", l, hr, kr, kr/hr, h50, h99, k50, k99, k99/h99, hc, kc }'
	done
} >"$SEC"
cat "$SEC"
write_section "$RESULTS" "$SECTION" "$SEC"
log "wrote $RESULTS"
