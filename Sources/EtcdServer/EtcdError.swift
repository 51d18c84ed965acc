import Auth
import MVCC

/// The errors a member answers requests with. Messages are etcd's exactly: clients match on
/// them. `EtcdAPI` maps each to its gRPC code in one place.
package enum EtcdError: Error, Equatable, Sendable, CustomStringConvertible, Codable {
    case emptyKey
    case keyNotFound
    case valueProvided
    case leaseProvided
    case tooManyOperations
    case duplicateKey
    case compacted
    case futureRevision
    case leaseNotFound
    case leaseExists
    case leaseTTLTooLarge
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
    case notSupportedForLearner
    case memberExists
    case peerURLExists
    case memberNotFound
    case memberBadURLs
    case memberNotLearner
    case learnerNotReady
    case tooManyLearners
    case notEnoughStartedMembers
    case noSpace
    /// The CORRUPT alarm is raised: a member's data differs from its peers'.
    case corrupt
    case wrongDowngradeVersionFormat
    case invalidDowngradeTargetVersion
    case downgradeInProgress
    case noInflightDowngrade
    case auth(AuthError)

    package var description: String {
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
        case .leaseExists: "etcdserver: lease already exists"
        case .leaseTTLTooLarge: "etcdserver: too large lease TTL"
        case .requestTooLarge: "etcdserver: request is too large"
        case .invalidSortOption: "etcdserver: invalid sort option"
        case .stopped: "etcdserver: server stopped"
        case .noLeader: "etcdserver: no leader"
        case .timeout: "etcdserver: request timed out"
        case .timeoutDueToLeaderFail: "etcdserver: request timed out, possibly due to previous leader failure"
        case .leaderChanged: "etcdserver: leader changed"
        case .noSpace: "etcdserver: mvcc: database space exceeded"
        case .corrupt: "etcdserver: corrupt cluster"
        case .wrongDowngradeVersionFormat: "etcdserver: wrong downgrade target version format"
        case .invalidDowngradeTargetVersion: "etcdserver: invalid downgrade target version"
        case .downgradeInProgress: "etcdserver: cluster has a downgrade job in progress"
        case .noInflightDowngrade: "etcdserver: no inflight downgrade job"
        case .tooManyRequests: "etcdserver: too many requests"
        case .notLeader: "etcdserver: not leader"
        case .badLeaderTransferee: "etcdserver: bad leader transferee"
        case .leaderTransferTimeout: "etcdserver: request timed out, leader transfer took too long"
        case .notSupportedForLearner: "etcdserver: rpc not supported for learner"
        case .memberExists: "etcdserver: member ID already exist"
        case .peerURLExists: "etcdserver: Peer URLs already exists"
        case .memberNotFound: "etcdserver: member not found"
        case .memberBadURLs: "etcdserver: given member URLs are invalid"
        case .memberNotLearner: "etcdserver: can only promote a learner member"
        case .learnerNotReady: "etcdserver: can only promote a learner member which is in sync with leader"
        case .tooManyLearners: "etcdserver: too many learner members in cluster"
        case .notEnoughStartedMembers: "etcdserver: re-configuration failed due to not enough started members"
        case .auth(let error): error.description
        }
    }

    /// A proposal that failed for want of consensus (etcd's `etcd_server_proposals_failed_total`),
    /// not for what it asked.
    package var isConsensusFailure: Bool {
        switch self {
        case .stopped, .noLeader, .timeout, .timeoutDueToLeaderFail, .leaderChanged, .tooManyRequests: true
        default: false
        }
    }

    init(_ error: MVCCError) {
        switch error {
        case .compacted: self = .compacted
        case .futureRevision: self = .futureRevision
        }
    }
}
