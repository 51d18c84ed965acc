/// A point in the store's history.
///
/// `main` counts the store's write transactions: each Put, DeleteRange or Txn that changes
/// anything takes the next main revision. `sub` orders the changes within one of them (a txn
/// putting three keys writes sub revisions 0, 1 and 2).
public struct Revision: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var main: Int64
    public var sub: Int64

    public init(main: Int64, sub: Int64 = 0) {
        self.main = main
        self.sub = sub
    }

    public static func < (lhs: Revision, rhs: Revision) -> Bool {
        (lhs.main, lhs.sub) < (rhs.main, rhs.sub)
    }

    public var description: String { "\(main).\(sub)" }
}
