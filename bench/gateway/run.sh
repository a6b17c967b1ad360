#!/usr/bin/env bash
# bench/gateway: the same wrk load against (a) the upstream directly, (b) the
# dure gateway in front of it, (c) nginx in front of it with an equivalent
# keep-alive proxy configuration, (d) a second dure gateway exporting every
# request's spans over OTLP/HTTP (to a sink in the upstream process), (e) a
# third one exporting a 10 % head sample (OTEL_TRACES_SAMPLER=
# parentbased_traceidratio). Prints requests/s and p99 latency of each and
# the ratios gateway/direct, gateway/nginx, traced/gateway and
# sampled/gateway, at full load and at a fixed moderate rate, and the CPU
# time each target's processes spent per request at full load (a steadier
# figure than requests/s when everything shares a few cores). Everything
# runs on loopback and stops by itself.
#
# wrk gets CPUs of its own: the first half of the machine's CPUs drive the
# load, the second half run the targets (the upstream and the proxy under
# test), and nginx runs as many workers as the gateway has (one per target
# CPU). When wrk, the upstream and the proxy all share every CPU, which
# one the scheduler favours moves a proxy's figure by a third from one run
# to the next; pinned, runs repeat within a few percent. PIN=0 turns it off.
#
#   bash bench/gateway/run.sh            # 10 s per run
#   DURATION=30s bash bench/gateway/run.sh
#
# Needs wrk and nginx (Debian packages; installed here if missing and root).
# The gateway runs with rate limiting off and request logging at warn, and
# nginx with access_log off: both measured without per-request logging.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION="${DURATION:-10s}"
CONNECTIONS="${CONNECTIONS:-64}"
RATE_CONNECTIONS="${RATE_CONNECTIONS:-10}"
RATE_DELAY_MS="${RATE_DELAY_MS:-10}"   # per connection: ~1000 req/s in all
UPSTREAM_PORT="${UPSTREAM_PORT:-9101}"
GATEWAY_PORT="${GATEWAY_PORT:-9102}"
NGINX_PORT="${NGINX_PORT:-9103}"
TRACED_PORT="${TRACED_PORT:-9104}"
SAMPLED_PORT="${SAMPLED_PORT:-9105}"
EXTRA_GATEWAY_ENV="${EXTRA_GATEWAY_ENV:-}"
PIN="${PIN:-1}"

need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing $2 …" >&2
    apt-get install -y -qq "$2" >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq "$2" >/dev/null; }
  fi
  command -v "$1" >/dev/null 2>&1 || { echo "bench/gateway needs $1 (Debian package $2)" >&2; exit 1; }
}
need wrk wrk
need nginx nginx

# LOAD runs wrk; ON_TARGET runs what is measured; NGINX_WORKERS matches the
# gateway's worker count (one per CPU it may use).
CPUS=$(nproc)
if [ "$PIN" = 1 ] && [ "$CPUS" -ge 2 ] && command -v taskset >/dev/null 2>&1; then
  LOAD_CPUS="0-$(( CPUS / 2 - 1 ))"
  TARGET_CPUS="$(( CPUS / 2 ))-$(( CPUS - 1 ))"
  LOAD=(taskset -c "$LOAD_CPUS")
  ON_TARGET=(taskset -c "$TARGET_CPUS")
  NGINX_WORKERS=$(( CPUS - CPUS / 2 ))
  PLACEMENT="wrk on CPUs $LOAD_CPUS, targets on CPUs $TARGET_CPUS"
else
  LOAD=()
  ON_TARGET=()
  NGINX_WORKERS=auto
  PLACEMENT="not pinned: wrk and targets share all $CPUS CPUs"
fi

echo "building release binaries …" >&2
cargo build --release -q
cargo build --release -q -p dure-gateway --example bench_upstream
TARGET="${CARGO_TARGET_DIR:-target}"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

wait_http() {
  for _ in $(seq 1 100); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "nothing answers at $1" >&2
  exit 1
}

"${ON_TARGET[@]}" "$TARGET/release/examples/bench_upstream" "127.0.0.1:$UPSTREAM_PORT" &
PIDS+=($!)
UPSTREAM_PID=$!
wait_http "http://127.0.0.1:$UPSTREAM_PORT/api/bench"

env RUST_LOG=warn DURE_LOG_FORMAT=json $EXTRA_GATEWAY_ENV "${ON_TARGET[@]}" "$TARGET/release/dure" run gateway \
  --listen "127.0.0.1:$GATEWAY_PORT" --peers "bench=http://127.0.0.1:$UPSTREAM_PORT" --rate-limit 0 \
  > "$WORK/gateway.log" 2>&1 &
PIDS+=($!)
GATEWAY_PID=$!
wait_http "http://127.0.0.1:$GATEWAY_PORT/api/bench"

# The same gateway with trace export on: every request is sampled and its
# spans go to the upstream's /v1/traces sink in batches.
env RUST_LOG=warn DURE_LOG_FORMAT=json $EXTRA_GATEWAY_ENV \
  OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$UPSTREAM_PORT" \
  "${ON_TARGET[@]}" "$TARGET/release/dure" run gateway \
  --listen "127.0.0.1:$TRACED_PORT" --peers "bench=http://127.0.0.1:$UPSTREAM_PORT" --rate-limit 0 \
  > "$WORK/traced.log" 2>&1 &
PIDS+=($!)
TRACED_PID=$!
wait_http "http://127.0.0.1:$TRACED_PORT/api/bench"
env RUST_LOG=warn DURE_LOG_FORMAT=json $EXTRA_GATEWAY_ENV \
  OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$UPSTREAM_PORT" \
  OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=0.1 \
  "${ON_TARGET[@]}" "$TARGET/release/dure" run gateway \
  --listen "127.0.0.1:$SAMPLED_PORT" --peers "bench=http://127.0.0.1:$UPSTREAM_PORT" --rate-limit 0 \
  > "$WORK/sampled.log" 2>&1 &
PIDS+=($!)
SAMPLED_PID=$!
wait_http "http://127.0.0.1:$SAMPLED_PORT/api/bench"

cat > "$WORK/nginx.conf" <<NGINX
worker_processes $NGINX_WORKERS;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
daemon on;
events { worker_connections 4096; }
http {
  access_log off;
  upstream bench { server 127.0.0.1:$UPSTREAM_PORT; keepalive 256; }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://bench;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_buffering off;
    }
  }
}
NGINX
"${ON_TARGET[@]}" nginx -c "$WORK/nginx.conf" -p "$WORK"
wait_http "http://127.0.0.1:$NGINX_PORT/api/bench"

cat > "$WORK/paced.lua" <<LUA
function delay() return $RATE_DELAY_MS end
LUA

# CPU time (user + system, in clock ticks) the processes PIDS have used.
cpu_ticks() {
  local total=0 pid
  for pid in $1; do
    total=$(( total + $(awk '{print $14 + $15}' "/proc/$pid/stat") ))
  done
  echo "$total"
}

# Prints "requests/s p99_ms cpu_us_per_request" for one wrk run; the CPU is
# that of the processes PIDS (the target) over the run.
measure() {
  local pids=$1; shift
  local out before after
  before=$(cpu_ticks "$pids")
  out=$("${LOAD[@]}" wrk "$@" --latency 2>&1)
  after=$(cpu_ticks "$pids")
  local rps p99 requests
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; print v}' <<<"$out")
  awk -v r="$rps" -v p="$p99" -v t=$(( after - before )) -v n="$requests" -v hz="$(getconf CLK_TCK)" \
    'BEGIN {printf "%s %s %.2f\n", r, p, t / hz * 1e6 / n}'
}

# Rounds alternate the targets, so that noise from the rest of the machine
# falls on all of them alike, and each round starts one target later, so
# that no target always runs right after the same other one; each figure is
# the median of its rounds.
ROUNDS="${ROUNDS:-3}"
TARGETS=(direct gateway nginx traced sampled)
declare -A RUNS
for round in $(seq 1 "$ROUNDS"); do
  for i in "${!TARGETS[@]}"; do
    target=${TARGETS[$(( (i + round - 1) % ${#TARGETS[@]} ))]}
    case $target in
      direct) port=$UPSTREAM_PORT pids=$UPSTREAM_PID ;;
      gateway) port=$GATEWAY_PORT pids=$GATEWAY_PID ;;
      nginx) port=$NGINX_PORT pids=$(pgrep -P "$(cat "$WORK/nginx.pid")" | tr '\n' ' ') ;;
      traced) port=$TRACED_PORT pids=$TRACED_PID ;;
      sampled) port=$SAMPLED_PORT pids=$SAMPLED_PID ;;
    esac
    url="http://127.0.0.1:$port/api/bench"
    [ "$round" = 1 ] && "${LOAD[@]}" wrk -t2 -c"$CONNECTIONS" -d2s "$url" >/dev/null 2>&1 # warm up pools
    RUNS[$target,full]+="$(measure "$pids" -t2 -c"$CONNECTIONS" -d"$DURATION" "$url")"$'\n'
    RUNS[$target,paced]+="$(measure "$pids" -t2 -c"$RATE_CONNECTIONS" -d"$DURATION" -s "$WORK/paced.lua" "$url")"$'\n'
  done
  echo "round $round of $ROUNDS done" >&2
done

# median COLUMN (1 = req/s, 2 = p99, 3 = CPU µs per request) of a target's runs
median() { sed '/^$/d' <<<"${RUNS[$1,$2]}" | awk -v c="$3" '{print $c}' | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }

printf '\n%-9s %14s %10s %12s   %18s %10s\n' "target" "full req/s" "p99 ms" "CPU us/req" "paced req/s" "p99 ms"
for target in direct gateway nginx traced sampled; do
  printf '%-9s %14.0f %10.2f %12.2f   %18.0f %10.2f\n' "$target" "$(median $target full 1)" "$(median $target full 2)" \
    "$(median $target full 3)" "$(median $target paced 1)" "$(median $target paced 2)"
done
awk -v g="$(median gateway full 1)" -v d="$(median direct full 1)" -v n="$(median nginx full 1)" \
    -v t="$(median traced full 1)" -v s="$(median sampled full 1)" \
    -v gp="$(median gateway paced 2)" -v dp="$(median direct paced 2)" 'BEGIN {
  printf "\nthroughput gateway/direct: %.2f\n", g / d
  printf "throughput gateway/nginx:  %.2f   (target >= 1.0)\n", g / n
  printf "throughput traced/gateway: %.2f   (target >= 0.90: exporting costs at most 10%%)\n", t / g
  printf "throughput sampled/gateway: %.2f  (10%% of traces exported)\n", s / g
  printf "paced p99 gateway - direct: %.2f ms   (target <= 1 ms)\n", gp - dp
}'
echo "OTLP bytes the traced gateways exported: $(curl -sf "http://127.0.0.1:$UPSTREAM_PORT/v1/traces/received-bytes")"
echo "(CPU us/req: user + system time of the target's own processes per request at full load: the upstream's for direct, nginx's workers', each gateway's)"
echo "(placement: $PLACEMENT; nginx workers: $NGINX_WORKERS)"
echo "(medians of $ROUNDS rounds; load: wrk -t2 -c$CONNECTIONS -d$DURATION; paced: -c$RATE_CONNECTIONS, ${RATE_DELAY_MS} ms between requests per connection)"
