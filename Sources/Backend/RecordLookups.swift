import GRDB
#if canImport(GRDBSQLite)
import GRDBSQLite
#else
import SQLite3
#endif
import Synchronization

/// SQLite connections of their own for looking records up by revision (what a range reads
/// after the key index found the revisions), each handed to one reader at a time.
///
/// A lookup through GRDB's `DatabasePool` cost about 75 µs of CPU under 256 clients (a hop
/// onto the reader's dispatch queue, the pool's lock, a `BEGIN`/`COMMIT` parsed every time,
/// and the two event loops waiting on one another there): a range of one existing key cost
/// four times one of a missing key, and 1.6 times etcd's. Here a lookup is a prepared
/// statement stepped on an idle connection.
final class RecordLookups: Sendable {
    private let path: String
    private let idle = Mutex<[Connection]>([])

    init(path: String) {
        self.path = path
    }

    /// Runs `body` on an idle connection (a new one when every connection is in use). A
    /// connection left inside a transaction (its `COMMIT` failed) is closed rather than kept:
    /// an open read transaction would keep SQLite's log from ever being checkpointed.
    func withConnection<R>(_ body: (Connection) throws -> R) throws -> R {
        let connection = try idle.withLock { $0.popLast() } ?? Connection(path: path)
        defer {
            if connection.isOutsideTransaction { idle.withLock { $0.append(connection) } }
        }
        return try body(connection)
    }

    /// One connection and its prepared statements.
    ///
    /// `@unchecked Sendable`: it is opened without SQLite's own mutex and is used by one
    /// thread at a time, which ``RecordLookups/withConnection(_:)`` guarantees: a connection
    /// is either in the idle list (used by nobody) or taken out of it under the lock by the
    /// one caller that uses it until it puts it back.
    final class Connection: @unchecked Sendable {
        private let database: OpaquePointer
        private let select: OpaquePointer
        private let begin: OpaquePointer
        private let commit: OpaquePointer

        init(path: String) throws {
            var handle: OpaquePointer?
            let opened = sqlite3_open_v2(path, &handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nil)
            guard opened == SQLITE_OK, let handle else {
                let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "cannot open"
                sqlite3_close_v2(handle)
                throw DatabaseError(resultCode: ResultCode(rawValue: opened), message: message)
            }
            database = handle
            do {
                sqlite3_busy_timeout(handle, 5000)
                try Self.execute(handle, "PRAGMA query_only = 1")
                select = try Self.prepare(handle, "SELECT \(SQLiteBackend.changeColumns) FROM kv WHERE main = ? AND sub = ?")
                begin = try Self.prepare(handle, "BEGIN")
                commit = try Self.prepare(handle, "COMMIT")
            } catch {
                sqlite3_close_v2(handle)
                throw error
            }
        }

        deinit {
            for statement in [select, begin, commit] { sqlite3_finalize(statement) }
            sqlite3_close_v2(database)
        }

        /// Whether no transaction is open on it.
        var isOutsideTransaction: Bool { sqlite3_get_autocommit(database) != 0 }

        /// Runs `body` in one read transaction, so several lookups see one state of the database.
        func inTransaction<R>(_ body: () throws -> R) throws -> R {
            try step(begin)
            defer { try? step(commit) }
            return try body()
        }

        /// The record stored at `revision` and its stored checksum (nil for a record from before
        /// checksums), or nil when none is.
        func record(at revision: Revision) throws -> (change: Change, checksum: Int64?)? {
            defer { sqlite3_reset(select) }
            sqlite3_bind_int64(select, 1, revision.main)
            sqlite3_bind_int64(select, 2, revision.sub)
            let code = sqlite3_step(select)
            if code == SQLITE_DONE { return nil }
            guard code == SQLITE_ROW else { throw failure(code) }
            let kv = KeyValue(
                key: blob(3), value: blob(4), createRevision: sqlite3_column_int64(select, 5),
                modRevision: revision.main, version: sqlite3_column_int64(select, 6), lease: sqlite3_column_int64(select, 7))
            let change = Change(kind: sqlite3_column_int64(select, 2) == 1 ? .delete : .put, revision: revision, kv: kv)
            let checksum = sqlite3_column_type(select, 8) == SQLITE_NULL ? nil : sqlite3_column_int64(select, 8)
            return (change, checksum)
        }

        /// Column `index` of the current row as bytes (the blob first, then its size: SQLite's
        /// rule for a value that may be converted).
        private func blob(_ index: Int32) -> [UInt8] {
            guard let start = sqlite3_column_blob(select, index) else { return [] }
            return [UInt8](UnsafeRawBufferPointer(start: start, count: Int(sqlite3_column_bytes(select, index))))
        }

        private func step(_ statement: OpaquePointer) throws {
            defer { sqlite3_reset(statement) }
            let code = sqlite3_step(statement)
            guard code == SQLITE_DONE || code == SQLITE_ROW else { throw failure(code) }
        }

        private func failure(_ code: Int32) -> DatabaseError {
            DatabaseError(resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(database)))
        }

        private static func prepare(_ database: OpaquePointer, _ sql: String) throws -> OpaquePointer {
            var statement: OpaquePointer?
            let code = sqlite3_prepare_v3(database, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
            guard code == SQLITE_OK, let statement else {
                throw DatabaseError(resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(database)), sql: sql)
            }
            return statement
        }

        private static func execute(_ database: OpaquePointer, _ sql: String) throws {
            let code = sqlite3_exec(database, sql, nil, nil, nil)
            guard code == SQLITE_OK else {
                throw DatabaseError(resultCode: ResultCode(rawValue: code), message: String(cString: sqlite3_errmsg(database)), sql: sql)
            }
        }
    }
}
