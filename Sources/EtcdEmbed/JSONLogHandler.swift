import EtcdServer
import Foundation
import Locking
import Logging
import Synchronization

/// Structured logs in the shape of etcd's zap logger: one JSON object per line with `level`,
/// `ts`, `caller`, `msg` and the metadata fields, so log pipelines built for etcd keep working;
/// or, with `--log-format console`, zap's console lines (the same values, tab-separated, the
/// fields as one JSON object at the end).
public struct JSONLogHandler: LogHandler {
    /// etcd's `--log-format`.
    public enum Format: String, Sendable {
        case json, console

        /// Reads etcd's value, refused with etcd's message.
        public init(flag: String) throws(ConfigurationError) {
            guard let format = Format(rawValue: flag.isEmpty ? "json" : flag) else {
                throw ConfigurationError("unknown log format: \(flag), supported values json, console")
            }
            self = format
        }
    }

    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    let outputs: LogOutputs
    let format: Format

    public init(logLevel: Logger.Level, outputs: LogOutputs, format: Format = .json) {
        self.logLevel = logLevel
        self.outputs = outputs
        self.format = format
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let caller = "\((event.file as NSString).lastPathComponent):\(event.line)"
        let fields = metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 }).sorted(by: { $0.key < $1.key })
        switch format {
        case .json:
            var line = "{\"level\":\"\(Self.zapLevel(event.level))\",\"ts\":\"\(GoFormat.time(Date()))\","
            line += "\"caller\":\(Self.quoted(caller)),\"msg\":\(Self.quoted(event.message.description))"
            for (key, value) in fields { line += ",\(Self.quoted(key)):\(Self.json(value))" }
            outputs.write(line + "}\n")
        case .console:
            // zap's console encoder: its JSON for the fields is spaced (`"key": value, …`).
            var line = "\(GoFormat.time(Date()))\t\(Self.zapLevel(event.level))\t\(caller)\t\(event.message.description)"
            if !fields.isEmpty {
                line += "\t{" + fields.map { "\(Self.quoted($0.key)): \(Self.json($0.value))" }.joined(separator: ", ") + "}"
            }
            outputs.write(line + "\n")
        }
    }

    /// etcd's `--log-level` names.
    static func level(named name: String) -> Logger.Level? {
        switch name {
        case "debug": .debug
        case "info": .info
        case "warn": .warning
        case "error": .error
        case "panic", "fatal": .critical
        default: nil
        }
    }

    private static func zapLevel(_ level: Logger.Level) -> String {
        switch level {
        case .trace, .debug: "debug"
        case .info, .notice: "info"
        case .warning: "warn"
        case .error: "error"
        case .critical: "fatal"
        }
    }

    /// An integer given as one (`.stringConvertible(42)`) as a JSON number, as zap writes
    /// etcd's integer fields; anything else as a string.
    private static func json(_ value: Logger.MetadataValue) -> String {
        if case .stringConvertible(let number as any BinaryInteger) = value { return "\(number)" }
        return quoted(value.description)
    }

    /// A JSON string literal.
    private static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

/// Where logs go (etcd's `--log-outputs`): `stderr` (also `default`), `stdout`, or file paths;
/// with a rotation configuration (etcd's `--log-rotation-config-json`) the one file is rotated.
public final class LogOutputs: Sendable {
    private enum Sink {
        case handle(FileHandle)
        case rotating(RotatingLogFile)
    }
    private let sinks: Locked<[Sink]>

    public init(_ names: [String], rotationJSON: String? = nil) throws(ConfigurationError) {
        let rotation = try rotationJSON.map { json throws(ConfigurationError) in try LogRotation(json: json) }
        if rotation != nil { try LogRotation.checkOutputs(names) }
        var sinks: [Sink] = []
        for name in names {
            switch name {
            case "stderr", "default": sinks.append(.handle(.standardError))
            case "stdout": sinks.append(.handle(.standardOutput))
            default:
                if let rotation {
                    sinks.append(.rotating(try RotatingLogFile(path: name, rotation: rotation)))
                    continue
                }
                if !FileManager.default.fileExists(atPath: name) {
                    _ = FileManager.default.createFile(atPath: name, contents: nil)
                }
                guard let file = FileHandle(forWritingAtPath: name) else {
                    throw ConfigurationError("--log-outputs: cannot open \(name) for writing")
                }
                file.seekToEndOfFile()
                sinks.append(.handle(file))
            }
        }
        self.sinks = Locked(sinks)
    }

    /// Writes `line` to every output; one that fails (a full disk, a closed pipe) loses the
    /// line rather than stopping the server.
    func write(_ line: String) {
        let data = Data(line.utf8)
        sinks.withLock { sinks in
            for sink in sinks {
                switch sink {
                case .handle(let handle): try? handle.write(contentsOf: data)
                case .rotating(let file): file.write(data)
                }
            }
        }
    }
}
