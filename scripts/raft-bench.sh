#!/usr/bin/env bash
# Measures the Raft library alone: committed entries per second through a 3-node in-process
# cluster (instant network, no disk, 128-byte commands) at several batch sizes, then heap
# allocations per entry counted by valgrind (the difference between two run lengths, so start-up
# allocations cancel out).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /opt/swift/usr/bin ] && export PATH="/opt/swift/usr/bin:$PATH"
swift build -c release --product raft-bench >/dev/null
bench=.build/release/raft-bench
for batch in 1024 256 64 16; do
  "$bench" --entries 1000000 --batch "$batch" | grep -v RESULT
done
if command -v valgrind >/dev/null; then
  allocs() {
    valgrind --tool=memcheck --leak-check=no "$bench" --entries "$1" 2>&1 |
      sed -n 's/.*total heap usage: \([0-9,]*\) allocs.*/\1/p' | tr -d ,
  }
  small=$(allocs 10000)
  large=$(allocs 110000)
  echo "allocations per entry (batch 1024): $(python3 -c "print(round(($large - $small) / 100000, 3))")"
else
  echo "valgrind not installed: allocation count skipped"
fi
