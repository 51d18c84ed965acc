import EtcdServer
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import TransportSecurity

/// `--discovery <url>`: a new cluster found through a discovery service, with etcd's v2
/// discovery protocol (what `discovery.etcd.io` and Debian's `etcd-discovery` serve: etcd's v2
/// keys API under the URL's path).
///
/// The URL names a directory holding `_config/size`. Each member registers itself under its
/// ID (`name=peer-url,…`, created only if absent), then waits until `size` members have; the
/// first `size` registrations, in creation order, are the initial cluster, and a member that
/// is not among them finds the cluster full. IDs come from peer URLs and the discovery URL (the
/// cluster token), so every member derives the same ones.
///
/// Unlike etcd, which retries an unreachable service for ever (2^32 times), a member gives up
/// after ``retries`` attempts and stops with etcd's `discovery: too many retries`.
public struct URLDiscovery: ClusterDiscovery, Equatable {
    /// The discovery URL: the service and the directory of this cluster.
    public var url: String
    /// `--discovery-proxy`: an HTTP proxy for the requests to the service.
    public var proxy: String?
    /// Attempts after the first when the service cannot be reached (etcd's backoff: 2 s, 4 s, 8 s…).
    public var retries = 5

    public init(url: String, proxy: String? = nil) {
        self.url = url
        self.proxy = proxy
    }

    /// The discovery URL is the cluster token, as in etcd.
    var token: String { url }

    func announce(_ logger: Logger) { logger.warning("V2 discovery is deprecated!") }

    /// Checks the URLs before anything is asked of the service.
    func validate() throws(ConfigurationError) {
        guard let components = URLComponents(string: url), components.host?.isEmpty == false else {
            throw ConfigurationError("--discovery: invalid URL \(url)")
        }
        guard components.scheme == "http" || components.scheme == "https" else {
            throw ConfigurationError("--discovery: \(url): only http and https discovery URLs are supported")
        }
        if let proxy, proxyAddress(proxy) == nil {
            throw ConfigurationError("invalid proxy address \"\(proxy)\"")
        }
        // Through a tunnel the connection's address is the proxy's: the certificate can only be
        // checked against a name.
        if proxy != nil, components.scheme == "https", serverNameIndication(for: components.addressHost ?? "") == nil {
            throw ConfigurationError("--discovery: \(url): an https discovery URL reached through --discovery-proxy needs a host name, not an address")
        }
    }

    func join(memberID: UInt64, entry: String, logger: Logger) async throws(DiscoveryFailure) -> String {
        let client: DiscoveryHTTPClient
        do {
            client = try DiscoveryHTTPClient(proxy: proxy.flatMap(proxyAddress), secure: URLComponents(string: url)?.scheme == "https")
        } catch {
            throw DiscoveryFailure(description: "discovery: cannot set up TLS with the system's CAs: \(error)")
        }
        var session = Session(discovery: self, selfKey: String(memberID, radix: 16), client: client, logger: logger)
        if let proxy { logger.info("running proxy with discovery", metadata: ["proxy-url": "\(proxy)"]) }
        // Fast path: a full cluster is refused before registering.
        _ = try await session.checkCluster()
        try await session.createSelf(entry)
        let (nodes, size, index) = try await session.checkCluster()
        let all = try await session.waitNodes(nodes, size: size, index: index)
        let values = all.map(\.value)
        let cluster = values.joined(separator: ",")
        let names = Set(values.flatMap { $0.split(separator: ",").map { $0.split(separator: "=").first.map(String.init) ?? "" } })
        guard names.count == size else { throw .duplicateName }
        return cluster
    }

    fileprivate func proxyAddress(_ proxy: String) -> (host: String, port: Int)? {
        let withScheme = proxy.contains("://") ? proxy : "http://" + proxy
        guard let components = URLComponents(string: withScheme), components.scheme?.hasPrefix("http") == true,
            let host = components.addressHost, !host.isEmpty
        else { return nil }
        return (host, components.port ?? 80)
    }
}

/// One discovery run: the requests, their retries and what they found.
private struct Session {
    struct Node: Decodable {
        var key: String
        var value: String?
        var createdIndex: UInt64
        var modifiedIndex: UInt64
        var nodes: [Node]?
    }

    struct Answer: Decodable {
        var node: Node?
        var errorCode: Int?
    }

    struct Registration {
        var key: String
        var value: String
        var createdIndex: UInt64
    }

    let discovery: URLDiscovery
    let selfKey: String
    let logger: Logger
    let client: DiscoveryHTTPClient
    let base: URLComponents
    var backoff: DiscoveryBackoff

    init(discovery: URLDiscovery, selfKey: String, client: DiscoveryHTTPClient, logger: Logger) {
        self.discovery = discovery
        self.selfKey = selfKey
        self.logger = logger
        self.client = client
        backoff = DiscoveryBackoff(retries: discovery.retries)
        var base = URLComponents(string: discovery.url) ?? URLComponents()
        if base.path.hasSuffix("/") { base.path.removeLast() }
        self.base = base
    }

    private func url(_ suffix: String, query: [URLQueryItem] = []) -> URLComponents {
        var url = base
        url.path += suffix
        url.queryItems = query.isEmpty ? nil : query
        return url
    }

    /// Sends a request; a service that cannot be reached or fails (5xx) is retried with
    /// etcd's backoff.
    private mutating func ask(
        _ method: HTTPMethod, _ url: URLComponents, form: [String: String] = [:], timeout: TimeAmount? = .seconds(5),
        step: String
    ) async throws(DiscoveryFailure) -> (DiscoveryHTTPClient.Response, Answer) {
        while true {
            var problem: String
            do {
                let response = try await client.send(method, url, form: form, timeout: timeout)
                if response.status < 500 {
                    guard let answer = try? JSONDecoder().decode(Answer.self, from: Data(response.body)) else {
                        throw DiscoveryFailure.badEndpoint
                    }
                    return (response, answer)
                }
                problem = "HTTP \(response.status)"
            } catch let failure as DiscoveryFailure {
                throw failure
            } catch {
                problem = "\(error)"
            }
            logger.warning("failed to get from discovery server", metadata: [
                "discovery-url": "\(discovery.url)", "path": "\(url.path)", "error": "\(problem)",
            ])
            try await backoff.wait(step: step, logger: logger)
        }
    }

    /// The cluster size and the registrations so far (in creation order), and the service's
    /// index to watch from; `fullCluster` when `size` members registered before this one.
    mutating func checkCluster() async throws(DiscoveryFailure) -> ([Registration], Int, UInt64) {
        let (sizeResponse, sizeAnswer) = try await ask(.GET, url("/_config/size"), step: "cluster status check")
        guard sizeResponse.status == 200, let value = sizeAnswer.node?.value else {
            throw sizeAnswer.errorCode == 100 || sizeResponse.status == 404 ? .sizeNotFound : .badEndpoint
        }
        guard let size = Int(value), size > 0 else { throw .badSizeKey }
        let (response, answer) = try await ask(.GET, url(""), step: "cluster status check")
        guard response.status == 200 else { throw .badEndpoint }
        let index = response.headers.first(name: "X-Etcd-Index").flatMap(UInt64.init) ?? 0
        let registrations = (answer.node?.nodes ?? [])
            .filter { Self.lastComponent($0.key) != "_config" }
            .sorted { $0.createdIndex < $1.createdIndex }
            .map { Registration(key: Self.lastComponent($0.key), value: $0.value ?? "", createdIndex: $0.createdIndex) }
        if let position = registrations.firstIndex(where: { $0.key == selfKey }) {
            guard position < size else { throw .fullCluster }
        } else if registrations.count >= size {
            throw .fullCluster
        }
        return (registrations, size, index)
    }

    /// Registers this member; its key must not exist yet.
    mutating func createSelf(_ entry: String) async throws(DiscoveryFailure) {
        let (response, answer) = try await ask(
            .PUT, url("/\(selfKey)", query: [URLQueryItem(name: "prevExist", value: "false")]), form: ["value": entry],
            step: "register")
        if answer.errorCode == 105 || response.status == 412 { throw .duplicateID }
        guard response.status == 201 || response.status == 200 else { throw .badEndpoint }
    }

    /// Waits until `size` members have registered, watching the directory from `index`.
    mutating func waitNodes(_ found: [Registration], size: Int, index: UInt64) async throws(DiscoveryFailure) -> [Registration] {
        var all = Array(found.prefix(size))
        for registration in all {
            if registration.key == selfKey {
                logger.info("found self from discovery server", metadata: ["discovery-url": "\(discovery.url)", "self": "\(selfKey)"])
            } else {
                logger.info("found peer from discovery server", metadata: ["discovery-url": "\(discovery.url)", "peer": "\(registration.key)"])
            }
        }
        var after = index
        while all.count < size {
            logger.info("found peers from discovery server; waiting for more", metadata: [
                "discovery-url": "\(discovery.url)", "found-peers": "\(all.count)", "needed-peers": "\(size - all.count)",
            ])
            let (response, answer) = try await ask(
                .GET,
                url("", query: [
                    URLQueryItem(name: "wait", value: "true"), URLQueryItem(name: "recursive", value: "true"),
                    URLQueryItem(name: "waitIndex", value: "\(after + 1)"),
                ]),
                timeout: nil, step: "waiting for other nodes")
            guard response.status == 200, let node = answer.node else {
                // The index was cleared from the service's history: read the directory again.
                try await backoff.wait(step: "waiting for other nodes", logger: logger)
                let (again, _, newIndex) = try await checkCluster()
                all = Array(again.prefix(size))
                after = newIndex
                continue
            }
            after = max(after, node.modifiedIndex)
            let key = Self.lastComponent(node.key)
            guard !node.key.contains("/_config/"), !all.contains(where: { $0.key == key }) else { continue }
            logger.info("found peer from discovery server", metadata: ["discovery-url": "\(discovery.url)", "peer": "\(key)"])
            all.append(Registration(key: key, value: node.value ?? "", createdIndex: node.createdIndex))
        }
        logger.info("found all needed peers from discovery server", metadata: [
            "discovery-url": "\(discovery.url)", "found-peers": "\(all.count)",
        ])
        return all
    }

    static func lastComponent(_ key: String) -> String {
        key.split(separator: "/").last.map(String.init) ?? key
    }
}
