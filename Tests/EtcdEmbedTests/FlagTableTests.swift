import EtcdClient
import EtcdProto
import Foundation
import Testing
import TestSupport

@testable import EtcdEmbed

/// Every flag of etcd 3.6's server is honoured or refused by name at start, never accepted and
/// ignored; the help lists exactly the honoured ones (and swift-etcd's own), and docs/FLAGS.md
/// is the table the binary prints.
@Suite("etcd's flags, each honoured or refused", .server)
struct FlagTableTests {
    /// Flags swift-etcd has that etcd does not.
    private static let ownFlags: Set = ["auto-promote-learners", "wal-segment-bytes", "discovery-srv-resolver", "help"]

    private static func run(_ arguments: [String]) async throws -> (status: Int32, output: String) {
        try await runTool(ServerProcess.binary, arguments, environment: ["PATH": "/usr/bin:/bin"])
    }

    @Test func theHelpListsTheHonouredFlagsAndSwiftEtcdsOwnInEtcdsLayout() async throws {
        let help = try await Self.run(["--help"])
        #expect(help.status == 0)
        #expect(try await Self.run(["-h"]).output == help.output)
        // etcd's layout: usage lines, then sections of `--flag 'default'` over a description.
        #expect(help.output.hasPrefix("Usage:\n\n  swift-etcd [flags]\n    Start an etcd server.\n"))
        #expect(help.output.contains("\nMember:\n  --name 'default'\n    Human-readable name for this member.\n"))
        #expect(help.output.contains("\nClustering:\n  --initial-advertise-peer-urls 'http://localhost:2380'\n"))
        #expect(help.output.contains("  --client-cert-auth 'false'\n    Enable client cert authentication.\n"))
        #expect(help.output.contains("\nUnsafe feature:\n  --force-new-cluster 'false'\n"))
        var listed: Set<String> = ["config-file"]  // in the usage lines
        for line in help.output.split(separator: "\n") where line.hasPrefix("  --") {
            let name = line.dropFirst(4).prefix { $0.isLetter || $0.isNumber || $0 == "-" }
            #expect(line == "  --\(name) '\(line.split(separator: "'", omittingEmptySubsequences: false).dropFirst().first ?? "")'")
            listed.insert(String(name))
        }
        #expect(listed.count > 50)
        for flag in listed where !flag.hasPrefix("no-") {
            #expect(EtcdFlagTable.etcdFlags.contains(flag) || Self.ownFlags.contains(flag), "--\(flag) is neither etcd's nor ours")
        }
        for flag in EtcdFlagTable.etcdFlags where flag != "version" && flag != "feature-gates" {
            let honoured = EtcdFlagTable.treatment(of: flag) == .honoured
            #expect(honoured == listed.contains(flag), "--\(flag): honoured \(honoured), in the help \(listed.contains(flag))")
        }
    }

    @Test func everyFlagNotHonouredIsRefusedByName() async throws {
        var checked = 0
        for flag in EtcdFlagTable.etcdFlags {
            let argument: String
            let expected: String
            switch EtcdFlagTable.treatment(of: flag) {
            case .honoured:
                continue
            case .onlyAt(let value, _):
                let other = value == "true" ? "false" : value == "false" ? "true" : "12345"
                argument = "--\(flag)=\(other)"
                expected = "Error: --\(flag)=\(other) is not supported by swift-etcd: "
            case .refused:
                argument = "--\(flag)=x"
                expected = "Error: --\(flag) is not supported by swift-etcd: "
            }
            let result = try await Self.run([argument])
            #expect(result.status == 1, "\(argument)")
            #expect(result.output.hasPrefix(expected), "\(argument): \(result.output)")
            checked += 1
        }
        #expect(checked > 50)
        let gate = try await Self.run(["--feature-gates=StopGRPCServiceOnDefrag=true"])
        #expect(gate.output == "Error: --feature-gates: StopGRPCServiceOnDefrag=true is not supported by swift-etcd (only StopGRPCServiceOnDefrag=false)\n")
        #expect(try await Self.run(["--feature-gates=NoSuchGate=true"]).output == "Error: --feature-gates: unrecognized feature gate: NoSuchGate\n")
        let variable = try await runTool(ServerProcess.binary, [], environment: ["PATH": "/usr/bin:/bin", "ETCD_ENABLE_PPROF": "true"])
        #expect(variable.output.contains("Error: --enable-pprof=true is not supported by swift-etcd"))
    }

    @Test func flagsAtSwiftEtcdsFixedValuesAndFeatureGatesStartAMember() async throws {
        try await ServerProcess.withFreshServer(
            .swiftEtcd,
            arguments: [
                "--enable-pprof=false", "--pre-vote", "--max-learners", "1", "--socket-reuse-port=false",
                "--feature-gates=InitialCorruptCheck=true,TxnModeWriteWithSharedBuffer=true", "--watch-progress-notify-interval", "10m",
                "--snapshot-catchup-entries", "5000",
            ]
        ) { _, client in
            let revision = try await client.put("k", "v").header.revision
            #expect(revision == 2)
        }
    }

    /// A flag etcd does not know or a value it cannot parse exits 2, as Go's flag package makes
    /// etcd exit, with the message and the usage line; a negative value for a flag etcd declares
    /// unsigned is refused as Go refuses it, before anything starts.
    @Test func badFlagsAndValuesExitAsGoFlagsDo() async throws {
        let unknown = try await Self.run(["--no-such-flag"])
        #expect(unknown.status == 2)
        #expect(unknown.output.hasPrefix("Error: Unknown option '--no-such-flag'\nUsage: swift-etcd <options>"))
        #expect(try await Self.run(["--heartbeat-interval=abc"]).status == 2)
        let negative = try await Self.run(["--max-txn-ops=-1"])
        #expect(negative.status == 2)
        #expect(negative.output.hasPrefix(#"Error: invalid value "-1" for flag -max-txn-ops: parse error"#))
        #expect(try await Self.run(["--log-level=loud"]).status == 2)
        let origin = try await Self.run(["--cors=http://ok:1,ui.example.com"])
        #expect(origin.status == 2)
        #expect(origin.output.hasPrefix(
            #"Error: invalid value "http://ok:1,ui.example.com" for flag -cors: URL scheme must be http, https, unix, or unixs: ui.example.com"#))
        #expect(try await Self.run(["--cors=https://ui.example.com/app"]).status == 2)
        // Values that parse but do not go together: etcd's `failed to verify flags`, exit 1.
        let together = try await Self.run(["--election-timeout=400"])
        #expect(together.status == 1)
        #expect(together.output.contains(#""msg":"failed to verify flags""#))
        #expect(together.output.hasSuffix("Error: --election-timeout[400ms] should be at least as 5 times as --heartbeat-interval[100ms]\n"))
    }

    @Test func versionPrintsEtcdsLayout() async throws {
        let lines = try await Self.run(["--version"]).output.split(separator: "\n")
        #expect(lines.count == 4)
        #expect(lines.first == "etcd Version: 3.6.0")
        #expect(lines.map { $0.prefix { $0 != ":" } } == ["etcd Version", "Git SHA", "Go Version", "Go OS/Arch"])
    }

    @Test func theDocsTableIsTheOneTheBinaryPrints() async throws {
        let docs = try String(contentsOfFile: #filePath.replacingOccurrences(of: "Tests/EtcdEmbedTests/FlagTableTests.swift", with: "docs/FLAGS.md"), encoding: .utf8)
        #expect(docs.contains(EtcdFlagTable.markdownTable()), "regenerate with scripts/flag-table.sh")
        #expect(try await Self.run(["--print-flag-table"]).output == EtcdFlagTable.markdownTable())
    }
}
