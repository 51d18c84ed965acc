import EtcdServer
import Foundation
import Locking
import Logging
import Synchronization

/// Structured logs in the shape of etcd's zap logger: one JSON object per line with `level`,
/// `ts`, `caller`, `msg` and the metadata fields, so log pipelines built for etcd keep working.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    let outputs: LogOutputs

    public init(logLevel: Logger.Level, outputs: LogOutputs) {
        self.logLevel = logLevel
        self.outputs = outputs
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let caller = "\((event.file as NSString).lastPathComponent):\(event.line)"
        var line = "{\"level\":\"\(Self.zapLevel(event.level))\",\"ts\":\"\(Self.timestamp())\","
        line += "\"caller\":\(Self.quoted(caller)),\"msg\":\(Self.quoted(event.message.description))"
        let fields = metadata.merging(event.metadata ?? [:], uniquingKeysWith: { $1 })
        for (key, value) in fields.sorted(by: { $0.key < $1.key }) {
            line += ",\(Self.quoted(key)):\(Self.quoted(value.description))"
        }
        outputs.write(line + "}\n")
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

    private static func timestamp() -> String {
        Date().formatted(.iso8601.year().month().day().timeSeparator(.colon).time(includingFractionalSeconds: true).timeZone(separator: .omitted))
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

/// Where logs go (etcd's `--log-outputs`): `stderr` (also `default`), `stdout`, or file paths.
public final class LogOutputs: Sendable {
    private let handles: Locked<[FileHandle]>

    public init(_ names: [String]) throws(ConfigurationError) {
        var handles: [FileHandle] = []
        for name in names {
            switch name {
            case "stderr", "default": handles.append(.standardError)
            case "stdout": handles.append(.standardOutput)
            default:
                if !FileManager.default.fileExists(atPath: name) {
                    _ = FileManager.default.createFile(atPath: name, contents: nil)
                }
                guard let file = FileHandle(forWritingAtPath: name) else {
                    throw ConfigurationError("--log-outputs: cannot open \(name) for writing")
                }
                file.seekToEndOfFile()
                handles.append(file)
            }
        }
        self.handles = Locked(handles)
    }

    func write(_ line: String) {
        let data = Data(line.utf8)
        handles.withLock { handles in
            for handle in handles { handle.write(data) }
        }
    }
}
