/// A point in the store's history.
///
/// `main` counts the store's write transactions: each Put, DeleteRange or Txn that changes
/// anything takes the next main revision. `sub` orders the changes within one of them (a txn
/// putting three keys writes sub revisions 0, 1 and 2).
package struct Revision: Hashable, Comparable, Sendable, CustomStringConvertible {
    package var main: Int64
    package var sub: Int64

    package init(main: Int64, sub: Int64 = 0) {
        self.main = main
        self.sub = sub
    }

    package static func < (lhs: Revision, rhs: Revision) -> Bool {
        (lhs.main, lhs.sub) < (rhs.main, rhs.sub)
    }

    package var description: String { "\(main).\(sub)" }
}
