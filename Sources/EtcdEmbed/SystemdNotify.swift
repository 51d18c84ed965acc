import Foundation
import Logging

/// systemd's readiness protocol (`Type=notify` units): one `READY=1` datagram to the Unix
/// socket named by `$NOTIFY_SOCKET` (a leading `@` names an abstract socket), sent when the
/// member is ready to serve, as etcd sends it. Without the variable, nothing is sent.
enum SystemdNotify {
    static func ready(logger: Logger, environment: [String: String] = ProcessInfo.processInfo.environment) {
        guard let path = environment["NOTIFY_SOCKET"], !path.isEmpty else { return }
        if let error = send("READY=1", to: path) {
            logger.error("failed to notify systemd for readiness", metadata: ["error": "\(error)"])
        } else {
            logger.info("successfully notified init daemon")
        }
    }

    /// Sends `message` as one datagram to the socket at `path`; the error, if it failed.
    static func send(_ message: String, to path: String) -> String? {
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return String(cString: strerror(errno)) }
        defer { close(descriptor) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard bytes.count < capacity else { return "socket path too long: \(path)" }
        withUnsafeMutableBytes(of: &address.sun_path) { buffer in
            for (index, byte) in bytes.enumerated() { buffer[index] = byte }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes.first == 0 ? 0 : 1))
        let sent = message.utf8CString.withUnsafeBufferPointer { text in
            withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(descriptor, text.baseAddress, text.count - 1, 0, $0, length)
                }
            }
        }
        return sent < 0 ? String(cString: strerror(errno)) : nil
    }
}
