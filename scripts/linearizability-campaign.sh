#!/usr/bin/env bash
# Long linearizability campaign: RUNS fresh 3-member clusters (release build), each driven for
# SECONDS by 6 clients doing get/put/compare-and-set through every member while members are
# killed (SIGKILL), paused (SIGSTOP) and cut off from the others; every history is checked.
#   scripts/linearizability-campaign.sh [RUNS] [SECONDS] [SEED]   (defaults: 50 runs of 60 s)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"
swift build -c release --product swift-etcd >/dev/null
swift build --build-tests >/dev/null
export SWIFT_ETCD_BINARY="$PWD/.build/release/swift-etcd" LINEARIZABILITY_RUNS="${1:-50}" LINEARIZABILITY_SECONDS="${2:-60}"
[ $# -ge 3 ] && export LINEARIZABILITY_SEED="$3"
swift test --skip-build --filter "LinearizabilityTests/campaign" 2>&1 | grep -E "linearizability|✘|passed after"
