#!/usr/bin/env python3
"""JWT tokens checked with a standard JWT library (PyJWT), against the real etcd and swift-etcd.

Both servers run with `--auth-token jwt,pub-key=…,priv-key=…,sign-method=RS256`. For each:
a token the server issues must verify with PyJWT and the public key, with etcd's claims
(username, revision, exp); a token PyJWT signs with the server's private key must be accepted;
tokens signed with another key, expired or naming an old auth revision must be refused with
etcd's errors. Prints one PASS/FAIL line per check; exits 1 when anything failed.

Usage: auth_jwt.py --etcd BINARY --swift-etcd BINARY
Needs `pip install grpcio pyjwt cryptography`.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import grpc
import jwt

from grpclib import PUT, RANGE, Server, field, first, parse

AUTH = "/etcdserverpb.Auth/"


def keys(work, name):
    key, pub = os.path.join(work, f"{name}.key"), os.path.join(work, f"{name}.pub")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", key],
                   check=True, capture_output=True)
    subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-out", pub], check=True, capture_output=True)
    return key, pub


def status_of(call):
    try:
        call()
        return "OK"
    except grpc.RpcError as error:
        return f"{error.code().name}: {error.details()}"


def check_server(kind, binary, work, key, pub, other_key):
    server = Server(kind, binary, work, extra_args=[
        "--auth-token", f"jwt,pub-key={pub},priv-key={key},sign-method=RS256,ttl=5m"])
    server.start()
    results = []

    def check(name, got, want):
        results.append((f"{kind}: {name}", got == want, got, want))

    try:
        server.unary(PUT, field(1, b"/app/x") + field(2, b"1"))
        for method, request in [("UserAdd", field(1, b"root") + field(2, b"rootpw")), ("RoleAdd", field(1, b"root")),
                                ("UserGrantRole", field(1, b"root") + field(2, b"root")), ("AuthEnable", b"")]:
            server.unary(AUTH + method, request)
        token = first(parse(server.unary(AUTH + "Authenticate", field(1, b"root") + field(2, b"rootpw"))), 2, b"").decode()
        public = open(pub).read()
        claims = jwt.decode(token, public, algorithms=["RS256"])
        check("issued token verifies with PyJWT; its claims", sorted(claims), ["exp", "revision", "username"])
        check("issued token's user", claims["username"], "root")
        check("issued token lives ~5 min", 290 <= claims["exp"] - time.time() <= 305, True)
        revision = claims["revision"]

        def get(with_token):
            return status_of(lambda: server.unary(RANGE, field(1, b"/app/x"), metadata=[("token", with_token)]))

        check("issued token is accepted", get(token), "OK")
        private = open(key).read()
        made = jwt.encode({"username": "root", "revision": revision, "exp": int(time.time()) + 60}, private, algorithm="RS256")
        check("token made by PyJWT with the server's key is accepted", get(made), "OK")
        foreign = jwt.encode({"username": "root", "revision": revision, "exp": int(time.time()) + 60},
                             open(other_key).read(), algorithm="RS256")
        check("token signed with another key", get(foreign), "UNAUTHENTICATED: etcdserver: invalid auth token")
        expired = jwt.encode({"username": "root", "revision": revision, "exp": int(time.time()) - 10}, private, algorithm="RS256")
        check("expired token", get(expired), "UNAUTHENTICATED: etcdserver: invalid auth token")
        old = jwt.encode({"username": "root", "revision": revision - 1, "exp": int(time.time()) + 60}, private, algorithm="RS256")
        check("token naming an older auth revision", get(old), "INVALID_ARGUMENT: etcdserver: revision of auth store is old")
        check("no token", status_of(lambda: server.unary(RANGE, field(1, b"/app/x"))),
              "INVALID_ARGUMENT: etcdserver: user name is empty")
    finally:
        server.stop()
    return results


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--etcd", required=True)
    parser.add_argument("--swift-etcd", required=True)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="auth-jwt-")
    key, pub = keys(work, "server")
    other_key, _ = keys(work, "other")
    results = check_server("etcd", args.etcd, work, key, pub, other_key)
    results += check_server("swift-etcd", args.swift_etcd, work, key, pub, other_key)
    failed = 0
    for name, ok, got, want in results:
        print(f"{'PASS' if ok else 'FAIL'} {name}" + ("" if ok else f": got {got!r}, want {want!r}"))
        failed += not ok
    print(f"{len(results) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
