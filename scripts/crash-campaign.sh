#!/usr/bin/env bash
# Long crash campaign: kills a release build of swift-etcd with SIGKILL N times at random
# instants under concurrent puts and txns (snapshots, segment rollover and purges happening all
# the time) and checks after each restart that every acknowledged write is there at its
# revision, no revision was handed out twice, and the revision continues.
#   scripts/crash-campaign.sh [N] [SEED]      (N defaults to 500)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"
kills=${1:-500}
swift build -c release --product swift-etcd >/dev/null
swift build --build-tests >/dev/null
export SWIFT_ETCD_BINARY="$PWD/.build/release/swift-etcd" CRASH_KILLS="$kills"
[ $# -ge 2 ] && export CRASH_SEED="$2"
swift test --skip-build --filter CrashCampaign 2>&1 | grep -E "crash campaign:|seed|✘|passed after"
