import Backend
import Dispatch
import Foundation
import GRDB
import Synchronization
import TestSupport
import Testing

@testable import MVCC

@Suite("SQLiteBackend")
struct SQLiteBackendTests {
    private func withDatabase(_ body: (String) throws -> Void) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("mvcc-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try body(directory.appendingPathComponent("backend.sqlite").path)
    }

    /// Applies one write to `store` and commits its changes to `backend`.
    private func write(
        _ store: inout KeyValueStore, _ backend: SQLiteBackend, _ body: (inout KeyValueStore.Writer) throws -> Void
    ) throws {
        let (_, changes) = try store.write(reader: backend, body)
        try backend.commit(changes, meta: [.revision: store.revision, .consistentIndex: store.revision])
    }

    @Test func recordsSurviveReopeningWithTheirRevisions() throws {
        try withDatabase { path in
            var store = KeyValueStore()
            do {
                let backend = try SQLiteBackend(path: path, synchronousCommits: true)
                try write(&store, backend) { $0.put([0, 0xFF], value: Array("binary".utf8), lease: 0) }
                try write(&store, backend) { $0.put(Array("k".utf8), value: Array("v1".utf8), lease: 42) }
                try write(&store, backend) { $0.put(Array("k".utf8), value: Array("v2".utf8), lease: 0) }
                try write(&store, backend) { _ = try $0.delete([0, 0xFF], end: nil) }
                #expect(try backend.meta(.consistentIndex) == 5)
            }
            let reopened = try SQLiteBackend(path: path, synchronousCommits: true)
            let restored = try KeyValueStore(restoringFrom: reopened)
            #expect(restored.revision == 5)
            let now = try restored.range([0], end: [0], reader: reopened)
            #expect(now.kvs == [KeyValue(key: Array("k".utf8), value: Array("v2".utf8), createRevision: 3, modRevision: 4, version: 2, lease: 0)])
            let before = try restored.range([0, 0xFF], end: nil, options: .init(revision: 4), reader: reopened)
            #expect(before.kvs.map(\.value) == [Array("binary".utf8)])
            #expect(try reopened.sizes().total > 0)
        }
    }

    /// A record whose bytes changed on disk (here by SQL that leaves its checksum as it was)
    /// fails every read that would serve it, and the observer hears of it; its neighbours
    /// still read.
    @Test func aRecordChangedOnDiskIsReportedNotServed() throws {
        try withDatabase { path in
            let backend = try SQLiteBackend(path: path, synchronousCommits: true)
            let reported = Mutex<[SQLiteBackend.CorruptRecord]>([])
            backend.onCorruptRecord = { corrupt in reported.withLock { $0.append(corrupt) } }
            var store = KeyValueStore()
            try write(&store, backend) { $0.put(Array("a".utf8), value: Array("fine".utf8), lease: 0) }
            try write(&store, backend) { $0.put(Array("b".utf8), value: Array("original".utf8), lease: 7) }
            let tamper = try DatabaseQueue(path: path)
            try tamper.write { db in try db.execute(sql: "UPDATE kv SET value = ? WHERE main = 3", arguments: [Data("0riginal".utf8)]) }
            try tamper.close()

            let corrupt = SQLiteBackend.CorruptRecord(path: path, revision: Revision(main: 3, sub: 0))
            #expect(throws: corrupt) { try backend.keyValues(at: [Revision(main: 3, sub: 0)]) }
            #expect(throws: corrupt) { try backend.changes(from: 2, through: 3, limit: 10) }
            #expect(throws: corrupt) { try backend.forEachChange { _ in } }
            #expect(reported.withLock { $0 } == [corrupt, corrupt, corrupt])
            #expect(corrupt.description == "the record at revision 3.0 in \(path) does not match its checksum: the file is corrupt")
            #expect(try backend.keyValues(at: [Revision(main: 2, sub: 0)]).map { $0?.value } == [Array("fine".utf8)])
            #expect(try backend.changes(from: 2, through: 2, limit: 10).changes.map(\.kv.value) == [Array("fine".utf8)])
        }
    }

    /// Lookups from several threads at once, while commits go on, each get the record they ask
    /// for: every thread works on a connection no other thread uses meanwhile.
    @Test func lookupsFromManyThreadsWhileCommitting() throws {
        try withDatabase { path in
            let backend = try SQLiteBackend(path: path, synchronousCommits: false)
            @Sendable func record(_ main: Int64) -> Change {
                Change(
                    kind: .put, revision: Revision(main: main, sub: 0),
                    kv: KeyValue(key: Array("k\(main)".utf8), value: Array("v\(main)".utf8), createRevision: main, modRevision: main, version: 1, lease: 0))
            }
            try backend.commit((1...200).map(record), meta: [:])
            let wrong = Mutex(0)
            let done = DispatchGroup()
            for thread in 0..<4 {
                done.enter()
                Thread.detachNewThread {
                    defer { done.leave() }
                    for round in 0..<300 {
                        let mains = (0..<(round % 3 + 1)).map { Int64((thread * 37 + round * 11 + $0 * 5) % 200 + 1) }
                        let found = (try? backend.keyValues(at: mains.map { Revision(main: $0, sub: 0) })) ?? []
                        if found != mains.map({ record($0).kv }) { wrong.withLock { $0 += 1 } }
                    }
                }
            }
            for batch in 0..<50 {
                try backend.commit((0..<4).map { record(Int64(201 + batch * 4 + $0)) }, meta: [:])
            }
            #expect(done.wait(timeout: .now() + 60) == .success)
            #expect(wrong.withLock { $0 } == 0)
            #expect(try backend.keyValues(at: [Revision(main: 400, sub: 0), Revision(main: 401, sub: 0)]) == [record(400).kv, nil])
        }
    }

    /// A database made before records had checksums gets them all when opened, and from then
    /// on a changed record is caught there too.
    @Test func aBackendFromBeforeChecksumsGetsThem() throws {
        try withDatabase { path in
            let old = try DatabaseQueue(path: path)
            try old.write { db in
                try db.execute(sql: """
                    CREATE TABLE kv (
                        main INTEGER NOT NULL, sub INTEGER NOT NULL, tombstone INTEGER NOT NULL,
                        key BLOB NOT NULL, value BLOB NOT NULL, create_revision INTEGER NOT NULL,
                        version INTEGER NOT NULL, lease INTEGER NOT NULL,
                        PRIMARY KEY (main, sub)) WITHOUT ROWID;
                    INSERT INTO kv VALUES (2, 0, 0, X'6B', X'7631', 2, 1, 0), (3, 0, 1, X'6B', X'', 0, 0, 0);
                    """)
            }
            try old.close()
            let backend = try SQLiteBackend(path: path, synchronousCommits: true)
            let changes = try backend.changes(from: 1, through: 3, limit: 10).changes
            #expect(changes == [
                Change(kind: .put, revision: Revision(main: 2, sub: 0), kv: KeyValue(key: [0x6B], value: [0x76, 0x31], createRevision: 2, modRevision: 2, version: 1, lease: 0)),
                Change(kind: .delete, revision: Revision(main: 3, sub: 0), kv: KeyValue(key: [0x6B], value: [], createRevision: 0, modRevision: 3, version: 0, lease: 0)),
            ])
            let tamper = try DatabaseQueue(path: path)
            #expect(try tamper.read { db in try Int.fetchOne(db, sql: "SELECT count(*) FROM kv WHERE crc IS NULL") } == 0)
            try tamper.write { db in try db.execute(sql: "UPDATE kv SET version = 9 WHERE main = 2") }
            try tamper.close()
            #expect(throws: SQLiteBackend.CorruptRecord(path: path, revision: Revision(main: 2, sub: 0))) {
                try backend.keyValues(at: [Revision(main: 2, sub: 0)])
            }
        }
    }

    @Test func recordsNotYetCommittedAreReadFromTheirLayers() throws {
        try withDatabase { path in
            let backend = try SQLiteBackend(path: path, synchronousCommits: false)
            var store = KeyValueStore()
            try write(&store, backend) { $0.put(Array("a".utf8), value: Array("committed".utf8), lease: 0) }
            let committed = store.revision
            // Two batches applied but not committed (the committer is behind), then the batch
            // being applied.
            func uncommitted(_ body: (inout KeyValueStore.Writer) throws -> Void) throws -> UncommittedLayer {
                var layer = OverlayReader(base: backend)
                layer.add(try store.write(reader: backend, body).changes)
                return UncommittedLayer(through: store.revision, records: layer.pending)
            }
            let layers = [
                try uncommitted { $0.put(Array("b".utf8), value: Array("layer 1".utf8), lease: 0) },
                try uncommitted { $0.put(Array("a".utf8), value: Array("layer 2".utf8), lease: 0) },
            ]
            var reader = OverlayReader(layers: layers, base: backend)
            reader.add(store.write(reader: reader) { $0.put(Array("c".utf8), value: Array("pending".utf8), lease: 0) }.changes)

            let all = try store.range(Array("a".utf8), end: Array("d".utf8), reader: reader)
            #expect(all.kvs.map { String(decoding: $0.value, as: UTF8.self) } == ["layer 2", "layer 1", "pending"])
            let older = try store.range(Array("a".utf8), end: nil, options: .init(revision: committed), reader: reader)
            #expect(older.kvs.map { String(decoding: $0.value, as: UTF8.self) } == ["committed"])
            // The backend alone has only what was committed.
            #expect(try backend.keyValues(at: [Revision(main: committed + 1)]) == [nil])
        }
    }

    /// Layers pile up between interval commits: each revision is found in its own layer, layers
    /// without records (deletes only) are no obstacle, and committed ones come from the backend.
    @Test func manyLayersEachAnswerForTheirOwnRevisions() throws {
        try withDatabase { path in
            let backend = try SQLiteBackend(path: path, synchronousCommits: false)
            var store = KeyValueStore()
            try write(&store, backend) { $0.put(Array("k".utf8), value: Array("committed".utf8), lease: 0) }
            var layers: [UncommittedLayer] = []
            for index in 0..<40 {
                var layer = OverlayReader(layers: layers, base: backend)
                layer.add(try store.write(reader: layer) { writer in
                    if index % 5 == 4 {
                        _ = try writer.delete(Array("k".utf8), end: nil)
                    } else {
                        writer.put(Array("k".utf8), value: Array("layer \(index)".utf8), lease: 0)
                        writer.put(Array("other".utf8), value: Array("\(index)".utf8), lease: 0)
                    }
                }.changes)
                layers.append(UncommittedLayer(through: store.revision, records: layer.pending))
            }
            let reader = OverlayReader(layers: layers, base: backend)
            for revision in 1...store.revision {
                let read = try store.range(Array("k".utf8), end: nil, options: .init(revision: revision), reader: reader)
                // Revision 2 is the committed put; then layer i is revision i + 3.
                let index = Int(revision) - 3
                let expected: [String] = switch revision {
                case 1: []
                case 2: ["committed"]
                default: index % 5 == 4 ? [] : ["layer \(index)"]
                }
                #expect(read.kvs.map { String(decoding: $0.value, as: UTF8.self) } == expected, "revision \(revision)")
            }
        }
    }

    @Test func compactionRemovesHistoryAndRestoreKeepsVersions() throws {
        try withDatabase { path in
            var store = KeyValueStore()
            let backend = try SQLiteBackend(path: path, synchronousCommits: false)
            for round in 1...10 {
                try write(&store, backend) { $0.put(Array("k".utf8), value: Array("v\(round)".utf8), lease: 0) }
            }
            let kept = try store.compact(atMain: 9)
            try backend.commit([], meta: [.compactedRevision: 9], removingAtOrBefore: (9, kept))
            var stored: [Int64] = []
            try backend.forEachChange { stored.append($0.revision.main) }
            #expect(stored == [9, 10, 11])

            var restored = try KeyValueStore(restoringFrom: backend)
            #expect(restored.compactedRevision == 9)
            #expect(throws: MVCCError.compacted) { try restored.range(Array("k".utf8), end: nil, options: .init(revision: 8), reader: backend) }
            // The next put continues the version count from the stored record, not from the rows left.
            let (record, _) = restored.write(reader: backend) { $0.put(Array("k".utf8), value: [], lease: 0) }
            #expect(record.version == 11)
            #expect(record.createRevision == 2)
        }
    }

    @Test func aDeletionKeptAtTheCompactionRevisionDoesNotComeBackAtRestore() throws {
        try withDatabase { path in
            var store = KeyValueStore()
            let backend = try SQLiteBackend(path: path, synchronousCommits: false)
            try write(&store, backend) { $0.put(Array("gone".utf8), value: Array("1".utf8), lease: 0) }
            try write(&store, backend) { $0.put(Array("back".utf8), value: Array("1".utf8), lease: 0) }
            try write(&store, backend) { _ = try $0.delete(Array("back".utf8), end: nil) }
            try write(&store, backend) { _ = try $0.delete(Array("gone".utf8), end: nil) }
            let kept = try store.compact(atMain: 5)
            try backend.commit([], meta: [.compactedRevision: 5, .revision: 5], removingAtOrBefore: (5, kept))
            try write(&store, backend) { $0.put(Array("back".utf8), value: Array("2".utf8), lease: 0) }
            // The deletion at 5 stays in the backend (watchers from 5 get it), not in the index.
            var stored: [Int64] = []
            try backend.forEachChange { stored.append($0.revision.main) }
            #expect(stored == [5, 6])

            let restored = try KeyValueStore(restoringFrom: backend)
            #expect(restored.revision == 6)
            let all = try restored.range([0], end: [0], reader: backend)
            #expect(all.kvs == [KeyValue(key: Array("back".utf8), value: Array("2".utf8), createRevision: 6, modRevision: 6, version: 1, lease: 0)])
            #expect(restored.index.count == 1)
        }
    }

    /// The index rebuilt at start equals the one the writes built, key by key and revision by
    /// revision: keys rewritten, deleted and created again, several changes in one revision,
    /// and a compaction in between (seeded random histories).
    @Test(arguments: [1, 2, 3, 4, 5] as [UInt64])
    func theRebuiltIndexEqualsTheWrittenOne(seed: UInt64) throws {
        try withDatabase { path in
            var generator = SeededRandom(seed: seed)
            var store = KeyValueStore()
            let backend = try SQLiteBackend(path: path, synchronousCommits: false)
            func randomKey() -> [UInt8] { Array("key-\(Int.random(in: 0..<60, using: &generator))".utf8) }
            for round in 0..<400 {
                if round == 250 {
                    let kept = try store.compact(atMain: store.revision - 20)
                    try backend.commit([], meta: [.compactedRevision: store.revision - 20], removingAtOrBefore: (store.revision - 20, kept))
                }
                let keys = (0..<Int.random(in: 1...3, using: &generator)).map { _ in randomKey() }
                let deleting = Int.random(in: 0..<4, using: &generator) == 0
                try write(&store, backend) { writer in
                    for key in Set(keys) {
                        if deleting { _ = try writer.delete(key, end: nil) } else { writer.put(key, value: [UInt8(round % 256)], lease: 0) }
                    }
                }
                // The count kept by the writes is the one a walk of the index finds.
                #expect(store.liveKeyCount == entries(store.index).indexes.filter(\.isLive).count, "round \(round)")
            }
            let restored = try KeyValueStore(restoringFrom: backend)
            #expect(restored.revision == store.revision)
            #expect(restored.compactedRevision == store.compactedRevision)
            let (keys, indexes) = entries(restored.index)
            let written = entries(store.index)
            #expect(keys == written.keys)
            #expect(indexes == written.indexes)
            #expect(restored.index.count == store.index.count)
            let all = try restored.range([0], end: [0], reader: backend)
            #expect(all == (try store.range([0], end: [0], reader: backend)))
            #expect(all.count > 0)
            #expect(restored.liveKeyCount == all.count && store.liveKeyCount == all.count)
        }
    }

    private func entries(_ index: BTree<KeyIndex>) -> (keys: [[UInt8]], indexes: [KeyIndex]) {
        var entries: (keys: [[UInt8]], indexes: [KeyIndex]) = ([], [])
        index.forEach(from: [], below: nil) { key, keyIndex in
            entries.keys.append(Array(key))
            entries.indexes.append(keyIndex)
            return true
        }
        return entries
    }
}
