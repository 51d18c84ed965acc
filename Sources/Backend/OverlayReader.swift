/// The records of one applied batch the backend has not committed yet.
package struct UncommittedLayer: Sendable {
    /// The newest revision the batch made (the store's revision after it): its records' main
    /// revisions lie after the previous layer's `through` and at or before this.
    package let through: Int64
    package let records: [Revision: KeyValue]

    package init(through: Int64, records: [Revision: KeyValue]) {
        self.through = through
        self.records = records
    }
}

/// Reads records written but not yet committed before falling back to `base`: `pending`, the
/// batch being applied, and `layers`, earlier batches whose backend commit has not landed.
///
/// The apply loop uses one over a whole batch, so a write sees the writes before it in the
/// batch although the backend commits the batch only later. Layers are in revision order, so a
/// revision is looked up in the one layer that can hold it: the backend commits in intervals
/// (``UncommittedLayer``s pile up between commits), and a read of an older record must not
/// search them all.
package struct OverlayReader: RevisionReader {
    package var pending: [Revision: KeyValue]
    package let layers: [UncommittedLayer]
    package let base: any RevisionReader

    package init(pending: [Revision: KeyValue] = [:], layers: [UncommittedLayer] = [], base: any RevisionReader) {
        self.pending = pending
        self.layers = layers
        self.base = base
    }

    package mutating func add(_ changes: [Change]) {
        for change in changes where change.kind == .put { pending[change.revision] = change.kv }
    }

    package func keyValues(at revisions: [Revision]) throws -> [KeyValue?] {
        // A revision is written once, so at most one layer holds it.
        var found = revisions.map { revision in pending[revision] ?? layer(holding: revision.main)?.records[revision] }
        let missing = found.indices.filter { found[$0] == nil }
        guard !missing.isEmpty else { return found }
        let fetched = try base.keyValues(at: missing.map { revisions[$0] })
        for (slot, record) in zip(missing, fetched) { found[slot] = record }
        return found
    }

    /// The first layer whose batch made revisions up to `main` or later: the only one that may
    /// hold a record of `main` (nil when `main` is newer than every layer).
    private func layer(holding main: Int64) -> UncommittedLayer? {
        var low = 0
        var high = layers.count
        while low < high {
            let middle = (low + high) / 2
            if layers[middle].through < main { low = middle + 1 } else { high = middle }
        }
        return low < layers.count ? layers[low] : nil
    }
}
