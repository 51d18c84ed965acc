import Locking
import Logging
import Synchronization

/// A logger that keeps what it logs, to check what a refused connection says.
public final class RecordingLog: Sendable {
    public init() {}

    private let lines = Locked<[String]>([])
    public var entries: [String] { lines.withLock { $0 } }

    public var logger: Logger {
        Logger(label: "test") { _ in Handler(log: self) }
    }

    fileprivate func append(_ line: String) { lines.withLock { $0.append(line) } }

    private struct Handler: LogHandler {
        let log: RecordingLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let fields = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            log.append(([event.message.description] + fields).joined(separator: " "))
        }
    }
}
