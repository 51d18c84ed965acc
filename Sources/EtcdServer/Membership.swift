import Crypto
import Foundation

/// One member of the cluster as configured at bootstrap.
public struct Member: Sendable, Equatable {
    public var id: UInt64
    public var name: String
    public var peerURLs: [String]
    public var clientURLs: [String]
    public var isLearner = false
}

/// The cluster a member belongs to, from `--initial-cluster` and `--initial-cluster-token`.
public struct ClusterConfiguration: Sendable, Equatable {
    public var id: UInt64
    public var members: [Member]

    /// Parses `name=url[,name=url...]` (a name may repeat for several peer URLs).
    ///
    /// IDs are computed as etcd computes them, so a member bootstrapped with the same flags has
    /// the same member and cluster IDs under swift-etcd and etcd: a member's ID is the first 8
    /// bytes (big-endian) of SHA-1 over its sorted peer URLs joined, then the token; the
    /// cluster's ID is the same over the sorted member IDs as 8-byte big-endian values.
    public init(initialCluster: String, token: String) throws(ConfigurationError) {
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
            let sorted = urls.sorted()
            return Member(id: Self.firstWord(of: Array((sorted.joined() + token).utf8)), name: name, peerURLs: sorted, clientURLs: [])
        }
        var idBytes: [UInt8] = []
        for memberID in members.map(\.id).sorted() {
            withUnsafeBytes(of: memberID.bigEndian) { idBytes.append(contentsOf: $0) }
        }
        id = Self.firstWord(of: idBytes)
    }

    /// The first 8 bytes of the SHA-1 of `bytes`, big-endian.
    private static func firstWord(of bytes: [UInt8]) -> UInt64 {
        Insecure.SHA1.hash(data: bytes).prefix(8).reduce(0) { $0 << 8 | UInt64($1) }
    }
}

/// A configuration problem that keeps the server from starting, with a message for the operator.
public struct ConfigurationError: Error, CustomStringConvertible, Equatable {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}
