#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import NIOPosix
import Locking
import Synchronization

/// A listen address taken at the very start and held until a server listens on it.
///
/// etcd binds its peer and client ports before it touches the data directory: a port in use
/// stops a new member before it writes a log that would fix its identity (its peer URLs) for
/// every later start. A socket bound here is not yet listening, so connections to it are
/// refused, as to a closed port, until ``listen(with:backlog:)`` hands it to a server.
/// Closed when dropped unless a server took it.
public final class BoundSocket: Sendable {
    /// What was asked for; with port 0 the server's channel reports the port the system chose.
    public let address: SocketAddress
    public var isUnixDomainSocket: Bool {
        if case .unixDomainSocket = address { return true }
        return false
    }
    /// The descriptor until a server takes it.
    private let descriptor: Locked<CInt?>

    /// Binds `host:port` (a name is resolved; SO_REUSEADDR, as servers set it), or fails with
    /// the system's error: `bind` and EADDRINUSE for a port in use.
    public static func bind(host: String, port: Int) throws -> BoundSocket {
        try BoundSocket(try SocketAddress.makeAddressResolvingHost(host, port: port), reusesAddress: true)
    }

    /// Binds the Unix domain socket at `path`, replacing a stale socket file left there
    /// (a file of another kind is kept, and the bind fails).
    public static func bind(unixDomainSocketPath path: String) throws -> BoundSocket {
        var status = stat()
        if lstat(path, &status) == 0, status.st_mode & S_IFMT == S_IFSOCK { unlink(path) }
        return try BoundSocket(try SocketAddress(unixDomainSocketPath: path), reusesAddress: false)
    }

    private init(_ address: SocketAddress, reusesAddress: Bool) throws {
        #if canImport(Glibc)
        let descriptor = socket(address.protocol.rawValue, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue), 0)
        #else
        let descriptor = socket(address.protocol.rawValue, SOCK_STREAM, 0)
        #endif
        guard descriptor >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
        var one: CInt = 1
        if reusesAddress {
            setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size))
        }
        let bound = address.withSockAddr { pointer, size in
            #if canImport(Glibc)
            Glibc.bind(descriptor, pointer, socklen_t(size))
            #else
            Darwin.bind(descriptor, pointer, socklen_t(size))
            #endif
        }
        guard bound == 0 else {
            let code = errno
            close(descriptor)
            throw IOError(errnoCode: code, reason: "bind")
        }
        self.address = address
        self.descriptor = Locked(descriptor)
    }

    /// Has `bootstrap`'s server channel listen on the socket, with room for `backlog`
    /// connections waiting to be accepted; the channel owns the socket from then on.
    public func listen(with bootstrap: ServerBootstrap, backlog: CInt) -> EventLoopFuture<any Channel> {
        guard let taken = descriptor.withLock({ descriptor in defer { descriptor = nil }; return descriptor }) else {
            return MultiThreadedEventLoopGroup.singleton.next().makeFailedFuture(IOError(errnoCode: EBADF, reason: "listen"))
        }
        let socketFile = address.pathname
        return bootstrap.withBoundSocket(taken).map { channel in
            // NIO listens on an adopted socket with its default backlog (128); listening again
            // on a listening socket sets the new one.
            _ = setBacklog(of: taken, to: backlog)
            // NIO removes the file of a Unix socket it bound itself when it closes; this one it
            // did not bind.
            if let socketFile { channel.closeFuture.whenComplete { _ in unlink(socketFile) } }
            return channel
        }
    }

    deinit {
        if let descriptor = descriptor.withLock({ $0 }) { close(descriptor) }
    }
}

/// `listen(2)` again on a listening socket: only its backlog changes.
private func setBacklog(of descriptor: CInt, to backlog: CInt) -> CInt {
    listen(descriptor, backlog)
}
