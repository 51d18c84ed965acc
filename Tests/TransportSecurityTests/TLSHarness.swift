import Foundation
import Locking
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization
import TestSupport
import TransportSecurity

/// An echo server whose connections are secured by ``TLSCredentials``, as the client and peer
/// listeners secure theirs.
struct EchoServer {
    let channel: any Channel
    var port: Int { channel.localAddress!.port! }

    static func start(_ credentials: TLSCredentials, handshakeTimeout: TimeAmount = .seconds(5)) async throws -> EchoServer {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try credentials.secureAccepted(channel, handshakeTimeout: handshakeTimeout)
                    try channel.pipeline.syncOperations.addHandler(Echo())
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return EchoServer(channel: channel)
    }

    func stop() async {
        try? await channel.close()
    }

    private final class Echo: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            context.writeAndFlush(data, promise: nil)
        }
    }
}

/// A TLS client of ``EchoServer``: each ``echo(_:)`` sends a line and waits for it to come back.
final class EchoClient: Sendable {
    private let channel: any Channel
    private let replies: Replies

    private init(channel: any Channel, replies: Replies) {
        self.channel = channel
        self.replies = replies
    }

    /// Connects with `tls` (nil: plaintext).
    static func connect(port: Int, tls: TLSConfiguration?, serverHostname: String? = nil) async throws -> EchoClient {
        let context = try tls.map { try NIOSSLContext(configuration: $0) }
        let replies = Replies()
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let context {
                        try channel.pipeline.syncOperations.addHandler(
                            NIOSSLClientHandler(context: context, serverHostname: serverHostname))
                    }
                    try channel.pipeline.syncOperations.addHandler(Collector(replies: replies))
                }
            }
            .connect(host: "127.0.0.1", port: port).get()
        return EchoClient(channel: channel, replies: replies)
    }

    /// Sends `text` and returns what came back, or throws when the connection fails or closes
    /// (or nothing comes back within 5 s).
    func echo(_ text: String) async throws -> String {
        let promise = channel.eventLoop.makePromise(of: String.self)
        replies.expect(promise)
        channel.writeAndFlush(ByteBuffer(string: text), promise: nil)
        let timeout = channel.eventLoop.scheduleTask(in: .seconds(5)) { promise.fail(ChannelError.eof) }
        defer { timeout.cancel() }
        return try await promise.futureResult.get()
    }

    func close() async {
        try? await channel.close()
    }

    /// The promise of the next reply; failed when the connection fails or closes.
    final class Replies: Sendable {
        private let waiting = Locked<[EventLoopPromise<String>]>([])

        func expect(_ promise: EventLoopPromise<String>) { waiting.withLock { $0.append(promise) } }

        func complete(_ result: Result<String, any Error>) {
            let promises = waiting.withLock { waiting in
                defer { waiting = [] }
                return waiting
            }
            for promise in promises { promise.completeWith(result) }
        }
    }

    private final class Collector: ChannelInboundHandler {
        typealias InboundIn = ByteBuffer
        let replies: Replies

        init(replies: Replies) { self.replies = replies }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            replies.complete(.success(String(buffer: unwrapInboundIn(data))))
        }

        func channelInactive(context: ChannelHandlerContext) {
            replies.complete(.failure(ChannelError.eof))
        }

        func errorCaught(context: ChannelHandlerContext, error: any Error) {
            replies.complete(.failure(error))
            context.close(promise: nil)
        }
    }
}

/// Client TLS settings made from the test PKI's files.
func clientTLS(trusting ca: String = "ca.pem", presenting name: String?) throws -> TLSConfiguration {
    var tls = TLSConfiguration.makeClientConfiguration()
    tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(TestCertificates.file(ca)))
    if let name {
        tls.certificateChain = try NIOSSLCertificate.fromPEMFile(TestCertificates.file("\(name).pem")).map { .certificate($0) }
        tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: TestCertificates.file("\(name)-key.pem"), format: .pem))
    }
    return tls
}

/// Settings for `side` using the PKI's `name` certificate, trusting its CA.
func tlsInfo(_ side: TLSInfo.Side, certificate name: String = "server", clientCertAuth: Bool = true) throws -> TLSInfo {
    var info = TLSInfo(side: side)
    info.certFile = try TestCertificates.file("\(name).pem")
    info.keyFile = try TestCertificates.file("\(name)-key.pem")
    info.trustedCAFile = try TestCertificates.file("ca.pem")
    info.clientCertAuth = clientCertAuth
    return info
}
