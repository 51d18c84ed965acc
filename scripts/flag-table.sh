#!/usr/bin/env bash
# Regenerates the table in docs/FLAGS.md from the binary (`swift-etcd --print-flag-table`):
# the table is written once, in Sources/EtcdEmbed/EtcdFlagTable.swift, and a test checks that
# the docs hold exactly what the binary prints.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC2086
bin=$(swift build ${SWIFT_BUILD_FLAGS:-} --show-bin-path)
"$bin/swift-etcd" --print-flag-table >/tmp/flag-table.$$
python3 - docs/FLAGS.md /tmp/flag-table.$$ <<'PY'
import sys
path, table = sys.argv[1], open(sys.argv[2]).read()
text = open(path).read()
start, end = "<!-- flag-table -->\n", "<!-- /flag-table -->"
head, rest = text.split(start, 1)
_, tail = rest.split(end, 1)
open(path, "w").write(head + start + table + end + tail)
PY
rm -f /tmp/flag-table.$$
