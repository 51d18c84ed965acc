/// One revision of one key, as the store keeps it and as etcd's `mvccpb.KeyValue` carries it.
public struct KeyValue: Sendable, Hashable {
    public var key: [UInt8]
    public var value: [UInt8]
    /// Main revision of the put that created the key's current generation.
    public var createRevision: Int64
    /// Main revision of this change.
    public var modRevision: Int64
    /// Puts since creation, counting this one; 0 for a deletion.
    public var version: Int64
    /// Lease the key is attached to, 0 when none.
    public var lease: Int64

    public init(key: [UInt8], value: [UInt8], createRevision: Int64, modRevision: Int64, version: Int64, lease: Int64) {
        self.key = key
        self.value = value
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.version = version
        self.lease = lease
    }
}

/// One change a write made, in order: what watchers receive and what the backend stores.
public struct Change: Sendable, Hashable {
    public enum Kind: Sendable, Hashable {
        case put
        case delete
    }

    public var kind: Kind
    /// The revision the change was written at (`kv.modRevision` is its main part).
    public var revision: Revision
    /// For a put, the new record; for a delete, the tombstone: key and mod revision only.
    public var kv: KeyValue

    package init(kind: Kind, revision: Revision, kv: KeyValue) {
        self.kind = kind
        self.revision = revision
        self.kv = kv
    }

    /// Roughly the bytes the change occupies, for memory bounds.
    public var estimatedSize: Int { kv.key.count + kv.value.count + 48 }
}

/// Finds stored records by revision (the backend, plus changes not yet committed to it).
public protocol RevisionReader {
    /// The records at `revisions`, in the same order; nil where none is stored.
    func keyValues(at revisions: [Revision]) throws -> [KeyValue?]
}
