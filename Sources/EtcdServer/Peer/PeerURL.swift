import Foundation
import NIOCore
import NIOPosix
import TransportSecurity

/// A member's peer URL: `http://host:port`, or `https://host:port` for peer TLS.
struct PeerURL: Sendable, Hashable {
    var host: String
    var port: Int
    var isSecure: Bool

    init?(_ url: String) {
        guard let components = URLComponents(string: url), components.scheme == "http" || components.scheme == "https",
            let host = components.host, let port = components.port, !host.isEmpty
        else { return nil }
        self.host = host == "localhost" ? "127.0.0.1" : host
        self.port = port
        self.isSecure = components.scheme == "https"
    }

    /// Connects to this URL, with TLS from `tls` when it is an `https` URL; `initialize` adds
    /// the handlers that follow TLS.
    func connect(
        group: any EventLoopGroup, tls: TLSCredentials?, timeout: TimeAmount,
        initialize: @escaping @Sendable (any Channel) throws -> Void = { _ in }
    ) -> EventLoopFuture<any Channel> {
        if isSecure && tls == nil {
            return group.next().makeFailedFuture(
                PeerWire.DecodingError(description: "https://\(host):\(port) needs peer TLS (--peer-cert-file and --peer-key-file, or --peer-auto-tls)"))
        }
        let (host, isSecure) = (host, isSecure)
        return ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.writeBufferWaterMark, value: .init(low: 1 << 20, high: 8 << 20))
            .connectTimeout(timeout)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if isSecure, let tls { try tls.secureOutgoing(channel, host: host) }
                    try initialize(channel)
                }
            }
            .connect(host: host, port: port)
    }
}
