import Foundation
import Locking
import Prometheus
import Synchronization

/// The `process_*` metrics Prometheus' Go client exports (etcd's dashboards read them), read
/// from `/proc/self` at each scrape.
final class ProcessMetrics: Sendable {
    private let residentMemory: Gauge
    private let virtualMemory: Gauge
    private let cpuSeconds: Counter
    /// The CPU seconds already counted (a counter moves by increments).
    private let countedCPU = Locked(0.0)
    private let openFDs: Gauge
    private let maxFDs: Gauge
    private let startTime: Gauge
    private static let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))
    private static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

    init(registry: PrometheusCollectorRegistry) {
        func gauge(_ name: String, _ help: String) -> Gauge {
            registry.makeGauge(descriptor: MetricNameDescriptor(metricName: name, unitName: "", helpText: help))
        }
        residentMemory = gauge("process_resident_memory_bytes", "Resident memory size in bytes.")
        virtualMemory = gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.")
        cpuSeconds = registry.makeCounter(descriptor: MetricNameDescriptor(
            metricName: "process_cpu_seconds_total", unitName: "", helpText: "Total user and system CPU time spent in seconds."))
        openFDs = gauge("process_open_fds", "Number of open file descriptors.")
        maxFDs = gauge("process_max_fds", "Maximum number of open file descriptors.")
        startTime = gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.")
    }

    func refresh() {
        // /proc/self/stat: fields after the command name (which may hold spaces) start at state.
        if let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        {
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            // state is field 3; utime 14, stime 15, starttime 22, vsize 23, rss 24 (1-based).
            func field(_ number: Int) -> Double { Double(fields[number - 3]) ?? 0 }
            if fields.count > 21 {
                let total = (field(14) + field(15)) / Self.ticksPerSecond
                let delta = countedCPU.withLock { counted in
                    defer { counted = max(counted, total) }
                    return total - counted
                }
                if delta > 0 { cpuSeconds.increment(by: delta) }
                virtualMemory.set(field(23))
                residentMemory.set(field(24) * Self.pageSize)
                if let uptime = try? String(contentsOfFile: "/proc/uptime", encoding: .utf8),
                    let seconds = Double(uptime.split(separator: " ")[0])
                {
                    let bootTime = Date().timeIntervalSince1970 - seconds
                    startTime.set(bootTime + field(22) / Self.ticksPerSecond)
                }
            }
        }
        openFDs.set(Double((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0))
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 { maxFDs.set(Double(limit.rlim_cur)) }
    }
}
