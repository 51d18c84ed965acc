#!/usr/bin/env bash
# Soak: a 3-member swift-etcd cluster for MINUTES under a mixed clientv3 workload (puts, txns,
# ranges, leases kept alive and left to expire, watches resuming across failures, compactions),
# with a fault every INTERVAL seconds (kill -9 and restart, a 15 s pause, a member cut off from
# its peers for 20 s). Prints each member's memory and descriptors every 30 s (CURVE lines),
# then checks that nothing acknowledged was lost, expired leases' keys are gone, the watchers
# saw every event once and in order, the members agree, and memory and descriptors stayed flat.
#   scripts/soak.sh MINUTES [INTERVAL]     (INTERVAL defaults to 120 s)
# With SOAK_BINARY=/usr/bin/etcd the same soak runs against the real etcd.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"
# shellcheck disable=SC2086
binary=${SOAK_BINARY:-$(swift build ${SWIFT_BUILD_FLAGS:-} --show-bin-path)/swift-etcd}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd scripts/goclient && GO111MODULE=off GOPATH="$PWD:/usr/share/gocode" GOCACHE="$work/gocache" go build -o "$work/soak" soak)
"$work/soak" "$binary" "${1:?minutes}" "${2:-120}" "$work"
