import Foundation
import Histogram

/// Latencies of one kind of request, summarised the way etcd's benchmark prints them, plus
/// HDR-histogram percentiles and a machine-readable RESULT line.
struct Report {
    let name: String
    private(set) var latencies: [Double] = []
    private var histogram = Histogram<UInt64>(highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: .three)
    private var errors: [String: Int] = [:]
    var elapsed: Double = 0

    init(name: String) { self.name = name }

    mutating func record(seconds: Double) {
        latencies.append(seconds)
        histogram.record(UInt64(max(0, seconds * 1_000_000)))
    }

    mutating func record(error: String) {
        errors[error, default: 0] += 1
    }

    mutating func merge(_ other: Report) {
        latencies += other.latencies
        for value in other.latencies { histogram.record(UInt64(max(0, value * 1_000_000))) }
        for (message, count) in other.errors { errors[message, default: 0] += count }
    }

    var requestsPerSecond: Double { elapsed > 0 ? Double(latencies.count) / elapsed : 0 }

    /// A percentile in seconds, from the HDR histogram.
    func percentile(_ p: Double) -> Double { Double(histogram.valueAtPercentile(p)) / 1_000_000 }

    /// etcd's report layout: summary, response time histogram, latency distribution, errors.
    var text: String {
        var out = ""
        let sorted = latencies.sorted()
        if let fastest = sorted.first, let slowest = sorted.last {
            let average = sorted.reduce(0, +) / Double(sorted.count)
            let variance = sorted.reduce(0) { $0 + ($1 - average) * ($1 - average) } / Double(sorted.count)
            out += "\nSummary:\n"
            out += "  Total:\t\(Self.seconds(elapsed)).\n"
            out += "  Slowest:\t\(Self.seconds(slowest)).\n"
            out += "  Fastest:\t\(Self.seconds(fastest)).\n"
            out += "  Average:\t\(Self.seconds(average)).\n"
            out += "  Stddev:\t\(Self.seconds(variance.squareRoot())).\n"
            out += "  Requests/sec:\t\(String(format: "%4.4f", requestsPerSecond))\n"
            out += Self.histogramText(sorted, fastest: fastest, slowest: slowest)
            out += "\nLatency distribution:\n"
            for p in [10.0, 25, 50, 75, 90, 95, 99, 99.9] {
                let value = percentile(p)
                guard value > 0 else { continue }
                let label = p == p.rounded() ? String(Int(p)) : String(p)
                out += "  \(label)% in \(Self.seconds(value)).\n"
            }
        }
        if !errors.isEmpty {
            out += "\nError distribution:\n"
            for (message, count) in errors.sorted(by: { $0.value > $1.value }) {
                out += "  [\(count)]\t\(message)\n"
            }
        }
        return out
    }

    /// `RESULT op=... qps=... p50_ms=... p99_ms=...`, for scripts.
    var resultLine: String {
        let ms = { (value: Double) in String(format: "%.3f", value * 1000) }
        return "RESULT op=\(name) count=\(latencies.count) errors=\(errors.values.reduce(0, +))"
            + " qps=\(String(format: "%.1f", requestsPerSecond)) p50_ms=\(ms(percentile(50))) p90_ms=\(ms(percentile(90)))"
            + " p99_ms=\(ms(percentile(99))) p999_ms=\(ms(percentile(99.9)))"
    }

    private static func seconds(_ value: Double) -> String {
        String(format: "%4.4f secs", value)
    }

    /// Eleven buckets from fastest to slowest, bars of up to 40 `∎`, as etcd draws them.
    private static func histogramText(_ sorted: [Double], fastest: Double, slowest: Double) -> String {
        let step = (slowest - fastest) / 10
        var bounds = (0..<10).map { fastest + step * Double($0) }
        bounds.append(slowest)
        var counts = [Int](repeating: 0, count: bounds.count)
        var bucket = 0
        var i = 0
        while i < sorted.count && bucket < bounds.count {
            if sorted[i] <= bounds[bucket] {
                counts[bucket] += 1
                i += 1
            } else {
                bucket += 1
            }
        }
        let most = max(counts.max() ?? 1, 1)
        var out = "\nResponse time histogram:\n"
        for (bound, count) in zip(bounds, counts) {
            out += "  \(String(format: "%4.4f", bound)) [\(count)]\t|\(String(repeating: "∎", count: count * 40 / most))\n"
        }
        return out
    }
}
