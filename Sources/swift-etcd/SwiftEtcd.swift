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
        let commandLine = Array(CommandLine.arguments.dropFirst())
        let variables = ProcessInfo.processInfo.environment
        let given: [String]
        if !commandLine.contains("--version"), let path = ConfigFile.path(commandLine: commandLine, environment: variables) {
            given = configuration(from: path, ignoring: ConfigFile.ignored(commandLine: commandLine, environment: variables))
        } else {
            let environment = EnvironmentFlags.arguments(
                commandLine, environment: variables, knownFlags: ServerFlags.flagNames.union(EtcdFlagTable.etcdFlags))
            for variable in environment.unrecognized {
                log("warn", "unrecognized environment variable", ["environment-variable": variable])
            }
            if let conflicting = environment.conflicting {
                log("fatal", "conflicting environment variable is shadowed by corresponding command-line flag (either unset environment variable or disable flag))", ["environment-variable": conflicting])
                exit(1)
            }
            given = environment.arguments
        }
        if given.contains("--version") {
            print(EtcdFlagTable.versionText, terminator: "")
            return
        }
        if given.contains("--help") || given.contains("-h") {
            print(EtcdHelp.text, terminator: "")
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
        for warning in EtcdFlagTable.deprecationWarnings(arguments) { log("warn", warning) }
        let command: SwiftEtcd
        do {
            command = try SwiftEtcd.parse(ServerFlags.goBooleanSyntax(arguments))
        } catch {
            fail(error)
        }
        do {
            try await command.run()
        } catch {
            fail(error)
        }
    }

    /// A bad flag or value exits 2 after the message and the usage line, as Go's flag package
    /// makes etcd exit (ArgumentParser's own code for it is 64); a member that cannot start
    /// exits 1.
    private static func fail(_ error: any Error) -> Never {
        guard SwiftEtcd.exitCode(for: error) == .validationFailure else { SwiftEtcd.exit(withError: error) }
        FileHandle.standardError.write(Data((SwiftEtcd.fullMessage(for: error) + "\n").utf8))
        exit(2)
    }

    /// The flags the configuration file at `path` stands for; exits as etcd does (after
    /// `failed to verify flags`) when it cannot be read or holds a setting swift-etcd refuses.
    private static func configuration(from path: String, ignoring ignored: [String]) -> [String] {
        do {
            let file = try ConfigFile.load(path: path)
            let arguments = try file.checkedArguments()
            log("info", "loaded server configuration, other configuration command line flags and environment variables will be ignored if provided", ["path": path])
            if !ignored.isEmpty {
                log("warn", "ignoring command-line flags and environment variables: a configuration file is given", ["ignored": ignored.joined(separator: ",")])
            }
            for warning in file.warnings { log("warn", warning, ["path": path]) }
            return arguments
        } catch {
            log("warn", "failed to verify flags", ["error": error.description, "path": path])
            exit(1)
        }
    }

    /// One JSON log line on standard error, as etcd logs before its logger is set up.
    static func log(_ level: String, _ message: String, _ fields: [String: String] = [:]) {
        func quoted(_ text: String) -> String {
            (try? JSONEncoder().encode(text)).map { String(decoding: $0, as: UTF8.self) } ?? "\"\""
        }
        var line = "{\"level\":\(quoted(level)),\"msg\":\(quoted(message))"
        for (key, value) in fields.sorted(by: { $0.key < $1.key }) { line += ",\(quoted(key)):\(quoted(value))" }
        FileHandle.standardError.write(Data((line + "}\n").utf8))
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
            configuration = try flags.parsedConfiguration()
        } catch {
            throw ValidationError(error.description)
        }
        do {
            let format = try JSONLogHandler.Format(flag: configuration.logFormat)
            let outputs = try LogOutputs(configuration.logOutputs, rotationJSON: configuration.logRotationConfigJSON)
            LoggingSystem.bootstrap { [level = configuration.logLevel] _ in
                JSONLogHandler(logLevel: level, outputs: outputs, format: format)
            }
        } catch {
            // etcd sets its logger up among its checks of the values together: exit 1.
            Main.log("warn", "failed to verify flags", ["error": error.description])
            throw ExitCode.failure
        }
        do {
            try configuration.validate()
        } catch {
            // etcd's checks of the values together (its `Config.Validate`) exit 1 after
            // `failed to verify flags`; values Go's flag package cannot parse exit 2 (above).
            Logger(label: "swift-etcd").warning("failed to verify flags", metadata: ["error": "\(error.description)"])
            FileHandle.standardError.write(Data("Error: \(error.description)\n".utf8))
            throw ExitCode.failure
        }
        // A removed member stops as if told to: the same graceful shutdown as SIGTERM.
        configuration.onRemovedFromCluster = { kill(getpid(), SIGTERM) }
        Self.raiseOpenFileLimit()
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

    /// Raises the soft limit on open files to the hard one, as every Go program (etcd
    /// included) does at start: each client connection takes a descriptor, and the usual soft
    /// limit of 1024 would refuse connections long before the machine runs short.
    private static func raiseOpenFileLimit() {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        limit.rlim_cur = limit.rlim_max
        _ = setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
}
