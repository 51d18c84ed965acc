import Coordination
import EtcdClient
import EtcdProto
import Foundation
import Logging

/// `--discovery-endpoints` and `--discovery-token`: a new cluster found through an existing etcd
/// (or swift-etcd) cluster, with etcd 3.6's v3 discovery protocol.
///
/// The operator writes the size at `/_etcd/registry/<token>/_config/size`; each member puts
/// `name=peer-url,…` at `/_etcd/registry/<token>/members/<member ID>`, then watches the
/// members' prefix until `size` have registered. The first `size` by creation revision are the
/// initial cluster; the token is the cluster token, from which members derive their IDs.
public struct V3Discovery: ClusterDiscovery {
    /// `--discovery-token`.
    public var token: String
    /// `--discovery-endpoints`: the service cluster's client URLs.
    public var endpoints: [String]
    /// `--discovery-request-timeout`.
    public var requestTimeout: Duration = .seconds(5)
    /// `--discovery-cacert`, `--discovery-cert`, `--discovery-key`,
    /// `--discovery-insecure-skip-tls-verify`; nil for plain connections.
    public var tls: EtcdClient.TLSOptions?
    /// `--discovery-user` and `--discovery-password`.
    public var credentials: EtcdCredentials?
    /// Attempts after the first when the service cannot be reached (etcd's backoff).
    public var retries = 5

    public init(token: String, endpoints: [String]) {
        self.token = token
        self.endpoints = endpoints
    }

    private var prefix: String { "/_etcd/registry/\(token)" }
    /// etcd watches and lists this prefix (no trailing slash), so do we.
    private var membersPrefix: String { "\(prefix)/members" }

    private struct Registration {
        var key: String
        var value: String
        var createRevision: Int64
    }

    func announce(_ logger: Logger) { logger.info("Bootstrapping cluster using v3 discovery.") }

    func join(memberID: UInt64, entry: String, logger: Logger) async throws(DiscoveryFailure) -> String {
        let client: EtcdClient
        do {
            client = try EtcdClient(endpoints: endpoints, tls: tls, credentials: credentials, requestTimeout: requestTimeout)
        } catch {
            throw DiscoveryFailure(description: "discovery: \(error.message)")
        }
        var backoff = DiscoveryBackoff(retries: retries)
        let selfKey = "\(membersPrefix)/\(String(memberID, radix: 16))"
        do throws(DiscoveryFailure) {
            // Fast path: a full cluster is refused before registering.
            _ = try await check(client, selfKey: selfKey, backoff: &backoff, logger: logger)
            while true {
                do {
                    _ = try await client.put(selfKey, entry)
                    break
                } catch {
                    logger.warning("failed to register members itself to the discovery service", metadata: [
                        "memberKey": "\(selfKey)", "error": "\(error.message)",
                    ])
                    try await backoff.wait(step: "register member itself", logger: logger)
                }
            }
            logger.info("register member itself successfully", metadata: ["memberKey": "\(selfKey)", "memberInfo": "\(entry)"])
            var (members, size, revision) = try await check(client, selfKey: selfKey, backoff: &backoff, logger: logger)
            while members.count < size {
                logger.info("waiting for peers from discovery service", metadata: [
                    "clusterSize": "\(size)", "found-peers": "\(members.count)",
                ])
                do {
                    try await waitForPeers(client, into: &members, size: size, after: revision, logger: logger)
                } catch {
                    try await backoff.wait(step: "waiting for other nodes", logger: logger)
                    (members, size, revision) = try await check(client, selfKey: selfKey, backoff: &backoff, logger: logger)
                }
            }
            logger.info("found all needed peers from discovery service", metadata: [
                "clusterSize": "\(size)", "found-peers": "\(members.count)",
            ])
            await client.close()
            let cluster = members.prefix(size).map(\.value).joined(separator: ",")
            guard members.prefix(size).allSatisfy({ $0.value.contains("=") }) else { throw DiscoveryFailure.invalidPeerURL }
            logger.info("discovery joined cluster successfully", metadata: ["cluster": "\(cluster)"])
            return cluster
        } catch {
            await client.close()
            logger.error("discovery failed to join cluster", metadata: ["error": "\(error)"])
            throw error
        }
    }

    /// The size and the registrations so far (by creation revision), with the revision to
    /// watch after; `fullCluster` when `size` others registered before this member.
    private func check(_ client: EtcdClient, selfKey: String, backoff: inout DiscoveryBackoff, logger: Logger)
        async throws(DiscoveryFailure) -> ([Registration], Int, Int64)
    {
        while true {
            let sizeAnswer: Etcdserverpb_RangeResponse
            let membersAnswer: Etcdserverpb_RangeResponse
            do {
                sizeAnswer = try await client.get("\(prefix)/_config/size")
                membersAnswer = try await client.get(Data(membersPrefix.utf8), rangeEnd: CoordinationKeys.prefixEnd(Data(membersPrefix.utf8)))
            } catch {
                logger.warning("failed to get cluster members from discovery service", metadata: ["error": "\(error.message)"])
                try await backoff.wait(step: "cluster status check", logger: logger)
                continue
            }
            guard let sizeValue = sizeAnswer.kvs.first?.value else { throw .sizeNotFound }
            guard let size = Int(String(decoding: sizeValue, as: UTF8.self)), size > 0 else { throw .badSizeKey }
            var members: [Registration] = []
            for kv in membersAnswer.kvs {
                Self.add(kv, to: &members, logger: logger)
            }
            if let position = members.firstIndex(where: { $0.key == selfKey }) {
                guard position < size else { throw .fullCluster }
            } else if members.count >= size {
                throw .fullCluster
            }
            return (members, size, membersAnswer.header.revision)
        }
    }

    /// Watches the members' prefix after `revision` until `size` members registered.
    private func waitForPeers(_ client: EtcdClient, into members: inout [Registration], size: Int, after revision: Int64, logger: Logger)
        async throws
    {
        let stream = try await client.watch(Data(membersPrefix.utf8), rangeEnd: CoordinationKeys.prefixEnd(Data(membersPrefix.utf8)), startRevision: revision + 1)
        defer { stream.close() }
        for try await response in stream {
            for event in response.events where event.type == .put {
                Self.add(event.kv, to: &members, logger: logger)
            }
            if members.count >= size { return }
        }
        throw DiscoveryFailure(description: "discovery: the watch on the discovery service ended")
    }

    private static func add(_ kv: Mvccpb_KeyValue, to members: inout [Registration], logger: Logger) {
        let key = String(decoding: kv.key, as: UTF8.self).trimmingCharacters(in: .whitespaces)
        let value = String(decoding: kv.value, as: UTF8.self).trimmingCharacters(in: .whitespaces)
        guard value.contains("=") else {
            logger.warning("invalid peer info returned from discovery service", metadata: ["memberKey": "\(key)", "memberInfo": "\(value)"])
            return
        }
        guard !members.contains(where: { $0.key == key }) else { return }
        logger.info("found peer from discovery service", metadata: ["memberKey": "\(key)", "memberInfo": "\(value)"])
        members.append(Registration(key: key, value: value, createRevision: kv.createRevision))
        members.sort { $0.createRevision < $1.createRevision }
    }
}
