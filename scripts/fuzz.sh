#!/usr/bin/env bash
# Fuzzes a swift-etcd member from a fixed seed for SECONDS (default 60): mutated requests for
# every etcd RPC and random HTTP/2 frame sequences, from Go (scripts/goclient/src/fuzz), seeded
# with valid requests and the corpus in scripts/fuzz/corpus. Every request must end within 5 s,
# a refused one must not move the revision, the member must stay up and give its descriptors
# back. Inputs that broke a rule land in $work/crashers (printed); replay one with
#   fuzz replay 127.0.0.1:PORT FILE
# Then the member restarts from what the fuzzing left and must serve the same keys (HashKV).
# With FUZZ_SAVE_CORPUS=1 the inputs that drew new kinds of answers are added to the corpus.
#   scripts/fuzz.sh [SECONDS] [SEED]      (SEED defaults to the time; it is printed)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
# shellcheck disable=SC2086
bin=$(swift build ${SWIFT_BUILD_FLAGS:-} --show-bin-path)
seconds=${1:-60}
seed=${2:-$(date +%s)}
work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
(cd scripts/goclient && GO111MODULE=off GOPATH="$PWD:/usr/share/gocode" GOCACHE="$work/gocache" go build -o "$work/fuzz" fuzz)
cp -r scripts/fuzz/corpus "$work/corpus"
mkdir -p "$work/crashers"
port=$(free_port)
peer=$(free_port)
start_member "$bin/swift-etcd" fuzz "$work/data" "$port" "$peer" "$work/member.log"
pid=$!
wait_for_port "$port" 30
echo "fuzzing swift-etcd for $seconds s, seed $seed"
set +e
"$work/fuzz" "127.0.0.1:$port" "$pid" "$seconds" "$seed" "$work/corpus" "$work/crashers"
status=$?
set -e
# hashkv [REVISION]: the member's HashKV at REVISION (default: the newest) and the revision it
# covers. Compared at the same revision: a lease the fuzzing granted (lease 99 lives 60 s) may
# expire around the restart and delete its keys in a later revision.
hashkv() {
  ETCDCTL_API=3 etcdctl --endpoints "127.0.0.1:$port" endpoint hashkv --rev "${1:-0}" -w json |
    python3 -c 'import json,sys; h=json.load(sys.stdin)[0]["HashKV"]; print(h["hash"], h["header"]["revision"])'
}
if [ "$status" = 0 ]; then
  read -r before revision < <(hashkv)
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  start_member "$bin/swift-etcd" fuzz "$work/data" "$port" "$peer" "$work/member.log"
  pid=$!
  wait_for_port "$port" 30
  read -r after _ < <(hashkv "$revision")
  if [ "$before" = "$after" ]; then
    echo "PASS restarted after the fuzzing: the same keys up to revision $revision (HashKV $after)"
  else
    echo "FAIL restarted after the fuzzing: HashKV $after at revision $revision, $before before"
    status=1
  fi
fi
if [ "${FUZZ_SAVE_CORPUS:-0}" = 1 ]; then
  cp -rn "$work/corpus/." scripts/fuzz/corpus/
fi
if [ "$status" != 0 ]; then
  find "$work/crashers" -type f -exec sh -c 'echo "crasher $1: $(od -An -tx1 "$1" | tr -d " \n")"' _ {} \;
  tail -20 "$work/member.log"
fi
exit "$status"
