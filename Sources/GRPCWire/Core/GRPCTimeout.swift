import NIOCore

/// The `grpc-timeout` header: at most eight digits and a unit (`H M S m u n`).
public enum GRPCTimeout {
    /// Parses a header value into a duration; nil when the value is malformed.
    public static func parse(_ value: Substring) -> TimeAmount? {
        guard let unit = value.last, value.count >= 2, value.count <= 9,
            let amount = Int64(value.dropLast()), amount >= 0
        else { return nil }
        switch unit {
        case "H": return .hours(amount)
        case "M": return .minutes(amount)
        case "S": return .seconds(amount)
        case "m": return .milliseconds(amount)
        case "u": return .microseconds(amount)
        case "n": return .nanoseconds(amount)
        default: return nil
        }
    }

    /// Formats a duration with the finest unit that fits in eight digits, rounding up so the
    /// server never sees a shorter deadline than the client set.
    static func format(_ amount: TimeAmount) -> String {
        let nanos = max(amount.nanoseconds, 0)
        let units: [(Int64, Character)] = [
            (1, "n"), (1_000, "u"), (1_000_000, "m"), (1_000_000_000, "S"), (60_000_000_000, "M"),
            (3_600_000_000_000, "H"),
        ]
        for (scale, unit) in units {
            let value = (nanos + scale - 1) / scale
            if value < 100_000_000 { return "\(value)\(unit)" }
        }
        return "99999999H"
    }
}
