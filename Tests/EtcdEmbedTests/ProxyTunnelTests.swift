import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Testing

@testable import EtcdEmbed

/// `CONNECT` through `--discovery-proxy`: a proxy's answers, against a loopback server that
/// answers each connection with fixed bytes (or nothing).
@Suite("CONNECT tunnels through a discovery proxy")
struct ProxyTunnelTests {
    /// Answers every connection with `answer` once it has read the request's head.
    private final class Scripted: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        let answer: String?
        init(answer: String?) { self.answer = answer }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            guard let answer else { return }
            context.writeAndFlush(NIOAny(context.channel.allocator.buffer(string: answer)), promise: nil)
        }
    }

    private func tunnel(answering answer: String?) async throws -> Result<Void, any Error> {
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in channel.pipeline.addHandler(Scripted(answer: answer)) }
            .bind(host: "127.0.0.1", port: 0).get()
        defer { server.close(promise: nil) }
        let client = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(to: try #require(server.localAddress)).get()
        defer { client.close(promise: nil) }
        do {
            try await ProxyTunnel.open(on: client, to: "discovery.example:443")
            return .success(())
        } catch {
            return .failure(error)
        }
    }

    @Test func aTwoHundredOpensTheTunnel() async throws {
        let opened = try await tunnel(answering: "HTTP/1.1 200 Connection established\r\n\r\n")
        #expect(throws: Never.self) { try opened.get() }
    }

    @Test func anyOtherAnswerIsARefusalNamingIt() async throws {
        let refused = try await tunnel(answering: "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
        #expect(throws: ProxyTunnel.Refusal(description: "proxy refused CONNECT discovery.example:443: HTTP/1.1 407 Proxy Authentication Required")) {
            try refused.get()
        }
    }

    @Test func aProxyThatSaysNothingIsGivenUpAfterFiveSeconds() async throws {
        let started = ContinuousClock.now
        let silent = try await tunnel(answering: nil)
        #expect(throws: ProxyTunnel.Refusal(description: "the proxy did not answer CONNECT discovery.example:443 within 5s")) {
            try silent.get()
        }
        #expect(ContinuousClock.now - started < .seconds(30))
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
