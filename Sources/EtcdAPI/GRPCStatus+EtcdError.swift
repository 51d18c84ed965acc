import Auth
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
            case .tooManyRequests, .noSpace: .resourceExhausted
            case .notLeader, .badLeaderTransferee, .leaseExists, .memberExists, .peerURLExists, .memberNotLearner, .learnerNotReady,
                .tooManyLearners, .notEnoughStartedMembers:
                .failedPrecondition
            case .leaderTransferTimeout, .notSupportedForLearner: .unavailable
            case .memberNotFound: .notFound
            case .memberBadURLs: .invalidArgument
            case .corrupt: .dataLoss
            case .wrongDowngradeVersionFormat, .invalidDowngradeTargetVersion: .invalidArgument
            case .downgradeInProgress, .noInflightDowngrade: .failedPrecondition
            case .auth(let error): Self.code(error)
            }
        self.init(code, error.description)
    }

    package init(_ error: AuthError) {
        self.init(EtcdError.auth(error))
    }

    /// etcd's codes for auth errors; the two it never mapped (a login of a certificate-only
    /// user, a bare "permission not given") go out as UNKNOWN, as etcd sends them.
    private static func code(_ error: AuthError) -> Code {
        switch error {
        case .userEmpty, .roleEmpty, .authFailed, .invalidAuthManagement, .oldRevision: .invalidArgument
        case .permissionDenied: .permissionDenied
        case .invalidAuthToken: .unauthenticated
        case .rootUserNotExist, .rootRoleNotExist, .userAlreadyExists, .userNotFound, .roleAlreadyExists, .roleNotFound,
            .roleNotGranted, .permissionNotGranted, .notEnabled:
            .failedPrecondition
        case .noPasswordUser, .verifyOnly: .unknown
        case .permissionNotGiven: .invalidArgument
        }
    }
}
