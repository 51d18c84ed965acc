import EtcdHTTP
import Foundation
import GRPCWire
import Locking
import NIOCore
import NIOHTTP1
import NIOPosix
import Synchronization
import Testing
import TestSupport

/// The HTTP/1.1 plumbing on its own: a slow client is disconnected, a body over the limit is
/// refused, and neither disturbs the next client.
@Suite("HTTP/1.1 service: slow clients and large bodies", .server)
struct HTTPServiceTests {
    struct Echo: HTTPEndpoints {
        func respond(to request: HTTPRequest, completion: @escaping @Sendable (HTTPResponse) -> Void) {
            completion(.text("\(request.method.rawValue) \(request.path) \(request.body.readableBytes)\n"))
        }
    }

    /// Streams `pieces` pieces of 64 KiB on `/stream`; answers other paths as ``Echo``.
    struct Firehose: HTTPEndpoints {
        let pieces: Int

        func respond(to request: HTTPRequest, completion: @escaping @Sendable (HTTPResponse) -> Void) {
            Echo().respond(to: request, completion: completion)
        }

        var streamingPaths: Set<String> { ["/stream"] }

        func streamingExchange(for request: HTTPRequest, responses: any HTTPStreamWriter) -> (any HTTPStreamingExchange)? {
            responses.head(.ok, headers: ["Content-Type": "text/plain"])
            let piece = String(repeating: "x", count: 64 << 10)
            for _ in 0..<pieces { responses.send(piece) }
            responses.finish()
            return Ignored()
        }

        final class Ignored: HTTPStreamingExchange {
            func received(_ body: ByteBuffer) {}
            func receivedEnd() {}
            func closed() {}
        }
    }

    @Test func aStreamReaderThatStopsReadingIsCutOffAtItsBacklog() async throws {
        var configuration = GRPCServer.Configuration()
        configuration.http1 = HTTPService(endpoints: Firehose(pieces: 256), maximumBodyBytes: 16, maximumUnsentBytes: 1 << 20)
        let server = try await GRPCServer.start(router: ServerRouter(), configuration: configuration)
        let port = try #require(server.localAddress?.port)
        let received = ByteCounter()
        let stalled = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.autoRead, value: false)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(received) }
            }
            .connect(host: "127.0.0.1", port: port).get()
        try await stalled.writeAndFlush(stalled.allocator.buffer(string: "POST /stream HTTP/1.1\r\nHost: x\r\n\r\n")).get()
        // 16 MiB offered at once: past 1 MiB waiting (beyond what the sockets hold) the server
        // closes. Reading again drains what the kernel held, then meets the close.
        try await Task.sleep(for: .milliseconds(500))
        try await stalled.setOption(.autoRead, value: true).get()
        stalled.read()
        let closed = stalled.eventLoop.makePromise(of: Void.self)
        stalled.closeFuture.cascade(to: closed)
        let timer = stalled.eventLoop.scheduleTask(in: .seconds(20)) { closed.fail(ChannelError.ioOnClosedChannel) }
        try await closed.futureResult.get()
        timer.cancel()
        #expect(received.count.withLock { $0 } < 12 << 20)
        // Everyone else is served.
        let other = try await HTTPProbe.request("/after", port: port)
        #expect(other.status == 200 && other.body == "GET /after 0\n")
        await server.shutdown(gracePeriod: .seconds(1))
    }

    private final class ByteCounter: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let count = Locked(0)

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let size = unwrapInboundIn(data).readableBytes
            count.withLock { $0 += size }
        }
    }

    @Test func slowHeadersAreCutOffAndLargeBodiesRefused() async throws {
        var configuration = GRPCServer.Configuration()
        configuration.http1 = HTTPService(endpoints: Echo(), maximumBodyBytes: 16, headerTimeout: .milliseconds(300))
        let server = try await GRPCServer.start(router: ServerRouter(), configuration: configuration)
        let port = try #require(server.localAddress?.port)

        // Half a request line, then nothing: closed after the header deadline, answered nothing.
        let start = ContinuousClock.now
        let slow = try await HTTPProbe.exchange(Array("GET /sl".utf8), port: port, timeout: .seconds(10))
        let waited = ContinuousClock.now - start
        #expect(slow.raw.isEmpty)
        // Well before the client's own 10 s (a loaded machine may run the timer late).
        #expect(waited >= .milliseconds(250) && waited < .seconds(8), "\(waited)")

        let body = String(repeating: "x", count: 17)
        let large = try await HTTPProbe.exchange(
            Array("POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 17\r\n\r\n\(body)".utf8), port: port)
        #expect(large.status == 413)
        #expect(large.headers["connection"] == "close")
        let small = try await HTTPProbe.exchange(
            Array("POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\nConnection: close\r\n\r\n\(String(body.dropLast()))".utf8),
            port: port)
        #expect(small.status == 200 && small.body == "POST /small 16\n")
        await server.shutdown(gracePeriod: .seconds(1))
    }
}
