import EtcdAPI
import EtcdProto
import Foundation
import GRPCWire
import NIOCore
import SwiftProtobuf
import Testing
import TestSupport

@Suite("Bad input gets etcd's status and the member keeps serving", .server)
struct BadInputTests {
    private func withMember(_ body: (GRPCClientConnection) async throws -> Void) async throws {
        let member = try TemporaryMember()
        defer { member.remove() }
        var configuration = GRPCServer.Configuration()
        configuration.limits = EtcdRouter.messageLimits(for: member.server)
        let server = try await GRPCServer.start(router: EtcdRouter.make(serving: member.server), configuration: configuration)
        let connection = try await GRPCClientConnection.connect(.init(host: "127.0.0.1", port: server.localAddress!.port!))
        do {
            try await body(connection)
        } catch {
            await connection.close()
            await server.shutdown()
            throw error
        }
        await connection.close()
        await server.shutdown()
    }

    private func status<Request: Message, Response: Message>(
        _ connection: GRPCClientConnection, _ rpc: RPC<Request, Response>, _ request: Request
    ) async -> GRPCStatus? {
        do {
            _ = try await connection.unary(rpc.path, request, timeout: .seconds(10), responseType: Response.self)
            return nil
        } catch {
            return error as? GRPCStatus
        }
    }

    private func putRequest(_ key: String, size: Int) -> Etcdserverpb_PutRequest {
        .with { $0.key = Data(key.utf8); $0.value = Data(repeating: 0x5A, count: size) }
    }

    @Test func eachBadRequestGetsEtcdsAnswer() async throws {
        try await withMember { connection in
            let kv = Etcdserverpb_KVRPCs.self
            #expect(await status(connection, kv.put, putRequest("", size: 1))
                == GRPCStatus(.invalidArgument, "etcdserver: key is not provided"))
            let huge = putRequest("big", size: 2 * 1024 * 1024)
            let hugeSize = (try huge.serializedBytes() as [UInt8]).count
            #expect(await status(connection, kv.put, huge)
                == GRPCStatus(.resourceExhausted, "grpc: received message larger than max (\(hugeSize) vs. 2097152)"))
            #expect(await status(connection, kv.put, putRequest("big", size: 1_600_000))
                == GRPCStatus(.invalidArgument, "etcdserver: request is too large"))
            let manyOps = Etcdserverpb_TxnRequest.with {
                $0.success = (0..<129).map { index in .with { $0.requestPut = .with { $0.key = Data("k\(index)".utf8) } } }
            }
            #expect(await status(connection, kv.txn, manyOps)
                == GRPCStatus(.invalidArgument, "etcdserver: too many operations in txn request"))
            let duplicate = Etcdserverpb_TxnRequest.with {
                $0.success = (0..<2).map { _ in .with { $0.requestPut = .with { $0.key = Data("same".utf8) } } }
            }
            #expect(await status(connection, kv.txn, duplicate)
                == GRPCStatus(.invalidArgument, "etcdserver: duplicate key given in txn request"))
            #expect(await status(connection, kv.range, .with { $0.key = Data("a".utf8); $0.sortTarget = .UNRECOGNIZED(42) })
                == GRPCStatus(.invalidArgument, "etcdserver: invalid sort option"))
            #expect(await status(connection, kv.range, .with { $0.key = Data("a".utf8); $0.revision = 1_000 })
                == GRPCStatus(.outOfRange, "etcdserver: mvcc: required revision is a future revision"))
            #expect(await status(connection, kv.put, .with { $0.key = Data("a".utf8); $0.lease = 1_234 })
                == GRPCStatus(.notFound, "etcdserver: requested lease not found"))
            #expect(await status(connection, kv.compact, .with { $0.revision = 50 })
                == GRPCStatus(.outOfRange, "etcdserver: mvcc: required revision is a future revision"))

            // Still serving: a 1.4 MiB value round-trips, and odd-but-valid ranges answer as etcd does.
            let large = putRequest("large", size: 1_400_000)
            _ = try await connection.unary(kv.put.path, large, responseType: Etcdserverpb_PutResponse.self)
            let read = try await connection.unary(
                kv.range.path, Etcdserverpb_RangeRequest.with { $0.key = Data("large".utf8) },
                responseType: Etcdserverpb_RangeResponse.self)
            #expect(read.kvs.first?.value.count == 1_400_000)
            #expect(read.header.revision == 2)
            let reversed = try await connection.unary(
                kv.range.path, Etcdserverpb_RangeRequest.with { $0.key = Data("z".utf8); $0.rangeEnd = Data("a".utf8) },
                responseType: Etcdserverpb_RangeResponse.self)
            #expect(reversed.count == 0)
            let unlimited = try await connection.unary(
                kv.range.path, Etcdserverpb_RangeRequest.with { $0.key = Data([0]); $0.rangeEnd = Data([0]); $0.limit = -5 },
                responseType: Etcdserverpb_RangeResponse.self)
            #expect(unlimited.count == 1)
            #expect(unlimited.kvs.count == 1)
        }
    }
}
