#!/usr/bin/env bash
# Runs the recovery guide of docs/OPERATIONS.md command for command: every ```sh block after a
# `<!-- recovery-guide -->` line, in order, in one shell, after a prelude that makes the
# situation the guide starts from (a 3-member cluster with data, two of whose members are lost
# for good). Checks that the restored and rebuilt clusters serve the data. Exit status 1 when a
# command fails or data is missing. Uses the binaries of `swift build` and Debian's etcdctl;
# needs the ports 23791-23825 free.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC2086
bin=$(swift build ${SWIFT_BUILD_FLAGS:-} --show-bin-path)
work=$(mktemp -d)
# The guide's members run in $work with relative data directories: they are found by that.
stop_members() {
  for pid in $(pgrep -f 'swift-etcd --name' || true); do
    [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$work" ] && kill -9 "$pid" 2>/dev/null
  done
  return 0
}
trap 'stop_members; sleep 0.5; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

for port in 23791 23792 23793 23794 23801 23802 23803 23804 23811 23812 23813 23815 23821 23822 23823 23825; do
  if (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "port $port is in use"; exit 1; fi
done

guide=$(python3 - docs/OPERATIONS.md <<'PY'
import re, sys
text = open(sys.argv[1]).read()
blocks = re.findall(r"<!-- recovery-guide -->\n```sh\n(.*?)```", text, re.S)
assert len(blocks) == 3, f"expected 3 guide blocks, found {len(blocks)}"
print("\n".join(blocks))
PY
)

cat >"$work/run.sh" <<PRELUDE
set -euo pipefail
export PATH="$bin:\$PATH" ETCDCTL_API=3
cd "$work"
# etcdctl endpoint health waits for the members just started (at most 30 s).
etcdctl() {
  if [ "\${3:-}" = endpoint ] && [ "\${4:-}" = health ]; then
    for _ in \$(seq 1 60); do command etcdctl "\$@" >/dev/null 2>&1 && break; sleep 0.5; done
  fi
  command etcdctl "\$@"
}
# The situation the guide starts from: m1..m3 with data; m2 and m3 lost with their disks.
cluster=m1=http://127.0.0.1:23801,m2=http://127.0.0.1:23802,m3=http://127.0.0.1:23803
for n in 1 2 3; do
  swift-etcd --name m\$n --data-dir m\$n.etcd --initial-cluster \$cluster \\
    --listen-client-urls http://127.0.0.1:2379\$n --advertise-client-urls http://127.0.0.1:2379\$n \\
    --listen-peer-urls http://127.0.0.1:2380\$n --initial-advertise-peer-urls http://127.0.0.1:2380\$n > m\$n.log 2>&1 &
done
etcdctl --endpoints 127.0.0.1:23791 endpoint health
for i in \$(seq 1 20); do etcdctl --endpoints 127.0.0.1:23791 put guide/\$i value-\$i > /dev/null; done
pkill -9 -f 'data-dir m[123].etcd'
sleep 0.5
rm -rf m2.etcd m3.etcd
wait || true
echo "== the guide"
set -x
PRELUDE
printf '%s\n' "$guide" >>"$work/run.sh"

set +e
bash "$work/run.sh" >"$work/out" 2>&1
status=$?
set -e
keys=$(grep -c '^guide/' "$work/out" || true)
if [ "$status" -ne 0 ] || [ "$keys" -ne 40 ]; then
  cat "$work/out"
  echo "FAIL recovery guide (exit $status, $keys of 40 key lines: 20 on the restored cluster, 20 on the replacement)"
  exit 1
fi
echo "PASS recovery guide: every command ran; the restored cluster and the replacement member serve all 20 keys"
