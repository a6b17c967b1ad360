#!/usr/bin/env bash
# bench/postings: does a page of postings cost the same however deep it is
# and however many postings there are? Seeds 10,000 and then 1,000,000
# postings on SQLite (and on Postgres when BENCH_POSTGRES_URL or
# DURE_TEST_POSTGRES_URL names a server), and measures through the gateway
#   first page:  GET /api/postings?limit=20
#   deep page:   GET /api/postings?limit=20&cursor=<90 % of the way down>
# with the same wrk load, printing requests/s, p99, and the ratios
# deep/first and 1M/10k (cost = 1 / requests per second; target ≤ 1.5).
#
#   bash bench/postings/run.sh
#   SIZES="10000 100000" DURATION=5s bash bench/postings/run.sh
#
# Needs wrk (Debian package; installed here if missing and root).
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION="${DURATION:-5s}"
CONNECTIONS="${CONNECTIONS:-16}"
SIZES="${SIZES:-10000 1000000}"
POSTGRES="${BENCH_POSTGRES_URL:-${DURE_TEST_POSTGRES_URL:-}}"
POSTING_PORT="${POSTING_PORT:-9201}"
GATEWAY_PORT="${GATEWAY_PORT:-9202}"

if ! command -v wrk >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null 2>&1 || true
  command -v wrk >/dev/null 2>&1 || { echo "bench/postings needs wrk (Debian package wrk)" >&2; exit 1; }
fi

echo "building release binaries …" >&2
cargo build --release -q
cargo build --release -q -p dure-posting --example seed_postings
TARGET="${CARGO_TARGET_DIR:-target}"
WORK=$(mktemp -d)
PIDS=()
stop_all() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
trap 'stop_all; rm -rf "$WORK"' EXIT

wait_http() {
  for _ in $(seq 1 200); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "nothing answers at $1" >&2
  exit 1
}

measure() {
  local out rps p99
  out=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "$1" 2>&1)
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; print v}' <<<"$out")
  echo "$rps $p99"
}

# The run with the median requests/s among "rps p99" lines.
median_row() { sed '/^$/d' <<<"$1" | sort -g | awk '{v[NR]=$0} END {print v[int((NR+1)/2)]}'; }

ROUNDS="${ROUNDS:-3}"
backends=(sqlite)
[ -n "$POSTGRES" ] && backends+=(postgres)
RESULTS=()
for backend in "${backends[@]}"; do
  for size in $SIZES; do
    case $backend in
      sqlite) url="sqlite://$WORK/posting-$size.db" ;;
      postgres)
        db="dure_bench_postings_$size"
        psql "${POSTGRES%/}/postgres" -q -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
        url="${POSTGRES%/}/$db" ;;
    esac
    echo "seeding $size postings on $backend …" >&2
    started=$(date +%s)
    cursor=$("$TARGET/release/examples/seed_postings" "$url" "$size")
    echo "  seeded in $(( $(date +%s) - started )) s" >&2

    RUST_LOG=warn "$TARGET/release/dure" run posting --listen "127.0.0.1:$POSTING_PORT" --database-url "$url" \
      --discovery none --jwks-url "http://127.0.0.1:9/unused" > "$WORK/posting.log" 2>&1 &
    PIDS+=($!)
    wait_http "http://127.0.0.1:$POSTING_PORT/readyz"
    RUST_LOG=warn "$TARGET/release/dure" run gateway --listen "127.0.0.1:$GATEWAY_PORT" \
      --peers "posting=http://127.0.0.1:$POSTING_PORT" --rate-limit 0 > "$WORK/gateway.log" 2>&1 &
    PIDS+=($!)
    wait_http "http://127.0.0.1:$GATEWAY_PORT/api/postings?limit=1"

    base="http://127.0.0.1:$GATEWAY_PORT/api/postings?limit=20"
    # Warm both (a freshly seeded database is still being checkpointed and
    # cached), then alternate first and deep pages and keep the medians.
    wrk -t2 -c"$CONNECTIONS" -d3s "$base" >/dev/null 2>&1
    wrk -t2 -c"$CONNECTIONS" -d3s "$base&cursor=$cursor" >/dev/null 2>&1
    first_runs=""; deep_runs=""
    for _ in $(seq 1 "$ROUNDS"); do
      first_runs+="$(measure "$base")"$'\n'
      deep_runs+="$(measure "$base&cursor=$cursor")"$'\n'
    done
    read -r first_rps first_p99 < <(median_row "$first_runs")
    read -r deep_rps deep_p99 < <(median_row "$deep_runs")
    RESULTS+=("$backend $size $first_rps $first_p99 $deep_rps $deep_p99")
    stop_all
    [ "$backend" = postgres ] && psql "${POSTGRES%/}/postgres" -q -c "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  done
done

printf '\n%-9s %9s %12s %9s %12s %9s %11s\n' backend postings "first req/s" "p99 ms" "deep req/s" "p99 ms" deep/first
for row in "${RESULTS[@]}"; do
  read -r backend size frps fp99 drps dp99 <<<"$row"
  printf '%-9s %9s %12.0f %9.2f %12.0f %9.2f %11.2f\n' "$backend" "$size" "$frps" "$fp99" "$drps" "$dp99" "$(awk -v f="$frps" -v d="$drps" 'BEGIN {print f / d}')"
done
echo
for backend in "${backends[@]}"; do
  small=$(printf '%s\n' "${RESULTS[@]}" | awk -v b="$backend" '$1 == b {print; exit}')
  large=$(printf '%s\n' "${RESULTS[@]}" | awk -v b="$backend" '$1 == b {line = $0} END {print line}')
  read -r _ s_size s_frps _ s_drps _ <<<"$small"
  read -r _ l_size l_frps _ l_drps _ <<<"$large"
  [ "$s_size" = "$l_size" ] && continue
  awk -v b="$backend" -v s="$s_size" -v l="$l_size" -v sf="$s_frps" -v lf="$l_frps" -v sd="$s_drps" -v ld="$l_drps" 'BEGIN {
    printf "%s: cost of %s vs %s postings: first page %.2f, deep page %.2f   (target <= 1.5)\n", b, l, s, sf / lf, sd / ld
  }'
done
echo "(cost ratio = requests/s of the cheaper case / requests/s of the other; medians of $ROUNDS alternating runs of wrk -t2 -c$CONNECTIONS -d$DURATION through the gateway, rate limit off)"
