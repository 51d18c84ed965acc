"""What the Python interop scripts share: etcd's protobuf messages encoded by hand (field
numbers from etcd's rpc.proto), and one etcd or swift-etcd member on loopback ports, reached
with grpcio."""
import os
import signal
import socket
import subprocess
import tempfile
import time

import grpc

# --- protobuf, by hand (field numbers from etcd's rpc.proto) --------------------------------

def varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, value):
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    return varint(number << 3 | 2) + varint(len(value)) + value


def parse(data):
    """{field number: [values]}: ints for varints, bytes for length-delimited fields."""
    fields, i = {}, 0
    while i < len(data):
        key, i = read_varint(data, i)
        number, kind = key >> 3, key & 7
        if kind == 0:
            value, i = read_varint(data, i)
        elif kind == 2:
            length, i = read_varint(data, i)
            value, i = data[i:i + length], i + length
        else:
            raise ValueError(f"wire type {kind}")
        fields.setdefault(number, []).append(value)
    return fields


def read_varint(data, i):
    n = shift = 0
    while True:
        byte = data[i]
        i += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return n, i


def first(fields, number, default=0):
    return fields.get(number, [default])[0]


PUT = "/etcdserverpb.KV/Put"
RANGE = "/etcdserverpb.KV/Range"
LEASE_GRANT = "/etcdserverpb.Lease/LeaseGrant"


# --- servers -------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One member on loopback; `cluster` lists the (name, peer port) of every member when it
    is one of several."""

    def __init__(self, kind, binary, work, name="a", cluster=None, extra_args=()):
        self.kind, self.binary, self.name = kind, binary, name
        self.extra_args = list(extra_args)
        self.data = tempfile.mkdtemp(dir=work)
        self.port = free_port()
        self.cluster = cluster or [(name, free_port())]
        self.peer = dict(self.cluster)[name]
        self.log = open(os.path.join(self.data, "log"), "w")
        self.proc = None

    def start(self, wait=True):
        peer = f"http://127.0.0.1:{self.peer}"
        cluster = ",".join(f"{name}=http://127.0.0.1:{port}" for name, port in self.cluster)
        client = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [self.binary, "--name", self.name, "--data-dir", os.path.join(self.data, "d"),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", cluster,
             *self.extra_args],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        if wait:
            self.wait_ready()

    def wait_ready(self):
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                self.unary(PUT, field(1, b"ready") + field(2, b"1"), timeout=1)
                return
            except grpc.RpcError:
                time.sleep(0.1)
        raise SystemExit(f"{self.kind} did not become ready")

    def unary(self, path, request, timeout=5, metadata=None):
        return self.channel.unary_unary(path)(request, timeout=timeout, metadata=metadata)

    def grant(self, ttl=60):
        return first(parse(self.unary(LEASE_GRANT, field(1, ttl))), 2)

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.channel.close()
