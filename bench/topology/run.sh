#!/usr/bin/env bash
# bench/topology: what does the network between services cost? Runs the
# same system twice — `dure up` (each service its own process, HTTP between
# them) and `dure up --single-process` (one process, calls in process) —
# on fresh SQLite data, and drives each through the gateway with the
# DeathStarBench-style mix:
#   60 %  GET  /api/postings?limit=10
#   30 %  GET  /api/postings/{id}
#   10 %  POST /api/postings/{id}/comments   (signed in)
# It prints requests/s, p50 and p99, errors, and the resident memory of the
# whole system idle (after first use) and after the load, then the ratios
# single/multi.
#
#   bash bench/topology/run.sh
#   DURATION=10s CONNECTIONS=32 ROUNDS=3 bash bench/topology/run.sh
#
# Needs wrk (Debian package; installed here if missing and root) and curl.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION="${DURATION:-5s}"
CONNECTIONS="${CONNECTIONS:-16}"
ROUNDS="${ROUNDS:-3}"
POSTINGS="${POSTINGS:-200}"
GATEWAY_PORT="${GATEWAY_PORT:-9311}"
REGISTRY_PORT="${REGISTRY_PORT:-9312}"

if ! command -v wrk >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null 2>&1 || true
  command -v wrk >/dev/null 2>&1 || { echo "bench/topology needs wrk (Debian package wrk)" >&2; exit 1; }
fi

echo "building the release binary …" >&2
cargo build --release -q
DURE="${CARGO_TARGET_DIR:-target}/release/dure"
WORK=$(mktemp -d)
UP=""
stop_up() {
  [ -n "$UP" ] || return 0
  kill -INT "$UP" 2>/dev/null || true
  wait "$UP" 2>/dev/null || true
  UP=""
}
trap 'stop_up; rm -rf "$WORK"' EXIT

G="http://127.0.0.1:$GATEWAY_PORT"
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# Resident memory of `dure up` and every process under it, in MB.
rss_mb() {
  local pids
  pids=$(ps -e -o pid=,ppid= | awk -v root="$1" '
    { parent[$1] = $2 } END {
      print root
      for (p in parent) { q = p; while (q in parent && q != root) q = parent[q]; if (q == root && p != root) print p }
    }')
  ps -o rss= -p "$(tr '\n' ',' <<<"$pids" | sed 's/,$//')" | awk '{ kb += $1 } END { printf "%.1f", kb / 1024 }'
}

measure() {
  local out rps p50 p99 errors
  out=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$WORK/mix.lua" "$G" 2>&1)
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  to_ms='{v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; print v}'
  p50=$(awk '$1 == "50%" '"$to_ms" <<<"$out")
  p99=$(awk '$1 == "99%" '"$to_ms" <<<"$out")
  errors=$(awk '/Non-2xx or 3xx responses:/ {n = $5} /Socket errors:/ {s = $4 + $6 + $8 + $10} END {print n + s}' <<<"$out")
  echo "$rps $p50 $p99 $errors"
}

median_row() { sed '/^$/d' <<<"$1" | sort -g | awk '{v[NR]=$0} END {print v[int((NR+1)/2)]}'; }

RESULTS=()
for topology in multi single; do
  flags=()
  [ "$topology" = single ] && flags+=(--single-process)
  rm -rf "$WORK/data"
  DURE_RATE_LIMIT=0 DURE_ADMIN_PASSWORD="bench admin password" RUST_LOG=warn \
    "$DURE" up --no-console "${flags[@]}" --data-dir "$WORK/data" \
    --gateway-listen "127.0.0.1:$GATEWAY_PORT" --registry-listen "127.0.0.1:$REGISTRY_PORT" \
    > "$WORK/up-$topology.log" 2>&1 &
  UP=$!
  for _ in $(seq 1 300); do grep -q "dure is up" "$WORK/up-$topology.log" && break; sleep 0.1; done
  grep -q "dure is up" "$WORK/up-$topology.log" || { cat "$WORK/up-$topology.log" >&2; exit 1; }

  # First use: a user (one Argon2 hash), a token, postings to read and comment.
  curl -sf -o /dev/null -XPOST "$G/api/users" -H 'content-type: application/json' \
    -d '{"username":"bench","email":"bench@example.com","password":"bench password 1"}'
  token=$(curl -sf -XPOST "$G/api/login" -H 'content-type: application/json' \
    -d '{"username":"bench","password":"bench password 1"}' | json '["access_token"]')
  ids=()
  for i in $(seq 1 "$POSTINGS"); do
    ids+=("$(curl -sf -XPOST "$G/api/postings" -H "authorization: Bearer $token" -H 'content-type: application/json' \
      -d "{\"title\":\"posting $i\",\"body\":\"body of posting $i\"}" | json '["id"]')")
  done
  {
    echo "local token = \"$token\""
    printf 'local ids = {'; printf '"%s",' "${ids[@]}"; echo '}'
    cat <<'LUA'
local comment_headers = {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}
request = function()
  local r = math.random(100)
  local id = ids[math.random(#ids)]
  if r <= 60 then
    return wrk.format("GET", "/api/postings?limit=10")
  elseif r <= 90 then
    return wrk.format("GET", "/api/postings/" .. id)
  end
  return wrk.format("POST", "/api/postings/" .. id .. "/comments", comment_headers, '{"body":"a comment"}')
end
LUA
  } > "$WORK/mix.lua"
  sleep 2
  idle=$(rss_mb "$UP")

  wrk -t2 -c"$CONNECTIONS" -d2s -s "$WORK/mix.lua" "$G" >/dev/null 2>&1
  runs=""
  for _ in $(seq 1 "$ROUNDS"); do runs+="$(measure)"$'\n'; done
  read -r rps p50 p99 errors < <(median_row "$runs")
  after=$(rss_mb "$UP")
  RESULTS+=("$topology $rps $p50 $p99 $errors $idle $after")
  stop_up
done

printf '\n%-8s %10s %8s %8s %7s %10s %10s\n' topology "req/s" "p50 ms" "p99 ms" errors "idle MB" "after MB"
for row in "${RESULTS[@]}"; do
  read -r t rps p50 p99 errors idle after <<<"$row"
  printf '%-8s %10.0f %8.2f %8.2f %7s %10s %10s\n' "$t" "$rps" "$p50" "$p99" "$errors" "$idle" "$after"
done
read -r _ m_rps m_p50 m_p99 _ m_idle m_after <<<"${RESULTS[0]}"
read -r _ s_rps s_p50 s_p99 _ s_idle s_after <<<"${RESULTS[1]}"
awk -v mr="$m_rps" -v sr="$s_rps" -v m50="$m_p50" -v s50="$s_p50" -v m99="$m_p99" -v s99="$s_p99" \
    -v mi="$m_idle" -v si="$s_idle" -v ma="$m_after" -v sa="$s_after" 'BEGIN {
  printf "\nsingle/multi: req/s %.2f, p50 %.2f, p99 %.2f, idle RSS %.2f, RSS after %.2f\n", sr / mr, s50 / m50, s99 / m99, si / mi, sa / ma
}'
echo "(mix 60/30/10, $CONNECTIONS connections, median of $ROUNDS runs of $DURATION each; $(nproc) CPUs)"
