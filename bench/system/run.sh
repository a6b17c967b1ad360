#!/usr/bin/env bash
# bench/system: the whole system, measured by the tool that ships with it.
# Starts `dure up` on fresh SQLite data (and on Postgres when a server is
# given and reachable) and runs `dure load` against it: read-only,
# write-only and the DeathStarBench-style mix (60 % list, 30 % read one,
# 10 % comment), each at a fixed open-loop rate and at saturation (closed
# loop). Prints one table with the latency figures, the errors and the
# system's memory (summed PSS) idle after first use and after the bench.
#
#   bash bench/system/run.sh
#   DURATION=30s RATE=2000 bash bench/system/run.sh
#   SMOKE=1 PROFILE=debug bash bench/system/run.sh   # seconds; CI's guard
#
# Settings (environment):
#   DURATION  each measured run (default 20s; SMOKE: 2s)
#   RATE      the fixed arrival rate of the mix and of reads (default 2000)
#   WRITE_RATE  the fixed rate of write-only runs (default 500)
#   WRITERS   closed-loop clients for the saturation runs (default 4 for
#             writes, 16 for reads and the mix)
#   POSTGRES_URL  a Postgres server (postgres://user@host:port); default
#             DURE_TEST_POSTGRES_URL. Its dure_* databases are reused, not
#             emptied: each run creates its own users and postings.
#   PROFILE   release (default) or debug; DURE: a binary to use instead
#   LOADER    the binary that runs `dure load` (default: DURE), to measure
#             an older build's `dure up` with the current tool
#   SMOKE=1   a few seconds per run at low rates; fails on any error or
#             crash, never on timing
#
# Exits 1 if any run saw an error (a non-2xx answer or a failed request) or
# the system stopped.
set -euo pipefail
cd "$(dirname "$0")/../.."

SMOKE="${SMOKE:-0}"
PROFILE="${PROFILE:-release}"
if [ "$SMOKE" = 1 ]; then
  DURATION="${DURATION:-2s}"
  RATE="${RATE:-200}"
  WRITE_RATE="${WRITE_RATE:-100}"
  WARMUP=1s
  POSTINGS=20
  SETTLE=1
else
  DURATION="${DURATION:-20s}"
  RATE="${RATE:-2000}"
  WRITE_RATE="${WRITE_RATE:-500}"
  WARMUP=2s
  POSTINGS=200
  # identity releases its password-hashing buffers 10 s after the last use.
  SETTLE=15
fi
POSTGRES_URL="${POSTGRES_URL:-${DURE_TEST_POSTGRES_URL:-}}"
GATEWAY_PORT="${GATEWAY_PORT:-9321}"
REGISTRY_PORT="${REGISTRY_PORT:-9322}"
CONSOLE_PORT="${CONSOLE_PORT:-9323}"

if [ -z "${DURE:-}" ]; then
  if [ "$PROFILE" = release ]; then
    echo "building the release binary …" >&2
    cargo build --release -q
  else
    cargo build -q
  fi
  DURE="${CARGO_TARGET_DIR:-target}/$PROFILE/dure"
fi

LOADER="${LOADER:-$DURE}"
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
C="http://127.0.0.1:$CONSOLE_PORT"
FAILED=0

start_up() { # backend
  local flags=()
  rm -rf "$WORK/data"
  [ "$1" = postgres ] && flags+=(--database-url "$POSTGRES_URL")
  DURE_RATE_LIMIT=0 DURE_SIGNUPS_PER_ADDRESS=1000 DURE_ADMIN_PASSWORD="bench admin password" \
    RUST_LOG=warn "$DURE" up "${flags[@]}" --data-dir "$WORK/data" \
    --gateway-listen "127.0.0.1:$GATEWAY_PORT" --registry-listen "127.0.0.1:$REGISTRY_PORT" \
    --console "127.0.0.1:$CONSOLE_PORT" >"$WORK/up-$1.log" 2>&1 &
  UP=$!
  for _ in $(seq 1 300); do
    if curl -fsS "$G/api/postings?limit=1" >/dev/null 2>&1 \
      && curl -fsS "$C/api/resources" >/dev/null 2>&1; then
      return 0
    fi
    kill -0 "$UP" 2>/dev/null || break
    sleep 0.1
  done
  echo "dure up ($1) did not become ready; its log:" >&2
  tail -n 40 "$WORK/up-$1.log" >&2
  exit 1
}

# One `dure load` run; appends a row to the table. Args: backend, label,
# then dure load's flags.
load() {
  local backend=$1 label=$2 out status
  shift 2
  out="$WORK/run.json"
  status=0
  "$LOADER" load --url "$G" --console "$C" --json --warmup "$WARMUP" --duration "$DURATION" \
    --postings "$POSTINGS" "$@" >"$out" 2>"$WORK/run.err" || status=$?
  if [ ! -s "$out" ]; then
    echo "dure load failed ($backend, $label):" >&2
    cat "$WORK/run.err" >&2
    FAILED=1
    return 0
  fi
  [ "$status" = 0 ] || FAILED=1
  python3 - "$out" "$backend" "$label" >>"$WORK/table" <<'EOF'
import json, sys
run = json.load(open(sys.argv[1]))
a = run["all"]
errors = sum(run["errors"].values())
comment = run["by_operation"].get("comment")
print("{:<9} {:<16} {:>9.0f} {:>7.2f} {:>7.2f} {:>8.2f} {:>8.2f} {:>8} {:>7}".format(
    sys.argv[2], sys.argv[3], a["rate"], a["p50_ms"], a["p90_ms"], a["p99_ms"], a["p999_ms"],
    "{:.2f}".format(comment["p99_ms"]) if comment else "-", errors))
EOF
}

# The system's memory now: summed PSS of `dure up` and the processes the
# console lists (see docs/benchmarks.md), and their summed RSS.
footprint() {
  curl -fsS "$C/api/resources" | python3 -c '
import json, sys
def field(path, name):
    try:
        for line in open(path):
            if line.startswith(name):
                return int(line.split()[1])
    except OSError:
        return None
pids = [r["pid"] for r in json.load(sys.stdin)["resources"] if r.get("pid")]
up = field("/proc/%d/status" % pids[0], "PPid:") if pids else None
pids = ([up] if up else []) + pids
pss = sum(field("/proc/%d/smaps_rollup" % p, "Pss:") or 0 for p in pids)
rss = sum(field("/proc/%d/status" % p, "VmRSS:") or 0 for p in pids)
print("{:.1f} MB PSS ({:.1f} MB summed RSS, {} processes)".format(pss / 1024, rss / 1024, len(pids)))'
}

backends=(sqlite)
if [ -n "$POSTGRES_URL" ]; then
  if python3 - "$POSTGRES_URL" <<'EOF'
import socket, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
socket.create_connection((u.hostname or "127.0.0.1", u.port or 5432), timeout=2).close()
EOF
  then
    backends+=(postgres)
  elif [ "${CI:-}" = true ]; then
    echo "Postgres at $POSTGRES_URL is configured but not reachable" >&2
    exit 1
  else
    echo "Postgres at $POSTGRES_URL is not reachable: SQLite only" >&2
  fi
fi

printf '%-9s %-16s %9s %7s %7s %8s %8s %8s %7s\n' backend run "req/s" p50 p90 p99 p99.9 "cmt p99" errors >"$WORK/table"
FOOTPRINTS=()
for backend in "${backends[@]}"; do
  echo "== $backend" >&2
  start_up "$backend"
  # First use: one short run signs up, hashes a password, seeds and reads.
  "$LOADER" load --url "$G" --console none --rate 50 --duration 1s --warmup 0s \
    --users 1 --postings 2 --mix dsb >/dev/null 2>&1 || true
  sleep "$SETTLE"
  idle=$(footprint)
  load "$backend" "read @$RATE" --mix read --rate "$RATE"
  load "$backend" "write @$WRITE_RATE" --mix write --rate "$WRITE_RATE"
  load "$backend" "dsb @$RATE" --mix dsb --rate "$RATE"
  load "$backend" "read max" --mix read --rate max --connections 16
  load "$backend" "write max" --mix write --rate max --connections "${WRITERS:-4}"
  load "$backend" "dsb max" --mix dsb --rate max --connections 16
  after=$(footprint)
  FOOTPRINTS+=("$backend idle: $idle; after the bench: $after")
  if ! kill -0 "$UP" 2>/dev/null; then
    echo "dure up ($backend) stopped during the bench; its log:" >&2
    tail -n 40 "$WORK/up-$backend.log" >&2
    FAILED=1
  fi
  stop_up
done

echo
echo "bench/system on $(nproc) cores, $(uname -sr), duration $DURATION per run (ms; cmt = comment)"
cat "$WORK/table"
echo
printf '%s\n' "${FOOTPRINTS[@]}"
if [ "$FAILED" != 0 ]; then
  echo "bench/system: some runs had errors (see the errors column)" >&2
  exit 1
fi
