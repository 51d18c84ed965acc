#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOCore
import NIOPosix
import Locking
import Synchronization

/// A listen address taken at the very start and held until a server serves it.
///
/// etcd binds its peer and client ports before it touches the data directory: a port in use
/// stops a new member before it writes a log that would fix its identity (its peer URLs) for
/// every later start. The socket listens at once, as Go's `net.Listen` does (on Linux a bound
/// socket that does not listen does not keep another with SO_REUSEADDR off its port), so
/// connections wait in its backlog until ``listen(with:backlog:)`` hands it to a server.
/// Closed when dropped unless a server took it; a Unix socket's file is then removed too.
public final class BoundSocket: Sendable {
    /// What was asked for; with port 0 the server's channel reports the port the system chose.
    public let address: SocketAddress
    public var isUnixDomainSocket: Bool { Self.isUnixDomainSocket(address) }

    private static func isUnixDomainSocket(_ address: SocketAddress) -> Bool {
        if case .unixDomainSocket = address { return true }
        return false
    }
    /// The descriptor until a server takes it.
    private let descriptor: Locked<CInt?>
    /// A Unix socket's file as this socket made it (device and inode), so only that file is
    /// ever removed, never one another process put at the path since.
    private let socketFile: SocketFile?

    /// Binds `host:port` (a name is resolved; SO_REUSEADDR, as servers set it) and listens, or
    /// fails with the system's error: `bind` and EADDRINUSE for a port in use.
    public static func bind(host: String, port: Int) throws -> BoundSocket {
        try BoundSocket(try SocketAddress.makeAddressResolvingHost(host, port: port))
    }

    /// Binds the Unix domain socket at `path` and listens. A socket file left there by a server
    /// that is gone is replaced; one a running server answers on is not (EADDRINUSE), nor is a
    /// file of another kind.
    public static func bind(unixDomainSocketPath path: String) throws -> BoundSocket {
        let address = try SocketAddress(unixDomainSocketPath: path)
        var status = stat()
        if lstat(path, &status) == 0, status.st_mode & S_IFMT == S_IFSOCK {
            guard !Self.answers(address) else { throw IOError(errnoCode: EADDRINUSE, reason: "bind") }
            unlink(path)
        }
        return try BoundSocket(address)
    }

    /// Whether a server accepts connections on the Unix socket at `address`.
    private static func answers(_ address: SocketAddress) -> Bool {
        let probe = socket(address.protocol.rawValue, Self.streamType, 0)
        guard probe >= 0 else { return false }
        defer { close(probe) }
        return address.withSockAddr { pointer, size in connect(probe, pointer, socklen_t(size)) } == 0
    }

    #if canImport(Glibc)
    private static let streamType = CInt(SOCK_STREAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue)
    #else
    private static let streamType = SOCK_STREAM
    #endif

    private init(_ address: SocketAddress) throws {
        let descriptor = socket(address.protocol.rawValue, Self.streamType, 0)
        guard descriptor >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
        var failure: IOError?
        var one: CInt = 1
        if !Self.isUnixDomainSocket(address), setsockopt(descriptor, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<CInt>.size)) != 0 {
            failure = IOError(errnoCode: errno, reason: "setsockopt")
        }
        if failure == nil, address.withSockAddr({ pointer, size in systemBind(descriptor, pointer, socklen_t(size)) }) != 0 {
            failure = IOError(errnoCode: errno, reason: "bind")
        }
        // Go's backlog; the server sets its own when it takes the socket.
        if failure == nil, systemListen(descriptor, SOMAXCONN) != 0 {
            failure = IOError(errnoCode: errno, reason: "bind")  // EADDRINUSE: another socket listens there
        }
        let socketFile = failure == nil ? address.pathname.flatMap(SocketFile.init(path:)) : nil
        if let failure {
            close(descriptor)
            throw failure
        }
        self.address = address
        self.descriptor = Locked(descriptor)
        self.socketFile = socketFile
    }

    /// Has `bootstrap`'s server channel take the socket, with room for `backlog` connections
    /// waiting to be accepted; the channel owns it from then on (and removes a Unix socket's
    /// file when it closes). Throws if a server took it already.
    public func listen(with bootstrap: ServerBootstrap, backlog: CInt) throws -> EventLoopFuture<any Channel> {
        guard let taken = descriptor.withLock({ descriptor in defer { descriptor = nil }; return descriptor }) else {
            throw IOError(errnoCode: EBADF, reason: "listen")
        }
        let socketFile = socketFile
        return bootstrap.withBoundSocket(taken).map { channel in
            // NIO listens again with its default backlog (128) as it adopts a socket;
            // listening on a listening socket only sets the backlog.
            _ = systemListen(taken, backlog)
            if let socketFile { channel.closeFuture.whenComplete { _ in socketFile.remove() } }
            return channel
        }
    }

    deinit {
        guard let descriptor = descriptor.withLock({ $0 }) else { return }
        close(descriptor)
        socketFile?.remove()
    }
}

/// A Unix socket's file, known by its device and inode.
private struct SocketFile: Sendable {
    let path: String
    let device: UInt64
    let inode: UInt64

    init?(path: String) {
        var status = stat()
        guard lstat(path, &status) == 0 else { return nil }
        self.path = path
        device = UInt64(status.st_dev)
        inode = UInt64(status.st_ino)
    }

    /// Removes the file if it is still this one.
    func remove() {
        guard let current = SocketFile(path: path), current.device == device, current.inode == inode else { return }
        unlink(path)
    }
}

private func systemBind(_ descriptor: CInt, _ address: UnsafePointer<sockaddr>, _ size: socklen_t) -> CInt {
    bind(descriptor, address, size)
}

private func systemListen(_ descriptor: CInt, _ backlog: CInt) -> CInt {
    listen(descriptor, backlog)
}
