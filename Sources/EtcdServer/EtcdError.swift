import MVCC

/// The errors a member answers requests with. Messages are etcd's exactly: clients match on
/// them. `EtcdAPI` maps each to its gRPC code in one place.
public enum EtcdError: Error, Equatable, Sendable, CustomStringConvertible {
    case emptyKey
    case keyNotFound
    case valueProvided
    case leaseProvided
    case tooManyOperations
    case duplicateKey
    case compacted
    case futureRevision
    case leaseNotFound
    case requestTooLarge
    case invalidSortOption
    case stopped
    case noLeader
    case timeout
    case timeoutDueToLeaderFail
    case leaderChanged
    case tooManyRequests
    case notLeader
    case badLeaderTransferee
    case leaderTransferTimeout

    public var description: String {
        switch self {
        case .emptyKey: "etcdserver: key is not provided"
        case .keyNotFound: "etcdserver: key not found"
        case .valueProvided: "etcdserver: value is provided"
        case .leaseProvided: "etcdserver: lease is provided"
        case .tooManyOperations: "etcdserver: too many operations in txn request"
        case .duplicateKey: "etcdserver: duplicate key given in txn request"
        case .compacted: "etcdserver: mvcc: required revision has been compacted"
        case .futureRevision: "etcdserver: mvcc: required revision is a future revision"
        case .leaseNotFound: "etcdserver: requested lease not found"
        case .requestTooLarge: "etcdserver: request is too large"
        case .invalidSortOption: "etcdserver: invalid sort option"
        case .stopped: "etcdserver: server stopped"
        case .noLeader: "etcdserver: no leader"
        case .timeout: "etcdserver: request timed out"
        case .timeoutDueToLeaderFail: "etcdserver: request timed out, possibly due to previous leader failure"
        case .leaderChanged: "etcdserver: leader changed"
        case .tooManyRequests: "etcdserver: too many requests"
        case .notLeader: "etcdserver: not leader"
        case .badLeaderTransferee: "etcdserver: bad leader transferee"
        case .leaderTransferTimeout: "etcdserver: request timed out, leader transfer took too long"
        }
    }

    init(_ error: MVCCError) {
        switch error {
        case .compacted: self = .compacted
        case .futureRevision: self = .futureRevision
        }
    }
}
