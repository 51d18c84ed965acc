/// One revision of one key, as the store keeps it and as etcd's `mvccpb.KeyValue` carries it.
package struct KeyValue: Sendable, Hashable {
    package var key: [UInt8]
    package var value: [UInt8]
    /// Main revision of the put that created the key's current generation.
    package var createRevision: Int64
    /// Main revision of this change.
    package var modRevision: Int64
    /// Puts since creation, counting this one; 0 for a deletion.
    package var version: Int64
    /// Lease the key is attached to, 0 when none.
    package var lease: Int64

    package init(key: [UInt8], value: [UInt8], createRevision: Int64, modRevision: Int64, version: Int64, lease: Int64) {
        self.key = key
        self.value = value
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.version = version
        self.lease = lease
    }
}

/// One change a write made, in order: what watchers receive and what the backend stores.
package struct Change: Sendable, Hashable {
    package enum Kind: Sendable, Hashable {
        case put
        case delete
    }

    package var kind: Kind
    /// The revision the change was written at (`kv.modRevision` is its main part).
    package var revision: Revision
    /// For a put, the new record; for a delete, the tombstone: key and mod revision only.
    package var kv: KeyValue

    package init(kind: Kind, revision: Revision, kv: KeyValue) {
        self.kind = kind
        self.revision = revision
        self.kv = kv
    }

    /// Roughly the bytes the change occupies, for memory bounds.
    package var estimatedSize: Int { kv.key.count + kv.value.count + 48 }
}

/// Finds stored records by revision (the backend, plus changes not yet committed to it).
package protocol RevisionReader {
    /// The records at `revisions`, in the same order; nil where none is stored.
    func keyValues(at revisions: [Revision]) throws -> [KeyValue?]
}
