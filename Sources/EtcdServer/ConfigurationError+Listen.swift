import Foundation
import NIOCore
import NIOPosix

extension ConfigurationError {
    /// A listener that could not be opened, in etcd's (Go's) words:
    /// `listen tcp 127.0.0.1:2379: bind: address already in use`.
    package static func cannotListen(_ network: String, _ address: String, _ error: any Error) -> ConfigurationError {
        guard let failure = error as? IOError, "\(failure)".hasPrefix("bind") else {
            return ConfigurationError("listen \(network) \(address): \(error)")
        }
        return ConfigurationError("listen \(network) \(address): bind: \(String(cString: strerror(failure.errnoCode)).lowercased())")
    }

    /// Binds `host:port` and lets it go at once, so a port another process holds stops a start
    /// before anything is written: etcd binds its listeners before its server touches the data
    /// directory, and a new member whose log was written with the wrong peer URLs would keep
    /// them once the port is fixed (later starts take their identity from the log).
    package static func requireFree(host: String, port: Int) throws(ConfigurationError) {
        do {
            let probe = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .bind(host: host, port: port).wait()
            try probe.close().wait()
        } catch {
            throw cannotListen("tcp", "\(host):\(port)", error)
        }
    }
}
