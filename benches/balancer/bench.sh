#!/usr/bin/env bash
# Puts sitec balancer, nginx (upstream keepalive) and HAProxy in front of the
# same fast backend on loopback and drives each with wrk: same connections,
# threads and duration, in alternating rounds within one run. Reports req/s,
# p50/p99 latency and RSS under load, then RSS with 10,000 idle keep-alive
# client connections. Ratios come twice: of the medians, and the median of
# each round's own ratio (proxies measured seconds apart, so drift cancels). Proxies and backend are pinned to CPU 1, wrk and the
# idle client to CPU 0; every proxy runs one worker.
#
#   bash benches/balancer/bench.sh            # defaults below
#   DURATION=10 ROUNDS=3 CONNS=50 IDLE=10000 bash benches/balancer/bench.sh
#   BASELINE=/tmp/sitec-old bash benches/balancer/bench.sh   # also an older sitec build
#   MAX_STEAL=1 RETRIES=3     # a round with more steal than that (% of a CPU) is run again
#   BACKEND_CPU=0             # the backend beside wrk instead of beside the proxy
#   CALLGRIND=1 [BASELINE=...] bash benches/balancer/bench.sh
#       # instead: user-space instructions per request of each sitec build
#       # under callgrind (needs valgrind): steady to a fraction of a per cent,
#       # where req/s on a shared machine cannot see a few per cent
#
# Needs nginx, haproxy, wrk, python3 (apt-get install nginx haproxy wrk).
# Listens on 127.0.0.1:18080-18090 only. Not run in CI.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-50}
THREADS=${THREADS:-1}
IDLE=${IDLE:-10000}
# The backend's CPU: 1, beside the proxies (the default), or 0, beside wrk.
BACKEND_CPU=${BACKEND_CPU:-1}
BACKEND_PORT=18080
declare -A PORT=([sitec]=18081 [nginx]=18082 [haproxy]=18083 [baseline]=18084)
# HTTPS listeners, for the idle TLS clients (the quickstart's test certificate).
declare -A TLS_PORT=([sitec]=18087 [nginx]=18088 [haproxy]=18089 [baseline]=18085)
CERT=$PWD/examples/tls/blog.localhost.pem
KEY=$PWD/examples/tls/blog.localhost.key
CA=$PWD/examples/tls/ca.pem
PROXIES=(sitec nginx haproxy)
# BASELINE: another sitec binary (an older build) run as a fourth proxy, to
# compare two builds within one run on a shared machine.
BASELINE=${BASELINE:-}
# The most CPU time (percent of one CPU, on either CPU) the hypervisor may
# steal during a round before it is run again, and how many times.
MAX_STEAL=${MAX_STEAL:-1}
RETRIES=${RETRIES:-3}
DISTURBED=0
[ -n "$BASELINE" ] && PROXIES+=(baseline)

for tool in nginx haproxy wrk python3 taskset; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install nginx haproxy wrk)" >&2; exit 1; }
done
# 10,000 idle clients need 10,000+ descriptors in the proxy; HAProxy reserves
# two per connection up front, so its maxconn is what the hard limit allows.
ulimit -n "$(ulimit -Hn)"
FD_LIMIT=$(ulimit -n)
HAPROXY_MAXCONN=$(( (FD_LIMIT - 100) / 2 ))
[ "$HAPROXY_MAXCONN" -gt 30000 ] && HAPROXY_MAXCONN=30000

cargo build --release --quiet
SITEC=$PWD/target/release/sitec
WORK=$(mktemp -d /tmp/sitec-bench.XXXXXX)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# The backend: nginx answering a fixed 13-byte body from memory.
cat > "$WORK/backend.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/backend.pid;
error_log $WORK/backend.err;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  server {
    listen 127.0.0.1:$BACKEND_PORT reuseport backlog=4096;
    location / { return 200 "hello, world\n"; }
  }
}
CONF

cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile $FD_LIMIT;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 30000; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  upstream app { server 127.0.0.1:$BACKEND_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:${PORT[nginx]} backlog=4096;
    listen 127.0.0.1:${TLS_PORT[nginx]} ssl backlog=4096;
    ssl_certificate $CERT;
    ssl_certificate_key $KEY;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$remote_addr;
    }
  }
}
CONF

cat > "$WORK/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn $HAPROXY_MAXCONN
defaults
  mode http
  timeout connect 3s
  timeout client 75s
  timeout server 60s
  timeout http-keep-alive 75s
  option http-keep-alive
  option forwardfor
  http-reuse always
frontend web
  bind 127.0.0.1:${PORT[haproxy]}
  bind 127.0.0.1:${TLS_PORT[haproxy]} ssl crt $WORK/haproxy.pem
  default_backend app
backend app
  server b1 127.0.0.1:$BACKEND_PORT
CONF

# HAProxy wants the certificate and its key in one file.
cat "$CERT" "$KEY" > "$WORK/haproxy.pem"

sitec_toml() { # http port, https port
  cat <<CONF
[listen]
http = ["127.0.0.1:$1"]
https = ["127.0.0.1:$2"]
[server]
workers = 1
[timeouts]
idle_ms = 75000
[[tls.cert]]
domains = ["blog.localhost"]
cert = "$CERT"
key = "$KEY"
[[route]]
domains = ["*"]
backends = ["127.0.0.1:$BACKEND_PORT"]
CONF
}
sitec_toml "${PORT[sitec]}" "${TLS_PORT[sitec]}" > "$WORK/sitec.toml"

start() { # name, command...
  local name=$1; shift
  local cpu=1
  [ "$name" = backend ] && cpu=$BACKEND_CPU
  taskset -c "$cpu" "$@" > "$WORK/$name.out" 2>&1 &
  PIDS+=($!)
  echo $! > "$WORK/$name.pidfile"
}
start backend nginx -c "$WORK/backend.conf"
start nginx nginx -c "$WORK/nginx.conf"
start haproxy haproxy -f "$WORK/haproxy.cfg"
start sitec "$SITEC" balancer --config "$WORK/sitec.toml"
if [ -n "$BASELINE" ]; then
  sitec_toml "${PORT[baseline]}" "${TLS_PORT[baseline]}" > "$WORK/baseline.toml"
  start baseline "$BASELINE" balancer --config "$WORK/baseline.toml"
fi
for p in backend "${PROXIES[@]}"; do
  port=${PORT[$p]:-$BACKEND_PORT}
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.05; done
done

# Instructions per proxied request of one sitec build under callgrind:
# warmed up, counters zeroed, then `wrk -c10` for 5 s, dumped.
callgrind_count() { # name, binary
  local name=$1 bin=$2 port=18086
  sitec_toml "$port" 18090 > "$WORK/cg-$name.toml"
  taskset -c 1 valgrind --tool=callgrind --callgrind-out-file="$WORK/cg-$name.%p" \
    "$bin" balancer --config "$WORK/cg-$name.toml" > "$WORK/cg-$name.log" 2>&1 &
  local vpid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.2; done
  taskset -c 0 wrk -t1 -c10 -d3s "http://127.0.0.1:$port/" > /dev/null
  callgrind_control -z "$vpid" > /dev/null 2>&1
  local out; out=$(taskset -c 0 wrk -t1 -c10 -d5s "http://127.0.0.1:$port/")
  callgrind_control -d "$vpid" > /dev/null 2>&1
  kill "$vpid"; wait "$vpid" 2>/dev/null || true
  local requests instructions
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  instructions=$(callgrind_annotate "$(ls -t "$WORK"/cg-"$name".*.* | head -1)" 2>/dev/null |
    awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
  echo "$name: $requests requests, $((instructions / requests)) user-space instructions per request"
}

if [ -n "${CALLGRIND:-}" ]; then
  command -v valgrind >/dev/null || { echo "bench: valgrind is missing (apt-get install valgrind)" >&2; exit 1; }
  # Twice each, alternating, so a drift shows as a difference between the two.
  for _ in 1 2; do
    callgrind_count sitec "$SITEC"
    if [ -n "$BASELINE" ]; then callgrind_count baseline "$BASELINE"; fi
  done
  exit 0
fi

# RSS of a proxy: all its processes (nginx master + worker).
rss_kb() {
  local pid; pid=$(cat "$WORK/$1.pidfile")
  local pids="$pid $(pgrep -P "$pid" | tr '\n' ' ')"
  local total=0
  for p in $pids; do
    total=$((total + $(awk '/VmRSS/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
  done
  echo "$total"
}

# CPU time (user + system, clock ticks) of a proxy's processes: the machine
# may be shared, so CPU per request is the figure that load elsewhere does
# not distort.
cpu_ticks() {
  local pid; pid=$(cat "$WORK/$1.pidfile")
  local total=0
  for p in $pid $(pgrep -P "$pid"); do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
HZ=$(getconf CLK_TCK)

# Steal time of CPU 0 and CPU 1 (clock ticks): what the hypervisor ran
# instead of this machine's vCPUs.
steal_ticks() { awk '/^cpu[01] / {printf "%d ", $9}' /proc/stat; }
# Whether a round's steal (percent of a CPU) is over MAX_STEAL.
disturbed() { awk -v s="$1" -v max="$MAX_STEAL" 'BEGIN { exit !(s > max) }'; }

to_ms() { # wrk latency like 1.23ms / 456.00us / 1.02s -> ms
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 } }'
}

echo "# direct to the backend (for scale)"
taskset -c 0 wrk -t"$THREADS" -c"$CONNS" -d3s "http://127.0.0.1:$BACKEND_PORT/" | grep Requests/sec

declare -A RPS P50 P99 RSS CPU STOLEN_RPS STOLEN_P50 STOLEN_P99 STOLEN_CPU ROUND_RPS
KEPT_OUT=0
for round in $(seq "$ROUNDS"); do
  # Rotate the order each round so drift hits everyone alike.
  shift_by=$(( (round - 1) % ${#PROXIES[@]} ))
  order=("${PROXIES[@]:$shift_by}" "${PROXIES[@]:0:$shift_by}")
  for p in "${order[@]}"; do
    # A round the hypervisor took CPU time from (steal) measures the
    # neighbours, not the proxy: run it again, up to RETRIES times.
    for try in $(seq 0 "$RETRIES"); do
      s0=$(steal_ticks); t0=$(cpu_ticks "$p")
      out=$(taskset -c 0 wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:${PORT[$p]}/")
      t1=$(cpu_ticks "$p"); s1=$(steal_ticks)
      steal=$(awk -v a="$s0" -v b="$s1" -v hz="$HZ" -v d="$DURATION" 'BEGIN {
        split(a, x, " "); split(b, y, " "); m = 0
        for (i in x) if (y[i] - x[i] > m) m = y[i] - x[i]
        printf "%.1f", m / hz / d * 100 }')
      disturbed "$steal" || break
      [ "$try" -lt "$RETRIES" ] && echo "round $round $p: ${steal}% of a CPU stolen by the hypervisor; again"
      DISTURBED=$((DISTURBED + 1))
    done
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    us=$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v n="$reqs" 'BEGIN { printf "%.1f", t / hz * 1e6 / n }')
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
    errors=$(grep -E "Non-2xx|Socket errors" <<<"$out" || true)
    suffix=""
    RSS[$p]=$(rss_kb "$p")
    # Still disturbed after every retry: shown, but kept out of the medians
    # (unless a proxy has no undisturbed round at all).
    if disturbed "$steal"; then
      KEPT_OUT=$((KEPT_OUT + 1)); suffix="$suffix(kept out of the medians)"
      STOLEN_RPS[$p]+="$rps "; STOLEN_P50[$p]+="$p50 "; STOLEN_P99[$p]+="$p99 "; STOLEN_CPU[$p]+="$us "
    else
      RPS[$p]+="$rps "; P50[$p]+="$p50 "; P99[$p]+="$p99 "; CPU[$p]+="$us "
      ROUND_RPS[$round,$p]=$rps
    fi
    printf "round %d %-8s %10s req/s  p50 %7s ms  p99 %7s ms  cpu %6s us/req  rss %6d KiB  steal %4s%% %s\n" \
      "$round" "$p" "$rps" "$p50" "$p99" "$us" "${RSS[$p]}" "$steal" "$errors$suffix"
  done
done

median() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo
# RSS of proxy $1 with $IDLE idle clients held open by idle.py (args $2...).
hold_idle() {
  local p=$1; shift
  local before n
  before=$(rss_kb "$p")
  n=$IDLE
  [ "$p" = haproxy ] && [ "$n" -gt $((HAPROXY_MAXCONN - 50)) ] && n=$((HAPROXY_MAXCONN - 50))
  coproc HOLD { taskset -c 0 python3 benches/balancer/idle.py 127.0.0.1 "$1" "$n" "${@:2}"; }
  read -r ready count <&"${HOLD[0]}" || true
  sleep 1
  HELD=$(rss_kb "$p")
  echo "$p: $ready $count connections; rss $before KiB before, $HELD KiB with them open"
  eval "exec ${HOLD[1]}>&-"
  wait "$HOLD_PID" 2>/dev/null || true
  sleep 1
}

echo "# idle: $IDLE keep-alive client connections held open, then $IDLE over HTTPS"
declare -A IDLE_RSS IDLE_TLS_RSS
for p in "${PROXIES[@]}"; do
  hold_idle "$p" "${PORT[$p]}"
  IDLE_RSS[$p]=$HELD
  hold_idle "$p" "${TLS_PORT[$p]}" "$CA" blog.localhost
  IDLE_TLS_RSS[$p]=$HELD
done

echo
echo "# medians of $ROUNDS rounds (the undisturbed ones): wrk -t$THREADS -c$CONNS -d${DURATION}s"
uptime
echo "rounds with more than ${MAX_STEAL}% steal: $DISTURBED (each run again, up to $RETRIES times); $KEPT_OUT still disturbed, kept out of the medians"
for p in "${PROXIES[@]}"; do
  if [ -z "${RPS[$p]:-}" ]; then
    echo "$p: no undisturbed round; its medians include the disturbed ones"
    RPS[$p]=${STOLEN_RPS[$p]:-}; P50[$p]=${STOLEN_P50[$p]:-}; P99[$p]=${STOLEN_P99[$p]:-}; CPU[$p]=${STOLEN_CPU[$p]:-}
  fi
done
printf "%-8s %10s %8s %8s %11s %10s %14s %14s\n" proxy req/s p50_ms p99_ms cpu_us/req rss_KiB idle_rss_KiB idle_tls_KiB
for p in "${PROXIES[@]}"; do
  printf "%-8s %10s %8s %8s %11s %10s %14s %14s\n" "$p" "$(median "${RPS[$p]}")" "$(median "${P50[$p]}")" \
    "$(median "${P99[$p]}")" "$(median "${CPU[$p]}")" "${RSS[$p]}" "${IDLE_RSS[$p]}" "${IDLE_TLS_RSS[$p]}"
done
s=$(median "${RPS[sitec]}"); n=$(median "${RPS[nginx]}"); h=$(median "${RPS[haproxy]}")
cs=$(median "${CPU[sitec]}"); cn=$(median "${CPU[nginx]}"); ch=$(median "${CPU[haproxy]}")
awk -v s="$s" -v n="$n" -v h="$h" 'BEGIN { printf "req/s ratios: sitec/nginx %.2f  sitec/haproxy %.2f\n", s / n, s / h }'
# The same ratios taken within each round (its proxies ran one after the
# other, seconds apart), so the machine's drift between rounds cancels out.
for other in nginx haproxy; do
  ratios=""
  for round in $(seq "$ROUNDS"); do
    a=${ROUND_RPS[$round,sitec]:-}; b=${ROUND_RPS[$round,$other]:-}
    [ -n "$a" ] && [ -n "$b" ] && ratios+="$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", a / b }') "
  done
  [ -z "$ratios" ] && continue
  sorted=$(tr ' ' '\n' <<<"$ratios" | grep -v '^$' | sort -g)
  printf "per-round sitec/%s: median %.2f, from %.2f to %.2f over %d undisturbed rounds\n" "$other" \
    "$(median "$ratios")" "$(head -1 <<<"$sorted")" "$(tail -1 <<<"$sorted")" "$(wc -l <<<"$sorted")"
done
awk -v s="$cs" -v n="$cn" -v h="$ch" 'BEGIN { printf "CPU per request: nginx/sitec %.2f  haproxy/sitec %.2f (above 1: sitec does the same work with less CPU)\n", n / s, h / s }'
if [ -n "$BASELINE" ]; then
  b=$(median "${RPS[baseline]}"); cb=$(median "${CPU[baseline]}")
  awk -v s="$s" -v b="$b" -v cs="$cs" -v cb="$cb" 'BEGIN { printf "sitec vs baseline: req/s %.2f, CPU per request %.2f\n", s / b, cs / cb }'
fi
