#!/usr/bin/env bash
# Long linearizability campaign: RUNS fresh 3-member clusters, each driven for SECONDS by 6
# clients doing get/put/compare-and-set through every member while members are killed
# (SIGKILL), paused (SIGSTOP) and cut off from the others, and a fourth member is added as a
# learner, promoted and removed over and over; every history is checked.
#   scripts/linearizability-campaign.sh [RUNS] [SECONDS] [SEED]   (defaults: 50 runs of 60 s)
# Servers and tests are release builds (in .build-campaign): the checker's search over a
# minute's history (about 30,000 operations) takes seconds there and many minutes in a debug build.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"
flags=(-c release -Xswiftc -enable-testing --scratch-path .build-campaign)
swift build "${flags[@]}" --build-tests >/dev/null
export SWIFT_ETCD_BINARY="$PWD/.build-campaign/release/swift-etcd" LINEARIZABILITY_RUNS="${1:-50}" LINEARIZABILITY_SECONDS="${2:-60}"
[ $# -ge 3 ] && export LINEARIZABILITY_SEED="$3"
swift test "${flags[@]}" --skip-build --filter "LinearizabilityTests/campaign" 2>&1 | grep --line-buffered -E "linearizability|✘|passed after"
