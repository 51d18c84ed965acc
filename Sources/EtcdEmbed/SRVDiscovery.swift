import EtcdServer
import Logging

/// `--discovery-srv <domain>`: the initial cluster from DNS SRV records, built as etcd builds
/// it. `_etcd-server-ssl._tcp.<domain>` lists `https` peers and `_etcd-server._tcp.<domain>`
/// `http` ones (`--discovery-srv-name x` makes them `_etcd-server-ssl-x._tcp`…); the record
/// whose target resolves to one of this member's `--initial-advertise-peer-urls` is this
/// member, the others get placeholder names (a member's name is its own to publish; its ID
/// comes from its peer URLs and the cluster token, so every member derives the same cluster).
public struct SRVDiscovery: Sendable, Equatable {
    public var domain: String
    /// `--discovery-srv-name`: the suffix of the service names.
    public var serviceName: String
    /// The DNS server to ask, as `host:port`; nil for the system's (`/etc/resolv.conf`).
    public var resolver: String?

    public init(domain: String, serviceName: String = "", resolver: String? = nil) {
        self.domain = domain
        self.serviceName = serviceName
        self.resolver = resolver
    }

    /// The service whose records list the `scheme` peers.
    func service(secure: Bool) -> String {
        let suffix = serviceName.isEmpty ? "" : "-\(serviceName)"
        return "_etcd-server\(secure ? "-ssl" : "")\(suffix)._tcp.\(domain)"
    }

    /// The `--initial-cluster` the records describe, for the member `name` that advertises
    /// `advertisedPeerURLs`.
    func initialCluster(name: String, advertisedPeerURLs: [String], logger: Logger) throws(ConfigurationError) -> String {
        var own: [String: String] = [:]
        for url in advertisedPeerURLs {
            if let address = PeerURL.resolvedAddress(url) { own[address] = url }
        }
        var entries: [String] = []
        var placeholders = 0
        var failures: [String] = []
        for secure in [true, false] {
            let scheme = secure ? "https" : "http"
            let service = service(secure: secure)
            let records: [DNSServiceRecords.Record]
            do {
                records = try DNSServiceRecords.lookup(service, server: resolver)
            } catch {
                failures.append(error.description)
                continue
            }
            if records.isEmpty { failures.append("lookup \(service): no SRV records") }
            var found: [String] = []
            for record in records {
                let url = "\(scheme)://\(record.target):\(record.port)"
                guard let address = PeerURL.resolvedAddress(url) else {
                    failures.append("lookup \(record.target): no such host")
                    continue
                }
                var member = "\(placeholders)"
                if let ownURL = own[address] {
                    guard ownURL.hasPrefix(scheme + "://") else {
                        throw ConfigurationError(
                            "bootstrap at \(url) from DNS for \(service) has scheme mismatch with expected peer \(ownURL)")
                    }
                    member = name
                } else {
                    placeholders += 1
                }
                found.append("\(member)=\(url)")
            }
            logger.info("get cluster for etcd-server SRV", metadata: [
                "service-scheme": "\(scheme)", "service-name": "\(service)", "server-name": "\(name)", "discovery-srv": "\(domain)",
                "advertise-peer-urls": "\(advertisedPeerURLs)", "found-cluster": "\(found)",
            ])
            entries += found
        }
        guard !entries.isEmpty else {
            throw ConfigurationError("failed to resolve during SRV discovery: \(failures.joined(separator: "; "))")
        }
        for entry in entries { logger.info("got bootstrap from DNS for etcd-server", metadata: ["node": "\(entry)"]) }
        guard entries.contains(where: { $0.hasPrefix("\(name)=") }) else {
            throw ConfigurationError("cannot find local etcd member \"\(name)\" in SRV records")
        }
        return entries.joined(separator: ",")
    }
}
