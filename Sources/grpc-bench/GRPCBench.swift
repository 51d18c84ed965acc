import ArgumentParser
import Foundation
import GRPCWire
import NIOCore
import NIOPosix
import SwiftProtobuf

@main
struct GRPCBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "grpc-bench",
        abstract: "Measures the gRPC layer: an echo server, and a unary load generator that reports server CPU per RPC.",
        subcommands: [Serve.self, Load.self])
}

/// Serves the echo service until SIGTERM/SIGINT.
struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve the echo service (grpcbench.Echo).")

    @Option var host = "127.0.0.1"
    @Option(help: "Port to listen on; 0 picks a free one (printed on stdout).") var port = 0
    @Option(help: "Event-loop threads.") var threads = 1

    func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        let server = try await GRPCServer.start(
            router: EchoService.router(), configuration: .init(host: host, port: port), group: group)
        FileHandle.standardOutput.write(Data("listening on \(host):\(server.localAddress?.port ?? 0)\n".utf8))
        await waitForTerminationSignal()
        await server.shutdown(gracePeriod: .seconds(2))
    }
}

/// Sends unary RPCs over one connection and reports throughput and, given the server's pid,
/// the server's CPU time per RPC (user + system, from /proc).
struct Load: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run unary RPCs against a server.")

    @Option(help: "host:port of the server.") var target: String
    @Option(help: "Method path; an empty request is sent unless it is the echo method.")
    var method = EchoService.unary
    @Option(help: "Bytes in each echo request.") var payloadSize = 16
    @Option(help: "RPCs in flight at once.") var concurrency = 1
    @Option(help: "Total RPCs.") var total = 10_000
    @Option(help: "Warm-up RPCs sent before measuring.") var warmup = 1_000
    @Option(help: "Server process id, to read its CPU time from /proc.") var serverPid: Int32?

    func run() async throws {
        guard let endpoint = GRPCClient.Endpoint(target) else { throw ValidationError("bad --target \(target)") }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let connection = try await GRPCClientConnection.connect(.init(host: endpoint.host, port: endpoint.port), group: group)
        let isEcho = method == EchoService.unary
        let echo = Google_Protobuf_BytesValue.with { $0.value = Data(repeating: 0x61, count: payloadSize) }

        let call: @Sendable () -> EventLoopFuture<Void> = { [method] in
            isEcho
                ? connection.startUnary(method, echo, responseType: Google_Protobuf_BytesValue.self).map { _ in }
                : connection.startUnary(method, Google_Protobuf_Empty(), responseType: Google_Protobuf_Empty.self).map { _ in }
        }
        _ = try await Self.drive(call, count: warmup, concurrency: concurrency, eventLoop: group.next())
        let cpuBefore = serverPid.flatMap(Self.cpuSeconds)
        let start = ContinuousClock.now
        let errors = try await Self.drive(call, count: total, concurrency: concurrency, eventLoop: group.next())
        let elapsed = start.duration(to: .now)
        let cpuAfter = serverPid.flatMap(Self.cpuSeconds)
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        var result = "RESULT method=\(method) rpcs=\(total) errors=\(errors.count) concurrency=\(concurrency) "
        result += String(format: "seconds=%.3f rps=%.0f", seconds, Double(total) / seconds)
        if let cpuBefore, let cpuAfter {
            result += String(format: " server_cpu_us_per_rpc=%.1f", (cpuAfter - cpuBefore) / Double(total) * 1e6)
        }
        print(result)
        if let first = errors.first { print("first error: \(first)") }
        await connection.close()
        try await group.shutdownGracefully()
        if !errors.isEmpty { throw ExitCode(1) }
    }

    /// Keeps `concurrency` calls in flight until `count` completed; returns the failures.
    private static func drive(
        _ call: @escaping @Sendable () -> EventLoopFuture<Void>, count: Int, concurrency: Int, eventLoop: any EventLoop
    ) async throws -> [any Error] {
        let done = eventLoop.makePromise(of: [any Error].self)
        eventLoop.execute {
            let state = NIOLoopBound(LoadState(remaining: count), eventLoop: eventLoop)
            @Sendable func launch() {
                guard state.value.remaining > 0 else { return }
                state.value.remaining -= 1
                call().hop(to: eventLoop).whenComplete { result in
                    if case .failure(let error) = result { state.value.errors.append(error) }
                    state.value.completed += 1
                    if state.value.completed == count {
                        done.succeed(state.value.errors)
                    } else {
                        launch()
                    }
                }
            }
            if count == 0 { return done.succeed([]) }
            for _ in 0..<min(concurrency, count) { launch() }
        }
        return try await done.futureResult.get()
    }

    private final class LoadState {
        var remaining: Int
        var completed = 0
        var errors: [any Error] = []
        init(remaining: Int) { self.remaining = remaining }
    }

    /// utime + stime of a process, in seconds.
    private static func cpuSeconds(_ pid: Int32) -> Double? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}
