#!/usr/bin/env bash
# Gateway puts, the real etcd against swift-etcd: the same Go HTTP client
# (scripts/goclient/src/gatewayload) puts TOTAL keys through POST /v3/kv/put on each server in
# turn (one member, fresh data directory), and the server's CPU seconds per put are read from
# /proc. Prints each run and the ratios (swift-etcd over etcd; > 1 is better for rate, < 1 for
# CPU per put). Uses the release build: swift build -c release --product swift-etcd.
# Usage: scripts/gateway-bench.sh [TOTAL] [CLIENTS] [VALUE_SIZE]
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
total=${1:-20000}
clients=${2:-16}
size=${3:-256}
bin=$(swift build -c release --show-bin-path)
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
(cd scripts/goclient && GO111MODULE=off GOPATH="$PWD:/usr/share/gocode" GOCACHE="$work/gocache" \
  go build -o "$work/gatewayload" gatewayload)

cpu_seconds() { # user+system seconds of a process, from /proc/PID/stat
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}

declare -A rate cpu
for server in etcd swift-etcd; do
  binary=$([ "$server" = etcd ] && command -v etcd || echo "$bin/swift-etcd")
  client_port=$(free_port)
  peer_port=$(free_port)
  start_member "$binary" bench "$work/$server" "$client_port" "$peer_port" "$work/$server.log"
  pid=$!
  wait_for_port "$client_port" 30
  sleep 1
  # A warm-up, so both start with connections and caches in the same state.
  "$work/gatewayload" -endpoint "http://127.0.0.1:$client_port" -total 2000 -clients "$clients" -val-size "$size" >/dev/null
  before=$(cpu_seconds "$pid")
  line=$("$work/gatewayload" -endpoint "http://127.0.0.1:$client_port" -total "$total" -clients "$clients" -val-size "$size")
  after=$(cpu_seconds "$pid")
  rate[$server]=$(sed -E 's/.*rate=([0-9]+).*/\1/' <<<"$line")
  cpu[$server]=$(awk -v a="$after" -v b="$before" -v n="$total" 'BEGIN {printf "%.1f", (a - b) / n * 1e6}')
  echo "$server: $line cpu-per-put=${cpu[$server]}us"
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
done
awk -v r1="${rate[etcd]}" -v r2="${rate[swift-etcd]}" -v c1="${cpu[etcd]}" -v c2="${cpu[swift-etcd]}" \
  'BEGIN {printf "gateway put, %s: rate %.2fx etcd, server CPU per put %.2fx etcd\n", "swift-etcd", r2 / r1, c2 / c1}'
