import EtcdServer
import GRPCWire

extension GRPCStatus {
    /// The gRPC status etcd answers each of its errors with: the one place codes are chosen.
    package init(_ error: EtcdError) {
        let code: Code =
            switch error {
            case .emptyKey, .keyNotFound, .valueProvided, .leaseProvided, .tooManyOperations, .duplicateKey,
                .requestTooLarge, .invalidSortOption:
                .invalidArgument
            case .compacted, .futureRevision, .leaseTTLTooLarge: .outOfRange
            case .leaseNotFound: .notFound
            case .stopped, .noLeader, .timeout, .timeoutDueToLeaderFail, .leaderChanged: .unavailable
            case .tooManyRequests: .resourceExhausted
            case .notLeader, .badLeaderTransferee, .leaseExists, .memberExists, .peerURLExists, .memberNotLearner, .learnerNotReady,
                .tooManyLearners, .notEnoughStartedMembers:
                .failedPrecondition
            case .leaderTransferTimeout, .notSupportedForLearner: .unavailable
            case .memberNotFound: .notFound
            case .memberBadURLs: .invalidArgument
            }
        self.init(code, error.description)
    }
}
