import EtcdClient
import EtcdProto
import EtcdServer
import Foundation
import Testing
import TestSupport

@testable import EtcdEmbed

/// The server's logs as etcd writes them: `request stats` for slow unary calls, and the log
/// file rotated as `--enable-log-rotation` rotates it.
@Suite("Server logs: request stats and rotation", .server)
struct ServerLogTests {
    private static func temporaryDirectory() throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("logs-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory
    }

    /// The JSON lines of a log file.
    private static func lines(of file: URL) throws -> [[String: Any]] {
        try String(contentsOf: file, encoding: .utf8).split(separator: "\n").map { line in
            try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(line)")
        }
    }

    /// With `--warning-unary-request-duration 1ns` every unary call is slow: each gets etcd's
    /// warning with the method, the caller, counts and sizes, and for KV calls the request with
    /// values by their size only.
    @Test func slowUnaryCallsAreLoggedWithTheirStats() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let log = directory.appendingPathComponent("member.log")
        let server = try await ServerProcess(dataDirectory: directory.appendingPathComponent("data"), logFile: log)
        defer { server.kill9() }
        try await server.start(arguments: ["--warning-unary-request-duration", "1ns"])
        let client = try EtcdClient(endpoints: ["127.0.0.1:\(server.port)"])
        _ = try await client.put("foo", "bar")
        #expect(try await client.get("foo").count == 1)
        var txn = Etcdserverpb_TxnRequest()
        var compare = Etcdserverpb_Compare()
        (compare.key, compare.target, compare.result, compare.value) = (Data("foo".utf8), .value, .notEqual, Data("bar".utf8))
        txn.compare = [compare]
        var put = Etcdserverpb_RequestOp()
        put.requestPut.key = Data("t".utf8)
        put.requestPut.value = Data("secret".utf8)
        var get = Etcdserverpb_RequestOp()
        get.requestRange.key = Data("foo".utf8)
        (txn.success, txn.failure) = ([put], [get, get])
        #expect(try await client.txn(txn).succeeded == false)
        _ = try await client.grantLease(ttl: 60)
        await client.close()
        server.terminate()

        let stats = try Self.lines(of: log).filter { $0["msg"] as? String == "request stats" }
        func line(_ method: String) throws -> [String: Any] {
            try #require(stats.first { $0["response type"] as? String == method }, "no line for \(method)")
        }
        let putLine = try line("/etcdserverpb.KV/Put")
        #expect(putLine["level"] as? String == "warn")
        #expect(putLine["request content"] as? String == #"key:"foo" value_size:3 "#)
        #expect(putLine["request count"] as? Int == 1)
        #expect(putLine["request size"] as? Int == 10)
        #expect(putLine["response count"] as? Int == 0)
        #expect((putLine["response size"] as? Int ?? 0) > 0)
        #expect((putLine["remote"] as? String)?.hasPrefix("127.0.0.1:") == true)
        #expect((putLine["time spent"] as? String)?.isEmpty == false)
        #expect((putLine["start time"] as? String)?.hasSuffix("Z") == true)
        let rangeLine = try line("/etcdserverpb.KV/Range")
        #expect(rangeLine["request content"] as? String == #"key:"foo" "#)
        #expect(rangeLine["request count"] as? Int == 0)
        #expect(rangeLine["response count"] as? Int == 1)
        // The failure branch ran: two ranges counted, the compare's value by its size.
        let txnLine = try line("/etcdserverpb.KV/Txn")
        #expect(txnLine["request count"] as? Int == 2)
        #expect(txnLine["request size"] as? Int == 14)
        #expect(txnLine["request content"] as? String
            == #"compare:<result:NOT_EQUAL target:VALUE key:"foo" value_size:3 > success:<request_put:<key:"t" value_size:6 >> failure:<request_range:<key:"foo" >  request_range:<key:"foo" > >"#)
        // Other methods: etcd does not look inside them.
        let leaseLine = try line("/etcdserverpb.Lease/LeaseGrant")
        #expect(leaseLine["request count"] as? Int == -1)
        #expect(leaseLine["response size"] as? Int == -1)
        #expect(leaseLine["request content"] as? String == "")
        #expect(!stats.contains { ($0["request content"] as? String)?.contains("secret") == true })
    }

    @Test func rotationSettingsAreReadAsEtcdReadsThem() throws {
        let defaults = try LogRotation(json: LogRotation.defaultJSON)
        #expect(defaults.maximumBytes == 100 * 1024 * 1024)
        #expect((defaults.maximumAgeDays, defaults.maximumBackups, defaults.localTime, defaults.compress) == (0, 0, false, false))
        let given = try LogRotation(json: #"{"maxsize": 2, "maxage": 7, "maxbackups": 3, "compress": true, "filename": "ignored"}"#)
        #expect((given.maximumBytes, given.maximumAgeDays, given.maximumBackups, given.compress) == (2 * 1024 * 1024, 7, 3, true))
        #expect(throws: ConfigurationError(
            "invalid log rotation config: json: cannot unmarshal string into Go struct field logRotationConfig.maxsize of type int")) {
            try LogRotation(json: #"{"MaxSize": "2"}"#)
        }
        #expect(throws: ConfigurationError(
            "invalid log rotation config: json: cannot unmarshal number 1.5 into Go struct field logRotationConfig.maxage of type int")) {
            try LogRotation(json: #"{"maxage": 1.5}"#)
        }
        #expect(throws: ConfigurationError(
            "invalid log rotation config: json: cannot unmarshal array into Go value of type embed.logRotationConfig")) {
            try LogRotation(json: "[]")
        }
        #expect(throws: ConfigurationError("improperly formatted log rotation config: {maxsize is not JSON")) {
            try LogRotation(json: "{maxsize")
        }
        let refusal = ConfigurationError("--log-outputs requires a single file path when --log-rotate-config-json is defined")
        for outputs in [["default"], ["stderr"], ["a.log", "b.log"]] {
            #expect(throws: refusal, "\(outputs)") { try LogRotation.checkOutputs(outputs) }
        }
        // etcd lets a file go along with stderr, and (its quirk) two outputs without a file.
        try LogRotation.checkOutputs(["stderr", "a.log"])
        try LogRotation.checkOutputs(["stderr", "stdout"])
    }

    /// Refusals exit 1 after `failed to verify flags`, as etcd's do (its logger is set up among
    /// its checks of the values), before the data directory is touched.
    @Test func badLogSettingsStopTheStart() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let data = directory.appendingPathComponent("data").path
        let cases: [([String], String)] = [
            (["--log-format", "xml"], "unknown log format: xml, supported values json, console"),
            (["--enable-log-rotation"], "--log-outputs requires a single file path when --log-rotate-config-json is defined"),
            (["--enable-log-rotation", "--log-outputs", "\(directory.path)/x.log", "--log-rotation-config-json", #"{"compress": 1}"#],
             "invalid log rotation config: json: cannot unmarshal number into Go struct field logRotationConfig.compress of type bool"),
        ]
        for (arguments, error) in cases {
            let process = Process()
            process.executableURL = ServerProcess.binary
            process.arguments = ["--data-dir", data] + arguments
            let output = Pipe()
            process.standardError = output
            process.standardOutput = FileHandle.nullDevice
            try process.run()
            let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            #expect(process.terminationStatus == 1, "\(arguments)")
            let line = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: String], "\(text)")
            #expect(line == ["level": "warn", "msg": "failed to verify flags", "error": error])
        }
        #expect(!FileManager.default.fileExists(atPath: data))
    }

    /// `--log-format console`: zap's console lines (time, level, caller, message, then the
    /// fields as one spaced JSON object), tab-separated.
    @Test func consoleLinesAreZapsConsoleEncoding() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let log = directory.appendingPathComponent("member.log")
        let server = try await ServerProcess(dataDirectory: directory.appendingPathComponent("data"))
        defer { server.kill9() }
        try await server.start(arguments: ["--log-format", "console", "--log-outputs", log.path])
        server.terminate()
        let lines = try String(contentsOf: log, encoding: .utf8).split(separator: "\n").map { $0.split(separator: "\t", omittingEmptySubsequences: false) }
        #expect(lines.count > 5)
        for columns in lines {
            #expect(columns.count == 4 || columns.count == 5, "\(columns)")
            #expect(columns[0].hasSuffix("Z") && columns[0].count == 24, "\(columns)")
            #expect(["debug", "info", "warn", "error"].contains(columns[1]), "\(columns)")
            #expect(columns[2].contains(".swift:"), "\(columns)")
            if columns.count == 5 {
                #expect((try? JSONSerialization.jsonObject(with: Data(columns[4].utf8))) is [String: Any], "\(columns)")
                #expect(columns[4].hasPrefix("{\"") && columns[4].contains("\": "), "\(columns)")
            }
        }
        #expect(lines.contains { $0[3] == "ready to serve client requests" })
    }

    /// A file that would grow past the limit is moved aside under its time; the newest
    /// `maxbackups` old files are kept, and no line is split or lost among those kept.
    @Test func aFullFileIsMovedAsideAndOldOnesArePruned() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var rotation = try LogRotation(json: #"{"maxbackups": 2}"#)
        rotation.maximumBytes = 1000
        let path = directory.appendingPathComponent("etcd.log").path
        let file = try RotatingLogFile(path: path, rotation: rotation)
        let line = { (index: Int) in String(format: "line %03d ", index) + String(repeating: "x", count: 290) + "\n" }
        for index in 1...10 { file.write(Data(line(index).utf8)) }
        RotatingLogFile.waitForHousekeeping()
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        #expect(names.count == 3, "\(names)")
        #expect(names.last == "etcd.log")
        #expect(names.dropLast().allSatisfy { $0.hasPrefix("etcd-") && $0.hasSuffix(".log") })
        let contents = try names.map { try String(contentsOfFile: directory.appendingPathComponent($0).path, encoding: .utf8) }
        // 300-byte lines, three to a 1000-byte file: rotated before lines 4, 7 and 10.
        #expect(contents == [(4...6).map(line).joined(), (7...9).map(line).joined(), line(10)])
    }

    /// `compress`: old files are gzipped (checked with the system's gzip) and the originals
    /// removed.
    @Test func oldFilesAreGzippedWhenAsked() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        var rotation = try LogRotation(json: #"{"compress": true}"#)
        rotation.maximumBytes = 50
        let path = directory.appendingPathComponent("member.json").path
        let file = try RotatingLogFile(path: path, rotation: rotation)
        let text = String(repeating: "{\"level\":\"info\"}\n", count: 5)
        file.write(Data(text.utf8))
        file.write(Data("next\n".utf8))
        RotatingLogFile.waitForHousekeeping()
        let names = try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
        #expect(names.count == 2, "\(names)")
        let compressed = try #require(names.first { $0.hasSuffix(".json.gz") })
        #expect(compressed.hasPrefix("member-"))
        // As private as the log itself (created 0600), from the start.
        #expect(RotatingLogFile.permissions(of: directory.appendingPathComponent(compressed).path) == 0o600)
        let gzip = Process()
        gzip.executableURL = URL(fileURLWithPath: "/bin/gzip")
        gzip.arguments = ["-dc", directory.appendingPathComponent(compressed).path]
        let output = Pipe()
        gzip.standardOutput = output
        try gzip.run()
        let decompressed = output.fileHandleForReading.readDataToEndOfFile()
        gzip.waitUntilExit()
        #expect(gzip.terminationStatus == 0)
        #expect(String(decoding: decompressed, as: UTF8.self) == text)
        #expect(try String(contentsOfFile: path, encoding: .utf8) == "next\n")
    }

    /// `maxage`: old files named for a time more than that many days back are removed; files
    /// that are not backups of this log are left alone.
    @Test func oldFilesPastTheirAgeAreRemoved() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("etcd.log").path
        let now = Date()
        let old = RotatingLogFile.backupName(for: path, at: now - 10 * 86_400, localTime: false)
        let recent = RotatingLogFile.backupName(for: path, at: now - 86_400, localTime: false)
        let unrelated = directory.appendingPathComponent("etcd-notes.log").path
        for file in [old, old + ".gz", recent, unrelated] { #expect(FileManager.default.createFile(atPath: file, contents: Data())) }
        RotatingLogFile.tidy(after: path, rotation: try LogRotation(json: #"{"maxage": 5}"#), now: now)
        let left = Set(try FileManager.default.contentsOfDirectory(atPath: directory.path))
        #expect(left == [URL(fileURLWithPath: recent).lastPathComponent, "etcd-notes.log"])
        #expect(URL(fileURLWithPath: recent).lastPathComponent.hasPrefix("etcd-"))
    }

    /// The real server with `--enable-log-rotation`: its log file stays under `maxsize` while
    /// it logs more than that, one old file is kept, and every line is whole JSON.
    @Test func theServerRotatesItsLogFile() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("etcd.log").path
        let server = try await ServerProcess(dataDirectory: directory.appendingPathComponent("data"))
        defer { server.kill9() }
        try await server.start(arguments: [
            "--log-outputs", path, "--enable-log-rotation", "--log-rotation-config-json", #"{"maxsize": 1, "maxbackups": 1}"#,
            "--log-level", "debug",
        ])
        let client = try EtcdClient(endpoints: ["127.0.0.1:\(server.port)"])
        let value = String(repeating: "v", count: 100)
        // Each put logs a debug `request stats` line of ~400 bytes: 1 MiB takes ~2,600.
        for batch in 0..<30 {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<200 { group.addTask { _ = try await client.put("key-\(batch)-\(index)", value) } }
                try await group.waitForAll()
            }
        }
        await client.close()
        server.terminate()
        var names: [String] = []
        for _ in 0..<100 {
            names = try FileManager.default.contentsOfDirectory(atPath: directory.path).filter { $0.hasPrefix("etcd") }.sorted()
            if names.count == 2 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(names.count == 2, "\(names)")
        #expect(names.last == "etcd.log")
        for name in names {
            let file = directory.appendingPathComponent(name)
            let size = try #require(try FileManager.default.attributesOfItem(atPath: file.path)[.size] as? Int)
            #expect(size <= 1024 * 1024, "\(name)")
            #expect(try Self.lines(of: file).allSatisfy { $0["level"] is String })
        }
    }
}
