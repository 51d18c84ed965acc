import Backend
import Testing

@testable import MVCC

/// Keeps every record by revision, as the backend will.
final class MemoryBackend: RevisionReader {
    var records: [Revision: KeyValue] = [:]

    func keyValues(at revisions: [Revision]) -> [KeyValue?] { revisions.map { records[$0] } }

    func apply(_ changes: [Change]) {
        for change in changes { records[change.revision] = change.kv }
    }

    func remove(atOrBefore main: Int64, keeping kept: Set<Revision>) {
        records = records.filter { $0.key.main > main || kept.contains($0.key) }
    }
}

/// A store and its backend, driven with text keys.
struct Harness {
    var store = KeyValueStore()
    let backend = MemoryBackend()

    @discardableResult
    mutating func put(_ key: String, _ value: String, lease: Int64 = 0) -> KeyValue {
        let (record, changes) = store.write(reader: backend) { $0.put(bytes(key), value: bytes(value), lease: lease) }
        backend.apply(changes)
        return record
    }

    @discardableResult
    mutating func delete(_ key: String, end: String? = nil) throws -> [KeyValue] {
        let (deleted, changes) = try store.write(reader: backend) { try $0.delete(bytes(key), end: end.map(bytes)) }
        backend.apply(changes)
        return deleted
    }

    func get(_ key: String, end: String? = nil, _ options: KeyValueStore.RangeOptions = .init()) throws -> KeyValueStore.RangeResult {
        try store.range(bytes(key), end: end.map(bytes), options: options, reader: backend)
    }

    /// Keys and values of a range, as text.
    func pairs(_ key: String, end: String? = nil, _ options: KeyValueStore.RangeOptions = .init()) throws -> [String] {
        try get(key, end: end, options).kvs.map { "\(text($0.key))=\(text($0.value))" }
    }

    mutating func compact(_ main: Int64) throws {
        let kept = try store.compact(atMain: main)
        backend.remove(atOrBefore: main, keeping: kept)
    }
}

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

@Suite("KeyValueStore")
struct KeyValueStoreTests {
    @Test func revisionsStartAtOneAndEachWriteTakesTheNext() {
        var h = Harness()
        #expect(h.store.revision == 1)
        #expect(h.put("foo", "bar") == KeyValue(key: bytes("foo"), value: bytes("bar"), createRevision: 2, modRevision: 2, version: 1, lease: 0))
        #expect(h.put("foo", "bar2", lease: 7) == KeyValue(key: bytes("foo"), value: bytes("bar2"), createRevision: 2, modRevision: 3, version: 2, lease: 7))
        #expect(h.store.revision == 3)
    }

    @Test func historyReadsAndCompactionFollowEtcd() throws {
        // history.txt: put h 1, put h 2, put h 3, del h, put h 5 -> revisions 2...6.
        var h = Harness()
        for value in ["1", "2", "3"] { h.put("h", value) }
        #expect(try h.delete("h").map(\.modRevision) == [4])
        h.put("h", "5")
        #expect(try h.get("h").kvs == [KeyValue(key: bytes("h"), value: bytes("5"), createRevision: 6, modRevision: 6, version: 1, lease: 0)])
        #expect(try h.pairs("h", .init(revision: 3)) == ["h=2"])
        #expect(try h.get("h", .init(revision: 3)).kvs.first?.version == 2)
        #expect(try h.get("h", .init(revision: 5)).count == 0)
        #expect(try h.get("h", .init(revision: 4)).kvs.first?.modRevision == 4)

        try h.compact(3)
        #expect(throws: MVCCError.compacted) { try h.get("h", .init(revision: 2)) }
        #expect(try h.pairs("h", .init(revision: 3)) == ["h=2"])
        #expect(throws: MVCCError.compacted) { try h.compact(2) }
        #expect(throws: MVCCError.compacted) { try h.compact(3) }
        #expect(throws: MVCCError.futureRevision) { try h.compact(100) }
        #expect(throws: MVCCError.futureRevision) { try h.get("h", .init(revision: 7)) }
        #expect(try h.get("h", .init(revision: 5)).count == 0)
        #expect(try h.pairs("h") == ["h=5"])
        // Revision 2 (h=1) is gone from the backend; 3 (the newest at the compaction point) stays.
        #expect(h.backend.records[Revision(main: 2)] == nil)
        #expect(h.backend.records[Revision(main: 3)] != nil)
    }

    @Test func aFreshStoreCompactsAtZeroOnce() throws {
        var h = Harness()
        #expect(throws: Never.self) { try h.compact(0) }
        #expect(throws: MVCCError.compacted) { try h.compact(0) }
    }

    @Test func rangeSelectsPrefixesFromKeysLimitsAndCounts() throws {
        // kv.txt: put a 1, put b 2, put c 3, put c/d 4.
        var h = Harness()
        for (key, value) in [("a", "1"), ("b", "2"), ("c", "3"), ("c/d", "4")] { h.put(key, value) }
        #expect(try h.pairs("c", end: "d") == ["c=3", "c/d=4"])
        #expect(try h.pairs("b", end: "\u{0}") == ["b=2", "c=3", "c/d=4"])
        #expect(try h.pairs("a", end: "c") == ["a=1", "b=2"])
        let limited = try h.get("\u{0}", end: "\u{0}", .init(limit: 2))
        #expect(limited.kvs.map { text($0.key) } == ["a", "b"])
        #expect(limited.count == 4)
        let counted = try h.get("\u{0}", end: "\u{0}", .init(countOnly: true))
        #expect(counted.kvs.isEmpty)
        #expect(counted.count == 4)
        #expect(try h.get("d", end: "a").count == 0)
        #expect(try h.get("missing").count == 0)
    }

    @Test func deleteRangeTakesOneRevisionWithSubRevisions() throws {
        var h = Harness()
        for key in ["c", "c/d", "c/e"] { h.put(key, "v") }
        let (deleted, changes) = try h.store.write(reader: h.backend) { try $0.delete(bytes("c"), end: bytes("d")) }
        h.backend.apply(changes)
        #expect(deleted.map { text($0.key) } == ["c", "c/d", "c/e"])
        #expect(changes.map(\.revision) == [Revision(main: 5, sub: 0), Revision(main: 5, sub: 1), Revision(main: 5, sub: 2)])
        #expect(changes.allSatisfy { $0.kind == .delete && $0.kv.version == 0 && $0.kv.createRevision == 0 })
        #expect(h.store.revision == 5)
        // Deleting nothing changes nothing and takes no revision.
        #expect(try h.delete("c", end: "d").isEmpty)
        #expect(h.store.revision == 5)
    }

    @Test func aWriteSeesItsOwnChanges() throws {
        var h = Harness()
        h.put("k1", "v1")
        let (seen, changes) = try h.store.write(reader: h.backend) { writer -> [String] in
            writer.put(bytes("k1"), value: bytes("v1b"), lease: 0)
            writer.put(bytes("k2"), value: bytes("new"), lease: 0)
            try writer.delete(bytes("k1"), end: nil)
            writer.put(bytes("k1"), value: bytes("again"), lease: 0)
            return try writer.range(bytes("k"), end: bytes("l")).kvs.map { "\(text($0.key))=\(text($0.value))@\($0.modRevision)v\($0.version)" }
        }
        h.backend.apply(changes)
        #expect(seen == ["k1=again@3v1", "k2=new@3v1"])
        #expect(changes.map(\.revision.sub) == [0, 1, 2, 3])
        #expect(h.store.revision == 3)
        #expect(try h.get("k1").kvs.first?.createRevision == 3)
    }

    /// A write that throws leaves the store as it was, though it changed the index before
    /// throwing: a key it added reads as absent, one it rewrote or deleted as before.
    @Test func aWriteThatFailsHalfwayChangesNothing() throws {
        struct Refused: Error {}
        var h = Harness()
        h.put("kept", "1")
        h.put("gone", "1")
        let before = try h.pairs("\u{0}", end: "\u{0}")
        #expect(throws: Refused.self) {
            try h.store.write(reader: h.backend) { writer in
                writer.put(bytes("kept"), value: bytes("2"), lease: 0)
                writer.put(bytes("new"), value: bytes("1"), lease: 0)
                try writer.delete(bytes("gone"), end: nil)
                throw Refused()
            }
        }
        #expect(h.store.revision == 3)
        #expect(try h.pairs("\u{0}", end: "\u{0}") == before)
        #expect(try h.get("new").count == 0)
        #expect(h.store.liveKeyCount == 2)
        let kept = h.put("kept", "3")
        #expect(kept.modRevision == 4 && kept.createRevision == 2 && kept.version == 2)
        let new = h.put("new", "2")
        #expect(new.createRevision == 5 && new.version == 1)
        try h.compact(5)
        #expect(try h.pairs("\u{0}", end: "\u{0}") == ["gone=1", "kept=3", "new=2"])
    }

    @Test func compactionForgetsKeysDeletedBeforeIt() throws {
        var h = Harness()
        h.put("a", "1")
        h.put("a", "2")
        h.put("b", "1")
        try h.delete("b")
        try h.compact(5)
        #expect(h.store.index.count == 1)
        // The deletion at the compaction revision stays for watchers starting there.
        #expect(Set(h.backend.records.keys) == [Revision(main: 3), Revision(main: 5)])
        #expect(try h.pairs("\u{0}", end: "\u{0}") == ["a=2"])
        h.put("c", "1")
        try h.compact(6)
        #expect(Set(h.backend.records.keys) == [Revision(main: 3), Revision(main: 6)])
    }

    @Test func compactingAtTheNewestRevisionKeepsEveryLiveKeyReadable() throws {
        var h = Harness()
        h.put("a", "1")
        h.put("a", "2")
        h.put("b", "1")
        try h.delete("b")
        h.put("b", "again")
        try h.compact(h.store.revision)
        #expect(try h.pairs("\u{0}", end: "\u{0}") == ["a=2", "b=again"])
        #expect(try h.get("b").kvs.first?.createRevision == 6)
        #expect(Set(h.backend.records.keys) == [Revision(main: 3), Revision(main: 6)])
        #expect(throws: MVCCError.compacted) { try h.get("a", .init(revision: 5)) }
        #expect(throws: MVCCError.compacted) { try h.compact(h.store.revision) }
        // Writing after compacting everything continues the revisions.
        #expect(h.put("a", "3").modRevision == 7)
        #expect(h.put("a", "4").version == 4)
    }

    @Test func aRecordCompactedAwayUnderAReaderIsCompactedNotACrash() throws {
        var h = Harness()
        h.put("k", "old")
        let snapshot = h.store
        h.put("k", "new")
        try h.compact(h.store.revision)
        #expect(throws: MVCCError.compacted) { try snapshot.range(bytes("k"), end: nil, reader: h.backend) }
        #expect(try h.pairs("k") == ["k=new"])
    }

    @Test func copiesOfTheStoreAreSnapshots() throws {
        var h = Harness()
        h.put("x", "old")
        let snapshot = h.store
        h.put("x", "new")
        h.put("y", "added")
        #expect(try snapshot.range(bytes("\u{0}"), end: [0], reader: h.backend).kvs.map { text($0.value) } == ["old"])
        #expect(try h.pairs("\u{0}", end: "\u{0}") == ["x=new", "y=added"])
    }

    /// A hot key's revisions are shared between the store and its snapshots (appends do not
    /// copy them): every snapshot keeps reading its own version of the key.
    @Test func snapshotsOfAKeyRewrittenOftenKeepTheirOwnHistory() throws {
        var h = Harness()
        var snapshots: [(store: KeyValueStore, puts: Int64)] = []
        for n in Int64(1)...300 {
            h.put("hot", "v\(n)")
            if n % 37 == 0 { snapshots.append((h.store, n)) }
        }
        for (snapshot, puts) in snapshots {
            let kv = try #require(try snapshot.range(bytes("hot"), end: nil, reader: h.backend).kvs.first)
            #expect(kv.version == puts)
            #expect(kv.modRevision == puts + 1)
            #expect(text(kv.value) == "v\(puts)")
        }
        #expect(try h.pairs("hot", .init(revision: 38)) == ["hot=v37"])
        // A writer starting from a snapshot whose storage the store still shares (the last
        // one) diverges from the newer history, not into it.
        var old = snapshots.last!.store
        _ = old.write(reader: h.backend) { $0.put(bytes("cold"), value: bytes("x"), lease: 0) }
        let (diverged, _) = old.write(reader: h.backend) { $0.put(bytes("hot"), value: bytes("other"), lease: 0) }
        #expect(diverged.version == 297)
        #expect(diverged.modRevision == 299)
        #expect(try h.get("hot").kvs.first?.version == 300)
        #expect(try h.get("hot", .init(revision: 298)).kvs.first?.modRevision == 298)
        #expect(try h.pairs("hot", .init(revision: 298)) == ["hot=v297"])
        #expect(try h.pairs("hot", .init(revision: 299)) == ["hot=v298"])
    }

    @Test func keysAndValuesAreArbitraryBytes() throws {
        var h = Harness()
        let key: [UInt8] = [0xFF, 0x00, 0xC3]
        let value = [UInt8](repeating: 0, count: 1_572_864)
        let (_, changes) = h.store.write(reader: h.backend) { $0.put(key, value: value, lease: 0) }
        h.backend.apply(changes)
        let result = try h.store.range(key, end: nil, reader: h.backend)
        #expect(result.kvs.first?.key == key)
        #expect(result.kvs.first?.value.count == 1_572_864)
    }
}
