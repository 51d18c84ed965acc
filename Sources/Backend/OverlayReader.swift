/// Reads records written but not yet committed before falling back to `base`: `pending`, the
/// batch being applied, and `layers`, earlier batches whose backend commit has not landed.
///
/// The apply loop uses one over a whole batch, so a write sees the writes before it in the
/// batch although the backend commits the batch only later.
package struct OverlayReader: RevisionReader {
    package var pending: [Revision: KeyValue]
    package let layers: [[Revision: KeyValue]]
    package let base: any RevisionReader

    package init(pending: [Revision: KeyValue] = [:], layers: [[Revision: KeyValue]] = [], base: any RevisionReader) {
        self.pending = pending
        self.layers = layers
        self.base = base
    }

    package mutating func add(_ changes: [Change]) {
        for change in changes where change.kind == .put { pending[change.revision] = change.kv }
    }

    package func keyValues(at revisions: [Revision]) throws -> [KeyValue?] {
        // A revision is written once, so at most one layer holds it.
        var found = revisions.map { revision in pending[revision] ?? layers.lazy.compactMap { $0[revision] }.first }
        let missing = found.indices.filter { found[$0] == nil }
        guard !missing.isEmpty else { return found }
        let fetched = try base.keyValues(at: missing.map { revisions[$0] })
        for (slot, record) in zip(missing, fetched) { found[slot] = record }
        return found
    }
}
