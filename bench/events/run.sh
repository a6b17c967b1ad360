#!/usr/bin/env bash
# bench/events: commit-to-effect latency (p50, p99) and sustained events/s
# of the event path, for the feed and nats transports in one invocation.
# posting and notification run as release processes on fresh SQLite files;
# the nats transport gets a nats-server of its own on a free port.
# Targets at 500 events/s on a 2-core machine: p99 < 100 ms (feed),
# < 25 ms (nats).
#
#   bash bench/events/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
echo "building release binaries …" >&2
cargo build --release -q
cargo build --release -q --example bench_events
TARGET="${CARGO_TARGET_DIR:-target}"
NATS=""
for candidate in /usr/sbin/nats-server /usr/bin/nats-server "$(command -v nats-server 2>/dev/null || true)"; do
  [ -n "$candidate" ] && [ -x "$candidate" ] && { NATS="$candidate"; break; }
done
[ -z "$NATS" ] && echo "nats-server not found: measuring the feed transport only" >&2
"$TARGET/release/examples/bench_events" "$TARGET/release/dure" $NATS
