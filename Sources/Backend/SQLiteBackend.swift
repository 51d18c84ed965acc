import Checksum
import Foundation
import GRDB
#if canImport(GRDBSQLite)
import GRDBSQLite
#else
import SQLite3
#endif
import Synchronization

/// The store's durable state: one SQLite database in WAL mode holding every kept revision's
/// record and the store's meta values, committed one batch of applied writes at a time.
///
/// Readers on any thread read committed data concurrently with the apply loop's writes.
///
/// Every record is stored with a CRC-32C of its revision, key, value and metadata, checked
/// whenever the record is read back: a record the disk changed is reported
/// (``CorruptRecord``, and ``onCorruptRecord``), never served. SQLite finds a damaged page
/// structure itself, but not a changed byte inside a record; neither does etcd's bbolt.
package final class SQLiteBackend: RevisionReader, Sendable {
    /// Names of the meta values.
    package enum Meta: String, Sendable {
        /// The index of the last applied log entry; a restart replays the log after it.
        case consistentIndex = "consistent_index"
        /// The term of the entry at the consistent index.
        case consistentTerm = "consistent_term"
        /// The last compaction's main revision.
        case compactedRevision = "compacted_revision"
        /// The store's newest main revision (needed when the newest writes were all compacted away).
        case revision = "revision"
        /// The log index of the newest snapshot made durable.
        case snapshotIndex = "snapshot_index"
    }

    /// Names of the documents the server keeps beside the keyspace, each one encoded value.
    package enum Document: String, Sendable {
        /// The cluster's members (IDs, names, URLs, learner flags) and the IDs ever removed.
        case membership
        /// The Raft membership (voters, learners, joint state) at the consistent index.
        case confState = "conf_state"
        /// Users, roles, permissions, whether auth is on and its revision (JSON; passwords only
        /// as bcrypt hashes).
        case auth
        /// The active alarms: which member raised which (JSON).
        case alarms
    }

    private let pool: DatabasePool
    /// Connections of their own for ``keyValues(at:)``, the read every range of existing keys makes.
    private let lookups: RecordLookups
    private let synchronousCommits: Bool
    /// Told of each record that fails its checksum as it is read (before the read throws).
    private let corruptRecordObserver = Mutex<(@Sendable (CorruptRecord) -> Void)?>(nil)

    /// Called with each record found corrupt as it is read (on the reading thread), so the
    /// member can report it beyond the failed read.
    package var onCorruptRecord: (@Sendable (CorruptRecord) -> Void)? {
        get { corruptRecordObserver.withLock { $0 } }
        set { corruptRecordObserver.withLock { $0 = newValue } }
    }

    /// A stored record whose bytes no longer match its checksum: the database file changed
    /// under SQLite (a failing disk, a stray write).
    package struct CorruptRecord: Error, CustomStringConvertible, Equatable {
        package var path: String
        package var revision: Revision

        package init(path: String, revision: Revision) {
            self.path = path
            self.revision = revision
        }

        package var description: String {
            "the record at revision \(revision.main).\(revision.sub) in \(path) does not match its checksum: the file is corrupt"
        }
    }
    /// The database's size in bytes after the last commit (pages × page size), for the space
    /// quota to check each write against without a query.
    private let allocated = Atomic<Int64>(0)

    /// The size the database had after the last commit (``sizes()``'s total, kept current).
    package var allocatedBytes: Int64 { allocated.load(ordering: .relaxed) }

    /// Opens (creating if needed) the database at `path`. With `synchronousCommits` each commit
    /// is fsynced; without, commits are crash-consistent but the newest may be lost on power
    /// failure (SQLite's `synchronous=NORMAL` in WAL mode), which is right when a write-ahead
    /// log in front of the backend is the durability point and is replayed after it.
    package init(path: String, synchronousCommits: Bool) throws {
        self.synchronousCommits = synchronousCommits
        var configuration = Configuration()
        configuration.label = "swift-etcd backend"
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = \(synchronousCommits ? "FULL" : "NORMAL")")
        }
        pool = try DatabasePool(path: path, configuration: configuration)
        lookups = RecordLookups(path: path)
        try Self.useIncrementalVacuum(pool)
        try pool.write { db in
            try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS kv (
                    main INTEGER NOT NULL, sub INTEGER NOT NULL, tombstone INTEGER NOT NULL,
                    key BLOB NOT NULL, value BLOB NOT NULL, create_revision INTEGER NOT NULL,
                    version INTEGER NOT NULL, lease INTEGER NOT NULL, crc INTEGER,
                    PRIMARY KEY (main, sub)) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS documents (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
                CREATE TABLE IF NOT EXISTS leases (
                    id INTEGER PRIMARY KEY, ttl INTEGER NOT NULL, remaining_ms INTEGER) WITHOUT ROWID;
                """)
            try Self.addChecksums(db)
            try Self.recordSize(db, in: allocated)
        }
    }

    /// Gives a database made before records had checksums its `crc` column, filled for every
    /// record (once; a record whose `crc` is NULL is read unchecked).
    private static func addChecksums(_ db: Database) throws {
        let columns = try Row.fetchAll(db, sql: "PRAGMA table_info(kv)").map { $0["name"] as String }
        guard !columns.contains("crc") else { return }
        try db.execute(sql: "ALTER TABLE kv ADD COLUMN crc INTEGER")
        let rows = try Row.fetchCursor(db, sql: "SELECT \(changeColumns) FROM kv ORDER BY main, sub")
        var checksums: [(Revision, Int64)] = []
        while let row = try rows.next() {
            let change = change(row)
            checksums.append((change.revision, checksum(change)))
        }
        let update = try db.cachedStatement(sql: "UPDATE kv SET crc = ? WHERE main = ? AND sub = ?")
        for (revision, crc) in checksums { try update.execute(arguments: [crc, revision.main, revision.sub]) }
    }

    /// A record's checksum: CRC-32C over its revision, kind, metadata, and its key and value
    /// each after its length.
    private static func checksum(_ change: Change) -> Int64 {
        var header: (Int64, Int64, Int64, Int64, Int64, Int64, Int64) = (
            change.revision.main.bigEndian, change.revision.sub.bigEndian, (change.kind == .delete ? 1 : 0 as Int64).bigEndian,
            change.kv.createRevision.bigEndian, change.kv.version.bigEndian, change.kv.lease.bigEndian,
            (Int64(change.kv.key.count) << 32 | Int64(change.kv.value.count)).bigEndian)
        var crc = withUnsafeBytes(of: &header) { CRC32C.checksum($0) }
        crc = CRC32C.checksum(change.kv.key, continuing: crc)
        return Int64(CRC32C.checksum(change.kv.value, continuing: crc))
    }

    /// `change` as read, when it matches the checksum stored with it (a NULL one: a record
    /// from before checksums, read unchecked).
    private func verified(_ change: Change, stored: Int64?, reporting: Bool) throws -> Change {
        guard let stored, stored != Self.checksum(change) else { return change }
        let corrupt = CorruptRecord(path: pool.path, revision: change.revision)
        if reporting { onCorruptRecord?(corrupt) }
        throw corrupt
    }

    /// Refuses a file that is not a swift-etcd backend (opening one as a backend would add the
    /// tables it lacks).
    package static func requireBackendTables(at path: String) throws {
        let database = try DatabaseQueue(path: path)
        defer { try? database.close() }
        let tables = try database.read { db in try String.fetchSet(db, sql: "SELECT name FROM sqlite_master WHERE type = 'table'") }
        guard tables.isSuperset(of: ["kv", "meta", "documents", "leases"]) else {
            throw NotABackend(path: path, tables: tables.sorted())
        }
    }

    /// The newest revision the backend at `path` holds (a copy made by ``copy(to:)``).
    package static func storedRevision(ofDatabaseAt path: String) throws -> Int64 {
        let database = try DatabaseQueue(path: path)
        defer { try? database.close() }
        return try database.read { db in
            let newest = try Int64.fetchOne(db, sql: "SELECT max(main) FROM kv") ?? 0
            let stored = try Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE name = ?", arguments: [Meta.revision.rawValue]) ?? 0
            return max(newest, stored)
        }
    }

    /// The applied index and its term, and a document, of the backend at `path` (a copy made
    /// by ``copy(to:)``).
    package static func appliedState(ofDatabaseAt path: String, document: Document) throws -> (index: Int64, term: Int64, document: [UInt8]?) {
        let database = try DatabaseQueue(path: path)
        defer { try? database.close() }
        return try database.read { db in
            let meta = { (name: Meta) in try Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE name = ?", arguments: [name.rawValue]) }
            let stored = try Data.fetchOne(db, sql: "SELECT value FROM documents WHERE name = ?", arguments: [document.rawValue])
            return (try meta(.consistentIndex) ?? 0, try meta(.consistentTerm) ?? 0, stored.map { [UInt8]($0) })
        }
    }

    /// A database without the backend's tables.
    package struct NotABackend: Error, CustomStringConvertible {
        package var path: String
        package var tables: [String]
        package var description: String { "\(path) is an SQLite database but not a swift-etcd backend (its tables: \(tables))" }
    }

    /// Puts the database in SQLite's incremental auto-vacuum mode, in which free pages can be
    /// returned to the file system a few at a time while commits go on (see ``defragment(pagesPerStep:)``).
    /// The mode changes only by rebuilding the database (a `VACUUM`: instant for a new one;
    /// once, before anything is served, for one made without it).
    private static func useIncrementalVacuum(_ pool: DatabasePool) throws {
        try pool.writeWithoutTransaction { db in
            guard try Int.fetchOne(db, sql: "PRAGMA auto_vacuum") != incrementalVacuum else { return }
            try db.execute(sql: "PRAGMA auto_vacuum = INCREMENTAL")
            try db.execute(sql: "VACUUM")
        }
    }

    /// `PRAGMA auto_vacuum`'s value for incremental mode.
    private static let incrementalVacuum = 2

    /// Makes every commit so far durable against power loss, however the database is
    /// configured: one `synchronous = FULL` commit syncs SQLite's log, which holds all earlier ones.
    /// A snapshot needs this before the write-ahead log before it may be purged.
    package func makeDurable(snapshotIndex: Int64) throws {
        try pool.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
            defer { try? db.execute(sql: "PRAGMA synchronous = \(synchronousCommits ? "FULL" : "NORMAL")") }
            try db.inTransaction {
                try db.execute(
                    sql: "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)",
                    arguments: [Meta.snapshotIndex.rawValue, snapshotIndex])
                return .commit
            }
        }
    }

    /// A lease as the backend keeps it: its granted TTL in seconds, and the milliseconds it had
    /// left at its newest checkpoint (nil until one is taken).
    package struct LeaseRow: Equatable, Sendable {
        package var id: Int64
        package var ttl: Int64
        package var remainingMilliseconds: Int64?

        package init(id: Int64, ttl: Int64, remainingMilliseconds: Int64?) {
            self.id = id
            self.ttl = ttl
            self.remainingMilliseconds = remainingMilliseconds
        }
    }

    /// Stores one batch of changes, meta values, documents and leases (nil removes one) in a
    /// single transaction. `sized` runs just before ``allocatedBytes`` takes the transaction's
    /// pages, so a caller that counts the batch's bytes until then can stop counting them
    /// without a moment where both count (a space quota would see the batch twice).
    package func commit(
        _ changes: [Change], meta: [Meta: Int64], documents: [Document: [UInt8]] = [:], leases: [Int64: LeaseRow?] = [:],
        removingAtOrBefore compaction: (main: Int64, kept: Set<Revision>)? = nil, sized: () -> Void = {}
    ) throws {
        try pool.write { db in
            let insert = try db.cachedStatement(sql: """
                INSERT OR REPLACE INTO kv (main, sub, tombstone, key, value, create_revision, version, lease, crc)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """)
            for change in changes {
                try insert.execute(arguments: [
                    change.revision.main, change.revision.sub, change.kind == .delete ? 1 : 0,
                    Data(change.kv.key), Data(change.kv.value), change.kv.createRevision, change.kv.version, change.kv.lease,
                    Self.checksum(change),
                ])
            }
            if let compaction {
                try db.execute(sql: "CREATE TEMP TABLE IF NOT EXISTS kept (main INTEGER, sub INTEGER, PRIMARY KEY (main, sub))")
                try db.execute(sql: "DELETE FROM kept")
                let keep = try db.cachedStatement(sql: "INSERT INTO kept (main, sub) VALUES (?, ?)")
                for revision in compaction.kept { try keep.execute(arguments: [revision.main, revision.sub]) }
                try db.execute(
                    sql: "DELETE FROM kv WHERE main <= ? AND (main, sub) NOT IN (SELECT main, sub FROM kept)",
                    arguments: [compaction.main])
            }
            let setMeta = try db.cachedStatement(sql: "INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)")
            for (name, value) in meta { try setMeta.execute(arguments: [name.rawValue, value]) }
            for (name, value) in documents {
                try db.execute(
                    sql: "INSERT OR REPLACE INTO documents (name, value) VALUES (?, ?)", arguments: [name.rawValue, Data(value)])
            }
            for (id, row) in leases {
                if let row {
                    try db.execute(
                        sql: "INSERT OR REPLACE INTO leases (id, ttl, remaining_ms) VALUES (?, ?, ?)",
                        arguments: [id, row.ttl, row.remainingMilliseconds])
                } else {
                    try db.execute(sql: "DELETE FROM leases WHERE id = ?", arguments: [id])
                }
            }
            sized()
            try Self.recordSize(db, in: allocated)
        }
    }

    private static func recordSize(_ db: Database, in allocated: borrowing Atomic<Int64>) throws {
        let pages = try Int64.fetchOne(db, sql: "PRAGMA page_count") ?? 0
        let pageSize = try Int64.fetchOne(db, sql: "PRAGMA page_size") ?? 0
        allocated.store(pages * pageSize, ordering: .relaxed)
    }

    /// Every stored lease, by ID.
    package func leases() throws -> [LeaseRow] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT id, ttl, remaining_ms FROM leases ORDER BY id").map {
                LeaseRow(id: $0["id"], ttl: $0["ttl"], remainingMilliseconds: $0["remaining_ms"])
            }
        }
    }

    /// The stored records that name a lease, newest last: the attachments a restart rebuilds
    /// (the caller keeps those that are still their key's current record).
    package func recordsWithLeases() throws -> [(revision: Revision, key: [UInt8], lease: Int64)] {
        try pool.read { db in
            try Row.fetchAll(db, sql: "SELECT main, sub, key, lease FROM kv WHERE lease != 0 AND tombstone = 0 ORDER BY main, sub").map {
                (Revision(main: $0["main"], sub: $0["sub"]), [UInt8]($0["key"] as Data), $0["lease"])
            }
        }
    }

    package func document(_ name: Document) throws -> [UInt8]? {
        try pool.read { db in
            try Data.fetchOne(db, sql: "SELECT value FROM documents WHERE name = ?", arguments: [name.rawValue]).map { [UInt8]($0) }
        }
    }

    package func meta(_ name: Meta) throws -> Int64? {
        try pool.read { db in try Int64.fetchOne(db, sql: "SELECT value FROM meta WHERE name = ?", arguments: [name.rawValue]) }
    }

    package func keyValues(at revisions: [Revision]) throws -> [KeyValue?] {
        guard !revisions.isEmpty else { return [] }
        return try lookups.withConnection { connection in
            let lookUp = {
                try revisions.map { revision in
                    try connection.record(at: revision).map { try self.verified($0.change, stored: $0.checksum, reporting: true).kv }
                }
            }
            // One record needs no transaction of its own: its statement is one.
            return try revisions.count == 1 ? lookUp() : connection.inTransaction(lookUp)
        }
    }

    /// Visits every stored change in revision order (the keyspace hash reads them all); with
    /// `reportingCorruption` false a corrupt record only fails the call, unseen by
    /// ``onCorruptRecord``.
    package func forEachChange(reportingCorruption: Bool = true, _ body: (Change) throws -> Void) throws {
        try pool.read { db in
            let rows = try Row.fetchCursor(db, sql: "SELECT \(Self.changeColumns) FROM kv ORDER BY main, sub")
            while let row = try rows.next() { try body(try verifiedChange(row, reporting: reportingCorruption)) }
        }
    }

    /// What rebuilding the key index needs of one stored change: no value (values stay on
    /// disk) and no lease (attachments come from ``leaseAttachments()``).
    package struct IndexRecord: Sendable {
        package var revision: Revision
        package var isDeletion: Bool
        package var createRevision: Int64
        package var version: Int64
    }

    /// Visits the stored changes of main revisions in `mains`, in revision order, as an
    /// ``IndexRecord`` and its key's bytes, which are valid only during the call: the key
    /// index's rebuild at start copies them into one buffer instead of an array per change.
    /// Steps SQLite's statement itself: decoding each row through GRDB's `Row` took twice as
    /// long as SQLite's own work.
    package func forEachIndexRecord(mains: Range<Int64>, _ body: (IndexRecord, UnsafeRawBufferPointer) throws -> Void) throws {
        try pool.read { db in
            let statement = try db.makeStatement(
                sql: "SELECT main, sub, tombstone, create_revision, version, key FROM kv WHERE main >= ? AND main < ? ORDER BY main, sub")
            try statement.setArguments([mains.lowerBound, mains.upperBound])
            let row = statement.sqliteStatement
            while true {
                let code = sqlite3_step(row)
                if code == SQLITE_DONE { return }
                guard code == SQLITE_ROW else {
                    throw DatabaseError(resultCode: ResultCode(rawValue: code), message: db.lastErrorMessage, sql: statement.sql)
                }
                let record = IndexRecord(
                    revision: Revision(main: sqlite3_column_int64(row, 0), sub: sqlite3_column_int64(row, 1)),
                    isDeletion: sqlite3_column_int64(row, 2) == 1, createRevision: sqlite3_column_int64(row, 3),
                    version: sqlite3_column_int64(row, 4))
                // The blob first, then its size (SQLite's rule for a value that may be converted).
                let key = sqlite3_column_blob(row, 5)
                try body(record, UnsafeRawBufferPointer(start: key, count: Int(sqlite3_column_bytes(row, 5))))
            }
        }
    }

    /// The stored changes of main revisions `from...through`, in order, whole revisions only:
    /// once `limit` changes or `maxBytes` (estimated) are read, the read stops at the end of
    /// that revision. Returns them with the last main revision they cover (`through`, unless
    /// cut short). A watcher catching up reads its history this way, one bounded batch at a time.
    package func changes(from: Int64, through: Int64, limit: Int, maxBytes: Int = .max) throws -> (changes: [Change], through: Int64) {
        guard from <= through else { return ([], through) }
        return try pool.read { db in
            let rows = try Row.fetchCursor(
                db, sql: "SELECT \(Self.changeColumns) FROM kv WHERE main >= ? AND main <= ? ORDER BY main, sub",
                arguments: [from, through])
            var changes: [Change] = []
            var bytes = 0
            while let row = try rows.next() {
                let change = try verifiedChange(row)
                if changes.count >= limit || bytes >= maxBytes, let last = changes.last, last.revision.main != change.revision.main {
                    return (changes, last.revision.main)
                }
                changes.append(change)
                bytes += change.estimatedSize
            }
            return (changes, through)
        }
    }

    /// A record's columns: what ``change(_:)`` reads, then its checksum (``RecordLookups``
    /// reads them by position).
    static let changeColumns = "main, sub, tombstone, key, value, create_revision, version, lease, crc"

    private static func change(_ row: Row) -> Change {
        let main: Int64 = row["main"]
        let kind: Change.Kind = (row["tombstone"] as Int64) == 1 ? .delete : .put
        return Change(kind: kind, revision: Revision(main: main, sub: row["sub"]), kv: keyValue(row, main: main))
    }

    private func verifiedChange(_ row: Row, reporting: Bool = true) throws -> Change {
        try verified(Self.change(row), stored: row["crc"], reporting: reporting)
    }

    /// Writes a consistent copy of the whole database (one read snapshot) to a new single file
    /// at `path`, while commits go on: what a leader streams to a follower that needs a snapshot,
    /// and what a backup holds. The copy is in rollback-journal mode, so it is one
    /// self-contained file that can be read where it lies.
    package func copy(to path: String) throws {
        let destination = try DatabaseQueue(path: path)
        try pool.backup(to: destination)
        try destination.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA journal_mode = DELETE") }
        try destination.close()
    }

    /// Replaces the whole database with the copy at `path` (made by ``copy(to:)`` on another
    /// member) in one transaction readers see atomically, and makes it durable.
    package func restore(from path: String) throws {
        let source = try DatabasePool(path: path)
        try source.backup(to: pool)
        try source.close()
        // A copy from a member of a version before checksums.
        try pool.write { db in try Self.addChecksums(db) }
        try pool.writeWithoutTransaction { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
            defer { try? db.execute(sql: "PRAGMA synchronous = \(synchronousCommits ? "FULL" : "NORMAL")") }
            try db.execute(sql: "PRAGMA wal_checkpoint(FULL)")
        }
    }

    /// Returns the database's free pages to the file system while it keeps serving: etcd's
    /// defragmentation without etcd's pause. Each step frees at most `pagesPerStep` pages in a
    /// write transaction of its own, so a commit waits for one step at most (a millisecond or
    /// so for the default 512 KiB), never for the whole run; after each step it rests as long as
    /// the step took, so the disk keeps half its time for the member's own log and commits.
    /// Returns the sizes before and after.
    package func defragment(pagesPerStep: Int = 64, restRatio: Double = 2) throws -> (before: Int64, after: Int64) {
        let before = try sizes().total
        // Until no page is free, or (never expected) a step frees none.
        while true {
            let started = ContinuousClock.now
            let freed = try pool.writeWithoutTransaction { db in
                let free = try Int.fetchOne(db, sql: "PRAGMA freelist_count") ?? 0
                guard free > 0 else { return false }
                let pages = try Int.fetchOne(db, sql: "PRAGMA page_count") ?? 0
                try db.execute(sql: "PRAGMA incremental_vacuum(\(min(free, pagesPerStep)))")
                try Self.recordSize(db, in: allocated)
                return try Int.fetchOne(db, sql: "PRAGMA page_count") ?? 0 < pages
            }
            guard freed else { break }
            Thread.sleep(forTimeInterval: Double((ContinuousClock.now - started) * restRatio / .microseconds(1)) / 1_000_000)
        }
        // Copies the moved pages into the main file, shrinks it and empties SQLite's log (which
        // grew with the moved pages). Most were copied by the automatic checkpoints already, so
        // this one is short; if a reader keeps it from finishing, the automatic ones finish later.
        try pool.writeWithoutTransaction { db in _ = try Row.fetchOne(db, sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
        return (before, try sizes().total)
    }

    /// Copies every commit from SQLite's log into the database file and empties the log, so a
    /// stopped member's backend is one self-contained file (what etcd's bbolt file always is).
    package func checkpoint() throws {
        try pool.writeWithoutTransaction { db in _ = try Row.fetchOne(db, sql: "PRAGMA wal_checkpoint(TRUNCATE)") }
    }

    /// Rebuilds the whole database into the smallest file (SQLite's `VACUUM`), blocking every
    /// other use of it until done: for `swift-etcdutl defrag` on a stopped member.
    package func vacuum() throws {
        try pool.writeWithoutTransaction { db in
            try db.execute(sql: "VACUUM")
            try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)")
            try Self.recordSize(db, in: allocated)
        }
    }

    /// Passes every stored row that is the same on every member at the same applied index, in
    /// one read transaction, each as canonical bytes (its table's name, then each column as a
    /// type tag, a length and the value): the keyspace, the documents, the leases' IDs and TTLs,
    /// the meta values but the applied index, its term and the snapshot index. Returns the
    /// newest revision stored and the number of rows passed. `Hash` and `snapshot status` hash
    /// these bytes.
    package func forEachSharedRow(_ body: ([UInt8]) throws -> Void) throws -> (revision: Int64, rows: Int) {
        try pool.read { db in
            var rows = 0
            var revision: Int64 = 0
            let memberLocal = [Meta.consistentIndex, .consistentTerm, .snapshotIndex].map { "'\($0.rawValue)'" }.joined(separator: ",")
            let queries = [
                ("kv", "SELECT main, sub, tombstone, key, value, create_revision, version, lease FROM kv ORDER BY main, sub"),
                ("documents", "SELECT name, value FROM documents ORDER BY name"),
                ("leases", "SELECT id, ttl FROM leases ORDER BY id"),
                ("meta", "SELECT name, value FROM meta WHERE name NOT IN (\(memberLocal)) ORDER BY name"),
            ]
            var bytes: [UInt8] = []
            for (table, sql) in queries {
                let cursor = try Row.fetchCursor(db, sql: sql)
                while let row = try cursor.next() {
                    bytes.removeAll(keepingCapacity: true)
                    bytes += Array(table.utf8)
                    for value in row.databaseValues { Self.appendCanonical(value, to: &bytes) }
                    try body(bytes)
                    rows += 1
                    if table == "kv" { revision = max(revision, row[0]) }
                    if table == "meta", (row[0] as String) == Meta.revision.rawValue { revision = max(revision, row[1]) }
                }
            }
            return (revision, rows)
        }
    }

    private static func appendCanonical(_ value: DatabaseValue, to bytes: inout [UInt8]) {
        func append(_ tag: UInt8, _ payload: some Collection<UInt8>) {
            bytes.append(tag)
            withUnsafeBytes(of: UInt32(payload.count).bigEndian) { bytes.append(contentsOf: $0) }
            bytes.append(contentsOf: payload)
        }
        switch value.storage {
        case .null: append(0, [])
        case .int64(let number): withUnsafeBytes(of: number.bigEndian) { append(1, $0) }
        case .double(let number): withUnsafeBytes(of: number.bitPattern.bigEndian) { append(2, $0) }
        case .string(let text): append(3, Array(text.utf8))
        case .blob(let data): append(4, data)
        }
    }

    /// Bytes the database occupies, and those of its pages in use (not on the free list): etcd's
    /// `dbSize` and `dbSizeInUse`.
    package func sizes() throws -> (total: Int64, inUse: Int64) {
        try pool.read { db in
            let pages = try Int64.fetchOne(db, sql: "PRAGMA page_count") ?? 0
            let free = try Int64.fetchOne(db, sql: "PRAGMA freelist_count") ?? 0
            let pageSize = try Int64.fetchOne(db, sql: "PRAGMA page_size") ?? 0
            return (pages * pageSize, (pages - free) * pageSize)
        }
    }

    private static func keyValue(_ row: Row, main: Int64) -> KeyValue {
        KeyValue(
            key: [UInt8](row["key"] as Data), value: [UInt8](row["value"] as Data),
            createRevision: row["create_revision"], modRevision: main, version: row["version"], lease: row["lease"])
    }
}
