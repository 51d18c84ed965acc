import Foundation
import Logging
import Synchronization

/// A member's data directory (and its log directory, when `--wal-dir` puts that elsewhere)
/// held for one process: private to the user running it and locked while it runs.
///
/// As in etcd, directories the member makes are mode 0700, and a directory given that others
/// may enter is warned about, not changed; the member's own `member`, `snap` and `wal` inside
/// it are set back to 0700 (earlier swift-etcd versions made them 0755: a backend any local
/// user could read).
///
/// A second process started on a directory in use waits for the first to exit, as etcd's
/// does, so a supervisor restarting a member whose old process still shuts down needs no
/// retries. etcd says so only after 10 s of silence ("db file is flocked by another process,
/// or taking too long"); swift-etcd says so at once, and `swift-etcdutl defrag` refuses a
/// directory in use instead of hanging on it.
package final class DataDirectoryLock: Sendable {
    /// The descriptors of the locked directories, closed (unlocked) by ``release()``.
    private let descriptors: Mutex<[Int32]>

    private init(descriptors: [Int32]) {
        self.descriptors = Mutex(descriptors)
    }

    deinit { release() }

    /// Makes (or checks) the member's directories and locks them, waiting while another
    /// process holds them.
    package static func acquire(dataDirectory: String, walDirectory: String, logger: Logger) throws -> DataDirectoryLock {
        let directories = try prepare(dataDirectory: dataDirectory, walDirectory: walDirectory, logger: logger)
        var descriptors: [Int32] = []
        do {
            for directory in directories {
                guard let descriptor = try lock(directory, waiting: true, logger: logger) else { continue }
                descriptors.append(descriptor)
            }
        } catch {
            for descriptor in descriptors { close(descriptor) }
            throw error
        }
        return DataDirectoryLock(descriptors: descriptors)
    }

    /// Locks an existing data directory for an offline tool; nil when a running member holds it.
    package static func acquireIfFree(dataDirectory: String, logger: Logger = Logger(label: "swift-etcd")) throws -> DataDirectoryLock? {
        do {
            let descriptor = try lock(dataDirectory, waiting: false, logger: logger)
            return DataDirectoryLock(descriptors: descriptor.map { [$0] } ?? [])
        } catch DataDirectoryError.inUse {
            return nil
        }
    }

    /// Unlocks the directories; a second process waiting for them starts.
    package func release() {
        let open = descriptors.withLock { descriptors in
            defer { descriptors = [] }
            return descriptors
        }
        for descriptor in open { close(descriptor) }
    }

    /// The directories to lock: the data directory, and the log's when it lies outside it.
    private static func prepare(dataDirectory: String, walDirectory: String, logger: Logger) throws -> [String] {
        try makePrivate(dataDirectory, logger: logger)
        let member = (dataDirectory as NSString).appendingPathComponent("member")
        for own in [member, (member as NSString).appendingPathComponent("snap")] {
            try makeOwnPrivate(own)
        }
        let data = URL(fileURLWithPath: dataDirectory).standardizedFileURL.path
        let wal = URL(fileURLWithPath: walDirectory).standardizedFileURL.path
        if wal.hasPrefix(data + "/") {
            try makeOwnPrivate(walDirectory)
            return [dataDirectory]
        }
        try makePrivate(walDirectory, logger: logger)
        return [dataDirectory, walDirectory]
    }

    /// Creates `path` with mode 0700, or warns (as etcd does) when it exists and others may enter it.
    private static func makePrivate(_ path: String, logger: Logger) throws {
        var status = stat()
        guard stat(path, &status) == 0 else {
            try FileManager.default.createDirectory(
                atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            return
        }
        let permissions = status.st_mode & 0o777
        if permissions & 0o077 != 0 {
            logger.warning("check file permission", metadata: [
                "error": "directory \"\(path)\" exist, but the permission is \"d\(modeString(permissions))\". The recommended permission is \"-rwx------\" to prevent possible unprivileged access to the data.",
            ])
        }
    }

    /// Creates one of the member's own directories with mode 0700, or sets an existing one to it.
    private static func makeOwnPrivate(_ path: String) throws {
        if FileManager.default.fileExists(atPath: path) {
            guard chmod(path, 0o700) == 0 else { throw DataDirectoryError.failed(path, "chmod", errno) }
        } else {
            try FileManager.default.createDirectory(
                atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
    }

    /// Takes `directory`'s lock; nil when its file system has no locks (a warning says so).
    private static func lock(_ directory: String, waiting: Bool, logger: Logger) throws -> Int32? {
        let descriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { throw DataDirectoryError.failed(directory, "open", errno) }
        if take(descriptor, blocking: false) == 0 { return descriptor }
        let failure = errno
        guard failure == EWOULDBLOCK else {
            close(descriptor)
            logger.warning("cannot lock the data directory: its file system has no locks; nothing keeps a second process from using it", metadata: [
                "path": "\(directory)", "error": "\(String(cString: strerror(failure)))",
            ])
            return nil
        }
        guard waiting else {
            close(descriptor)
            throw DataDirectoryError.inUse(directory)
        }
        logger.warning("another etcd process is using the data directory and holds its lock; waiting for it to exit before starting", metadata: [
            "path": "\(directory)",
        ])
        guard take(descriptor, blocking: true) == 0 else {
            let failure = errno
            close(descriptor)
            throw DataDirectoryError.failed(directory, "flock", failure)
        }
        return descriptor
    }

    /// `flock(LOCK_EX)`, retried when a signal interrupts it.
    private static func take(_ descriptor: Int32, blocking: Bool) -> Int32 {
        while true {
            let result = flock(descriptor, LOCK_EX | (blocking ? 0 : LOCK_NB))
            if result == 0 || errno != EINTR { return result }
        }
    }

    /// Permission bits as Go's `os.FileMode` prints them, etcd's wording.
    private static func modeString(_ permissions: mode_t) -> String {
        let letters: [Character] = ["r", "w", "x"]
        return String((0..<9).map { bit in permissions & (0o400 >> mode_t(bit)) != 0 ? letters[bit % 3] : "-" })
    }
}

/// Why a data directory cannot be held.
package enum DataDirectoryError: Error, CustomStringConvertible {
    /// A running process holds its lock.
    case inUse(String)
    /// A system call on it failed.
    case failed(String, String, Int32)

    package var description: String {
        switch self {
        case .inUse(let path): "\(path) is in use by a running member"
        case .failed(let path, let call, let code): "\(call) \(path): \(String(cString: strerror(code)))"
        }
    }
}
