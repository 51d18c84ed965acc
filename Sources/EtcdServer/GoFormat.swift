import Foundation

/// Durations and times as etcd's logs print them (Go's `time.Duration.String` and zap's
/// ISO 8601 time encoder), so log readers written for etcd parse ours.
package enum GoFormat {
    /// A duration as Go prints one: `850ns`, `1.5µs`, `123.456ms`, `2.5s`, `1m30s`, `2h0m5.25s`.
    package static func duration(_ duration: Duration) -> String {
        let nanoseconds = duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
        guard nanoseconds >= 0 else { return "-" + Self.duration(.nanoseconds(-nanoseconds)) }
        /// `value` in units of `unit` (a power of ten of nanoseconds), its fraction without
        /// trailing zeros.
        func decimal(_ value: Int64, _ unit: Int64) -> String {
            var fraction = String(value % unit)
            fraction = String(repeating: "0", count: String(unit).count - 1 - fraction.count) + fraction
            while fraction.hasSuffix("0") { fraction.removeLast() }
            return "\(value / unit)" + (fraction.isEmpty ? "" : "." + fraction)
        }
        if nanoseconds < 1000 { return "\(nanoseconds)ns" }
        if nanoseconds < 1_000_000 { return decimal(nanoseconds, 1000) + "µs" }
        if nanoseconds < 1_000_000_000 { return decimal(nanoseconds, 1_000_000) + "ms" }
        let (hours, minutes) = (nanoseconds / 3_600_000_000_000, nanoseconds / 60_000_000_000 % 60)
        let seconds = decimal(nanoseconds % 60_000_000_000, 1_000_000_000) + "s"
        if hours > 0 { return "\(hours)h\(minutes)m" + seconds }
        return minutes > 0 ? "\(minutes)m" + seconds : seconds
    }

    /// A point in time in UTC to the millisecond: `2026-12-05T14:43:57.123Z`.
    package static func time(_ date: Date) -> String {
        date.formatted(.iso8601.year().month().day().timeSeparator(.colon).time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }
}
