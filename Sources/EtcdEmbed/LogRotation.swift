#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import EtcdServer
import Foundation

/// etcd's `--enable-log-rotation` with `--log-rotation-config-json`: the log file is moved
/// aside when it would grow past `maxsize` MiB and a fresh one is started, as etcd's
/// lumberjack does. Old files are named `<name>-<UTC time>.<ext>` (`etcd-2026-12-05T14-43-57.123.log`),
/// kept `maxbackups` at most and `maxage` days at most (0: no bound), and gzipped with
/// `compress`.
public struct LogRotation: Sendable, Equatable {
    /// The most a file grows to, in bytes (`maxsize` MiB; 0 or less: 100 MiB).
    public var maximumBytes: Int
    /// Days an old file is kept (`maxage`; 0 or less: no bound).
    public var maximumAgeDays: Int
    /// How many old files are kept (`maxbackups`; 0 or less: all).
    public var maximumBackups: Int
    /// Old files are named by local time rather than UTC (`localtime`).
    public var localTime: Bool
    /// Old files are gzipped (`compress`).
    public var compress: Bool

    /// etcd's default `--log-rotation-config-json`.
    public static let defaultJSON = #"{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}"#

    /// Reads etcd's JSON, refusing what etcd refuses with its words: text that is not JSON
    /// (`improperly formatted log rotation config`) and values of the wrong type (`invalid log
    /// rotation config: json: cannot unmarshal …`, as Go's decoder words it). Keys match
    /// whatever their case and unknown ones are ignored, as in Go.
    public init(json: String) throws(ConfigurationError) {
        let object: [String: JSONValue]
        do {
            object = try JSONDecoder().decode([String: JSONValue].self, from: Data(json.utf8))
        } catch {
            let value = try? JSONDecoder().decode(JSONValue.self, from: Data(json.utf8))
            guard let value else { throw ConfigurationError("improperly formatted log rotation config: \(json) is not JSON") }
            throw ConfigurationError(
                "invalid log rotation config: json: cannot unmarshal \(value.goName) into Go value of type embed.logRotationConfig")
        }
        var fields: [String: JSONValue] = [:]
        for (key, value) in object { fields[key.lowercased()] = value }
        func integer(_ key: String) throws(ConfigurationError) -> Int {
            switch fields[key] {
            case nil, .null: return 0
            case .number(let number) where number.rounded() == number && abs(number) < 9e18: return Int(number)
            case .number(let number): throw Self.mismatch("number \(number)", key, "int")
            case let value?: throw Self.mismatch(value.goName, key, "int")
            }
        }
        func flag(_ key: String) throws(ConfigurationError) -> Bool {
            switch fields[key] {
            case nil, .null: return false
            case .bool(let flag): return flag
            case let value?: throw Self.mismatch(value.goName, key, "bool")
            }
        }
        let megabytes = try integer("maxsize")
        let (bytes, overflow) = (megabytes > 0 ? megabytes : 100).multipliedReportingOverflow(by: 1024 * 1024)
        maximumBytes = overflow ? .max : bytes
        maximumAgeDays = try integer("maxage")
        maximumBackups = try integer("maxbackups")
        localTime = try flag("localtime")
        compress = try flag("compress")
        if compress && Gzip.library == nil {
            throw ConfigurationError("invalid log rotation config: compress needs zlib (libz.so.1), which cannot be loaded")
        }
    }

    private static func mismatch(_ found: String, _ key: String, _ type: String) -> ConfigurationError {
        ConfigurationError("invalid log rotation config: json: cannot unmarshal \(found) into Go struct field logRotationConfig.\(key) of type \(type)")
    }

    /// A JSON value, known by the kind Go's decoder names in its errors.
    private enum JSONValue: Decodable {
        case null, bool(Bool), number(Double), string, array, object

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if container.decodeNil() {
                self = .null
            } else if let flag = try? container.decode(Bool.self) {
                self = .bool(flag)
            } else if let number = try? container.decode(Double.self) {
                self = .number(number)
            } else if (try? container.decode(String.self)) != nil {
                self = .string
            } else if (try? container.decode([JSONValue].self)) != nil {
                self = .array
            } else {
                _ = try container.decode([String: JSONValue].self)
                self = .object
            }
        }

        var goName: String {
            switch self {
            case .null: "null"
            case .bool: "bool"
            case .number: "number"
            case .string: "string"
            case .array: "array"
            case .object: "object"
            }
        }
    }

    /// etcd's rule for the outputs: exactly one of them a file (stderr and stdout may go along).
    static func checkOutputs(_ names: [String]) throws(ConfigurationError) {
        let files = names.filter { !["default", "stderr", "stdout"].contains($0) }.count
        if (names.count == 1 && files == 0) || files > 1 {
            throw ConfigurationError("--log-outputs requires a single file path when --log-rotate-config-json is defined")
        }
    }
}

/// The log file under rotation. Used under ``LogOutputs``' lock; the pruning and compression
/// after a rotation run in the background, one at a time.
final class RotatingLogFile {
    private let path: String
    private let rotation: LogRotation
    private var file: FileHandle?
    private var size = 0
    private static let housekeeping = DispatchQueue(label: "swift-etcd.log-rotation")

    init(path: String, rotation: LogRotation) throws(ConfigurationError) {
        self.path = path
        self.rotation = rotation
        try openFile(appending: true)
        Self.housekeeping.async { Self.tidy(after: path, rotation: rotation, now: Date()) }
    }

    /// Appends `data`, first moving the file aside if it would grow past the limit. A line
    /// longer than the limit goes alone into a file of its own (lumberjack drops it).
    func write(_ data: Data) {
        if size > 0 && size + data.count > rotation.maximumBytes {
            try? rotate()
        }
        try? file?.write(contentsOf: data)
        size += data.count
    }

    /// Opens the file, appending to one that is there (`appending`) or starting it afresh.
    private func openFile(appending: Bool) throws(ConfigurationError) {
        let flags = O_WRONLY | O_CREAT | O_CLOEXEC | (appending ? O_APPEND : O_TRUNC)
        let descriptor = open(path, flags, mode_t(0o600))
        guard descriptor >= 0 else { throw ConfigurationError("--log-outputs: cannot open \(path) for writing") }
        let handle = FileHandle(fileDescriptor: descriptor, closeOnDealloc: true)
        size = Int(handle.seekToEndOfFile())
        file = handle
    }

    /// Moves the file to its backup name, starts a fresh one with the same permissions, and has
    /// the old files pruned and compressed.
    private func rotate() throws(ConfigurationError) {
        file = nil
        // Two rotations in one millisecond would share a name: the later one takes the next.
        // A name taken by a compressed backup counts as taken.
        var time = Date()
        var backup = Self.backupName(for: path, at: time, localTime: rotation.localTime)
        var tries = 0
        while tries < 1000, access(backup, F_OK) == 0 || access(backup + ".gz", F_OK) == 0 {
            time += 0.001
            tries += 1
            backup = Self.backupName(for: path, at: time, localTime: rotation.localTime)
        }
        let mode = Self.permissions(of: path) ?? 0o600
        // A file that could not be moved (its directory is not writable) is appended to, never
        // emptied: rotation is tried again at the next line.
        let moved = rename(path, backup) == 0
        try openFile(appending: !moved)
        guard moved else { return }
        if let file { fchmod(file.fileDescriptor, mode) }
        let (path, rotation) = (path, rotation)
        Self.housekeeping.async { Self.tidy(after: path, rotation: rotation, now: Date()) }
    }

    /// A file's permission bits, nil if it is not there.
    static func permissions(of path: String) -> mode_t? {
        (try? FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? NSNumber).map { mode_t($0.intValue) }
    }

    /// Returns once the pruning and compression asked for so far are done.
    static func waitForHousekeeping() {
        housekeeping.sync {}
    }

    /// `dir/etcd.log` at 14:43:57.123 UTC: `dir/etcd-2026-12-05T14-43-57.123.log`.
    static func backupName(for path: String, at date: Date, localTime: Bool) -> String {
        let (directory, stem, ext) = parts(of: path)
        return directory + stem + "-" + timestamps(localTime: localTime).string(from: date) + ext
    }

    /// lumberjack's time in a backup's name: `2026-12-05T14-43-57.123`.
    private static func timestamps(localTime: Bool) -> DateFormatter {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = localTime ? .current : TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd'T'HH-mm-ss.SSS"
        return formatter
    }

    /// The directory (with its slash), the name without its extension, and the extension.
    private static func parts(of path: String) -> (directory: String, stem: String, ext: String) {
        let slash = path.lastIndex(of: "/").map { path.index(after: $0) } ?? path.startIndex
        let name = path[slash...]
        let dot = name.lastIndex(of: ".") ?? name.endIndex
        return (String(path[..<slash]), String(name[..<dot]), String(name[dot...]))
    }

    /// Removes the old files past `maxbackups` (newest kept) or older than `maxage` days, then
    /// compresses those left, as lumberjack's mill does after each rotation.
    static func tidy(after path: String, rotation: LogRotation, now: Date) {
        let (directory, stem, ext) = parts(of: path)
        let formatter = timestamps(localTime: rotation.localTime)
        let listed = (try? FileManager.default.contentsOfDirectory(atPath: directory.isEmpty ? "." : directory)) ?? []
        var backups: [(name: String, time: Date)] = []
        for name in listed where name.hasPrefix(stem + "-") {
            let plain = name.hasSuffix(ext + ".gz") ? String(name.dropLast(3)) : name
            guard plain.hasSuffix(ext), plain.count > stem.count + 1 + ext.count else { continue }
            let stamp = plain.dropFirst(stem.count + 1).dropLast(ext.count)
            if let time = formatter.date(from: String(stamp)) { backups.append((name, time)) }
        }
        backups.sort { $0.time > $1.time }
        var kept: [String] = []
        var keptStems = Set<String>()
        for (name, time) in backups {
            let plain = name.hasSuffix(".gz") ? String(name.dropLast(3)) : name
            let tooMany = rotation.maximumBackups > 0 && !keptStems.contains(plain) && keptStems.count >= rotation.maximumBackups
            let tooOld = rotation.maximumAgeDays > 0 && time < now - Double(rotation.maximumAgeDays) * 86_400
            if tooMany || tooOld {
                unlink(directory + name)
            } else {
                keptStems.insert(plain)
                kept.append(name)
            }
        }
        guard rotation.compress else { return }
        for name in kept where !name.hasSuffix(".gz") {
            Gzip.compress(directory + name)
        }
    }
}

/// gzip through the system's zlib, loaded when first needed: the toolchain ships no zlib
/// module and its headers are not always installed, while `libz.so.1` is on every system.
enum Gzip {
    /// zlib's `gzdopen`, `gzwrite` and `gzclose`.
    struct Library: @unchecked Sendable {
        // Safe to share: C function pointers into a library that is never unloaded; zlib's
        // gz functions keep no state between the files they write.
        let open: @convention(c) (Int32, UnsafePointer<CChar>) -> OpaquePointer?
        let write: @convention(c) (OpaquePointer, UnsafeRawPointer, UInt32) -> Int32
        let close: @convention(c) (OpaquePointer) -> Int32
    }

    static let library: Library? = {
        guard let handle = dlopen("libz.so.1", RTLD_NOW),
            let open = dlsym(handle, "gzdopen"), let write = dlsym(handle, "gzwrite"), let close = dlsym(handle, "gzclose")
        else { return nil }
        return Library(
            open: unsafeBitCast(open, to: (@convention(c) (Int32, UnsafePointer<CChar>) -> OpaquePointer?).self),
            write: unsafeBitCast(write, to: (@convention(c) (OpaquePointer, UnsafeRawPointer, UInt32) -> Int32).self),
            close: unsafeBitCast(close, to: (@convention(c) (OpaquePointer) -> Int32).self))
    }()

    /// Writes `path.gz` with the same permissions, then removes `path`; on any failure the
    /// partial `.gz` is removed and `path` stays.
    static func compress(_ path: String) {
        guard let zlib = library, let source = FileHandle(forReadingAtPath: path) else { return }
        defer { try? source.close() }
        let target = path + ".gz"
        // Created with the log's permissions from the start: a log kept private is never
        // readable by others, not even while it is compressed.
        let descriptor = open(target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, RotatingLogFile.permissions(of: path) ?? 0o600)
        guard descriptor >= 0 else { return }
        guard let gz = zlib.open(descriptor, "wb") else {
            close(descriptor)
            unlink(target)
            return
        }
        var failed = false
        do {
            // nil or empty at the end of the file.
            while !failed, let chunk = try source.read(upToCount: 1 << 16), !chunk.isEmpty {
                failed = chunk.withUnsafeBytes { zlib.write(gz, $0.baseAddress!, UInt32($0.count)) } != Int32(chunk.count)
            }
        } catch {
            failed = true
        }
        failed = zlib.close(gz) != 0 || failed
        guard !failed else {
            unlink(target)
            return
        }
        unlink(path)
    }
}
