import Foundation

/// Durations and times as etcd's logs print them (Go's `time.Duration.String` and zap's
/// ISO 8601 time encoder), so log readers written for etcd parse ours.
package enum GoFormat {
    /// A duration as Go prints one below a minute: `850ns`, `1.5µs`, `123.456ms`, `2.5s`.
    package static func duration(_ duration: Duration) -> String {
        let nanoseconds = duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
        func scaled(_ divisor: Double, _ unit: String) -> String {
            var text = "\(Double(nanoseconds) / divisor)"
            if text.hasSuffix(".0") { text.removeLast(2) }
            return text + unit
        }
        if nanoseconds < 1000 { return "\(nanoseconds)ns" }
        if nanoseconds < 1_000_000 { return scaled(1e3, "µs") }
        if nanoseconds < 1_000_000_000 { return scaled(1e6, "ms") }
        return scaled(1e9, "s")
    }

    /// A point in time in UTC to the millisecond: `2026-12-05T14:43:57.123Z`.
    package static func time(_ date: Date) -> String {
        date.formatted(.iso8601.year().month().day().timeSeparator(.colon).time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }
}
