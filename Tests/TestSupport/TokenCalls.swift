import EtcdProto
import GRPCWire
import NIOCore
import NIOHPACK
import SwiftProtobuf

extension GRPCClientConnection {
    /// One call of `rpc` with etcd's `token` metadata (nil: none), on a fresh connection from
    /// `connect`; the status when it fails, so tests compare refusals exactly.
    public static func call<Request: Message, Response: Message>(
        _ rpc: RPC<Request, Response>, _ request: Request, token: String?,
        connect: () async throws -> GRPCClientConnection
    ) async -> Result<Response, GRPCStatus> {
        do {
            let connection = try await connect()
            defer { Task { await connection.close() } }
            let metadata: HPACKHeaders = token.map { ["token": $0] } ?? [:]
            return .success(try await connection.unary(rpc.path, request, metadata: metadata, timeout: .seconds(10), responseType: Response.self))
        } catch let status as GRPCStatus {
            return .failure(status)
        } catch {
            return .failure(GRPCStatus(.unknown, "\(error)"))
        }
    }
}
