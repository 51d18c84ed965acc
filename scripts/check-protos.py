#!/usr/bin/env python3
"""Compares our Protos/ with the etcd 3.4 protos that Debian's golang-etcd-server-dev ships.

Every message, field (name, number, type, label), enum value and RPC (name, types, streaming)
that etcd 3.4 defines must exist identically in ours. Fields and RPCs that only we have are
listed (they are the etcd 3.5/3.6 additions) but are not errors.

Usage: scripts/check-protos.py [ETCD_SRC]   (default /usr/share/gocode/src/go.etcd.io/etcd)
"""
import os
import re
import sys
import tempfile

from protolib import children, descriptor_tree

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ETCD = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/gocode/src/go.etcd.io/etcd"
FILES = {
    "etcdserverpb/rpc.proto": "etcdserver/etcdserverpb/rpc.proto",
    "mvccpb/kv.proto": "mvcc/mvccpb/kv.proto",
    "authpb/auth.proto": "auth/authpb/auth.proto",
    "v3lockpb/v3lock.proto": "etcdserver/api/v3lock/v3lockpb/v3lock.proto",
    "v3electionpb/v3election.proto": "etcdserver/api/v3election/v3electionpb/v3election.proto",
}


def strip_annotations(text):
    text = re.sub(r'import "(gogoproto|google)/[^"]*";\n', "", text)
    text = re.sub(r"option \(gogoproto\.[^;]*;\n", "", text)
    text = re.sub(r"\s*\[\s*\(gogoproto\.[^\]]*\]", "", text)
    text = drop_http_options(text)
    text = re.sub(r'import "[^"]*/(mvccpb|authpb|etcdserverpb)/([^"/]*)";', r'import "\1/\2";', text)
    return text


def drop_http_options(text):
    """Turns `rpc Foo(A) returns (B) { option (google.api.http) = {...}; }` into `rpc Foo(A) returns (B);`."""
    out = []
    i = 0
    while True:
        start = text.find("{", i)
        head = text[i:start] if start >= 0 else text[i:]
        if start < 0 or not re.search(r"returns\s*\([^)]*\)\s*$", head):
            if start < 0:
                out.append(head)
                return "".join(out)
            out.append(text[i:start + 1])
            i = start + 1
            continue
        depth, j = 0, start
        while True:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
            if depth == 0:
                break
        out.append(head.rstrip() + ";")
        i = j


def describe(include_dir, files):
    facts = set()
    for file in children(descriptor_tree(include_dir, files), "file"):
        collect(file, file["fields"]["name"], facts)
    return facts


def collect(node, owner, facts):
    """Adds one 'owner kind name = value' line per message, field, enum value and RPC."""
    for child in node["children"]:
        f = child["fields"]
        if child["kind"] == "field":
            facts.add(f"{owner} field {f['name']} = {f['number']} {f['label']} {f['type']} {f.get('type_name', '')}")
        elif child["kind"] == "value":
            facts.add(f"{owner} enum {f['name']} = {f['number']}")
        elif child["kind"] == "method":
            facts.add(f"{owner} rpc {f['name']}({f.get('client_streaming', 'false')} {f['input_type']}) -> "
                      f"({f.get('server_streaming', 'false')} {f['output_type']})")
        elif child["kind"] in ("message_type", "nested_type"):
            facts.add(f"{owner} message {f['name']}")
            collect(child, f"{owner}.{f['name']}", facts)
        elif child["kind"] in ("enum_type", "service"):
            collect(child, f"{owner}.{f['name']}", facts)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        for ours, theirs in FILES.items():
            os.makedirs(os.path.join(tmp, os.path.dirname(ours)), exist_ok=True)
            with open(os.path.join(ETCD, theirs)) as src, open(os.path.join(tmp, ours), "w") as dst:
                dst.write(strip_annotations(src.read()))
        reference = describe(tmp, list(FILES))
    ours = describe(os.path.join(ROOT, "Protos"), list(FILES))
    missing = sorted(reference - ours)
    extra = sorted(ours - reference)
    for fact in extra:
        print("only ours (3.5/3.6 addition):", fact)
    for fact in missing:
        print("MISSING or DIFFERENT:", fact)
    print(f"{len(reference) - len(missing)} passed, {len(missing)} failed")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
