"""Reads .proto files through Debian's protoc into a plain tree (shared by the proto scripts)."""
import subprocess


def descriptor_tree(include_dir, files):
    """The FileDescriptorSet of `files` (with imports) as nested dicts: each node is
    {"kind": name, "fields": {key: value}, "children": [nodes]}."""
    raw = subprocess.run(
        ["protoc", "-I", include_dir, "--descriptor_set_out=/dev/stdout", "--include_imports", *files],
        check=True, capture_output=True).stdout
    text = subprocess.run(
        ["protoc", "--decode=google.protobuf.FileDescriptorSet", "google/protobuf/descriptor.proto"],
        input=raw, check=True, capture_output=True).stdout.decode()
    root = {"kind": "root", "fields": {}, "children": []}
    stack = [root]
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if line.endswith("{"):
            node = {"kind": line[:-1].strip(), "fields": {}, "children": []}
            stack[-1]["children"].append(node)
            stack.append(node)
        elif line == "}":
            stack.pop()
        elif ":" in line:
            key, value = line.split(":", 1)
            stack[-1]["fields"][key.strip()] = value.strip().strip('"')
    return root


def children(node, kind):
    return [c for c in node["children"] if c["kind"] == kind]
