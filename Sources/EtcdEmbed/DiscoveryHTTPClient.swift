import EtcdServer
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOTLS
import TransportSecurity

/// The HTTP/1.1 client of `--discovery`: one request per connection to a discovery service
/// (etcd's v2 keys API), directly or through the `--discovery-proxy` HTTP proxy. An `https`
/// service is checked against the system's CAs, as etcd checks it (``SystemTrustRoots``);
/// through a proxy it is reached by a `CONNECT` tunnel, as Go's HTTP client reaches it.
struct DiscoveryHTTPClient: Sendable {
    struct Response: Sendable {
        var status: Int
        var headers: HTTPHeaders
        var body: [UInt8]
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// The proxy's host and port, when requests go through one.
    var proxy: (host: String, port: Int)?
    /// For an `https` service: the client side of TLS, trusting the system's CAs.
    let tlsContext: NIOSSLContext?

    /// A client of an `https` service when `secure`, else of an `http` one.
    init(proxy: (host: String, port: Int)?, secure: Bool) throws {
        self.proxy = proxy
        guard secure else {
            tlsContext = nil
            return
        }
        var configuration = TLSConfiguration.makeClientConfiguration()
        SystemTrustRoots.apply(to: &configuration)
        tlsContext = try NIOSSLContext(configuration: configuration)
    }

    /// Sends `method` to `url` (`http` or `https`) with a form body, and waits at most `timeout`
    /// for the whole answer (nil: as long as the server takes, for a long-polling watch).
    func send(
        _ method: HTTPMethod, _ url: URLComponents, form: [String: String] = [:], timeout: TimeAmount? = .seconds(5)
    ) async throws -> Response {
        let secure = url.scheme == "https"
        guard secure == (tlsContext != nil), secure || url.scheme == "http", let host = url.addressHost, !host.isEmpty else {
            throw Failure(description: "unsupported discovery URL \(url.string ?? "")")
        }
        let port = url.port ?? (secure ? 443 : 80)
        let target = proxy ?? (host, port)
        // A tunnel carries the request as it would go directly; a plain proxy takes the whole URL.
        let tunnels = secure && proxy != nil
        let body = form.sorted { $0.key < $1.key }.map { "\($0.key)=\(Self.formEscaped($0.value))" }.joined(separator: "&")
        var head = HTTPRequestHead(
            version: .http1_1, method: method,
            uri: proxy == nil || tunnels ? "\(url.percentEncodedPath)\(url.percentEncodedQuery.map { "?\($0)" } ?? "")" : url.string ?? "")
        head.headers.add(name: "Host", value: joinHostPort(host, port))
        head.headers.add(name: "Connection", value: "close")
        if !form.isEmpty {
            head.headers.add(name: "Content-Type", value: "application/x-www-form-urlencoded")
        }
        if !form.isEmpty || method == .PUT || method == .POST {
            head.headers.add(name: "Content-Length", value: "\(body.utf8.count)")
        }
        let group = MultiThreadedEventLoopGroup.singleton
        let promise = group.next().makePromise(of: Response.self)
        let channel: any Channel
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(.seconds(5))
                .connect(host: target.host, port: target.port).get()
        } catch {
            promise.fail(error)
            throw Failure(description: "dial tcp \(joinHostPort(target.host, target.port)): \(error)")
        }
        do {
            if tunnels { try await ProxyTunnel.open(on: channel, to: joinHostPort(host, port)) }
            try await channel.eventLoop.submit { [tlsContext] in
                let pipeline = channel.pipeline.syncOperations
                if let tlsContext {
                    try pipeline.addHandler(NIOSSLClientHandler(context: tlsContext, serverHostname: serverNameIndication(for: host)))
                    try pipeline.addHandler(HandshakeDeadline(promise: promise))
                }
                try pipeline.addHTTPClientHandlers()
                try pipeline.addHandler(ResponseCollector(promise: promise))
            }.get()
        } catch {
            promise.fail(error)
            channel.close(promise: nil)
            throw Failure(description: "\(error)")
        }
        if let timeout {
            let expiry = channel.eventLoop.scheduleTask(in: timeout) {
                promise.fail(Failure(description: "request to \(url.string ?? "") timed out"))
                channel.close(promise: nil)
            }
            promise.futureResult.whenComplete { _ in expiry.cancel() }
        }
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if !body.isEmpty {
            channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(string: body))), promise: nil)
        }
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        defer { channel.close(promise: nil) }
        return try await promise.futureResult.get()
    }

    /// `application/x-www-form-urlencoded` escaping, as Go's `url.Values.Encode`.
    static func formEscaped(_ value: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-_.~")
        return value.addingPercentEncoding(withAllowedCharacters: allowed) ?? value
    }
}

/// Fails a request whose TLS handshake is not done within 10 s, as Go's HTTP transport does
/// (etcd's `TLSHandshakeTimeout`): a long-polling watch has no deadline of its own.
private final class HandshakeDeadline: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    private let promise: EventLoopPromise<DiscoveryHTTPClient.Response>
    private var deadline: Scheduled<Void>?

    init(promise: EventLoopPromise<DiscoveryHTTPClient.Response>) { self.promise = promise }

    func handlerAdded(context: ChannelHandlerContext) {
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: .seconds(10)) { [promise] in
            promise.fail(DiscoveryHTTPClient.Failure(description: "net/http: TLS handshake timeout"))
            loopBound.value.close(promise: nil)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent {
            deadline?.cancel()
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func handlerRemoved(context: ChannelHandlerContext) { deadline?.cancel() }
}

/// Collects one response and completes the promise at its end (or with the error that cut it).
private final class ResponseCollector: ChannelInboundHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let promise: EventLoopPromise<DiscoveryHTTPClient.Response>
    private var response: DiscoveryHTTPClient.Response?

    init(promise: EventLoopPromise<DiscoveryHTTPClient.Response>) { self.promise = promise }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            response = .init(status: Int(head.status.code), headers: head.headers, body: [])
        case .body(let buffer):
            response?.body += buffer.readableBytesView
        case .end:
            if let response { promise.succeed(response) }
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(DiscoveryHTTPClient.Failure(description: "\(error)"))
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        promise.fail(DiscoveryHTTPClient.Failure(description: "the discovery service closed the connection before answering"))
    }
}
