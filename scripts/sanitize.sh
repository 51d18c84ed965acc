#!/usr/bin/env bash
# Runs the tests of the concurrent parts under a sanitizer: ThreadSanitizer (`thread`) or
# AddressSanitizer (`address`), in a build of their own (.build-tsan or .build-asan; the first
# one takes 20–30 minutes on two cores). Every process
# built with it (the test runner and the swift-etcd members the cluster tests start) writes its
# reports to one directory; the script prints them and fails when there is any.
#   scripts/sanitize.sh thread|address [FILTER]
# FILTER (a `swift test --filter` pattern) defaults to the revision lists, the watch hub and
# the store (MVCCTests), the gRPC layer with its event-loop batches (GRPCWireTests), the
# server's apply path and backend committer (EtcdServerTests) and a 3-member cluster
# (ClusterTests.ClusterTests).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"
sanitizer=${1:?thread or address}
filter=${2:-MVCCTests|GRPCWireTests|EtcdServerTests|ClusterTests.ClusterTests}
scratch=.build-$([ "$sanitizer" = thread ] && echo tsan || echo asan)
flags=(-Xswiftc "-sanitize=$sanitizer" --scratch-path "$scratch")
# ThreadSanitizer cannot see the standard library's Mutex on Linux: Locked becomes a pthread lock.
[ "$sanitizer" = thread ] && flags+=(-Xswiftc -DSANITIZE_THREAD)
reports=$(mktemp -d)
trap 'rm -rf "$reports"' EXIT
swift build --build-tests "${flags[@]}" >/dev/null
export TSAN_OPTIONS="log_path=$reports/report halt_on_error=0 second_deadlock_stack=1"
export ASAN_OPTIONS="log_path=$reports/report detect_leaks=0"
export SWIFT_ETCD_BINARY="$PWD/$scratch/debug/swift-etcd"
set +e
swift test --skip-build "${flags[@]}" --filter "$filter" 2>&1 | grep -E "✘|Test run with|passed after [0-9.]+ seconds\.$"
status=${PIPESTATUS[0]}
set -e
count=$(find "$reports" -type f | wc -l)
for report in "$reports"/*; do
  [ -f "$report" ] && { echo "== $report"; head -60 "$report"; }
done
echo "$sanitizer sanitizer: $count report file(s); tests exit $status"
[ "$count" = 0 ] && [ "$status" = 0 ]
