#!/usr/bin/env python3
"""How etcd's streams end, compared: the same cases against the real etcd and swift-etcd.

Each case opens a streaming RPC (LeaseKeepAlive or Watch) with Python grpcio (not our client)
and ends it one way: the client half-closes, cancels, runs into its deadline, sends bytes
that do not decode, asks for a leader (`hasleader`) where there is none, or the server stops
gracefully or is killed. The outcome is what the client saw: the answers it received, the
final status code and message, and how long the end took after the event that should end
it (`at once` under 0.5 s, `at deadline`, `still open` after 3 s). After a cancel, a unary
call on the same channel must still work.

Usage: stream_endings.py --etcd BINARY --swift-etcd BINARY [--only CASE]
Prints the table (markdown) and one PASS/FAIL line per case; exits 1 when an outcome differs
and the difference is not one of KNOWN_DIFFERENCES (which docs/GRPC.md explains). The
`hasleader` cases run a three-member cluster and kill two members.
"""
import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import grpc

from grpclib import PUT, RANGE, Server, field, first, free_port, parse

# Cases where swift-etcd deliberately differs from etcd 3.4, and why (also in docs/GRPC.md).
KNOWN_DIFFERENCES = {
    "Watch: server stops gracefully (SIGTERM)":
        "swift-etcd ends open streams at once with etcd's own `etcdserver: server stopped` (UNAVAILABLE) "
        "and lets unary calls finish; etcd 3.4 drops the connection, etcd 3.6 sends GOAWAY and drops it "
        "after 2 s. Clients fail over at once either way, and learn why",
}


LEASE_KEEPALIVE = "/etcdserverpb.Lease/LeaseKeepAlive"
WATCH = "/etcdserverpb.Watch/Watch"
COMPACT = "/etcdserverpb.KV/Compact"


def keepalive_request(lease):
    return field(1, lease)


def watch_create(key, start_revision=0):
    create = field(1, key) + (field(3, start_revision) if start_revision else b"")
    return field(1, create)


def describe_keepalive(data):
    fields = parse(data)
    return f"ttl={first(fields, 3)}"


def describe_watch(data):
    fields = parse(data)
    if first(fields, 3):
        return "created"
    if first(fields, 4):
        compact = first(fields, 5)
        return f"canceled(compact={compact})" if compact else "canceled"
    events = fields.get(11, [])
    return f"{len(events)} event(s)" if events else "progress"


# --- one stream ----------------------------------------------------------------------------

class Requests:
    """A request iterator: yields what it is given; `close()` ends it (the client half-closes)."""

    def __init__(self, *requests):
        self.items = list(requests)
        self.cond = threading.Condition()
        self.closed = False

    def push(self, request):
        with self.cond:
            self.items.append(request)
            self.cond.notify()

    def close(self):
        with self.cond:
            self.closed = True
            self.cond.notify()

    def __iter__(self):
        return self

    def __next__(self):
        with self.cond:
            deadline = time.time() + 20
            while not self.items and not self.closed and time.time() < deadline:
                self.cond.wait(0.5)
            if self.items:
                return self.items.pop(0)
            raise StopIteration


def run_stream(server, path, requests, describe, timeout=None, metadata=None, after_first=None, settle=3.0):
    """Opens the stream, calls after_first(call, requests) once the first answer arrived (or
    at once when none is expected), reads until the stream ends or `settle` seconds after the
    ending event. Returns (answers, code, message, timing)."""
    call = server.channel.stream_stream(path)(requests, timeout=timeout, metadata=metadata)
    answers, outcome = [], {}
    ended = threading.Event()

    def read():
        try:
            for data in call:
                answers.append(describe(data))
            outcome["code"], outcome["message"] = "OK", ""
        except grpc.RpcError as error:
            outcome["code"], outcome["message"] = error.code().name, error.details() or ""
        outcome["at"] = time.time()
        ended.set()

    threading.Thread(target=read, daemon=True).start()
    started = time.time()
    while not answers and not ended.is_set() and time.time() - started < 5:
        time.sleep(0.01)
    event = time.time()
    if after_first:
        after_first(call, requests)
    ended.wait(settle if timeout is None else max(settle, timeout + 2))
    if not ended.is_set():
        call.cancel()
        ended.wait(5)
        return answers, "still open", "", "still open"
    elapsed = outcome["at"] - event
    timing = ("at once" if elapsed < 0.5 else "within 2.5 s" if elapsed < 2.5 else "within 10 s" if elapsed < 10
              else f"after {elapsed:.0f} s")
    if timeout is not None and abs(outcome["at"] - started - timeout) < 0.5:
        timing = "at deadline"
    return answers, outcome["code"], outcome["message"], timing


def unary_still_works(server):
    try:
        server.unary(RANGE, field(1, b"ready"))
        return "unary on the channel after it: ok"
    except grpc.RpcError as error:
        return f"unary on the channel after it: {error.code().name} {error.details()}"


# --- the cases -----------------------------------------------------------------------------

def half_close(call, requests):
    requests.close()


def cancel(call, requests):
    call.cancel()


def keepalive_half_close(server):
    lease = server.grant()
    return run_stream(server, LEASE_KEEPALIVE, Requests(keepalive_request(lease)), describe_keepalive, after_first=half_close)


def keepalive_three_then_half_close(server):
    lease = server.grant()
    requests = Requests(*[keepalive_request(lease)] * 3)
    return run_stream(server, LEASE_KEEPALIVE, requests, describe_keepalive,
                      after_first=lambda c, r: (time.sleep(0.3), r.close()))


def keepalive_unknown_lease(server):
    return run_stream(server, LEASE_KEEPALIVE, Requests(keepalive_request(12345)), describe_keepalive, after_first=half_close)


def keepalive_deadline(server):
    lease = server.grant()
    return run_stream(server, LEASE_KEEPALIVE, Requests(keepalive_request(lease)), describe_keepalive, timeout=1)


def keepalive_cancel(server):
    lease = server.grant()
    result = run_stream(server, LEASE_KEEPALIVE, Requests(keepalive_request(lease)), describe_keepalive, after_first=cancel)
    return result[0] + [unary_still_works(server)], *result[1:]


def keepalive_half_close_then_cancel(server):
    """The sequence grpcio clients produce when a caller stops reading right after half-closing."""
    outcomes = []
    for _ in range(10):
        lease = server.grant()
        requests = Requests(keepalive_request(lease))
        call = server.channel.stream_stream(LEASE_KEEPALIVE)(requests, timeout=5)
        next(call)
        requests.close()
        call.cancel()
        outcomes.append(unary_still_works(server))
    bad = [o for o in outcomes if not o.endswith(": ok")]
    return [bad[0] if bad else "10 rounds: unary on the channel after each: ok"], "CANCELLED", "", "at once"


def keepalive_garbage(server):
    return run_stream(server, LEASE_KEEPALIVE, Requests(b"\xff\xff\xff"), describe_keepalive)


def watch_half_close(server):
    def then(call, requests):
        requests.close()
        time.sleep(0.3)
        server.unary(PUT, field(1, b"w") + field(2, b"1"))
    return run_stream(server, WATCH, Requests(watch_create(b"w")), describe_watch, after_first=then, settle=2)


def watch_deadline(server):
    return run_stream(server, WATCH, Requests(watch_create(b"w")), describe_watch, timeout=1)


def watch_cancel(server):
    result = run_stream(server, WATCH, Requests(watch_create(b"w")), describe_watch, after_first=cancel)
    return result[0] + [unary_still_works(server)], *result[1:]


def watch_garbage(server):
    return run_stream(server, WATCH, Requests(b"\xff\xff\xff"), describe_watch)


def watch_compacted(server):
    for value in (b"1", b"2", b"3"):
        server.unary(PUT, field(1, b"c") + field(2, value))
    revision = first(parse(first(parse(server.unary(RANGE, field(1, b"c"))), 1, b"")), 3)
    server.unary(COMPACT, field(1, revision))
    return run_stream(server, WATCH, Requests(watch_create(b"c", start_revision=1)), describe_watch, settle=1.5)


def others_killed(cluster):
    for member in cluster[1:]:
        member.proc.send_signal(signal.SIGKILL)


def keepalive_leader_lost(cluster):
    server = cluster[0]
    lease = server.grant()
    return run_stream(server, LEASE_KEEPALIVE, Requests(keepalive_request(lease)), describe_keepalive,
                      metadata=(("hasleader", "true"),), after_first=lambda c, r: others_killed(cluster), settle=20)


def watch_leader_lost(cluster):
    return run_stream(cluster[0], WATCH, Requests(watch_create(b"w")), describe_watch,
                      metadata=(("hasleader", "true"),), after_first=lambda c, r: others_killed(cluster), settle=20)


def keepalive_without_leader(cluster):
    others_killed(cluster)
    time.sleep(6)
    return run_stream(cluster[0], LEASE_KEEPALIVE, Requests(keepalive_request(1)), describe_keepalive,
                      metadata=(("hasleader", "true"),))


def watch_without_leader(cluster):
    others_killed(cluster)
    time.sleep(6)
    return run_stream(cluster[0], WATCH, Requests(watch_create(b"w")), describe_watch, metadata=(("hasleader", "true"),))


def streams_at_graceful_stop(server):
    def stop(call, requests):
        threading.Thread(target=server.stop, daemon=True).start()
    return run_stream(server, WATCH, Requests(watch_create(b"w")), describe_watch, after_first=stop, settle=12)


def streams_at_kill(server):
    def kill(call, requests):
        server.proc.send_signal(signal.SIGKILL)
    return run_stream(server, WATCH, Requests(watch_create(b"w")), describe_watch, after_first=kill)


CASES = [
    ("LeaseKeepAlive: one request, client half-closes", keepalive_half_close, False),
    ("LeaseKeepAlive: three requests, client half-closes", keepalive_three_then_half_close, False),
    ("LeaseKeepAlive: unknown lease, client half-closes", keepalive_unknown_lease, False),
    ("LeaseKeepAlive: client deadline 1 s", keepalive_deadline, False),
    ("LeaseKeepAlive: client cancels", keepalive_cancel, False),
    ("LeaseKeepAlive: half-close then cancel at once, 10 rounds", keepalive_half_close_then_cancel, False),
    ("LeaseKeepAlive: undecodable request", keepalive_garbage, False),
    ("LeaseKeepAlive: hasleader, the other two members killed", keepalive_leader_lost, True),
    ("LeaseKeepAlive: hasleader, opened after the leader is lost", keepalive_without_leader, True),
    ("Watch: client half-closes, then a put", watch_half_close, False),
    ("Watch: client deadline 1 s", watch_deadline, False),
    ("Watch: client cancels", watch_cancel, False),
    ("Watch: undecodable request", watch_garbage, False),
    ("Watch: from a compacted revision", watch_compacted, False),
    ("Watch: hasleader, the other two members killed", watch_leader_lost, True),
    ("Watch: hasleader, opened after the leader is lost", watch_without_leader, True),
    ("Watch: server stops gracefully (SIGTERM)", streams_at_graceful_stop, False),
    ("Watch: server killed (SIGKILL)", streams_at_kill, False),
]


UNMARSHAL = "grpc: failed to unmarshal the received message"


def outcome_text(result):
    answers, code, message, timing = result
    if code == "UNKNOWN" and message == "context deadline exceeded":
        # etcd's handler sometimes returns the raw context error before gRPC-Go ends the call
        # with DEADLINE_EXCEEDED: the same ending, reported by the other side of a race.
        code = "DEADLINE_EXCEEDED"
    if code == "DEADLINE_EXCEEDED":
        message = ""  # whether the client or the server notices the deadline first is a race
    if message.startswith(UNMARSHAL):
        message = UNMARSHAL + " <the decoder's reason>"  # Go's protobuf library words it its own way
    text = f"{', '.join(answers) or 'no answer'}; {code}"
    if message:
        text += f" \"{message}\""
    return f"{text}; {timing}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--etcd", default="/usr/bin/etcd")
    ap.add_argument("--swift-etcd", default=".build/debug/swift-etcd")
    ap.add_argument("--only")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="stream-endings-")
    rows, failed = [], 0
    try:
        for name, case, cluster in CASES:
            if args.only and args.only not in name:
                continue
            outcomes = {}
            for kind, binary in (("etcd", args.etcd), ("swift-etcd", args.swift_etcd)):
                if cluster:
                    peers = [(name, free_port()) for name in "abc"]
                    servers = [Server(kind, binary, work, name, peers) for name, _ in peers]
                    for server in servers:
                        server.start(wait=False)
                    servers[0].wait_ready()
                    subject = servers
                else:
                    servers = [Server(kind, binary, work)]
                    servers[0].start()
                    subject = servers[0]
                try:
                    outcomes[kind] = outcome_text(case(subject))
                except Exception as error:  # noqa: BLE001 - a case that breaks is an outcome too
                    outcomes[kind] = f"error: {error!r}"
                finally:
                    for server in servers:
                        server.stop(signal.SIGKILL)
            same = outcomes["etcd"] == outcomes["swift-etcd"]
            known = KNOWN_DIFFERENCES.get(name)
            rows.append((name, outcomes["etcd"], outcomes["swift-etcd"], "same" if same else f"differs: {known or 'unexplained'}"))
            if not same and not known:
                failed += 1
                print(f"FAIL {name}\n    etcd:       {outcomes['etcd']}\n    swift-etcd: {outcomes['swift-etcd']}")
            else:
                print(f"PASS {name}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print("| case | etcd 3.4 | swift-etcd | |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\nstream endings: {len(rows) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
