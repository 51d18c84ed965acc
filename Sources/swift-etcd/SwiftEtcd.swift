import ArgumentParser
import EtcdEmbed
import EtcdServer
import Foundation
import GRPCWire
import Logging

/// Entry point: applies etcd's `ETCD_*` environment variables, then parses the flags.
@main
enum Main {
    static func main() async {
        let warn = { (message: String) in FileHandle.standardError.write(Data("{\"level\":\"warn\",\"msg\":\"\(message)\"}\n".utf8)) }
        let given = EnvironmentFlags.arguments(
            Array(CommandLine.arguments.dropFirst()), environment: ProcessInfo.processInfo.environment,
            knownFlags: ServerFlags.flagNames.union(EtcdFlagTable.etcdFlags), warn: warn)
        if given.contains("--version") {
            print(EtcdFlagTable.versionText, terminator: "")
            return
        }
        if given.contains("--print-flag-table") {
            print(EtcdFlagTable.markdownTable(), terminator: "")
            return
        }
        // etcd's flags swift-etcd does not take are refused by name, never ignored.
        let (arguments, refusal) = EtcdFlagTable.check(given)
        if let refusal {
            FileHandle.standardError.write(Data("Error: \(refusal)\n".utf8))
            exit(1)
        }
        for warning in EtcdFlagTable.deprecationWarnings(arguments) { warn(warning) }
        await SwiftEtcd.main(ServerFlags.goBooleanSyntax(arguments))
    }
}

/// The swift-etcd server: etcd's flags, one member of a cluster, until SIGTERM or SIGINT.
struct SwiftEtcd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swift-etcd",
        abstract: "A distributed, strongly consistent key-value store that speaks etcd's v3 API.")

    @OptionGroup var flags: ServerFlags

    func run() async throws {
        var configuration: EmbedConfiguration
        do {
            configuration = try flags.configuration()
            let outputs = try LogOutputs(configuration.logOutputs)
            LoggingSystem.bootstrap { [level = configuration.logLevel] _ in JSONLogHandler(logLevel: level, outputs: outputs) }
        } catch {
            throw ValidationError(error.description)
        }
        // A removed member stops as if told to: the same graceful shutdown as SIGTERM.
        configuration.onRemovedFromCluster = { kill(getpid(), SIGTERM) }
        let etcd: EmbeddedEtcd
        do {
            etcd = try await EmbeddedEtcd.start(configuration)
        } catch let error as ConfigurationError {
            // A member that cannot start (its data disagrees with its peers', its name is not in
            // the cluster…) says why and exits 1, as etcd does; usage is for bad flags only.
            Logger(label: "swift-etcd").critical("failed to start", metadata: ["error": "\(error.description)"])
            FileHandle.standardError.write(Data("Error: \(error.description)\n".utf8))
            throw ExitCode.failure
        }
        await waitForTerminationSignal()
        Logger(label: "swift-etcd").info("received signal; shutting down")
        await etcd.stop()
    }
}
