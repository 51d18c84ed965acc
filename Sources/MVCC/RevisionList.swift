import Atomics
import Backend

/// The revisions of one generation of a key, oldest first, with an array's value semantics.
///
/// The store publishes a snapshot of its index after every applied batch, so the next batch
/// always appends to a history that a snapshot shares. An array would copy the whole history
/// then: a key rewritten 200,000 times without compaction cost 3 MiB of copying per batch
/// (etcd's `benchmark put`, whose default key space is one key, ran at a third of etcd's
/// speed). Here the newest copy of a list appends into the storage it shares with older
/// copies, which keep seeing only their own `count`; appends cost O(1) amortized.
///
/// Sendable because no slot of the shared storage is ever written twice or read before it is
/// written: a writer claims slot `n` by moving the storage's count from `n` to `n + 1`
/// atomically (so of two copies that both end at `n`, only one appends there; the other
/// copies), writes it, and only then makes a list whose `count` covers it. Another thread can
/// read slot `n` only through such a list, which reaches it through the synchronization that
/// passes any value between threads. (The storage, a `ManagedBuffer`, cannot be marked
/// Sendable itself.)
package struct RevisionList: @unchecked Sendable {
    /// Slots for a list of two or more revisions (nil for none or one).
    private var storage: RevisionStorage?
    /// The revision of a list of exactly one without storage: most keys are written once, and
    /// storage of their own would cost each 48 bytes more.
    private var single = Revision(main: 0)
    package private(set) var count: Int

    package init() {
        storage = nil
        count = 0
    }

    package init(_ revisions: some Collection<Revision>) {
        self.init()
        guard revisions.count > 1 else {
            if let only = revisions.first { append(only) }
            return
        }
        let storage = RevisionStorage.make(capacity: revisions.count)
        for (index, revision) in revisions.enumerated() { _ = storage.append(revision, at: index) }
        self.storage = storage
        count = revisions.count
    }

    /// Adds `revision` at the end; older copies of the list do not see it.
    package mutating func append(_ revision: Revision) {
        if count == 0 {
            single = revision
            count = 1
            return
        }
        if let storage, storage.append(revision, at: count) {
            count += 1
            return
        }
        // One revision so far, another copy already appended after `count`, or the storage is full.
        let grown = RevisionStorage.make(capacity: count * 2)
        for index in 0..<count { _ = grown.append(self[index], at: index) }
        _ = grown.append(revision, at: count)
        storage = grown
        count += 1
    }

    /// Drops the first `k` revisions (compaction), into storage of its own.
    package mutating func removeFirst(_ k: Int) {
        guard k > 0 else { return }
        self = RevisionList(dropFirst(k))
    }
}

extension RevisionList: RandomAccessCollection {
    package var startIndex: Int { 0 }
    package var endIndex: Int { count }

    package subscript(position: Int) -> Revision {
        precondition(position >= 0 && position < count, "revision index out of range")
        guard let storage else { return single }
        return storage[position]
    }
}

extension RevisionList: Equatable {
    package static func == (lhs: RevisionList, rhs: RevisionList) -> Bool {
        lhs.elementsEqual(rhs)
    }
}

extension RevisionList: ExpressibleByArrayLiteral {
    package init(arrayLiteral revisions: Revision...) {
        self.init(revisions)
    }
}

/// Append-only slots shared by the copies of a ``RevisionList``; the header counts the slots
/// claimed so far. Revisions are trivial values, so slots need no deinitialization.
final class RevisionStorage: ManagedBuffer<Int.AtomicRepresentation, Revision> {
    static func make(capacity: Int) -> RevisionStorage {
        // `create` allocates an instance of the class it is called on.
        unsafeDowncast(create(minimumCapacity: capacity) { _ in Int.AtomicRepresentation(0) }, to: RevisionStorage.self)
    }

    /// Writes `revision` at `index` when that is the next free slot: false when the storage is
    /// full or another copy of the list has already claimed it.
    func append(_ revision: Revision, at index: Int) -> Bool {
        guard index < capacity else { return false }
        let claimed = withUnsafeMutablePointerToHeader { header in
            UnsafeAtomic<Int>(at: header).compareExchange(expected: index, desired: index + 1, ordering: .relaxed).exchanged
        }
        guard claimed else { return false }
        withUnsafeMutablePointerToElements { ($0 + index).initialize(to: revision) }
        return true
    }

    subscript(index: Int) -> Revision {
        withUnsafeMutablePointerToElements { $0[index] }
    }
}
