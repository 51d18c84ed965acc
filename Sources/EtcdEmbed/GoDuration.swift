/// Durations written as Go writes them, as etcd's duration flags take them: `10m`, `1m30s`,
/// `1.5s`, `100ms`, `250us`.
enum GoDuration {
    private static let units: [(suffix: String, nanoseconds: Double)] = [
        ("ns", 1), ("us", 1e3), ("µs", 1e3), ("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3600e9),
    ]

    /// The duration `text` denotes, or nil when it is not one ("0" alone is zero).
    static func parse(_ text: String) -> Duration? {
        if text == "0" { return .zero }
        var rest = Substring(text)
        var total = 0.0
        while !rest.isEmpty {
            let number = rest.prefix { $0.isNumber || $0 == "." }
            guard !number.isEmpty, let value = Double(number) else { return nil }
            rest = rest.dropFirst(number.count)
            let unitText = rest.prefix { !$0.isNumber && $0 != "." }
            // Longest suffix first ("ms" before "m").
            guard let unit = units.first(where: { $0.suffix == unitText }) else { return nil }
            rest = rest.dropFirst(unitText.count)
            total += value * unit.nanoseconds
        }
        guard text.isEmpty == false, total.isFinite, total < 9.2e18 else { return nil }
        return .nanoseconds(Int64(total))
    }
}
