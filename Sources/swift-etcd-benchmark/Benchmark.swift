import ArgumentParser
import EtcdClient
import EtcdProto
import Foundation
import GRPCWire
import SwiftProtobuf

/// Load generator for etcd's v3 API, modelled on etcd's `tools/benchmark`: the same
/// subcommands, flags and report layout, against etcd or swift-etcd alike.
@main
struct Benchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swift-etcd-benchmark",
        abstract: "A low-level benchmark tool for etcd's v3 API (etcd or swift-etcd).",
        subcommands: [Put.self, RangeCommand.self, TxnPut.self, TxnMixed.self, LeaseKeepalive.self, LeaseGrant.self, Login.self, Watch.self, WatchLatency.self]
    )
}

struct GlobalOptions: ParsableArguments {
    @Option(help: "Comma-separated gRPC endpoints (host:port).")
    var endpoints = "127.0.0.1:2379"

    @Option(help: "Total number of gRPC connections.")
    var conns = 1

    @Option(help: "Total number of concurrent clients.")
    var clients = 1

    @Option(help: "Verify certificates of TLS-enabled secure servers using this CA bundle.")
    var cacert: String?

    @Option(help: "Identify secure client using this TLS certificate file.")
    var cert: String?

    @Option(help: "Identify secure client using this TLS key file.")
    var key: String?

    @Flag(name: .customLong("insecure-skip-tls-verify"), help: "Skip server certificate verification.")
    var insecureSkipTLSVerify = false

    @Option(help: "Username[:password] for authentication.")
    var user: String?

    var endpointList: [String] { endpoints.split(separator: ",").map(String.init) }

    /// `--user name:password` as credentials (a name alone has an empty password).
    var credentials: EtcdCredentials? {
        guard let user else { return nil }
        let parts = user.split(separator: ":", maxSplits: 1).map(String.init)
        return EtcdCredentials(user: parts[0], password: parts.count > 1 ? parts[1] : "")
    }

    /// TLS as etcd's benchmark takes it: any of the TLS flags turns it on.
    var tls: EtcdClient.TLSOptions? {
        guard cacert != nil || cert != nil || key != nil || insecureSkipTLSVerify else { return nil }
        var options = EtcdClient.TLSOptions(caFile: cacert, certFile: cert, keyFile: key)
        options.insecureSkipVerify = insecureSkipTLSVerify
        return options
    }

    func runner() throws -> Runner {
        try Runner(endpoints: endpointList, tls: tls, credentials: credentials, connections: conns, clients: clients)
    }
}

/// Keys as etcd's benchmark makes them: `size` bytes with the zigzag varint of `n` at the front
/// (so keys are binary, and a server that mishandles binary keys fails visibly).
func benchmarkKey(_ n: Int, size: Int) -> Data {
    var key = Data(count: max(size, 1))
    var value = UInt64(bitPattern: Int64(n) << 1 ^ Int64(n) >> 63)
    var i = 0
    while value >= 0x80 && i < key.count {
        key[i] = UInt8(truncatingIfNeeded: value) | 0x80
        value >>= 7
        i += 1
    }
    if i < key.count { key[i] = UInt8(value) }
    return key
}

func randomValue(size: Int) -> Data {
    Data((0..<size).map { _ in UInt8.random(in: 0...255) })
}

func printReports(_ reports: [Report]) {
    for report in reports {
        print(report.text)
        print(report.resultLine)
    }
}

/// The options every writing subcommand shares, with etcd's defaults.
struct WriteOptions: ParsableArguments {
    @Option(name: .customLong("key-size"), help: "Key size of each put.") var keySize = 8
    @Option(name: .customLong("val-size"), help: "Value size of each put.") var valSize = 8
    @Option(help: "Maximum requests per second (0 is no limit).") var rate = 0
    @Option(help: "Total number of requests.") var total = 10_000
    @Option(name: .customLong("key-space-size"), help: "Maximum possible keys.") var keySpaceSize = 1
}

struct Put: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Benchmark put.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var write: WriteOptions
    @Flag(name: .customLong("sequential-keys"), help: "Use sequential keys.") var sequentialKeys = false

    func validate() throws {
        guard write.keySpaceSize > 0 else {
            throw ValidationError("expected positive --key-space-size, got (\(write.keySpaceSize))")
        }
    }

    func run() async throws {
        let runner = try global.runner()
        let value = randomValue(size: write.valSize)
        let (keySize, space, sequential) = (write.keySize, write.keySpaceSize, sequentialKeys)
        let reports = await runner.run(total: write.total, rate: write.rate, names: ["put"]) { client, n in
            let key = benchmarkKey(sequential ? n % space : Int.random(in: 0..<space), size: keySize)
            try await client.put(key, value)
            return "put"
        }
        printReports(reports)
        await runner.close()
    }
}

/// Not in etcd's tool: grants leases (and keeps them), to measure what live leases cost a server.
struct LeaseGrant: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "lease-grant", abstract: "Benchmark lease grants (the leases stay).")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Total number of leases to grant.") var total = 10_000
    @Option(help: "TTL of each lease, in seconds.") var ttl: Int64 = 3600

    func run() async throws {
        let runner = try global.runner()
        let ttl = self.ttl
        let reports = await runner.run(total: total, rate: 0, names: ["lease-grant"]) { client, _ in
            _ = try await client.grantLease(ttl: ttl)
            return "lease-grant"
        }
        printReports(reports)
        await runner.close()
    }
}

/// Not in etcd's tool: logins (`Authenticate`), right or wrong, to measure what bcrypt costs a
/// server, and — run beside another workload — whether a flood of wrong passwords slows others.
struct Login: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "login", abstract: "Benchmark logins (wrong passwords count as errors).")
    @OptionGroup var global: GlobalOptions
    @Option(help: "name:password to log in as.") var login: String
    @Option(help: "Total number of logins.") var total = 1_000

    func run() async throws {
        let runner = try global.runner()
        let parts = login.split(separator: ":", maxSplits: 1).map(String.init)
        let request = Etcdserverpb_AuthenticateRequest.with {
            $0.name = parts[0]
            $0.password = parts.count > 1 ? parts[1] : ""
        }
        let reports = await runner.run(total: total, rate: 0, names: ["login"]) { client, _ in
            _ = try await client.call(Etcdserverpb_AuthRPCs.authenticate, request)
            return "login"
        }
        printReports(reports)
        await runner.close()
    }
}

struct RangeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "range", abstract: "Benchmark range.")
    @OptionGroup var global: GlobalOptions
    @Argument(help: "Key to read.") var key: String
    @Argument(help: "Range end (optional).") var end: String?
    @Option(help: "Maximum ranges per second (0 is no limit).") var rate = 0
    @Option(help: "Total number of range requests.") var total = 10_000
    @Option(help: "Linearizable (l) or serializable (s).") var consistency = "l"
    @Option(help: "Maximum keys per response (0 is no limit).") var limit: Int64 = 0

    func validate() throws {
        guard consistency == "l" || consistency == "s" else { throw ValidationError("consistency must be l or s") }
    }

    func run() async throws {
        print(consistency == "l" ? "bench with linearizable range" : "bench with serializable range")
        let runner = try global.runner()
        let request = Etcdserverpb_RangeRequest.with {
            $0.key = Data(key.utf8)
            $0.rangeEnd = Data((end ?? "").utf8)
            $0.serializable = consistency == "s"
            $0.limit = limit
        }
        let reports = await runner.run(total: total, rate: rate, names: ["range"]) { client, _ in
            _ = try await client.range(request)
            return "range"
        }
        printReports(reports)
        await runner.close()
    }
}

struct TxnPut: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "txn-put", abstract: "Benchmark txn-put.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var write: WriteOptions
    @Option(name: .customLong("txn-ops"), help: "Number of puts per txn.") var txnOps = 1

    func validate() throws {
        guard txnOps <= write.keySpaceSize else {
            throw ValidationError(
                "expected --txn-ops no larger than --key-space-size, got txn-ops(\(txnOps)) key-space-size(\(write.keySpaceSize))")
        }
    }

    func run() async throws {
        let runner = try global.runner()
        let value = randomValue(size: write.valSize)
        let (keySize, space, ops) = (write.keySize, write.keySpaceSize, txnOps)
        let reports = await runner.run(total: write.total, rate: write.rate, names: ["txn-put"]) { client, n in
            let request = Etcdserverpb_TxnRequest.with { txn in
                txn.success = (0..<ops).map { j in
                    Etcdserverpb_RequestOp.with {
                        $0.requestPut = .with { $0.key = benchmarkKey((n * ops + j) % space, size: keySize); $0.value = value }
                    }
                }
            }
            _ = try await client.txn(request)
            return "txn-put"
        }
        printReports(reports)
        await runner.close()
    }
}

struct TxnMixed: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "txn-mixed", abstract: "Benchmark a mix of read and write txns.")
    @OptionGroup var global: GlobalOptions
    @OptionGroup var write: WriteOptions
    @Option(help: "Maximum keys per read.") var limit: Int64 = 1000
    @Option(help: "Linearizable (l) or serializable (s) reads.") var consistency = "l"
    @Option(name: .customLong("rw-ratio"), help: "Read/write ratio.") var rwRatio = 1.0

    func run() async throws {
        print(consistency == "l" ? "bench with linearizable range" : "bench with serializable range")
        let runner = try global.runner()
        let value = randomValue(size: write.valSize)
        let (keySize, space, serializable, limit, ratio) = (write.keySize, write.keySpaceSize, consistency == "s", limit, rwRatio)
        let reports = await runner.run(total: write.total, rate: write.rate, names: ["txn-mixed-read", "txn-mixed-write"]) { client, n in
            let isRead = Double.random(in: 0..<1) < ratio / (1 + ratio)
            let op: Etcdserverpb_RequestOp
            if isRead {
                op = .with {
                    $0.requestRange = .with { $0.key = Data([0]); $0.rangeEnd = Data([0]); $0.limit = limit; $0.serializable = serializable }
                }
            } else {
                op = .with { $0.requestPut = .with { $0.key = benchmarkKey(n % space, size: keySize); $0.value = value } }
            }
            _ = try await client.txn(.with { $0.success = [op] })
            return isRead ? "txn-mixed-read" : "txn-mixed-write"
        }
        print("Total Read Ops: \(reports[0].latencies.count)\nDetails:", terminator: "")
        printReports([reports[0]])
        print("Total Write Ops: \(reports[1].latencies.count)\nDetails:", terminator: "")
        printReports([reports[1]])
        await runner.close()
    }
}

struct LeaseKeepalive: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "lease-keepalive", abstract: "Benchmark lease keepalive.")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Total number of lease keepalive requests.") var total = 10_000

    func run() async throws {
        let runner = try global.runner()
        let (total, clients) = (total, runner.clients)
        let next = Counter()
        let progress = Progress(total: total)
        let start = ContinuousClock.now
        // Each client grants its lease (untimed) and renews it on its own keep-alive stream.
        let reports = try await withThrowingTaskGroup(of: Report.self) { group in
            for worker in 0..<clients {
                let client = runner.connections[worker % runner.connections.count]
                group.addTask {
                    var report = Report(name: "lease-keepalive")
                    let lease = try await client.grantLease(ttl: 100)
                    let stream = try await client.keepAliveStream()
                    defer { stream.close() }
                    var responses = stream.responses.makeAsyncIterator()
                    while next.next() < total {
                        let began = ContinuousClock.now
                        do {
                            try await stream.keepAlive(lease.id)
                            guard let answer = try await responses.next(), answer.ttl > 0 else {
                                throw EtcdClientError(code: .notFound, message: "etcdserver: requested lease not found")
                            }
                            report.record(seconds: Runner.seconds(ContinuousClock.now - began))
                        } catch {
                            report.record(error: "\(error)")
                        }
                        progress.increment()
                    }
                    return report
                }
            }
            var merged = Report(name: "lease-keepalive")
            for try await report in group { merged.merge(report) }
            return merged
        }
        progress.finish()
        var report = reports
        report.elapsed = Runner.seconds(ContinuousClock.now - start)
        printReports([report])
        await runner.close()
    }
}

struct Watch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Benchmark watch: creation, then event fan-out from puts.")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Total number of watch streams.") var streams = 10
    @Option(name: .customLong("watch-per-stream"), help: "Total watchers per stream.") var watchPerStream = 100
    @Option(name: .customLong("watched-key-total"), help: "Total number of keys to be watched.") var watchedKeyTotal = 1
    @Option(name: .customLong("put-rate"), help: "Number of keys to put per second (0 is no limit).") var putRate = 0
    @Option(name: .customLong("put-total"), help: "Number of put requests.") var putTotal = 1000
    @Option(name: .customLong("key-size"), help: "Key size of watch request.") var keySize = 32
    @Option(help: "Seconds to keep the watchers open and idle after creating them, before the puts (for memory measurements).")
    var hold = 0.0

    func run() async throws {
        let runner = try global.runner()
        let keys = (0..<max(watchedKeyTotal, 1)).map { benchmarkKey($0, size: keySize) }
        // Phase 1: create every watcher, timing each creation until the server confirms it.
        let watchers = streams * watchPerStream
        let delivered = Counter()
        let responses = Counter()
        let latencies = SharedLocked(Report(name: "watch-event"))
        var creation = Report(name: "watch-create")
        let created = ContinuousClock.now
        var opened: [WatchStream] = []
        let sentAt = SharedLocked<[Int: ContinuousClock.Instant]>([:])
        for s in 0..<streams {
            let stream = try await runner.connections[s % runner.connections.count].watchStream()
            opened.append(stream)
            var iterator = stream.makeAsyncIterator()
            for w in 0..<watchPerStream {
                let began = ContinuousClock.now
                try await stream.create(.with { $0.key = keys[(s * watchPerStream + w) % keys.count] })
                guard let response = try await iterator.next(), response.created else {
                    throw EtcdClientError(code: .internal, message: "watch was not created")
                }
                creation.record(seconds: Runner.seconds(ContinuousClock.now - began))
            }
            // Events: latency from the put's acknowledgement (by revision) to delivery on this stream.
            Task { [iterator] in
                var iterator = iterator
                while let response = try? await iterator.next() {
                    let now = ContinuousClock.now
                    if !response.events.isEmpty { responses.add(1) }
                    for event in response.events {
                        // The value names the put, so its send time is known even when the event
                        // arrives before the put's own answer.
                        let n = event.kv.value.reduce(0) { $0 << 8 | Int($1) }
                        if let sent = sentAt.withLock({ $0[n] }) {
                            latencies.withLock { $0.record(seconds: Runner.seconds(now - sent)) }
                        }
                        delivered.add(1)
                    }
                }
            }
        }
        creation.elapsed = Runner.seconds(ContinuousClock.now - created)
        print("Watch creation summary:")
        printReports([creation])
        if hold > 0 {
            // Unbuffered, so a script waiting for this line sees it while the watchers are held.
            FileHandle.standardOutput.write(Data("HOLDING \(watchers) watchers on \(streams) streams\n".utf8))
            try await Task.sleep(for: .seconds(hold))
        }

        // Phase 2: puts on the watched keys; every watcher of a key must see every put to it.
        var watchersPerKey = [Int](repeating: 0, count: keys.count)
        for n in 0..<watchers { watchersPerKey[n % keys.count] += 1 }
        let expected = (0..<putTotal).reduce(0) { $0 + watchersPerKey[$1 % keys.count] }
        let start = ContinuousClock.now
        _ = await runner.run(total: putTotal, rate: putRate, names: ["put"]) { client, n in
            sentAt.withLock { $0[n] = ContinuousClock.now }
            let value = Data(withUnsafeBytes(of: UInt64(n).bigEndian) { Array($0) })
            try await client.put(keys[n % keys.count], value)
            return "put"
        }
        let deadline = ContinuousClock.now + .seconds(60)
        while delivered.current < expected && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(10))
        }
        var events = latencies.withLock { $0 }
        events.elapsed = Runner.seconds(ContinuousClock.now - start)
        let got = delivered.current
        print("Watch events received summary:")
        printReports([events])
        print("events delivered: \(got) of \(expected)\(got == expected ? "" : " (INCOMPLETE)")")
        // How many events the server put in each response: etcd's lagging watchers get many.
        print(String(format: "events per response: %.2f", Double(got) / Double(max(responses.current, 1))))
        for stream in opened { stream.close() }
        await runner.close()
        if got != expected { throw ExitCode(1) }
    }
}

struct WatchLatency: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "watch-latency", abstract: "Benchmark watch latency: put, then time until every watcher sees it.")
    @OptionGroup var global: GlobalOptions
    @Option(help: "Total number of puts.") var total = 10_000
    @Option(name: .customLong("put-rate"), help: "Number of keys to put per second.") var putRate = 100
    @Option(name: .customLong("key-size"), help: "Key size.") var keySize = 32
    @Option(name: .customLong("val-size"), help: "Value size.") var valSize = 32

    func run() async throws {
        let runner = try global.runner()
        let key = randomValue(size: keySize)
        let value = randomValue(size: valSize)
        var iterators: [AsyncThrowingStream<Etcdserverpb_WatchResponse, any Error>.AsyncIterator] = []
        var streams: [WatchStream] = []
        for c in 0..<runner.clients {
            let stream = try await runner.connections[c % runner.connections.count].watch(key)
            var iterator = stream.makeAsyncIterator()
            _ = try await iterator.next()  // created
            iterators.append(iterator)
            streams.append(stream)
        }
        let putter = try EtcdClient(endpoints: global.endpointList, tls: global.tls, credentials: global.credentials)
        var report = Report(name: "watch-latency")
        let start = ContinuousClock.now
        for n in 0..<total {
            if putRate > 0 {
                let due = start + .nanoseconds(Int64(Double(n) / Double(putRate) * 1e9))
                if due > .now { try await Task.sleep(until: due, clock: .continuous) }
            }
            try await putter.put(key, value)
            let began = ContinuousClock.now
            for i in iterators.indices {
                _ = try await iterators[i].next()
                report.record(seconds: Runner.seconds(ContinuousClock.now - began))
            }
        }
        report.elapsed = Runner.seconds(ContinuousClock.now - start)
        printReports([report])
        for stream in streams { stream.close() }
        await putter.close()
        await runner.close()
    }
}
