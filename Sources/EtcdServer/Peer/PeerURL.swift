import BoundSockets
import Foundation
import NIOCore
import NIOPosix
import TransportSecurity

/// A member's peer URL: `http://host:port`, or `https://host:port` for peer TLS.
package struct PeerURL: Sendable, Hashable {
    var host: String
    var port: Int
    var isSecure: Bool

    init?(_ url: String) {
        guard let components = URLComponents(string: url), components.scheme == "http" || components.scheme == "https",
            let host = components.addressHost, let port = components.port, !host.isEmpty
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
                PeerWire.DecodingError(description: "https://\(joinHostPort(host, port)) needs peer TLS (--peer-cert-file and --peer-key-file, or --peer-auto-tls)"))
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

extension PeerURL {
    /// The address this URL's host resolves to, as `ip:port` (the first the system's resolver
    /// gives); nil when it does not resolve or the URL is not a peer URL.
    package static func resolvedAddress(_ url: String) -> String? {
        guard let peer = PeerURL(url) else { return nil }
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var results: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(peer.host, String(peer.port), &hints, &results) == 0, let first = results else { return nil }
        defer { freeaddrinfo(results) }
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        guard getnameinfo(first.pointee.ai_addr, first.pointee.ai_addrlen, &host, socklen_t(host.count), nil, 0, NI_NUMERICHOST) == 0 else {
            return nil
        }
        return joinHostPort(String(cString: host), peer.port)
    }

    /// Whether two lists of peer URLs name the same members' addresses: equal as written, or
    /// once every host is resolved (etcd's `URLStringsEqual`: `http://infra0.example.com:2380`
    /// from DNS is `http://10.0.1.10:2380` on the command line).
    package static func sameAddresses(_ first: [String], _ second: [String]) -> Bool {
        if Set(first) == Set(second) { return true }
        func resolved(_ urls: [String]) -> [String]? {
            var addresses: [String] = []
            for url in urls {
                guard let address = resolvedAddress(url) else { return nil }
                addresses.append((url.hasPrefix("https") ? "https://" : "http://") + address)
            }
            return addresses.sorted()
        }
        guard let first = resolved(first), let second = resolved(second) else { return false }
        return first == second
    }
}

/// A `--listen-peer-urls` entry, checked and bound: made before the data directory is touched
/// (``EtcdServer/bindPeerListeners(_:)``), listened on once the member has started.
package struct PeerListenAddress: Sendable {
    package let url: String
    let peerURL: PeerURL
    let socket: BoundSocket

    /// Fails with etcd's words for a URL that is not a peer URL, an `https` URL without peer
    /// TLS, and an address that cannot be bound (`listen tcp …: bind: address already in use`).
    package init(_ url: String, peerTLS: TLSCredentials?) throws(ConfigurationError) {
        guard let peerURL = PeerURL(url) else {
            throw ConfigurationError("--listen-peer-urls: \(url) is not an http:// or https://host:port URL")
        }
        if peerURL.isSecure && peerTLS == nil {
            throw ConfigurationError(
                "cannot listen on TLS for \(joinHostPort(peerURL.host, peerURL.port)): KeyFile and CertFile are not presented (--peer-cert-file, --peer-key-file or --peer-auto-tls)")
        }
        do {
            socket = try BoundSocket.bind(host: peerURL.host, port: peerURL.port)
        } catch {
            throw ConfigurationError.cannotListen("tcp", joinHostPort(peerURL.host, peerURL.port), error)
        }
        self.url = url
        self.peerURL = peerURL
    }
}
