import Backend

/// The history of one key: the revisions at which it was written, grouped into generations.
///
/// A generation runs from the key's creation to its deletion (the tombstone, the generation's
/// last revision); writing a deleted key starts a new generation. The last generation is
/// empty while the key is deleted. Values live in the backend, found by revision.
package struct KeyIndex: Sendable, Equatable {
    package struct Generation: Sendable, Equatable {
        /// Puts in this generation so far (a key's `version`).
        package var version: Int64
        /// The main revision that created the key in this generation (etcd's create revision).
        package var createdMain: Int64
        /// Every revision still kept, oldest first; the last one is the tombstone when the
        /// generation has ended.
        package var revisions: RevisionList
    }

    /// Where a key stood at some revision.
    package struct Snapshot: Equatable, Sendable {
        package var modified: Revision
        package var created: Revision
        package var version: Int64
    }

    /// The generations that ended with a tombstone, oldest first: empty for most keys, so a
    /// key costs no array of its own (a one-element array cost about 80 bytes of heap).
    private var ended: [Generation] = []
    /// The generation being written: empty while the key is deleted.
    private var current = Generation(version: 0, createdMain: 0, revisions: [])

    package init() {}

    /// Every generation, oldest first; the last is the current one (empty while deleted). Built
    /// on each call: for tests and inspection, not for the write path.
    package var generations: [Generation] { ended + [current] }

    /// The latest revision that wrote the key (a put or its deletion).
    package var modified: Revision? {
        current.revisions.last ?? ended.last(where: { !$0.revisions.isEmpty })?.revisions.last
    }

    /// Whether the key exists now (it has a live, non-empty last generation).
    package var isLive: Bool { !current.revisions.isEmpty }

    /// Records a put at `revision`, which must be newer than every recorded one.
    package mutating func put(_ revision: Revision) {
        precondition(modified.map { $0 < revision } ?? true, "revision \(revision) not after \(modified!)")
        if current.revisions.isEmpty { current.createdMain = revision.main }
        current.revisions.append(revision)
        current.version += 1
    }

    /// Re-records a stored put when rebuilding the index. The record's own version and create
    /// revision are authoritative: compaction may have removed the earlier puts.
    package mutating func restore(_ revision: Revision, createdMain: Int64, version: Int64) {
        put(revision)
        current.version = version
        current.createdMain = createdMain
    }

    /// Records the key's deletion at `revision`, ending the current generation.
    package mutating func tombstone(_ revision: Revision) {
        precondition(isLive, "tombstone of a deleted key")
        put(revision)
        ended.append(current)
        current = Generation(version: 0, createdMain: 0, revisions: [])
    }

    /// Where the key stood at main revision `atMain`: nil if it did not exist then.
    package func snapshot(atMain: Int64) -> Snapshot? {
        switch Self.read(current, ended: false, atMain: atMain) {
        case .found(let snapshot): return snapshot
        case .deleted: return nil
        case .later: break
        }
        for generation in ended.reversed() {
            switch Self.read(generation, ended: true, atMain: atMain) {
            case .found(let snapshot): return snapshot
            case .deleted: return nil
            case .later: continue
            }
        }
        return nil
    }

    private enum Reading {
        /// The generation began after the revision read.
        case later
        /// It had ended (been deleted) by then.
        case deleted
        case found(Snapshot)
    }

    /// What one generation says about the key at main revision `atMain`.
    private static func read(_ generation: Generation, ended: Bool, atMain: Int64) -> Reading {
        guard let first = generation.revisions.first, first.main <= atMain else { return .later }
        if ended, generation.revisions.last!.main <= atMain { return .deleted }
        // The newest revision at or before atMain.
        var newest = generation.revisions.count - 1
        while generation.revisions[newest].main > atMain { newest -= 1 }
        let newer = Int64(generation.revisions.count - 1 - newest)
        return .found(Snapshot(modified: generation.revisions[newest], created: Revision(main: generation.createdMain), version: generation.version - newer))
    }

    /// Drops history older than main revision `atMain`, keeping, for reads at `atMain`, the
    /// newest revision at or before it (unless that is a tombstone, which goes with its
    /// generation). Revisions at or before `atMain` that stay are added to `kept`; the
    /// backend removes the others. Returns false when nothing is left (drop the key).
    ///
    /// A deletion at exactly `atMain` leaves the index but stays in `kept`, so a watcher
    /// starting at the compaction revision (which etcd allows) still receives it. The next
    /// compaction removes it from the backend.
    package mutating func compact(atMain: Int64, kept: inout Set<Revision>) -> Bool {
        // The ended generations wholly at or before atMain go, tombstone and all.
        var start = 0
        while start < ended.count, let tombstone = ended[start].revisions.last, tombstone.main <= atMain {
            if tombstone.main == atMain { kept.insert(tombstone) }
            start += 1
        }
        ended.removeFirst(start)
        // In the first generation left, the newest revision at or before atMain stays.
        if ended.isEmpty {
            Self.dropHistory(of: &current, before: atMain, kept: &kept)
        } else {
            Self.dropHistory(of: &ended[0], before: atMain, kept: &kept)
        }
        return !(ended.isEmpty && current.revisions.isEmpty)
    }

    private static func dropHistory(of generation: inout Generation, before atMain: Int64, kept: inout Set<Revision>) {
        guard let keepFrom = generation.revisions.lastIndex(where: { $0.main <= atMain }) else { return }
        generation.revisions.removeFirst(keepFrom)
        kept.insert(generation.revisions[0])
    }
}
