import Foundation
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// The few file operations the log and the snapshotter need, each failing with a `WALError`
/// that names the path.
enum FileSystem {
    /// Creates `path` (and missing parents) with mode 0700, as etcd does, making each new
    /// directory entry durable.
    static func makeDirectory(_ path: String) throws(WALError) {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue { return }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty && parent != path { try makeDirectory(parent) }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw .io("cannot create \(path): \(error)")
        }
        try syncDirectory(parent.isEmpty ? "." : parent)
    }

    static func list(_ directory: String, suffix: String) throws(WALError) -> [String] {
        do {
            return try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(suffix) }.sorted()
        } catch {
            throw .io("cannot list \(directory): \(error)")
        }
    }

    static func readAll(_ path: String) throws(WALError) -> [UInt8] {
        do {
            return try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw .io("cannot read \(path): \(error)")
        }
    }

    /// Makes a directory entry change (create, rename, unlink) durable.
    static func syncDirectory(_ directory: String) throws(WALError) {
        let descriptor = open(directory, O_RDONLY)
        guard descriptor >= 0 else { throw .io("cannot open \(directory): errno \(errno)") }
        defer { Glibc.close(descriptor) }
        guard fsync(descriptor) == 0 else { throw .io("fsync of \(directory) failed: errno \(errno)") }
    }

    static func syncData(_ descriptor: FileDescriptor, _ path: String) throws(WALError) {
        guard fdatasync(descriptor.rawValue) == 0 else { throw .io("fdatasync of \(path) failed: errno \(errno)") }
    }

    static func rename(_ from: String, _ to: String) throws(WALError) {
        guard Glibc.rename(from, to) == 0 else { throw .io("cannot rename \(from) to \(to): errno \(errno)") }
    }

    static func remove(_ path: String) throws(WALError) {
        guard unlink(path) == 0 || errno == ENOENT else { throw .io("cannot remove \(path): errno \(errno)") }
    }

    static func truncate(_ descriptor: FileDescriptor, _ path: String, to size: Int) throws(WALError) {
        guard ftruncate(descriptor.rawValue, off_t(size)) == 0 else {
            throw .io("cannot truncate \(path) to \(size) bytes: errno \(errno)")
        }
    }

    static func openForWriting(_ path: String, create: Bool) throws(WALError) -> FileDescriptor {
        do {
            return try FileDescriptor.open(
                path, .writeOnly, options: create ? [.create, .exclusiveCreate] : [], permissions: [.ownerReadWrite])
        } catch {
            throw .io("cannot open \(path): \(error)")
        }
    }

    /// Reserves `size` bytes for the file so later appends neither grow it (no metadata to sync)
    /// nor meet a full disk.
    static func preallocate(_ descriptor: FileDescriptor, _ path: String, size: Int) throws(WALError) {
        let result = posix_fallocate(descriptor.rawValue, 0, off_t(size))
        guard result == 0 else { throw .io("cannot preallocate \(size) bytes for \(path): errno \(result)") }
    }

    static func write(_ descriptor: FileDescriptor, _ path: String, _ bytes: [UInt8], at offset: Int) throws(WALError) {
        do {
            _ = try bytes.withUnsafeBytes { try descriptor.writeAll(toAbsoluteOffset: Int64(offset), $0) }
        } catch {
            throw .io("write to \(path) failed: \(error)")
        }
    }

    static func close(_ descriptor: FileDescriptor) {
        try? descriptor.close()
    }

    /// `withUnsafeBytes` for a body with typed throws (the standard one only rethrows `any Error`).
    static func withRawBytes<R>(_ bytes: [UInt8], _ body: (UnsafeRawBufferPointer) throws(WALError) -> R) throws(WALError) -> R {
        let result: Result<R, WALError> = bytes.withUnsafeBytes { raw in Result { () throws(WALError) in try body(raw) } }
        return try result.get()
    }
}
