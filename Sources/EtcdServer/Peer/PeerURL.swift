import Foundation
import Logging
import NIOCore
import NIOPosix
import Raft
import Synchronization

/// `http://host:port` peer URLs.
enum PeerURL {
    static func hostAndPort(_ url: String) -> (String, Int)? {
        guard let components = URLComponents(string: url), components.scheme == "http", let host = components.host,
            let port = components.port, !host.isEmpty
        else { return nil }
        return (host == "localhost" ? "127.0.0.1" : host, port)
    }
}
