import Foundation
import Locking
import Synchronization

/// A throwaway PKI made once per test process by `scripts/make-test-certs.sh` (openssl): a CA,
/// server, peer, client, revoked, expired and far-away certificates, a revocation list and a
/// second CA. No key is ever committed.
public enum TestCertificates {
    private static let made = Locked<String?>(nil)
    /// Removed when the test process exits.
    nonisolated(unsafe) private static var madeDirectory: String?

    /// The directory holding the files (`ca.pem`, `server.pem`, `server-key.pem`, …).
    public static func directory() throws -> String {
        try made.withLock { made in
            if let made { return made }
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("swift-etcd-pki-\(UUID().uuidString)").path
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("scripts/make-test-certs.sh").path
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/bash")
            process.arguments = [script, directory]
            process.standardOutput = FileHandle.nullDevice
            try ChildProcesses.launch(process)
            let status = ChildProcesses.waitForExit(process)
            guard status == 0 else {
                throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: "\(script) failed"])
            }
            made = directory
            // Written once, under the lock, before the exit handler can read it.
            madeDirectory = directory
            atexit {
                if let directory = TestCertificates.madeDirectory { try? FileManager.default.removeItem(atPath: directory) }
            }
            return directory
        }
    }

    /// The path of `name` (e.g. `server.pem`) in the PKI.
    public static func file(_ name: String) throws -> String {
        "\(try directory())/\(name)"
    }
}
