import Foundation

extension URLComponents {
    /// The host to bind, dial or name in a certificate: an IPv6 literal without the brackets a
    /// URL writes it in (`http://[::1]:2380` is `::1`; Foundation on Linux keeps them).
    package var addressHost: String? {
        guard let host else { return nil }
        if host.hasPrefix("["), host.hasSuffix("]") { return String(host.dropFirst().dropLast()) }
        return host
    }
}

/// `host:port`, with an IPv6 host in brackets (`[::1]:2380`), as Go's `net.JoinHostPort`.
package func joinHostPort(_ host: String, _ port: Int) -> String {
    host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
}
