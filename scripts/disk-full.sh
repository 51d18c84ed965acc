#!/usr/bin/env bash
# A disk that fills up under a swift-etcd member: its data directory on a 48 MiB tmpfs, puts of
# 100 kB until the member refuses or stops. It must stop cleanly with a message (or answer with
# an error), never corrupt its log or backend; once the file system is grown (remounted at
# 512 MiB) it must start again and hold every write it acknowledged, with its value.
# Needs root (mount); exits 0 with SKIP where tmpfs cannot be mounted.
#   scripts/disk-full.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
# shellcheck disable=SC2086
bin=$(swift build ${SWIFT_BUILD_FLAGS:-} --show-bin-path)
work=$(mktemp -d)
disk="$work/disk"
mkdir -p "$disk"
pid=""
cleanup() {
  if [ -n "$pid" ]; then
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  umount -l "$disk" 2>/dev/null || true
  rm -rf "$work" || true
}
trap cleanup EXIT
if ! mount -t tmpfs -o size=48m tmpfs "$disk" 2>/dev/null; then
  echo "SKIP disk full: cannot mount a tmpfs here"
  exit 0
fi
port=$(free_port)
peer=$(free_port)
start() {
  "$bin/swift-etcd" --data-dir "$disk/data" --wal-segment-bytes 1048576 \
    --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "default=http://127.0.0.1:$peer" >>"$work/server.log" 2>&1 &
  pid=$!
  wait_for_port "$port" 30
}
start
ctl() { ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$port" --command-timeout=10s "$@"; }
value() { python3 -c "import sys; sys.stdout.write(('value-$1-' * 20000)[:100000])"; }
acknowledged=0
refusal=""
for i in $(seq 1 1000); do
  if out=$(value "$i" | ctl put "k$i" 2>&1); then
    acknowledged=$i
  else
    refusal=$out
    break
  fi
done
sleep 1
alive=$(kill -0 "$pid" 2>/dev/null && echo running || echo stopped)
echo "acknowledged $acknowledged puts of 100 kB on a 48 MiB file system; then: ${refusal:-nothing refused}"
echo "the member: $alive; its last log lines:"
tail -3 "$work/server.log" | cut -c1-300
status=0
if [ "$alive" = stopped ]; then
  grep -qE '"level":"(fatal|error)"' "$work/server.log" || { echo "FAIL the member stopped without saying why"; status=1; }
fi
kill -9 "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
pid=""

mount -o remount,size=512m "$disk"
start
missing=0
for i in $(seq 1 "$acknowledged"); do
  got=$(ctl get "k$i" --print-value-only | head -c 100000)
  [ "$got" = "$(value "$i")" ] || missing=$((missing + 1))
done
if [ "$missing" -ne 0 ]; then
  echo "FAIL $missing of $acknowledged acknowledged writes missing or changed after the restart"
  status=1
fi
ctl put after-restart ok >/dev/null || { echo "FAIL no writes after the restart"; status=1; }
[ "$status" = 0 ] && echo "PASS disk full: stopped cleanly, restarted with all $acknowledged acknowledged writes, writes again"
exit "$status"
