import Logging

/// A discovery service a new member registers with and learns its initial cluster from:
/// `--discovery <url>` (``URLDiscovery``) or `--discovery-endpoints` (``V3Discovery``).
protocol ClusterDiscovery: Sendable {
    /// The cluster token the members derive their IDs from.
    var token: String { get }
    /// What etcd logs as it starts this kind of discovery.
    func announce(_ logger: Logger)
    /// Registers the member `memberID` (described by `entry`, `name=peer-url,…`), waits for
    /// the others and returns the `--initial-cluster` they make.
    func join(memberID: UInt64, entry: String, logger: Logger) async throws(DiscoveryFailure) -> String
}

/// What stops a discovery (`--discovery` or `--discovery-endpoints`), worded as etcd words it.
public struct DiscoveryFailure: Error, CustomStringConvertible, Equatable {
    public var description: String

    static let sizeNotFound = DiscoveryFailure(description: "discovery: size key not found")
    static let badSizeKey = DiscoveryFailure(description: "discovery: size key is bad")
    static let duplicateID = DiscoveryFailure(description: "discovery: found duplicate id")
    static let duplicateName = DiscoveryFailure(description: "discovery: found duplicate name")
    static let fullCluster = DiscoveryFailure(description: "discovery: cluster is full")
    static let tooManyRetries = DiscoveryFailure(description: "discovery: too many retries")
    static let badEndpoint = DiscoveryFailure(description: "discovery: bad discovery endpoint")
    static let invalidPeerURL = DiscoveryFailure(description: "discovery: invalid peer URL")
}

/// etcd's retry schedule for a discovery service that cannot be reached: 2 s, 4 s, 8 s… (at
/// most 256 s); after `retries` waits the discovery stops with `too many retries` (etcd
/// retries 2^32 times).
struct DiscoveryBackoff {
    let retries: Int
    private var attempts = 0

    init(retries: Int) { self.retries = retries }

    /// Waits before the next attempt at `step`.
    mutating func wait(step: String, logger: Logger) async throws(DiscoveryFailure) {
        guard attempts < retries else { throw .tooManyRetries }
        attempts += 1
        let backoff = Duration.seconds(1 << min(attempts, 8))
        logger.warning("retry connecting to discovery service", metadata: ["reason": "\(step)", "backoff": "\(backoff)"])
        try? await Task.sleep(for: backoff)
    }
}
