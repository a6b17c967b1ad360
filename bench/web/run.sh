#!/usr/bin/env bash
# bench/web: is the board page as cheap as the API it is made of? Starts
# `dure up` on fresh SQLite data, seeds postings and a pinned notice, and
# measures through the gateway, in the same run:
#   GET /                 the board page (web → notice and posting)
#   GET /api/postings     the API list the board is built from
# each at full load (wrk, CONNECTIONS) and paced (RATE_CONNECTIONS
# connections, each waiting DELAY_MS between requests: about 1,000
# requests/s by default), printing requests/s and p99, and page/API ratios.
# Target: the board's paced p99 below 10 ms at 1,000 requests/s.
#
#   bash bench/web/run.sh
#   DURATION=10s ROUNDS=5 bash bench/web/run.sh
#
# Needs wrk (Debian package; installed here if missing and root) and curl.
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION="${DURATION:-5s}"
CONNECTIONS="${CONNECTIONS:-16}"
ROUNDS="${ROUNDS:-3}"
RATE_CONNECTIONS="${RATE_CONNECTIONS:-12}"
DELAY_MS="${DELAY_MS:-10}"
POSTINGS="${POSTINGS:-100}"
GATEWAY_PORT="${GATEWAY_PORT:-9321}"
REGISTRY_PORT="${REGISTRY_PORT:-9322}"

if ! command -v wrk >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] && apt-get install -y -qq wrk >/dev/null 2>&1 || true
  command -v wrk >/dev/null 2>&1 || { echo "bench/web needs wrk (Debian package wrk)" >&2; exit 1; }
fi

echo "building the release binary …" >&2
cargo build --release -q
DURE="${CARGO_TARGET_DIR:-target}/release/dure"
WORK=$(mktemp -d)
UP=""
trap '[ -n "$UP" ] && { kill -INT "$UP" 2>/dev/null; wait "$UP" 2>/dev/null; }; rm -rf "$WORK"' EXIT

G="http://127.0.0.1:$GATEWAY_PORT"
ADMIN="bench admin password"
DURE_RATE_LIMIT=0 DURE_ADMIN_PASSWORD="$ADMIN" RUST_LOG=warn \
  "$DURE" up --no-console --data-dir "$WORK/data" \
  --gateway-listen "127.0.0.1:$GATEWAY_PORT" --registry-listen "127.0.0.1:$REGISTRY_PORT" \
  > "$WORK/up.log" 2>&1 &
UP=$!
for _ in $(seq 1 300); do grep -q "dure is up" "$WORK/up.log" && break; sleep 0.1; done
grep -q "dure is up" "$WORK/up.log" || { cat "$WORK/up.log" >&2; exit 1; }

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
token() {
  curl -sf -XPOST "$G/api/login" -H 'content-type: application/json' \
    -d "{\"username\":\"$1\",\"password\":\"$2\"}" | json '["access_token"]'
}
curl -sf -o /dev/null -XPOST "$G/api/users" -H 'content-type: application/json' \
  -d '{"username":"bench","email":"bench@example.com","password":"bench password 1"}'
user=$(token bench "bench password 1")
admin=$(token admin "$ADMIN")
curl -sf -o /dev/null -XPOST "$G/api/notice" -H "authorization: Bearer $admin" -H 'content-type: application/json' \
  -d '{"title":"House rules","body":"Be kind.","pinned":true}'
for i in $(seq 1 "$POSTINGS"); do
  curl -sf -o /dev/null -XPOST "$G/api/postings" -H "authorization: Bearer $user" -H 'content-type: application/json' \
    -d "{\"title\":\"posting $i\",\"body\":\"body of posting $i\"}"
done
curl -sf "$G/" | grep -q "posting $POSTINGS" || { echo "the board does not show the postings" >&2; exit 1; }
echo "function delay() return $DELAY_MS end" > "$WORK/paced.lua"

measure() {
  local out rps p99
  out=$(wrk -t2 --latency "$@" 2>&1)
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; print v}' <<<"$out")
  if grep -q "Non-2xx" <<<"$out"; then echo "non-2xx answers from $*" >&2; grep "Non-2xx" <<<"$out" >&2; exit 1; fi
  echo "$rps $p99"
}
median_row() { sed '/^$/d' <<<"$1" | sort -g | awk '{v[NR]=$0} END {print v[int((NR+1)/2)]}'; }

declare -A URL=([page]="$G/" [api]="$G/api/postings?limit=20")
declare -A FULL PACED
for target in page api; do wrk -t2 -c"$CONNECTIONS" -d2s "${URL[$target]}" >/dev/null 2>&1; done
for _ in $(seq 1 "$ROUNDS"); do
  for target in page api; do
    FULL[$target]+="$(measure -c"$CONNECTIONS" -d"$DURATION" "${URL[$target]}")"$'\n'
    PACED[$target]+="$(measure -c"$RATE_CONNECTIONS" -d"$DURATION" -s "$WORK/paced.lua" "${URL[$target]}")"$'\n'
  done
done

printf '\n%-6s %12s %9s   %12s %9s\n' target "full req/s" "p99 ms" "paced req/s" "p99 ms"
for target in page api; do
  read -r frps fp99 < <(median_row "${FULL[$target]}")
  read -r prps pp99 < <(median_row "${PACED[$target]}")
  printf '%-6s %12.0f %9.2f   %12.0f %9.2f\n' "$target" "$frps" "$fp99" "$prps" "$pp99"
  eval "${target}_frps=$frps ${target}_pp99=$pp99"
done
awk -v pf="$page_frps" -v af="$api_frps" -v pp="$page_pp99" 'BEGIN {
  printf "\npage/api full req/s: %.2f    board paced p99: %.2f ms (target < 10 ms)\n", pf / af, pp
}'
echo "(medians of $ROUNDS rounds of $DURATION; full: -c$CONNECTIONS; paced: -c$RATE_CONNECTIONS, ${DELAY_MS} ms between requests; $(nproc) CPUs)"
