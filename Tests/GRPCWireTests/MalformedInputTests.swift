import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import SwiftProtobuf
import Testing

@testable import GRPCWire

/// Sends raw bytes as a call's request body and returns the status the server answered with.
private func rawCall(
    _ connection: GRPCClientConnection, path: String = TestService.echo, metadata: HPACKHeaders = [:],
    timeout: TimeAmount? = .seconds(5), body: [UInt8]
) async throws -> GRPCStatus {
    let promise = connection.eventLoop.makePromise(of: GRPCStatus.self)
    connection.eventLoop.execute {
        let sink = ClientStreamHandler.Sink(response: { _ in true }, status: { status, _ in promise.succeed(status) })
        let stream = connection.openStream(path: path, metadata: metadata, timeout: timeout, sink: sink)
        if !body.isEmpty { stream?.send(ByteBuffer(bytes: body), promise: nil) }
        stream?.finishSending()
    }
    return try await promise.futureResult.get()
}

@Suite("Malformed requests get a status and the connection keeps serving")
struct MalformedInputTests {
    @Test(arguments: [
        ([UInt8]([1, 0, 0, 0, 1, 0x41]), GRPCStatus(.internal, "grpc: compressed flag set with identity or empty encoding")),
        ([0, 0, 0, 0, 10, 1, 2], GRPCStatus(.internal, "grpc: request stream ended in the middle of a message")),
        ([0, 0, 0], GRPCStatus(.internal, "grpc: request stream ended in the middle of a message")),
        ([], GRPCStatus(.internal, "grpc: no request message for a unary method")),
    ])
    func badFramingIsRejected(_ body: [UInt8], _ expected: GRPCStatus) async throws {
        try await withTestServer { harness in
            let status = try await rawCall(harness.connection, body: body)
            #expect(status == expected)
            let echoed = try await harness.connection.unary(TestService.echo, Bytes("after"), responseType: Bytes.self)
            #expect(echoed.text == "after")
        }
    }

    /// After the one message a unary call takes, the rest of its request stream (half a
    /// message, a second one) is never read, as gRPC-Go never reads it: the call gets its
    /// handler's answer. (It was refused with INTERNAL while the handler went on acting: a put
    /// was applied under an error.)
    @Test(arguments: [[UInt8]([0, 0, 0]), [0, 0, 0, 0, 7, 0x0a, 5] + Array("again".utf8), [1, 0xff, 0xff, 0xff, 0xff]])
    func whatFollowsAUnaryRequestIsNeverRead(_ more: [UInt8]) async throws {
        try await withTestServer { harness in
            let message: [UInt8] = [0, 0, 0, 0, 7, 0x0a, 5] + Array("acted".utf8)
            let status = try await rawCall(harness.connection, body: message + more)
            #expect(status.code == .ok)
            #expect(harness.observations.all == ["echo acted"])
        }
    }

    @Test func undecodableProtobufIsInternal() async throws {
        try await withTestServer { harness in
            // Field 15 with the invalid wire type 7.
            let status = try await rawCall(harness.connection, body: [0, 0, 0, 0, 2, 0x7F, 0x00])
            #expect(status.code == .internal)
            #expect(status.message.hasPrefix("grpc: error unmarshalling request: "))
            let echoed = try await harness.connection.unary(TestService.echo, Bytes("after"), responseType: Bytes.self)
            #expect(echoed.text == "after")
        }
    }

    @Test func unsupportedCompressionIsUnimplemented() async throws {
        try await withTestServer { harness in
            let status = try await rawCall(harness.connection, metadata: ["grpc-encoding": "gzip"], body: [0, 0, 0, 0, 0])
            #expect(status == GRPCStatus(.unimplemented, "grpc: Decompressor is not installed for grpc-encoding \"gzip\""))
        }
    }

    @Test func malformedTimeoutIsRejected() async throws {
        try await withTestServer { harness in
            let status = try await rawCall(
                harness.connection, metadata: ["grpc-timeout": "soon"], timeout: nil, body: [0, 0, 0, 0, 0])
            #expect(status == GRPCStatus(.internal, "transport: malformed grpc-timeout: soon"))
        }
    }
}

@Suite("Ping policy")
struct PingPolicyTests {
    private func ping(_ connection: GRPCClientConnection, _ value: UInt64) async throws {
        let frame = HTTP2Frame(streamID: .rootStream, payload: .ping(HTTP2PingData(withInteger: value), ack: false))
        try await connection.channel.writeAndFlush(frame)
    }

    @Test func aPingAfterEveryResponseIsWelcome() async throws {
        try await withTestServer { harness in
            // gRPC-Go's BDP estimator pings right after it receives data: 1,000 calls, 1,000 pings.
            for index in 0..<1_000 {
                _ = try await harness.connection.unary(TestService.echo, Bytes("\(index)"), responseType: Bytes.self)
                try await ping(harness.connection, UInt64(index))
            }
            #expect(harness.connection.isUsable)
            let echoed = try await harness.connection.unary(TestService.echo, Bytes("still"), responseType: Bytes.self)
            #expect(echoed.text == "still")
        }
    }

    @Test func aPingFloodIsCutOffWithGoAway() async throws {
        try await withTestServer { harness in
            for index in 0..<10 { try? await ping(harness.connection, UInt64(index)) }
            let deadline = ContinuousClock.now + .seconds(5)
            while harness.connection.channel.isActive, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(!harness.connection.channel.isActive)
            #expect(!harness.connection.isUsable)
        }
    }
}

@Suite("Non-gRPC traffic")
struct NonGRPCTrafficTests {
    /// Writes `bytes` on a raw TCP connection and waits (bounded) for the server to close it.
    private func sendRaw(_ bytes: [UInt8], to port: Int) async throws -> Bool {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port).get()
        // A write that fails found the connection closed or reset by the server (a loaded machine
        // can take longer than a short preface deadline between connecting and writing); the
        // channel may still be closing when the failure arrives, so both cases wait below.
        try? await channel.writeAndFlush(ByteBuffer(bytes: bytes))
        let deadline = ContinuousClock.now + .seconds(10)
        while channel.isActive, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        let closedByServer = !channel.isActive
        try? await channel.close()
        return closedByServer
    }

    @Test func garbageAndHTTP1AreRefusedAndTheServerKeepsServing() async throws {
        try await withTestServer { harness in
            var generator = SystemRandomNumberGenerator()
            let garbage = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &generator) }
            #expect(try await sendRaw(garbage, to: harness.port))
            let http1 = Array("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".utf8)
            #expect(try await sendRaw(http1, to: harness.port))
            // A valid preface, then a SETTINGS frame whose length is not a multiple of 6.
            let preface = Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + [0, 0, 5, 4, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5]
            #expect(try await sendRaw(preface, to: harness.port))
            let echoed = try await harness.connection.unary(TestService.echo, Bytes("alive"), responseType: Bytes.self)
            #expect(echoed.text == "alive")
        }
    }

    /// A client that sends part of the preface and then nothing (or a byte now and then) is
    /// closed once the preface deadline passes; gRPC-Go would wait 120 s.
    @Test func aConnectionWithoutAPrefaceIsClosedAtTheDeadline() async throws {
        try await withTestServer(prefaceTimeout: .seconds(1)) { harness in
            let start = ContinuousClock.now
            #expect(try await sendRaw(Array("PRI * HT".utf8), to: harness.port))
            #expect(ContinuousClock.now - start >= .milliseconds(900))
            let echoed = try await harness.connection.unary(TestService.echo, Bytes("alive"), responseType: Bytes.self)
            #expect(echoed.text == "alive")
        }
    }
}

/// Emulates gRPC-Go's BDP estimator on a client connection: whenever data arrives and no ping
/// is outstanding, it pings, and the ping's ack makes it idle again. While a large response
/// arrives that is one ping per round trip, as etcdctl and clientv3 send them.
private final class BDPPings {
    var outstanding = false
    var sent = 0
    var frameSide: ChannelHandlerContext?

    func pingIfIdle() {
        guard !outstanding, let frameSide else { return }
        outstanding = true
        sent += 1
        let ping = HTTP2Frame(streamID: .rootStream, payload: .ping(HTTP2PingData(withInteger: UInt64(sent)), ack: false))
        frameSide.writeAndFlush(NIOAny(ping), promise: nil)
    }

    /// Sees the bytes as they arrive, before HTTP/2 parses them: a read of more than 1 KiB
    /// holds data (control frames, ping acks among them, are far smaller).
    final class ByteSide: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let pings: BDPPings
        init(_ pings: BDPPings) { self.pings = pings }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let holdsData = unwrapInboundIn(data).readableBytes > 1024
            context.fireChannelRead(data)
            if holdsData { pings.pingIfIdle() }
        }
    }

    /// Sees the connection's frames after HTTP/2: sends the pings and hears their acks.
    final class FrameSide: ChannelInboundHandler {
        typealias InboundIn = HTTP2Frame
        typealias OutboundOut = HTTP2Frame
        let pings: BDPPings
        init(_ pings: BDPPings) { self.pings = pings }

        func handlerAdded(context: ChannelHandlerContext) { pings.frameSide = context }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            if case .ping(_, ack: true) = unwrapInboundIn(data).payload { pings.outstanding = false }
            context.fireChannelRead(data)
        }
    }
}

@Suite("Large responses to a client that pings once per round trip")
struct BDPPingTests {
    /// gRPC-Go's defaults: 64 KiB windows, grown only by its BDP estimator (not emulated), so a
    /// 1 MiB response takes dozens of round trips and as many pings. Data frames the server
    /// writes between two pings clear its strikes; counting the response as sent when it is
    /// queued (before flow control lets it out) cut such clients off with `too_many_pings`.
    @Test(arguments: [TestService.echo, TestService.chat])
    func aLargeResponseKeepsTheConnection(_ path: String) async throws {
        try await withTestServer { harness in
            var configuration = GRPCClientConnection.Configuration(host: "127.0.0.1", port: harness.port)
            configuration.streamWindowSize = 65_535
            configuration.connectionWindowSize = 65_535
            let connection = try await GRPCClientConnection.connect(configuration)
            let counter = try await connection.eventLoop.submit {
                let pings = BDPPings()
                try connection.channel.pipeline.syncOperations.addHandler(BDPPings.ByteSide(pings), position: .first)
                try connection.channel.pipeline.syncOperations.addHandler(BDPPings.FrameSide(pings), position: .last)
                return NIOLoopBound(pings, eventLoop: connection.eventLoop)
            }.get()
            let large = Bytes(String(repeating: "x", count: 1024 * 1024))
            for round in 0..<3 {
                let answer: Bytes
                if path == TestService.echo {
                    answer = try await connection.unary(TestService.echo, large, responseType: Bytes.self)
                } else {
                    let call = connection.makeStreamingCall(TestService.chat, requestType: Bytes.self, responseType: Bytes.self)
                    _ = call.send(large)
                    var iterator = call.responses.makeAsyncIterator()
                    answer = try await iterator.next() ?? Bytes("")
                    call.finishSending()
                    #expect(try await iterator.next() == nil)
                }
                #expect(answer.value.count == large.value.count + (path == TestService.echo ? 0 : 5), "round \(round)")
            }
            let sent = try await connection.eventLoop.submit { counter.value.sent }.get()
            #expect(sent >= 20)
            #expect(connection.isUsable)
            await connection.close()
        }
    }
}
