import ArgumentParser
import Backend
import EtcdServer
import Foundation

/// etcd's `etcdutl` for swift-etcd's files: works on backups and stopped members' data
/// directories, never over the network (that is `etcdctl`).
@main
struct SwiftEtcdUtl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "swift-etcdutl",
        abstract: "An administrative tool for swift-etcd data files (etcd's etcdutl).",
        subcommands: [Snapshot.self, Defrag.self, Version.self])
}

/// etcdutl's exit codes.
enum ExitStatus {
    static let error: Int32 = 1
}

/// Prints `Error: …` to standard error and exits as etcdutl does.
func fail(_ error: any Error) -> Never {
    FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
    Foundation.exit(ExitStatus.error)
}

/// `--write-out`: etcdutl's output formats for status.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case simple, table, json, fields
}

struct Snapshot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Manages swift-etcd backups (made by `etcdctl snapshot save`)", subcommands: [Restore.self, Status.self])

    struct Restore: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Restores a backup into a new member's data directory",
            discussion: """
                Restore the same file into every member of the new cluster, each with its own --name. \
                The file is a swift-etcd snapshot, or an etcd one (etcdctl snapshot save, or a member's \
                member/snap/db with --skip-hash-check): keys keep their revisions, leases and auth come along.
                """)

        @Argument(help: "The backup file (swift-etcd's or etcd's)") var filename: String
        @Option(name: .customLong("data-dir"), help: "Path to the output data directory (default: <name>.etcd)") var dataDirectory = ""
        @Option(name: .customLong("wal-dir"), help: "Path to the WAL directory (use --data-dir if none given)") var walDirectory = ""
        @Option(name: .customLong("initial-cluster"), help: "Initial cluster configuration for restore bootstrap")
        var initialCluster = "default=http://localhost:2380"
        @Option(name: .customLong("initial-cluster-token"), help: "Initial cluster token for the etcd cluster during restore bootstrap")
        var initialClusterToken = "etcd-cluster"
        @Option(name: .customLong("initial-advertise-peer-urls"), help: "List of this member's peer URLs to advertise to the rest of the cluster")
        var initialAdvertisePeerURLs = "http://localhost:2380"
        @Option(help: "Human-readable name for this member") var name = "default"
        @Flag(name: .customLong("skip-hash-check"), help: "Ignore snapshot integrity hash value (required if copied from data directory)")
        var skipHashCheck = false
        @Option(name: .customLong("bump-revision"), help: "How much to increase the latest revision after restore") var bumpRevision: Int64 = 0
        @Flag(name: .customLong("mark-compacted"), help: "Mark the latest revision after restore as the point of scheduled compaction (required if --bump-revision > 0, disallowed otherwise)")
        var markCompacted = false

        func run() throws {
            var restore = SnapshotRestore(snapshotPath: filename)
            restore.name = name
            restore.dataDirectory = dataDirectory
            restore.walDirectory = walDirectory
            restore.initialCluster = initialCluster
            restore.initialClusterToken = initialClusterToken
            restore.initialAdvertisePeerURLs = initialAdvertisePeerURLs.split(separator: ",").map(String.init)
            restore.skipHashCheck = skipHashCheck
            restore.bumpRevision = bumpRevision
            restore.markCompacted = markCompacted
            let bar = ProgressBar()
            do {
                let outcome = try restore.run(progress: bar.show)
                bar.finish()
                log("restored snapshot", [
                    ("path", filename), ("data-dir", outcome.dataDirectory), ("member-id", String(outcome.memberID, radix: 16)),
                    ("cluster-id", String(outcome.clusterID, radix: 16)), ("revision", "\(outcome.revision)"),
                ])
            } catch {
                bar.finish()
                fail(error)
            }
        }
    }

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Gets backend snapshot status of a given file")

        @Argument(help: "The backup file") var filename: String
        @Option(name: [.customShort("w"), .customLong("write-out")], help: "Output format (simple, table, json, fields)")
        var writeOut: OutputFormat = .simple

        func run() throws {
            let status: BackupFile.Status
            do {
                status = try BackupFile.status(of: filename)
            } catch {
                fail(error)
            }
            print(StatusPrinter.format(status, as: writeOut), terminator: "")
        }
    }
}

struct Defrag: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Defragments the backend of a stopped member's data directory",
        discussion: "A running member defragments online without pausing: use `etcdctl defrag` for it.")

    @Option(name: .customLong("data-dir"), help: "The data directory of a member that is not running") var dataDirectory: String

    func run() throws {
        let path = "\(dataDirectory)/member/snap/backend.sqlite"
        guard FileManager.default.fileExists(atPath: path) else {
            fail(BackupFile.Refusal("cannot open database at \(path)"))
        }
        // etcd's etcdutl waits for a running member's lock without a word: this one refuses.
        let lock: DataDirectoryLock?
        do {
            lock = try DataDirectoryLock.acquireIfFree(dataDirectory: dataDirectory)
        } catch {
            fail(error)
        }
        guard let lock else { fail(DataDirectoryError.inUse(dataDirectory)) }
        defer { lock.release() }
        do {
            try SQLiteBackend.requireBackendTables(at: path)
            let backend = try SQLiteBackend(path: path, synchronousCommits: true)
            try backend.vacuum()
        } catch {
            FileHandle.standardError.write(Data("Failed to defragment etcd data[\(dataDirectory)] (\(error))\n".utf8))
            Foundation.exit(ExitStatus.error)
        }
        print("Finished defragmenting etcd data[\(dataDirectory)]")
    }
}

struct Version: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Prints the version of swift-etcdutl")

    func run() {
        print("etcdutl version: \(EtcdServer.version)")
        print("API version: 3.6")
    }
}

/// One JSON log line on standard error, as etcdutl logs.
func log(_ message: String, _ fields: [(String, String)]) {
    var line = "{\"level\":\"info\",\"msg\":\"\(message)\""
    for (key, value) in fields { line += ",\"\(key)\":\"\(value.replacingOccurrences(of: "\"", with: "\\\""))\"" }
    FileHandle.standardError.write(Data((line + "}\n").utf8))
}
