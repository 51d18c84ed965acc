import Crypto
import Foundation
import NIOCore
import Raft

/// One member of the cluster.
package struct Member: Sendable, Equatable, Codable {
    package var id: UInt64
    /// Empty until the member has started and published its name.
    package var name: String
    package var peerURLs: [String]
    /// Empty until the member has started and published them.
    package var clientURLs: [String]
    package var isLearner = false

    package init(id: UInt64, name: String, peerURLs: [String], clientURLs: [String], isLearner: Bool = false) {
        self.id = id
        self.name = name
        self.peerURLs = peerURLs
        self.clientURLs = clientURLs
        self.isLearner = isLearner
    }
}

/// The cluster's members as the applied log says, and every ID ever removed (a removed member
/// may never come back under the same ID). Stored in the backend with the applied index.
package struct Membership: Sendable, Equatable, Codable {
    package private(set) var members: [Member] = []
    package private(set) var removed: Set<UInt64> = []
    /// etcd's downgrade job, kept with the members as etcd keeps it in its cluster bucket
    /// (nil: none enabled).
    package internal(set) var downgradeTarget: String?

    package init(members: [Member] = []) {
        self.members = members.sorted { $0.id < $1.id }
    }

    package subscript(id: UInt64) -> Member? {
        members.first { $0.id == id }
    }

    mutating func add(_ member: Member) {
        members.removeAll { $0.id == member.id }
        members.append(member)
        members.sort { $0.id < $1.id }
    }

    mutating func remove(_ id: UInt64) {
        members.removeAll { $0.id == id }
        removed.insert(id)
    }

    mutating func update(_ id: UInt64, _ change: (inout Member) -> Void) {
        guard let index = members.firstIndex(where: { $0.id == id }) else { return }
        change(&members[index])
    }

    /// Peer URLs by member ID: where the transport sends.
    var peers: [NodeID: [String]] {
        Dictionary(uniqueKeysWithValues: members.map { ($0.id, $0.peerURLs) })
    }

    /// The same bytes on every member for the same membership (backend hashes compare them):
    /// keys sorted, removed IDs in order.
    func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        // Encoding plain strings and integers cannot fail.
        return Array(try! encoder.encode(self))
    }

    private enum CodingKeys: String, CodingKey {
        case members, removed, downgradeTarget
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(members, forKey: .members)
        try container.encode(removed.sorted(), forKey: .removed)
        try container.encodeIfPresent(downgradeTarget, forKey: .downgradeTarget)
    }

    init(encoded bytes: [UInt8]) throws {
        self = try JSONDecoder().decode(Membership.self, from: Data(bytes))
    }
}

/// The cluster a new member bootstraps, from `--initial-cluster` and `--initial-cluster-token`.
package struct ClusterConfiguration: Sendable, Equatable {
    package var id: UInt64
    package var members: [Member]

    /// Parses `name=url[,name=url...]` (a name may repeat for several peer URLs).
    ///
    /// IDs are computed as etcd computes them, so a member bootstrapped with the same flags has
    /// the same member and cluster IDs under swift-etcd and etcd: a member's ID is the first 8
    /// bytes (big-endian) of SHA-1 over its sorted peer URLs joined, then the token; the
    /// cluster's ID is the same over the sorted member IDs as 8-byte big-endian values.
    package init(initialCluster: String, token: String) throws(ConfigurationError) {
        var urlsByName: [(name: String, urls: [String])] = []
        for entry in initialCluster.split(separator: ",", omittingEmptySubsequences: true) {
            let parts = entry.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw ConfigurationError("--initial-cluster: \"\(entry)\" is not name=url")
            }
            let name = String(parts[0])
            if let index = urlsByName.firstIndex(where: { $0.name == name }) {
                urlsByName[index].urls.append(String(parts[1]))
            } else {
                urlsByName.append((name, [String(parts[1])]))
            }
        }
        guard !urlsByName.isEmpty else { throw ConfigurationError("--initial-cluster is empty") }
        members = urlsByName.map { name, urls in
            Member(id: Self.memberID(peerURLs: urls, token: token), name: name, peerURLs: urls.sorted(), clientURLs: [])
        }
        var idBytes: [UInt8] = []
        for memberID in members.map(\.id).sorted() {
            withUnsafeBytes(of: memberID.bigEndian) { idBytes.append(contentsOf: $0) }
        }
        id = Self.firstWord(of: idBytes)
    }

    /// etcd's member ID: bootstrap members hash their peer URLs and the token; a member added
    /// later also hashes the time it was added (in Unix seconds), so re-adding gives a new ID.
    package static func memberID(peerURLs: [String], token: String, addedAt: Date? = nil) -> UInt64 {
        var text = peerURLs.sorted().joined() + token
        if let addedAt { text += String(Int64(addedAt.timeIntervalSince1970)) }
        return firstWord(of: Array(text.utf8))
    }

    /// The first 8 bytes of the SHA-1 of `bytes`, big-endian.
    private static func firstWord(of bytes: [UInt8]) -> UInt64 {
        Insecure.SHA1.hash(data: bytes).prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// The entries every founding member's log starts with, identical on all of them: one
    /// committed membership change per member, so members that join later learn the founding
    /// membership from the log like everything else (etcd bootstraps the same way).
    func bootstrapEntries() -> [Entry] {
        members.sorted { $0.id < $1.id }.enumerated().map { offset, member in
            let change = ConfChange(
                changes: [ConfChangeSingle(.addNode, member.id)],
                context: MembershipChangeContext(proposer: 0, requestID: 0, member: member).encoded())
            return Entry(term: 1, index: UInt64(offset) + 1, kind: .confChange, data: change.encoded())
        }
    }
}

/// What a membership change entry carries besides the Raft change: who proposed it (to answer
/// the client) and the member it adds, removes or promotes.
struct MembershipChangeContext: Codable, Equatable {
    var proposer: UInt64
    var requestID: UInt64
    var member: Member

    func encoded() -> [UInt8] { Array(try! JSONEncoder().encode(self)) }

    init(proposer: UInt64, requestID: UInt64, member: Member) {
        self.proposer = proposer
        self.requestID = requestID
        self.member = member
    }

    init(encoded bytes: [UInt8]) throws {
        self = try JSONDecoder().decode(Self.self, from: Data(bytes))
    }
}

/// A change to a member's attributes that Raft's membership does not see: its published name
/// and client URLs (sent by the member itself at start), or new peer URLs (`MemberUpdate`).
struct MemberAttributesUpdate: Codable, Equatable {
    var proposer: UInt64
    var requestID: UInt64
    var id: UInt64
    var name: String?
    var clientURLs: [String]?
    var peerURLs: [String]?

    func encoded() -> [UInt8] { Array(try! JSONEncoder().encode(self)) }

    init(proposer: UInt64, requestID: UInt64, id: UInt64, name: String? = nil, clientURLs: [String]? = nil, peerURLs: [String]? = nil) {
        self.proposer = proposer
        self.requestID = requestID
        self.id = id
        self.name = name
        self.clientURLs = clientURLs
        self.peerURLs = peerURLs
    }

    init(encoded bytes: [UInt8]) throws {
        self = try JSONDecoder().decode(Self.self, from: Data(bytes))
    }
}

/// A configuration problem that keeps the server from starting, with a message for the operator.
public struct ConfigurationError: Error, CustomStringConvertible, Equatable {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }

    /// A listener that could not be opened, in etcd's (Go's) words:
    /// `listen tcp 127.0.0.1:2379: bind: address already in use`.
    package static func cannotListen(_ network: String, _ address: String, _ error: any Error) -> ConfigurationError {
        guard let failure = error as? IOError, "\(failure)".hasPrefix("bind") else {
            return ConfigurationError("listen \(network) \(address): \(error)")
        }
        return ConfigurationError("listen \(network) \(address): bind: \(String(cString: strerror(failure.errnoCode)).lowercased())")
    }
}
