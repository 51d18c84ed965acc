import EtcdClient
import Foundation

extension ServerProcess {
    /// Starts a fresh server of `kind` (with `arguments`) in a new data directory, runs `body`
    /// with it and a client of it, then kills it and removes the directory.
    public static func withFreshServer(
        _ kind: Kind, arguments: [String] = [], _ body: (ServerProcess, EtcdClient) async throws -> Void
    ) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("server-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let server = try await ServerProcess(dataDirectory: directory, kind: kind)
        try await server.start(arguments: arguments)
        defer { server.kill9() }
        let client = try EtcdClient(endpoints: ["http://127.0.0.1:\(server.port)"])
        do {
            try await body(server, client)
        } catch {
            await client.close()
            throw error
        }
        await client.close()
    }
}

/// The end of the range of keys starting with `prefix` (its last byte plus one), as etcd's
/// `--prefix` computes it.
public func prefixEnd(_ prefix: String) -> Data {
    var bytes = Array(prefix.utf8)
    bytes[bytes.count - 1] += 1
    return Data(bytes)
}
