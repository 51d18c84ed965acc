#!/usr/bin/env bash
# Long failing-disk campaign: N rounds in which a write or sync of the log, the backend or a
# snapshot file of a swift-etcd member fails once (EIO or ENOSPC, through the faultfs LD_PRELOAD
# shim) at a random instant under eight concurrent writers; after each the member must have
# stopped, and on restart hold every acknowledged write at its revision.
#   scripts/failing-disk-campaign.sh [N] [SEED]      (N defaults to 100)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"
swift build --build-tests >/dev/null
export DISK_FAULT_ROUNDS="${1:-100}"
[ $# -ge 2 ] && export DISK_FAULT_SEED="$2"
swift test --skip-build --filter "FailingDiskTests/faultsAtRandom" 2>&1 | grep -E "failing disk|seed|✘|passed after"
