#!/usr/bin/env python3
"""Drives grpc-bench's echo service (grpcbench.Echo) with the real Python grpcio client.

Checks each call kind, error statuses, a 1 MiB message, and that N sequential unary calls run
on one connection without GOAWAY or reconnect (swift-nio-http2's default control-frame limit
would cut a gRPC client off after about 200 calls).

Usage: interop_grpcio.py HOST:PORT [SEQUENTIAL_CALLS]
Prints one PASS/FAIL line per check and `N passed, M failed`; exits 1 on any failure.
"""
import sys
import threading

import grpc


def encode(text: bytes) -> bytes:
    """google.protobuf.BytesValue: field 1, length-delimited."""
    out, n = bytearray(b"\x0a"), len(text)
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out) + text


def decode(data: bytes) -> bytes:
    if not data:
        return b""
    assert data[0] == 0x0A, data[:4]
    n, shift, i = 0, 0, 1
    while True:
        byte = data[i]
        n |= (byte & 0x7F) << shift
        i += 1
        shift += 7
        if not byte & 0x80:
            return data[i:i + n]


class Checks:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, name, fn):
        try:
            fn()
            self.passed += 1
            print(f"PASS {name}")
        except Exception as error:  # noqa: BLE001 - report every failure and go on
            self.failed += 1
            print(f"FAIL {name}: {error!r}")


def expect(actual, expected):
    if actual != expected:
        raise AssertionError(f"expected {expected!r}, got {actual!r}")


def main():
    target = sys.argv[1]
    sequential = int(sys.argv[2]) if len(sys.argv) > 2 else 100_000
    options = [("grpc.max_receive_message_length", 8 << 20), ("grpc.max_send_message_length", 8 << 20)]
    channel = grpc.insecure_channel(target, options=options)
    states = []
    channel.subscribe(lambda state: states.append(state), try_to_connect=True)
    unary = channel.unary_unary("/grpcbench.Echo/Unary")
    expand = channel.unary_stream("/grpcbench.Echo/Expand")
    collect = channel.stream_unary("/grpcbench.Echo/Collect")
    chat = channel.stream_stream("/grpcbench.Echo/Chat")
    checks = Checks()

    checks.check("unary echo", lambda: expect(decode(unary(encode(b"hello"), timeout=10)), b"hello"))
    checks.check("server streaming", lambda: expect([decode(m) for m in expand(encode(b"x"), timeout=10)],
                                                     [b"x", b"x", b"x"]))
    checks.check("client streaming", lambda: expect(
        decode(collect(iter([encode(b"a"), encode(b"b"), encode(b"c")]), timeout=10)), b"abc"))

    def bidirectional():
        replies = []
        turn = threading.Event()

        def requests():
            for word in (b"one", b"two", b"three"):
                turn.clear()
                yield encode(word)
                turn.wait(10)  # the next request goes only after the echo arrived

        for reply in chat(requests(), timeout=10):
            replies.append(decode(reply))
            turn.set()
        expect(replies, [b"one", b"two", b"three"])
    checks.check("bidirectional streaming, interleaved", bidirectional)

    big = bytes(range(256)) * 4096
    checks.check("1 MiB message", lambda: expect(decode(unary(encode(big), timeout=30)), big))

    def unknown_method():
        try:
            channel.unary_unary("/grpcbench.Echo/Nope")(b"", timeout=10)
        except grpc.RpcError as error:
            expect((error.code(), error.details()), (grpc.StatusCode.UNIMPLEMENTED,
                                                     "unknown method Nope for service grpcbench.Echo"))
            return
        raise AssertionError("call succeeded")
    checks.check("unknown method is UNIMPLEMENTED", unknown_method)

    def many_calls():
        before = len(states)
        for i in range(sequential):
            payload = str(i).encode()
            reply = decode(unary(encode(payload), timeout=10))
            if reply != payload:
                raise AssertionError(f"call {i}: got {reply!r}")
        changes = [s for s in states[before:]]
        expect(changes, [])
    checks.check(f"{sequential} sequential unary calls on one connection, no reconnect", many_calls)

    print(f"{checks.passed} passed, {checks.failed} failed")
    channel.close()
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
