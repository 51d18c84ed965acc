import Foundation
import Locking
import Synchronization
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

@testable import EtcdEmbed

/// `CONNECT` through `--discovery-proxy`: a proxy's answers, against a loopback server that
/// answers each connection with fixed bytes (or nothing).
@Suite("CONNECT tunnels through a discovery proxy")
struct ProxyTunnelTests {
    /// Answers every connection with `answer` once it has read the request's head, keeping
    /// what it read.
    private final class Scripted: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let answer: String?
        let received = Locked("")
        init(answer: String?) { self.answer = answer }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let bytes = unwrapInboundIn(data)
            received.withLock { $0 += String(buffer: bytes) }
            guard let answer else { return }
            context.writeAndFlush(NIOAny(context.channel.allocator.buffer(string: answer)), promise: nil)
        }
    }

    /// What the proxy read, and how opening the tunnel ended; `then` runs on the client's
    /// channel once the tunnel is open.
    private func tunnel(
        answering answer: String?, expectedEnd: String = "\r\n\r\n", then: @Sendable (any Channel) async throws -> Void = { _ in }
    ) async throws -> (request: String, outcome: Result<Void, any Error>) {
        let scripted = Scripted(answer: answer)
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in channel.pipeline.addHandler(scripted) }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { server.close(promise: nil) }
        let client = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(to: try #require(server.localAddress)).get()
        defer { client.close(promise: nil) }
        let outcome: Result<Void, any Error>
        do {
            try await ProxyTunnel.open(on: client, to: "discovery.example:443")
            try await then(client)
            outcome = .success(())
        } catch {
            outcome = .failure(error)
        }
        // What was written reaches the proxy in its own time: waited for, within 10 s.
        for _ in 0..<200 where !scripted.received.withLock({ $0.hasSuffix(expectedEnd) }) {
            try await Task.sleep(for: .milliseconds(50))
        }
        return (scripted.received.withLock { $0 }, outcome)
    }

    private static let connect = "CONNECT discovery.example:443 HTTP/1.1\r\nHost: discovery.example:443\r\n\r\n"

    @Test func aTwoHundredOpensTheTunnelAndLeavesThePipelineToWhatFollows() async throws {
        let opened = try await tunnel(answering: "HTTP/1.1 200 Connection established\r\n\r\n", expectedEnd: "TLS hello") { channel in
            // The tunnel's handler is gone: what is written next reaches the far side as it is.
            let left = try await channel.eventLoop.submit {
                (try? channel.pipeline.syncOperations.handler(type: ProxyTunnel.self)) == nil
            }.get()
            #expect(left)
            try await channel.writeAndFlush(channel.allocator.buffer(string: "TLS hello")).get()
        }
        try opened.outcome.get()
        #expect(opened.request == Self.connect + "TLS hello")
    }

    @Test func anyOtherAnswerIsARefusalNamingIt() async throws {
        let refused = try await tunnel(answering: "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
        #expect(refused.request == Self.connect)
        #expect(throws: ProxyTunnel.Refusal(description: "proxy refused CONNECT discovery.example:443: HTTP/1.1 407 Proxy Authentication Required")) {
            try refused.outcome.get()
        }
    }

    @Test func aProxyThatSaysNothingIsGivenUpAfterFiveSeconds() async throws {
        let started = ContinuousClock.now
        let silent = try await tunnel(answering: nil)
        #expect(throws: ProxyTunnel.Refusal(description: "the proxy did not answer CONNECT discovery.example:443 within 5s")) {
            try silent.outcome.get()
        }
        let took = ContinuousClock.now - started
        #expect(took >= .seconds(5) && took < .seconds(30), "\(took)")
    }
}

/// The discovery client's TLS: a service that accepts and never completes the handshake does
/// not hold a long-polling request (which has no deadline of its own) for ever.
@Suite("The discovery client's TLS handshake deadline")
struct DiscoveryHandshakeTests {
    @Test func aHandshakeThatNeverEndsFailsAfterTenSeconds() async throws {
        let silent = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        defer { silent.close(promise: nil) }
        let port = try #require(silent.localAddress?.port)
        let client = try DiscoveryHTTPClient(proxy: nil, secure: true)
        let started = ContinuousClock.now
        await #expect(throws: DiscoveryHTTPClient.Failure.self) {
            do {
                _ = try await client.send(.GET, try #require(URLComponents(string: "https://127.0.0.1:\(port)/token?wait=true")), timeout: nil)
            } catch let failure as DiscoveryHTTPClient.Failure {
                #expect(failure.description == "net/http: TLS handshake timeout")
                throw failure
            }
        }
        let took = ContinuousClock.now - started
        #expect(took >= .seconds(10) && took < .seconds(30), "\(took)")
    }
}
