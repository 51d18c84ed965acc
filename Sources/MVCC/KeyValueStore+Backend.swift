import Backend
import Foundation
import GRDB

extension KeyValueStore {
    /// Rebuilds the store from the backend: replays every stored change into the key index.
    package init(restoringFrom backend: SQLiteBackend) throws {
        self.init()
        try backend.forEachChangeWithoutValue { change in
            restore(change)
        }
        let stored = try backend.meta(.revision) ?? 1
        restoreCounters(revision: max(stored, revision), compacted: try backend.meta(.compactedRevision) ?? -1)
    }
}
