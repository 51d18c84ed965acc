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
        /// The revision that created the key in this generation.
        package var created: Revision
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

    package private(set) var generations: [Generation] = [Generation(version: 0, created: Revision(main: 0), revisions: [])]

    package init() {}

    /// The latest revision that wrote the key (a put or its deletion).
    package var modified: Revision? {
        generations.last(where: { !$0.revisions.isEmpty })?.revisions.last
    }

    /// Whether the key exists now (it has a live, non-empty last generation).
    package var isLive: Bool { !generations[generations.count - 1].revisions.isEmpty }

    /// Records a put at `revision`, which must be newer than every recorded one.
    package mutating func put(_ revision: Revision) {
        precondition(modified.map { $0 < revision } ?? true, "revision \(revision) not after \(modified!)")
        let last = generations.count - 1
        if generations[last].revisions.isEmpty { generations[last].created = revision }
        generations[last].revisions.append(revision)
        generations[last].version += 1
    }

    /// Re-records a stored put when rebuilding the index. The record's own version and create
    /// revision are authoritative: compaction may have removed the earlier puts.
    package mutating func restore(_ revision: Revision, createdMain: Int64, version: Int64) {
        put(revision)
        let last = generations.count - 1
        generations[last].version = version
        generations[last].created = Revision(main: createdMain)
    }

    /// Records the key's deletion at `revision`, ending the current generation.
    package mutating func tombstone(_ revision: Revision) {
        precondition(isLive, "tombstone of a deleted key")
        put(revision)
        generations.append(Generation(version: 0, created: Revision(main: 0), revisions: []))
    }

    /// Where the key stood at main revision `atMain`: nil if it did not exist then.
    package func snapshot(atMain: Int64) -> Snapshot? {
        for index in generations.indices.reversed() {
            let generation = generations[index]
            guard let first = generation.revisions.first, first.main <= atMain else { continue }
            // Every generation but the last ended with a tombstone.
            let ended = index < generations.count - 1
            if ended, generation.revisions.last!.main <= atMain { return nil }  // deleted by then
            // The newest revision at or before atMain.
            var newest = generation.revisions.count - 1
            while generation.revisions[newest].main > atMain { newest -= 1 }
            let newer = Int64(generation.revisions.count - 1 - newest)
            return Snapshot(modified: generation.revisions[newest], created: generation.created, version: generation.version - newer)
        }
        return nil
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
        // The first generation still alive after atMain (or the current one).
        var start = 0
        while start < generations.count - 1, let tombstone = generations[start].revisions.last, tombstone.main <= atMain {
            if tombstone.main == atMain { kept.insert(tombstone) }
            start += 1
        }
        var generation = generations[start]
        if let keepFrom = generation.revisions.lastIndex(where: { $0.main <= atMain }) {
            generation.revisions.removeFirst(keepFrom)
            kept.insert(generation.revisions[0])
        }
        generations[start] = generation
        generations.removeFirst(start)
        return !(generations.count == 1 && generations[0].revisions.isEmpty)
    }
}
