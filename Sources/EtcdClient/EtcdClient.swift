import Coordination
import EtcdProto
import Foundation
import GRPCWire
import NIOCore
import NIOHPACK
import NIOSSL
import SwiftProtobuf

/// A failed etcd call: the gRPC status code and etcd's own message (for example
/// `etcdserver: requested lease not found`), so callers can match on either.
public struct EtcdClientError: Error, Sendable, Hashable, CustomStringConvertible {
    public var code: GRPCStatus.Code
    public var message: String

    public init(code: GRPCStatus.Code, message: String) {
        self.code = code
        self.message = message
    }

    init(_ error: any Error) {
        if let status = error as? GRPCStatus {
            self.init(code: status.code, message: status.message)
        } else if let known = error as? EtcdClientError {
            self = known
        } else if let recipe = error as? CoordinationError {
            self.init(code: .unknown, message: recipe.message)
        } else if error is CancellationError {
            self.init(code: .cancelled, message: "context canceled")
        } else if error is BinaryDecodingError || error is SwiftProtobufError {
            self.init(code: .internal, message: "cannot decode the response: \(error)")
        } else {
            self.init(code: .unavailable, message: "\(error)")
        }
    }

    public var description: String { "etcd call failed (\(code)): \(message)" }
}

/// A client for etcd's v3 API — the real etcd or swift-etcd — over one or more endpoints.
///
/// Calls go round-robin over the endpoints' connections (one HTTP/2 connection each, opened on
/// first use and reopened after failures). Unary calls have a deadline unless `requestTimeout`
/// is nil. Watch and lease keep-alive are streams; a watch is an `AsyncSequence` of responses.
public final class EtcdClient: Sendable {
    public let endpoints: [GRPCClient.Endpoint]
    /// The deadline of each unary call; nil sends none, and a call then waits as long as the
    /// server takes (etcd's `benchmark` tool calls that way).
    public let requestTimeout: Duration?
    let grpc: GRPCClient
    /// The login, when the client was given credentials.
    private let session: AuthSession?

    /// TLS as etcdctl's `--cacert`, `--cert`, `--key`, `--insecure-skip-tls-verify` set it.
    public struct TLSOptions: Sendable {
        /// PEM file of the CAs that sign the server's certificate; nil trusts the system's CAs.
        public var caFile: String?
        /// PEM files of the client certificate and its key, for servers that require one.
        public var certFile: String?
        public var keyFile: String?
        /// The name checked against the server's certificate (default: the endpoint's host).
        public var serverName: String?
        /// Accept any server certificate (for tests and auto TLS only).
        public var insecureSkipVerify = false

        public init(caFile: String? = nil, certFile: String? = nil, keyFile: String? = nil) {
            self.caFile = caFile
            self.certFile = certFile
            self.keyFile = keyFile
        }

        /// The TLS configuration these options make.
        public func configuration() throws(EtcdClientError) -> TLSConfiguration {
            var tls = TLSConfiguration.makeClientConfiguration()
            do {
                if let caFile { tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(caFile)) }
                if let certFile { tls.certificateChain = try NIOSSLCertificate.fromPEMFile(certFile).map { .certificate($0) } }
                if let keyFile { tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: keyFile, format: .pem)) }
            } catch {
                throw EtcdClientError(code: .invalidArgument, message: "cannot read TLS files: \(error)")
            }
            if insecureSkipVerify { tls.certificateVerification = .none }
            return tls
        }
    }

    /// - Parameters:
    ///   - endpoints: `host:port`, `http://host:port`, `https://host:port` or `unix://path`, as
    ///     etcdctl's `--endpoints` takes them.
    ///   - tls: TLS for every endpoint; `https://` endpoints without it use the system's CAs.
    ///   - credentials: a user to log in as (auth): every call carries the login's token, and a
    ///     call refused because the token lapsed or predates an auth change logs in again and
    ///     is retried once, as clientv3 does.
    public init(
        endpoints: [String], tls: TLSOptions? = nil, credentials: EtcdCredentials? = nil, requestTimeout: Duration? = .seconds(5)
    ) throws(EtcdClientError) {
        var parsed: [GRPCClient.Endpoint] = []
        var wantsTLS = tls != nil
        for text in endpoints {
            guard let endpoint = GRPCClient.Endpoint(text) else {
                throw EtcdClientError(
                    code: .invalidArgument, message: "invalid endpoint \(text) (want host:port, http(s)://host:port or unix://path)")
            }
            if text.hasPrefix("https://") || text.hasPrefix("unixs://") { wantsTLS = true }
            parsed.append(endpoint)
        }
        guard !parsed.isEmpty else { throw EtcdClientError(code: .invalidArgument, message: "no endpoints") }
        self.endpoints = parsed
        self.requestTimeout = requestTimeout
        session = credentials.map(AuthSession.init)
        let options = wantsTLS ? tls ?? TLSOptions() : nil
        grpc = GRPCClient(endpoints: parsed, tls: try options?.configuration(), serverHostname: options?.serverName)
    }

    /// Closes every connection; calls in flight fail.
    public func close() async {
        await grpc.close()
    }

    /// Makes one unary call of `rpc` with the client's deadline.
    public func call<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ rpc: RPC<Request, Response>, _ request: Request
    ) async throws(EtcdClientError) -> Response {
        try await call(rpc, request, timeout: requestTimeout)
    }

    /// Makes one unary call of `rpc` with deadline `deadline` (nil: none, for calls that wait
    /// as long as they must, such as taking a lock). Cancelling the task cancels the call.
    public func call<Request: SwiftProtobuf.Message, Response: SwiftProtobuf.Message>(
        _ rpc: RPC<Request, Response>, _ request: Request, timeout deadline: Duration?
    ) async throws(EtcdClientError) -> Response {
        let timeout = deadline.map { TimeAmount.nanoseconds($0.components.seconds * 1_000_000_000 + $0.components.attoseconds / 1_000_000_000) }
        guard let session else {
            do {
                return try await grpc.unary(rpc.path, request, timeout: timeout, responseType: Response.self)
            } catch {
                throw EtcdClientError(error)
            }
        }
        var token = try await session.token(via: grpc)
        do {
            return try await grpc.unary(rpc.path, request, metadata: ["token": token], timeout: timeout, responseType: Response.self)
        } catch {
            let failure = EtcdClientError(error)
            guard AuthSession.meansLoginAgain(failure) else { throw failure }
            token = try await session.token(replacing: token, via: grpc)
        }
        do {
            return try await grpc.unary(rpc.path, request, metadata: ["token": token], timeout: timeout, responseType: Response.self)
        } catch {
            throw EtcdClientError(error)
        }
    }

    /// Whether a stream opened at `opened` that failed with `failure` is to be opened again
    /// after a new login, as clientv3's stream interceptor does (its member restarted and lost
    /// the token, or auth changed); the token it used is dropped so the next stream logs in.
    func logsInAgain(after failure: EtcdClientError, streamOpenedAt opened: ContinuousClock.Instant) -> Bool {
        guard let session, AuthSession.meansLoginAgain(failure) else { return false }
        session.discardToken(obtainedBefore: opened)
        return true
    }

    /// The metadata a stream opens with: the login's token, if the client has credentials.
    func streamMetadata() async throws(EtcdClientError) -> HPACKHeaders {
        guard let session else { return [:] }
        return ["token": try await session.token(via: grpc)]
    }

    // MARK: - KV

    /// Stores `value` under `key`; the response header carries the new revision.
    @discardableResult
    public func put(_ key: Data, _ value: Data, lease: Int64 = 0, prevKV: Bool = false) async throws(EtcdClientError)
        -> Etcdserverpb_PutResponse
    {
        try await call(Etcdserverpb_KVRPCs.put, .with { $0.key = key; $0.value = value; $0.lease = lease; $0.prevKv = prevKV })
    }

    @discardableResult
    public func put(_ key: String, _ value: String, lease: Int64 = 0) async throws(EtcdClientError) -> Etcdserverpb_PutResponse {
        try await put(Data(key.utf8), Data(value.utf8), lease: lease)
    }

    /// Reads `key` (or `[key, rangeEnd)`); `serializable` reads the local member without a consensus round.
    public func get(
        _ key: Data, rangeEnd: Data = Data(), revision: Int64 = 0, limit: Int64 = 0, serializable: Bool = false
    ) async throws(EtcdClientError) -> Etcdserverpb_RangeResponse {
        try await range(
            .with {
                $0.key = key
                $0.rangeEnd = rangeEnd
                $0.revision = revision
                $0.limit = limit
                $0.serializable = serializable
            })
    }

    public func get(_ key: String, serializable: Bool = false) async throws(EtcdClientError) -> Etcdserverpb_RangeResponse {
        try await get(Data(key.utf8), serializable: serializable)
    }

    /// Any range request, for options `get` does not take.
    public func range(_ request: Etcdserverpb_RangeRequest) async throws(EtcdClientError) -> Etcdserverpb_RangeResponse {
        try await call(Etcdserverpb_KVRPCs.range, request)
    }

    @discardableResult
    public func delete(_ key: Data, rangeEnd: Data = Data(), prevKV: Bool = false) async throws(EtcdClientError)
        -> Etcdserverpb_DeleteRangeResponse
    {
        try await call(Etcdserverpb_KVRPCs.deleteRange, .with { $0.key = key; $0.rangeEnd = rangeEnd; $0.prevKv = prevKV })
    }

    public func txn(_ request: Etcdserverpb_TxnRequest) async throws(EtcdClientError) -> Etcdserverpb_TxnResponse {
        try await call(Etcdserverpb_KVRPCs.txn, request)
    }

    @discardableResult
    public func compact(revision: Int64, physical: Bool = false) async throws(EtcdClientError) -> Etcdserverpb_CompactionResponse {
        try await call(Etcdserverpb_KVRPCs.compact, .with { $0.revision = revision; $0.physical = physical })
    }

    // MARK: - Lease

    /// Grants a lease of `ttl` seconds (`id` 0 lets the server choose the ID).
    public func grantLease(ttl: Int64, id: Int64 = 0) async throws(EtcdClientError) -> Etcdserverpb_LeaseGrantResponse {
        try await call(Etcdserverpb_LeaseRPCs.leaseGrant, .with { $0.ttl = ttl; $0.id = id })
    }

    @discardableResult
    public func revokeLease(_ id: Int64) async throws(EtcdClientError) -> Etcdserverpb_LeaseRevokeResponse {
        try await call(Etcdserverpb_LeaseRPCs.leaseRevoke, .with { $0.id = id })
    }

    public func leaseTimeToLive(_ id: Int64, keys: Bool = false) async throws(EtcdClientError)
        -> Etcdserverpb_LeaseTimeToLiveResponse
    {
        try await call(Etcdserverpb_LeaseRPCs.leaseTimeToLive, .with { $0.id = id; $0.keys = keys })
    }

    /// Opens a keep-alive stream; each `keepAlive(_:)` on it renews a lease and its answer
    /// arrives on `responses`.
    public func keepAliveStream() async throws(EtcdClientError) -> LeaseKeepAliveStream {
        let metadata = try await streamMetadata()
        do {
            let call = try await grpc.makeStreamingCall(
                Etcdserverpb_LeaseRPCs.leaseKeepAlive.path, metadata: metadata, requestType: Etcdserverpb_LeaseKeepAliveRequest.self,
                responseType: Etcdserverpb_LeaseKeepAliveResponse.self)
            return LeaseKeepAliveStream(call: call)
        } catch {
            throw EtcdClientError(error)
        }
    }

    // MARK: - Watch

    /// Opens a watch stream and creates one watcher on it with `request`.
    public func watch(_ request: Etcdserverpb_WatchCreateRequest) async throws(EtcdClientError) -> WatchStream {
        let stream = try await watchStream()
        do {
            try await stream.create(request)
        } catch {
            stream.close()
            throw error
        }
        return stream
    }

    /// Watches `key` (or `[key, rangeEnd)`) from `startRevision` (0: from now).
    public func watch(_ key: Data, rangeEnd: Data = Data(), startRevision: Int64 = 0, prevKV: Bool = false)
        async throws(EtcdClientError) -> WatchStream
    {
        try await watch(
            .with {
                $0.key = key
                $0.rangeEnd = rangeEnd
                $0.startRevision = startRevision
                $0.prevKv = prevKV
            })
    }

    /// Opens an empty watch stream, for many watchers on one stream. With `requireLeader` the
    /// member ends the stream with `etcdserver: no leader` when it has none (etcd's
    /// `WithRequireLeader`), so the caller can resume on another member.
    public func watchStream(requireLeader: Bool = false) async throws(EtcdClientError) -> WatchStream {
        var metadata = try await streamMetadata()
        if requireLeader { metadata.add(name: "hasleader", value: "true") }
        do {
            let call = try await grpc.makeStreamingCall(
                Etcdserverpb_WatchRPCs.watch.path, metadata: metadata,
                requestType: Etcdserverpb_WatchRequest.self,
                responseType: Etcdserverpb_WatchResponse.self)
            return WatchStream(call: call)
        } catch {
            throw EtcdClientError(error)
        }
    }

    // MARK: - Maintenance

    public func status() async throws(EtcdClientError) -> Etcdserverpb_StatusResponse {
        try await call(Etcdserverpb_MaintenanceRPCs.status, Etcdserverpb_StatusRequest())
    }

    /// Writes a backup of one member's backend to a new file at `path`, as `etcdctl snapshot
    /// save` does (the stream's bytes, checksum trailer included). Connect to one endpoint
    /// only: the backup is that member's state. Returns the revision it holds (the first
    /// message's header) and the bytes written.
    @discardableResult
    public func saveSnapshot(to path: String) async throws -> (revision: Int64, bytes: Int64) {
        let call = try await grpc.makeStreamingCall(
            Etcdserverpb_MaintenanceRPCs.snapshot.path, metadata: try await streamMetadata(),
            requestType: Etcdserverpb_SnapshotRequest.self, responseType: Etcdserverpb_SnapshotResponse.self)
        call.send(Etcdserverpb_SnapshotRequest())
        call.finishSending()
        guard FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]),
            let file = FileHandle(forWritingAtPath: path)
        else {
            call.cancel()
            throw EtcdClientError(code: .unknown, message: "cannot create \(path)")
        }
        defer { try? file.close() }
        var revision: Int64?
        var bytes: Int64 = 0
        for try await response in call.responses {
            if revision == nil { revision = response.header.revision }
            try file.write(contentsOf: response.blob)
            bytes += Int64(response.blob.count)
        }
        try file.synchronize()
        return (revision ?? 0, bytes)
    }
}

/// A watch stream: watchers are created and cancelled on it; every response (creation,
/// events, progress, cancellation) arrives in order as an element of the sequence.
public struct WatchStream: AsyncSequence, Sendable {
    public typealias Element = Etcdserverpb_WatchResponse
    let call: ClientStreamingCall<Etcdserverpb_WatchRequest, Etcdserverpb_WatchResponse>

    public func makeAsyncIterator() -> AsyncThrowingStream<Element, any Error>.AsyncIterator {
        call.responses.makeAsyncIterator()
    }

    /// Asks for one more watcher on this stream; its `created` response comes in the sequence.
    public func create(_ request: Etcdserverpb_WatchCreateRequest) async throws(EtcdClientError) {
        try await send(.with { $0.createRequest = request })
    }

    public func cancel(watchID: Int64) async throws(EtcdClientError) {
        try await send(.with { $0.cancelRequest = .with { $0.watchID = watchID } })
    }

    /// Asks for a progress notification (the current revision) on this stream.
    public func requestProgress() async throws(EtcdClientError) {
        try await send(.with { $0.progressRequest = Etcdserverpb_WatchProgressRequest() })
    }

    /// Ends the stream: the server cancels every watcher on it.
    public func close() {
        call.cancel()
    }

    private func send(_ request: Etcdserverpb_WatchRequest) async throws(EtcdClientError) {
        do {
            try await call.send(request).get()
        } catch {
            throw EtcdClientError(error)
        }
    }
}

/// A lease keep-alive stream: `keepAlive(_:)` renews, `responses` carries each renewal's new TTL.
public struct LeaseKeepAliveStream: Sendable {
    let call: ClientStreamingCall<Etcdserverpb_LeaseKeepAliveRequest, Etcdserverpb_LeaseKeepAliveResponse>

    public var responses: AsyncThrowingStream<Etcdserverpb_LeaseKeepAliveResponse, any Error> { call.responses }

    public func keepAlive(_ id: Int64) async throws(EtcdClientError) {
        do {
            try await call.send(.with { $0.id = id }).get()
        } catch {
            throw EtcdClientError(error)
        }
    }

    public func close() {
        call.cancel()
    }
}
