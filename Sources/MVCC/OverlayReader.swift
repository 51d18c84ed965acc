/// Reads records written but not yet committed (`pending`) before falling back to `base`.
///
/// The apply loop uses one over a whole batch, so a write sees the writes before it in the
/// batch although the backend commits the batch only at its end.
public struct OverlayReader: RevisionReader {
    public var pending: [Revision: KeyValue]
    public let base: any RevisionReader

    public init(pending: [Revision: KeyValue] = [:], base: any RevisionReader) {
        self.pending = pending
        self.base = base
    }

    public mutating func add(_ changes: [Change]) {
        for change in changes where change.kind == .put { pending[change.revision] = change.kv }
    }

    public func keyValues(at revisions: [Revision]) throws -> [KeyValue?] {
        var found = revisions.map { pending[$0] }
        let missing = found.indices.filter { found[$0] == nil }
        guard !missing.isEmpty else { return found }
        let fetched = try base.keyValues(at: missing.map { revisions[$0] })
        for (slot, record) in zip(missing, fetched) { found[slot] = record }
        return found
    }
}
