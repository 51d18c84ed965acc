import Foundation
import Testing

/// A failing disk for a member process: `scripts/faultfs/faultfs.c`, an `LD_PRELOAD` shim built
/// with the system's C compiler, makes the writes or the syncs of the member's files whose path
/// contains `pathPart` fail with `errno` once a trigger file exists.
public struct DiskFault: Sendable, CustomTestStringConvertible {
    public enum Operation: String, Sendable {
        /// `fsync`, `fdatasync`, `sync_file_range`.
        case sync
        /// `write`, `pwrite`, `writev`, `pwritev`.
        case write
    }

    public var operation: Operation
    /// A part of the failing files' paths: `/member/wal/` (the log), `/member/snap/backend.sqlite` (the
    /// backend and its SQLite files), `.snap` (snapshot files).
    public var pathPart: String
    public var errno: Int32
    /// A disk that fails every matching call from the trigger on; otherwise only the first one
    /// fails (and the trigger is removed): a disk that recovers.
    public var persistent: Bool

    public init(_ operation: Operation, of pathPart: String, errno: Int32, persistent: Bool = false) {
        self.operation = operation
        self.pathPart = pathPart
        self.errno = errno
        self.persistent = persistent
    }

    public var testDescription: String {
        let name = errno == EIO ? "EIO" : errno == ENOSPC ? "ENOSPC" : "errno \(errno)"
        return "\(operation.rawValue) of \(pathPart) fails with \(name)\(persistent ? " from then on" : " once")"
    }

    /// What the member logs when it stops over this fault.
    public var fatalMessage: String {
        switch pathPart {
        case "/member/wal/": "failed to persist raft state to the log"
        case "/member/snap/backend.sqlite": "failed to commit applied entries to the backend"
        default: "failed to save a snapshot"
        }
    }

    /// The environment that loads `shim` into a member; the fault strikes once `trigger` exists.
    public func environment(shim: URL, trigger: URL) -> [String: String] {
        [
            "LD_PRELOAD": shim.path, "FAULTFS_PATH": pathPart, "FAULTFS_OP": operation.rawValue,
            "FAULTFS_ERRNO": String(errno), "FAULTFS_TRIGGER": trigger.path, "FAULTFS_MODE": persistent ? "always" : "once",
        ]
    }

    /// Builds the shim into `directory` and returns the library's path.
    public static func buildShim(in directory: URL) async throws -> URL {
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/faultfs/faultfs.c")
        let library = directory.appendingPathComponent("faultfs.so")
        let (status, output) = try await runTool(
            URL(fileURLWithPath: "/usr/bin/cc"), ["-shared", "-fPIC", "-O2", "-o", library.path, source.path, "-ldl"])
        try #require(status == 0, "building the faultfs shim failed: \(output)")
        return library
    }

    /// Arms the fault: the next matching call of a member started with ``environment(shim:trigger:)`` fails.
    public static func strike(_ trigger: URL) {
        FileManager.default.createFile(atPath: trigger.path, contents: nil)
    }
}

/// A scratch directory for one member on a failing disk: the shim built into it, the trigger
/// file that arms the fault, the member's log and its data directory. `remove()` deletes it.
public struct FaultyDiskWorkspace: Sendable {
    public let directory: URL
    public let shim: URL
    public var trigger: URL { directory.appendingPathComponent("strike") }
    public var log: URL { directory.appendingPathComponent("member.log") }
    public var dataDirectory: URL { directory.appendingPathComponent("data") }

    public init() async throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("swift-etcd-faultfs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        shim = try await DiskFault.buildShim(in: directory)
    }

    public func remove() {
        try? FileManager.default.removeItem(at: directory)
    }
}
