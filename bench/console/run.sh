#!/usr/bin/env bash
# bench/console: what the operator console costs. Starts `dure up` twice on
# fresh SQLite data, without the console (the baseline) and with it, drives
# the same traffic through the gateway each time (sign-ups, postings,
# comments, REQUESTS reads), and prints the resident memory of the `dure up`
# process (where the console and its buffers live) and of all its children
# (which export their traces only when the console is there), with the
# difference. The default traffic (71 s of reads) fills the console's
# buffers: 10,000 log lines, 500 traces, a full metrics window. Target: the
# console adds at most 15 MB to `dure up`.
#
#   bash bench/console/run.sh
#   REQUESTS=5000 bash bench/console/run.sh     # quicker, buffers not yet full
#
# Needs curl and wrk (Debian packages; wrk installed here if missing and root).
set -euo pipefail
cd "$(dirname "$0")/../.."

REQUESTS="${REQUESTS:-35000}"
# Each run its own ports: the first run's connections linger in TIME_WAIT.
PORT_BASE="${PORT_BASE:-9330}"

if ! command -v wrk >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null 2>&1 || true
  command -v wrk >/dev/null 2>&1 || { echo "bench/console needs wrk (Debian package wrk)" >&2; exit 1; }
fi

echo "building the release binary …" >&2
cargo build --release -q
DURE="${CARGO_TARGET_DIR:-target}/release/dure"
WORK=$(mktemp -d)
UP=""
trap '[ -n "$UP" ] && { kill -INT "$UP" 2>/dev/null; wait "$UP" 2>/dev/null; }; rm -rf "$WORK"' EXIT

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
children_kb() { local total=0; for pid in $(pgrep -P "$1"); do total=$((total + $(rss_kb "$pid"))); done; echo "$total"; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

# Starts dure up on ports from $1 with the rest of the flags, drives the
# traffic, prints "up_kb children_kb".
run() {
  local base=$1; shift
  G="http://127.0.0.1:$base"
  rm -rf "$WORK/data"
  DURE_RATE_LIMIT=0 RUST_LOG=info "$DURE" up "$@" --data-dir "$WORK/data" \
    --gateway-listen "127.0.0.1:$base" --registry-listen "127.0.0.1:$((base + 1))" \
    > "$WORK/up.log" 2>&1 &
  UP=$!
  for _ in $(seq 1 300); do grep -q "dure is up" "$WORK/up.log" && break; sleep 0.1; done
  grep -q "dure is up" "$WORK/up.log" || { cat "$WORK/up.log" >&2; exit 1; }
  for u in ann bob; do
    curl -sf -o /dev/null -XPOST "$G/api/users" -H 'content-type: application/json' \
      -d "{\"username\":\"$u\",\"email\":\"$u@example.com\",\"password\":\"bench password 1\"}"
  done
  local ann bob posting
  ann=$(curl -sf -XPOST "$G/api/login" -H 'content-type: application/json' -d '{"username":"ann","password":"bench password 1"}' | json '["access_token"]')
  bob=$(curl -sf -XPOST "$G/api/login" -H 'content-type: application/json' -d '{"username":"bob","password":"bench password 1"}' | json '["access_token"]')
  for i in $(seq 1 50); do
    posting=$(curl -sf -XPOST "$G/api/postings" -H "authorization: Bearer $ann" -H 'content-type: application/json' \
      -d "{\"title\":\"posting $i\",\"body\":\"body $i\"}" | json '["id"]')
    curl -sf -o /dev/null -XPOST "$G/api/postings/$posting/comments" -H "authorization: Bearer $bob" \
      -H 'content-type: application/json' -d '{"body":"a comment"}'
  done
  # REQUESTS reads, as fast as two connections go (each one traced, logged).
  local seconds=$(( REQUESTS / 500 + 1 ))
  wrk -t1 -c2 -d"${seconds}s" "$G/api/postings?limit=10" > /dev/null 2>&1
  sleep 6
  echo "$(rss_kb "$UP") $(children_kb "$UP")"
  kill -INT "$UP"; wait "$UP" 2>/dev/null || true; UP=""
}

read -r base_up base_children < <(run "$PORT_BASE" --no-console)
read -r with_up with_children < <(run "$((PORT_BASE + 10))" --console "127.0.0.1:$((PORT_BASE + 12))")
awk -v bu="$base_up" -v bc="$base_children" -v wu="$with_up" -v wc="$with_children" 'BEGIN {
  printf "\n%-26s %12s %12s %10s\n", "", "no console", "console", "added"
  printf "%-26s %9.1f MB %9.1f MB %7.1f MB\n", "dure up (console inside)", bu/1024, wu/1024, (wu-bu)/1024
  printf "%-26s %9.1f MB %9.1f MB %7.1f MB\n", "children (all)", bc/1024, wc/1024, (wc-bc)/1024
  printf "\nthe console adds %.1f MB to dure up (target <= 15 MB)\n", (wu-bu)/1024
}'
echo "(50 postings and comments, then reads for about $(( REQUESTS / 500 + 1 )) s at two connections; RSS 6 s after the traffic)"
