/// Why a read or compaction cannot be served; messages are etcd's.
package enum MVCCError: Error, Equatable, Sendable, CustomStringConvertible {
    case compacted
    case futureRevision

    package var description: String {
        switch self {
        case .compacted: "mvcc: required revision has been compacted"
        case .futureRevision: "mvcc: required revision is a future revision"
        }
    }
}
