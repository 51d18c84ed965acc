#!/usr/bin/env bash
# Server CPU per unary RPC: our gRPC layer (grpc-bench's echo service) against the real etcd
# (Maintenance.Status, the cheapest unary RPC it has), same client, same machine, one run.
# Release build. Prints one RESULT line per run and a summary table.
#   scripts/grpc-bench.sh [TOTAL]        (default 100000 calls per run)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh
total=${1:-100000}
swift build -c release --product grpc-bench >/dev/null
bin=$(swift build -c release --show-bin-path)
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
echo_port=$(free_port)
"$bin/grpc-bench" serve --port "$echo_port" >"$work/echo.log" 2>&1 &
echo_pid=$!
pids+=("$echo_pid")
etcd_port=$(free_port)
peer_port=$(free_port)
start_etcd bench "$work/etcd" "$etcd_port" "$peer_port" "$work/etcd.log"
etcd_pid=$!
pids+=("$etcd_pid")
wait_for_port "$echo_port"
wait_for_port "$etcd_port"

declare -A cpu
for concurrency in 1 64; do
  for server in swift etcd; do
    if [ "$server" = swift ]; then
      args=(--target "127.0.0.1:$echo_port" --server-pid "$echo_pid")
    else
      args=(--target "127.0.0.1:$etcd_port" --server-pid "$etcd_pid" --method /etcdserverpb.Maintenance/Status)
    fi
    line=$("$bin/grpc-bench" load "${args[@]}" --total "$total" --concurrency "$concurrency" --warmup 5000)
    echo "$server: $line"
    cpu[$server,$concurrency]=$(sed -n 's/.*server_cpu_us_per_rpc=\([0-9.]*\).*/\1/p' <<<"$line")
  done
done

echo
echo "server CPU per unary RPC (µs)   swift-etcd GRPCWire   etcd $(etcd --version | sed -n 's/etcd Version: //p')   ratio"
for concurrency in 1 64; do
  printf "concurrency %-3s                 %-20s  %-12s  %.2f\n" "$concurrency" \
    "${cpu[swift,$concurrency]}" "${cpu[etcd,$concurrency]}" \
    "$(python3 -c "print(${cpu[swift,$concurrency]} / ${cpu[etcd,$concurrency]})")"
done
