#!/usr/bin/env python3
"""The JSON gateway through curl: the same requests against the real etcd (3.4, started with
its gateway on) and swift-etcd, answers compared once the differences between etcd 3.4's
grpc-gateway v1 and 3.6's v2 are normalised (docs/HTTP.md lists them):

  - 3.4 errors are {"error":M,"message":M,"code":C}, 3.6 ones {"code":C,"message":M};
  - 3.4 answers FailedPrecondition with 412, 3.6 with 400;
  - IDs, ports, tokens and versions differ between any two servers and are masked.

Cases where 3.6 deliberately answers otherwise than 3.4 (unknown paths and methods: JSON
errors, 404 and 501) are checked against 3.6's expected answer instead. Prints one line per
case; exits 1 if any differs.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from grpclib import Server  # noqa: E402


def b64(text):
    import base64
    return base64.b64encode(text.encode()).decode()


def curl(base, path, body=None, method="POST", headers=()):
    """(HTTP status, body) of one curl request."""
    command = ["curl", "-s", "-m", "10", "-o", "-", "-w", "\n%{http_code}", "-X", method, base + path]
    for header in headers:
        command += ["-H", header]
    if body is not None:
        command += ["-d", json.dumps(body) if not isinstance(body, str) else body]
    out = subprocess.run(command, capture_output=True, text=True, timeout=20).stdout
    text, _, status = out.rpartition("\n")
    return int(status or 0), text


def watch(base, key, then):
    """The lines a curl watch on `key` prints while `then()` runs."""
    process = subprocess.Popen(
        ["curl", "-s", "-N", "-X", "POST", base + "/v3/watch", "-d", json.dumps({"create_request": {"key": b64(key)}})],
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    time.sleep(0.7)
    then()
    time.sleep(0.7)
    os.killpg(process.pid, signal.SIGTERM)
    out, _ = process.communicate(timeout=10)
    return 200, out.strip()


MASKED_KEYS = {"cluster_id", "member_id", "ID", "leader", "token", "version", "dbSize", "dbSizeInUse",
               "raftIndex", "raftAppliedIndex", "name"}
# Status fields etcd 3.4 does not have.
V36_FIELDS = {"storageVersion", "dbSizeQuota"}


def normalise(status, text):
    """Comparable (status, JSON) for an answer of either version."""
    lines = []
    for line in text.splitlines() or [""]:
        try:
            value = json.loads(line)
        except ValueError:
            lines.append(line)
            continue
        if isinstance(value, dict) and "error" in value and "code" in value and isinstance(value["error"], str):
            value = {"code": value["code"], "message": value["message"]}  # grpc-gateway v1's shape
            if value["code"] == 9 and status == 412:
                status = 400
        lines.append(json.dumps(mask(value), sort_keys=True))
    return status, "\n".join(lines)


def mask(value):
    if isinstance(value, dict):
        return {k: ("<masked>" if k in MASKED_KEYS else mask(v)) for k, v in value.items() if k not in V36_FIELDS}
    if isinstance(value, list):
        return [mask(v) for v in value]
    if isinstance(value, str):
        return re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", value)
    return value


def cases(base, token):
    """(name, answer) for every case, in order; the state they leave builds up."""
    auth = [f"Authorization: {token[0]}"] if token[0] else []

    def authenticate():
        status, text = curl(base, "/v3/auth/authenticate", {"name": "root", "password": "secret"})
        token[0] = json.loads(text).get("token", "")
        return status, text

    yield "put", curl(base, "/v3/kv/put", {"key": b64("foo"), "value": b64("bar")})
    yield "put with prev_kv", curl(base, "/v3/kv/put", {"key": b64("foo"), "value": b64("baz"), "prev_kv": True})
    yield "put lowerCamel prevKv, unknown field ignored", curl(
        base, "/v3/kv/put", {"key": b64("foo2"), "value": b64("x"), "prevKv": True, "no_such_field": 1})
    yield "range one key", curl(base, "/v3/kv/range", {"key": b64("foo")})
    yield "range prefix, keys only", curl(base, "/v3/kv/range", {"key": b64("foo"), "range_end": b64("fop"), "keys_only": True})
    yield "range count only", curl(base, "/v3/kv/range", {"key": b64("a"), "range_end": b64("z"), "count_only": True})
    yield "range sorted descending, limit 1", curl(
        base, "/v3/kv/range", {"key": b64("foo"), "range_end": b64("fop"), "sort_order": "DESCEND", "limit": 1})
    yield "range with an empty body", curl(base, "/v3/kv/range", "")
    yield "put without a key", curl(base, "/v3/kv/put", {"value": b64("x")})
    yield "txn compare-and-swap succeeds", curl(base, "/v3/kv/txn", {
        "compare": [{"key": b64("foo"), "target": "VALUE", "result": "EQUAL", "value": b64("baz")}],
        "success": [{"request_put": {"key": b64("foo"), "value": b64("qux")}}],
        "failure": [{"request_range": {"key": b64("foo")}}]})
    yield "txn compare fails, range in failure", curl(base, "/v3/kv/txn", {
        "compare": [{"key": b64("foo"), "target": "VERSION", "result": "GREATER", "version": 10}],
        "success": [{"request_delete_range": {"key": b64("foo")}}],
        "failure": [{"request_range": {"key": b64("foo")}}]})
    yield "watch, then two puts and a delete", watch(base, "w", lambda: [
        curl(base, "/v3/kv/put", {"key": b64("w"), "value": b64("1")}),
        curl(base, "/v3/kv/put", {"key": b64("w"), "value": b64("2")}),
        curl(base, "/v3/kv/deleterange", {"key": b64("w")})])
    yield "deleterange prefix with prev_kv", curl(
        base, "/v3/kv/deleterange", {"key": b64("foo"), "range_end": b64("fop"), "prev_kv": True})
    yield "compaction", curl(base, "/v3/kv/compaction", {"revision": 3})
    yield "range at a compacted revision", curl(base, "/v3/kv/range", {"key": b64("foo"), "revision": 2})
    yield "lease grant", curl(base, "/v3/lease/grant", {"TTL": 60, "ID": 42})
    yield "lease keepalive (one request)", curl(base, "/v3/lease/keepalive", {"ID": 42})
    yield "put with the lease", curl(base, "/v3/kv/put", {"key": b64("leased"), "value": b64("v"), "lease": 42})
    yield "lease timetolive with keys", (lambda s, t: (s, re.sub(r'"TTL":"\d+"', '"TTL":"<ttl>"', t)))(
        *curl(base, "/v3/lease/timetolive", {"ID": 42, "keys": True}))
    yield "lease leases", curl(base, "/v3/lease/leases", {})
    yield "lease revoke", curl(base, "/v3/lease/revoke", {"ID": 42})
    yield "the leased key is gone", curl(base, "/v3/kv/range", {"key": b64("leased")})
    yield "lease revoke again: not found", curl(base, "/v3/kv/lease/revoke", {"ID": 42})
    yield "lease keepalive of an unknown lease", curl(base, "/v3/lease/keepalive", {"ID": 42})
    yield "member list", curl(base, "/v3/cluster/member/list", {})
    yield "status", curl(base, "/v3/maintenance/status", {})
    yield "user add root", curl(base, "/v3/auth/user/add", {"name": "root", "password": "secret"})
    yield "user grant role root", curl(base, "/v3/auth/user/grant", {"user": "root", "role": "root"})
    yield "role add reader", curl(base, "/v3/auth/role/add", {"name": "reader"})
    yield "role grant read on a prefix", curl(base, "/v3/auth/role/grant", {
        "name": "reader", "perm": {"permType": "READ", "key": b64("r/"), "range_end": b64("r0")}})
    yield "role get", curl(base, "/v3/auth/role/get", {"role": "reader"})
    yield "auth enable", curl(base, "/v3/auth/enable", {})
    yield "range without a token", curl(base, "/v3/kv/range", {"key": b64("foo")})
    yield "range with a bad token", curl(base, "/v3/kv/range", {"key": b64("foo")}, headers=["Authorization: nope"])
    yield "authenticate with a wrong password", curl(base, "/v3/auth/authenticate", {"name": "root", "password": "wrong"})
    yield "authenticate", (lambda s, t: (s, re.sub(r'"token":"[^"]*"', '"token":"<token>"', t)))(*authenticate())
    auth = [f"Authorization: {token[0]}"]
    yield "range with the token", curl(base, "/v3/kv/range", {"key": b64("foo")}, headers=auth)
    yield "user list with the token", curl(base, "/v3/auth/user/list", {}, headers=auth)
    yield "auth disable with the token", curl(base, "/v3/auth/disable", {}, headers=auth)
    yield "auth disable again: not enabled", curl(base, "/v3/auth/disable", {})


# 3.6's own answers where it parts from 3.4 on purpose (grpc-gateway v2's routing errors).
V36_ONLY = [
    ("unknown path under /v3", lambda base: curl(base, "/v3/kv/nothing", {}), (404, '{"code":5,"message":"Not Found"}')),
    ("GET on a POST path", lambda base: curl(base, "/v3/kv/range", method="GET"),
     (501, '{"code":12,"message":"Method Not Allowed"}')),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--etcd", default="/usr/bin/etcd")
    ap.add_argument("--swift-etcd", default=".build/debug/swift-etcd")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="gateway-curl-")
    answers = {}
    failed = 0
    for kind, binary in (("etcd", args.etcd), ("swift-etcd", args.swift_etcd)):
        server = Server(kind, binary, work)
        server.start()
        base = f"http://127.0.0.1:{server.port}"
        try:
            answers[kind] = [(name, normalise(*answer)) for name, answer in cases(base, [""])]
            if kind == "swift-etcd":
                for name, run, expected in V36_ONLY:
                    status, text = run(base)
                    ok = (status, text) == expected
                    failed += not ok
                    print(f"{'PASS' if ok else 'FAIL'} gateway {name}: {status} {text}")
        finally:
            server.stop()
    for (name, theirs), (_, ours) in zip(answers["etcd"], answers["swift-etcd"]):
        if theirs == ours:
            print(f"PASS gateway {name}: {ours[0]}")
        else:
            failed += 1
            print(f"FAIL gateway {name}\n  etcd:       {theirs}\n  swift-etcd: {ours}")
    print(f"gateway curl cases: {len(answers['etcd']) + len(V36_ONLY) - failed} same, {failed} different")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
