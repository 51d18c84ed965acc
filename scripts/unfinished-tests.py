#!/usr/bin/env python3
"""Names the tests a `swift test` log shows started but never finished.

.ci/run stops a test run that outlives its time limit; this says which tests it was waiting
for. Usage: scripts/unfinished-tests.py LOG
"""
import re
import sys

started = {}
finished = set()
with open(sys.argv[1], errors="replace") as log:
    for line in log:
        begun = re.search(r"◇ Test (?!case passing|run started)(.+?) started\.", line)
        if begun:
            started.setdefault(begun.group(1), line.strip())
        ended = re.search(r"[✔✘➜] Test (?!case passing)(.+?)(?: with \d+ test cases?)? (?:passed|failed|skipped)", line)
        if ended:
            finished.add(ended.group(1))

unfinished = [name for name in started if name not in finished]
for name in unfinished:
    print(f"  still running: {name}")
if not unfinished:
    print("  (every test that started also finished: the run stopped after them)")
