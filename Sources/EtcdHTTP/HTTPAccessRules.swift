import Foundation
import Logging
import NIOHTTP1

/// Who may use the client port's HTTP side, as etcd's access controller decides it:
/// `--host-whitelist` (a plain-HTTP request's `Host` must be listed, against DNS rebinding) and
/// `--cors` (the origins named in the CORS headers of every answer).
package struct HTTPAccessRules: Sendable {
    /// `--cors`; empty or holding `*`: every origin.
    let origins: Set<String>
    /// `--host-whitelist`; empty or holding `*`: every host.
    let hosts: Set<String>

    package init(origins: [String] = ["*"], hosts: [String] = ["*"]) {
        self.origins = Set(origins.map(Self.normalizedOrigin))
        self.hosts = Set(hosts)
    }

    /// An origin as compared: scheme and host in lower case, the port left out when it is the
    /// scheme's default. etcd compares the `Origin` header with its flag's URLs as written (with
    /// the port its flag parser requires), so `https://ui.example.com:443` never matches what a
    /// browser sends; here it does, and so does `https://ui.example.com`.
    static func normalizedOrigin(_ origin: String) -> String {
        guard let url = URLComponents(string: origin), let scheme = url.scheme?.lowercased(), let host = url.host?.lowercased(),
            !host.isEmpty
        else { return origin }
        let defaultPort = scheme == "https" ? 443 : scheme == "http" ? 80 : nil
        let port = url.port.flatMap { $0 == defaultPort ? nil : ":\($0)" } ?? ""
        return "\(scheme)://\(host)\(port)"
    }

    private static let logger = Logger(label: "swift-etcd")

    /// etcd's answer to a request whose `Host` is not listed: 421 and how to fix it.
    static func misdirected(_ host: String) -> HTTPResponse {
        .error(.misdirectedRequest, """

            etcd received your request, but the Host header was unrecognized.

            To fix this, choose one of the following options:
            - Enable TLS, then any HTTPS request will be allowed.
            - Add the hostname you want to use to the whitelist in settings.
              - e.g. etcd --host-whitelist "\(host)"

            This requirement has been added to help prevent "DNS Rebinding" attacks (CVE-2018-5702).

            """)
    }

    /// Whether `request` may be served: over TLS, or for a listed `Host` (without its port).
    func allows(_ request: HTTPRequest) -> Bool {
        request.overTLS || hosts.isEmpty || hosts.contains("*") || hosts.contains(Self.hostname(of: request))
    }

    /// The refusal `request` gets, or nil when it may be served; a refusal is logged.
    func refusal(of request: HTTPRequest) -> HTTPResponse? {
        guard !allows(request) else { return nil }
        let host = Self.hostname(of: request)
        Self.logger.warning("rejecting HTTP request to prevent DNS rebinding attacks", metadata: ["host": "\(host)"])
        return Self.misdirected(host)
    }

    private static func hostname(of request: HTTPRequest) -> String {
        hostname(request.headers.first(name: "Host") ?? "")
    }

    /// The CORS headers of an answer to `request`: for every origin when all are allowed, else
    /// for the request's `Origin` when it is listed, else none.
    func corsHeaders(for request: HTTPRequest) -> HTTPHeaders {
        if origins.isEmpty || origins.contains("*") { return Self.everyOrigin }
        guard let asked = request.headers.first(name: "Origin"), origins.contains(Self.normalizedOrigin(asked)) else { return [:] }
        return Self.corsHeaders(origin: asked)
    }

    /// The answer of etcd's default (`--cors=*`), made once.
    private static let everyOrigin = corsHeaders(origin: "*")

    private static func corsHeaders(origin: String) -> HTTPHeaders {
        [
            "Access-Control-Allow-Methods": "POST, GET, OPTIONS, PUT, DELETE",
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Headers": "accept, content-type, authorization",
        ]
    }

    /// `host[:port]` without the port, as Go's `net.SplitHostPort` (an IPv6 literal loses its
    /// brackets); what does not split is kept whole.
    static func hostname(_ hostAndPort: String) -> String {
        if hostAndPort.hasPrefix("[") {
            guard let close = hostAndPort.firstIndex(of: "]") else { return hostAndPort }
            let rest = hostAndPort[hostAndPort.index(after: close)...]
            guard rest.hasPrefix(":"), !rest.dropFirst().contains(":") else { return hostAndPort }
            return String(hostAndPort[hostAndPort.index(after: hostAndPort.startIndex)..<close])
        }
        let colons = hostAndPort.filter { $0 == ":" }.count
        guard colons == 1, let colon = hostAndPort.firstIndex(of: ":") else { return hostAndPort }
        return String(hostAndPort[..<colon])
    }
}
