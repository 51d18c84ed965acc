#!/usr/bin/env bash
# What recording metrics costs a put: one swift-etcd member (release build), started in turn
# with metrics recorded and with SWIFT_ETCD_BENCHMARK_NO_METRICS=1 (no histograms, no gRPC
# counters), ROUNDS times each (on, off, on, off, ...), each run putting TOTAL keys of 256
# bytes from 64 clients (swift-etcd-benchmark). Prints each run's rate and the server's CPU
# per put (/proc), then the averages and the cost of metrics in CPU per put.
# Usage: scripts/metrics-cost.sh [ROUNDS] [TOTAL]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
rounds=${1:-3}
total=${2:-40000}
swift build -c release --product swift-etcd >/dev/null
swift build -c release --product swift-etcd-benchmark >/dev/null
bin=$(swift build -c release --show-bin-path)
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT

cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }

: >"$work/results"
for round in $(seq 1 "$rounds"); do
  for mode in on off; do
    client_port=$(free_port)
    peer_port=$(free_port)
    rm -rf "$work/data"
    if [ "$mode" = off ]; then export SWIFT_ETCD_BENCHMARK_NO_METRICS=1; else unset SWIFT_ETCD_BENCHMARK_NO_METRICS; fi
    start_member "$bin/swift-etcd" bench "$work/data" "$client_port" "$peer_port" "$work/server.log"
    pid=$!
    unset SWIFT_ETCD_BENCHMARK_NO_METRICS
    wait_for_port "$client_port" 30
    sleep 1
    "$bin/swift-etcd-benchmark" put --endpoints "127.0.0.1:$client_port" --clients 64 --conns 8 --total 5000 \
      --key-space-size 100000 --val-size 256 >/dev/null 2>&1
    before=$(cpu_seconds "$pid")
    line=$("$bin/swift-etcd-benchmark" put --endpoints "127.0.0.1:$client_port" --clients 64 --conns 8 --total "$total" \
      --key-space-size 100000 --val-size 256 2>/dev/null | grep '^RESULT')
    after=$(cpu_seconds "$pid")
    qps=$(sed -n 's/.* qps=\([0-9.]*\).*/\1/p' <<<"$line")
    cpu=$(awk -v a="$after" -v b="$before" -v n="$total" 'BEGIN {printf "%.2f", (a - b) / n * 1e6}')
    echo "round $round, metrics $mode: $qps puts/s, $cpu us CPU per put"
    echo "$mode $qps $cpu" >>"$work/results"
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
  done
done
awk '{n[$1]++; q[$1] += $2; c[$1] += $3}
  END {printf "metrics on: %.0f puts/s, %.2f us/put; off: %.0f puts/s, %.2f us/put; recording costs %+.1f%% CPU per put\n",
    q["on"] / n["on"], c["on"] / n["on"], q["off"] / n["off"], c["off"] / n["off"], (c["on"] / c["off"] - 1) * 100}' "$work/results"
