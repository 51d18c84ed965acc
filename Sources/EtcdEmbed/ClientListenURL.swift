import BoundSockets
import EtcdServer
import Foundation

/// One `--listen-client-urls` entry: `http://host:port`, `https://host:port`, or a Unix
/// socket, `unix://path` or `unixs://path` (TLS), where the path is the URL's host and path
/// as etcd reads it (`unix://localhost:2379` is the file `localhost:2379` in the working
/// directory).
struct ClientListenURL: Sendable, Hashable {
    enum Address: Sendable, Hashable {
        case tcp(host: String, port: Int)
        case unixSocket(path: String)
    }

    var url: String
    var address: Address
    var isSecure: Bool

    init(_ url: String) throws(ConfigurationError) {
        self.url = url
        guard let schemeEnd = url.range(of: "://") else {
            throw ConfigurationError("--listen-client-urls: \(url) has no scheme (http, https, unix or unixs)")
        }
        let scheme = url[..<schemeEnd.lowerBound]
        let rest = String(url[schemeEnd.upperBound...])
        switch scheme {
        case "unix", "unixs":
            guard !rest.isEmpty else { throw ConfigurationError("--listen-client-urls: \(url) names no socket path") }
            address = .unixSocket(path: rest)
            isSecure = scheme == "unixs"
        case "http", "https":
            guard let components = URLComponents(string: url), let host = components.addressHost, !host.isEmpty,
                let port = components.port
            else { throw ConfigurationError("--listen-client-urls: \(url) is not a \(scheme)://host:port URL") }
            address = .tcp(host: host == "localhost" ? "127.0.0.1" : host, port: port)
            isSecure = scheme == "https"
        default:
            throw ConfigurationError("--listen-client-urls: URL scheme must be http, https, unix, or unixs: \(url)")
        }
    }

    /// The host for a self-signed certificate's names (none for a socket).
    var host: String? {
        if case .tcp(let host, _) = address { return host }
        return nil
    }

    /// Binds this address (replacing a stale socket file), or fails as etcd says it cannot.
    func bind() throws(ConfigurationError) -> BoundSocket {
        do {
            switch address {
            case .tcp(let host, let port): return try BoundSocket.bind(host: host, port: port)
            case .unixSocket(let path): return try BoundSocket.bind(unixDomainSocketPath: path)
            }
        } catch {
            throw cannotListen(error)
        }
    }

    /// Why the listener cannot be opened, as etcd says it.
    func cannotListen(_ error: any Error) -> ConfigurationError {
        switch address {
        case .tcp(let host, let port): ConfigurationError.cannotListen("tcp", joinHostPort(host, port), error)
        case .unixSocket(let path): ConfigurationError.cannotListen("unix", path, error)
        }
    }
}
