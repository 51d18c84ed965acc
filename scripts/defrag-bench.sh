#!/usr/bin/env bash
# Defragmentation under load, etcd against swift-etcd (release build) on this machine with the
# same Go clientv3 client (scripts/goclient/src/defragbench): fill FILL_MIB of values, delete
# half, compact, then put at RATE/s (open loop) while idle and while Maintenance.Defragment
# runs; prints each server's put p50/p99 idle and during, the failures, how long the defrag
# took and the bytes it gave back, and the ratios.
#   scripts/defrag-bench.sh [FILL_MIB] [RATE]       (defaults 1024 and 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"
fill=${1:-1024}
rate=${2:-1000}
swift build -c release --product swift-etcd >/dev/null
bin=$(swift build -c release --show-bin-path)
work=$(mktemp -d "$PWD/.defrag-bench.XXXXXX")
pid=""
trap '[ -n "$pid" ] && kill -9 "$pid" 2>/dev/null; rm -rf "$work"' EXIT
(cd scripts/goclient && GO111MODULE=off GOPATH="$PWD:/usr/share/gocode" GOCACHE="$work/gocache" \
  go build -o "$work/defragbench" defragbench)

for server in etcd swift-etcd; do
  binary=$(command -v etcd)
  [ "$server" = etcd ] || binary="$bin/swift-etcd"
  port=$(free_port)
  peer=$(free_port)
  "$binary" --data-dir "$work/$server.data" --quota-backend-bytes 8589934592 --log-level error \
    --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "default=http://127.0.0.1:$peer" >"$work/$server.log" 2>&1 &
  pid=$!
  wait_for_port "$port"
  echo "== $server"
  "$work/defragbench" -endpoint "127.0.0.1:$port" -fill-mib "$fill" -rate "$rate" | tee "$work/$server.out"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  rm -rf "$work/$server.data"
done

echo
echo "defrag-bench: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD), ${fill} MiB filled, half deleted, $rate puts/s"
python3 - "$work/etcd.out" "$work/swift-etcd.out" <<'PY'
import sys
def result(path):
    line = next(l for l in open(path) if l.startswith("RESULT "))
    return {k: float(v) for k, v in (f.split("=") for f in line.split()[1:])}
etcd, swift = result(sys.argv[1]), result(sys.argv[2])
print(f"{'':22}{'etcd':>14}{'swift-etcd':>14}{'ratio':>8}")
for key, name in [("idle_p50_ms", "put p50 idle (ms)"), ("idle_p99_ms", "put p99 idle (ms)"),
                  ("during_p50_ms", "put p50 defrag (ms)"), ("during_p99_ms", "put p99 defrag (ms)"),
                  ("during_max_ms", "put max defrag (ms)"), ("defrag_seconds", "defrag took (s)"),
                  ("freed_bytes", "bytes given back"), ("failed", "failed puts")]:
    ratio = f"{swift[key] / etcd[key]:.2f}" if etcd[key] else "-"
    print(f"{name:22}{etcd[key]:>14.2f}{swift[key]:>14.2f}{ratio:>8}")
print(f"swift-etcd p99 during / idle: {swift['during_p99_ms'] / swift['idle_p99_ms']:.2f} (target at most 2)")
print(f"etcd p99 during / idle:       {etcd['during_p99_ms'] / etcd['idle_p99_ms']:.2f}")
PY
