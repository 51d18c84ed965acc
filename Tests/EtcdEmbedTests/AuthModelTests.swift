import EtcdClient
import EtcdProto
import Foundation
import GRPCWire
import SwiftProtobuf
import Testing
import TestSupport

/// The model check: random users, roles and permissions, then thousands of random requests of
/// every kind as random users, each outcome compared with a small reference model written here
/// (a sweep over the user's grants, not the server's merged ranges). No request outside a
/// user's grants may succeed, and every request inside them must.
@Suite("Auth model check", .cpuBound, .serialized)
struct AuthModelTests {
    static let cases = 3000

    @Test(arguments: [UInt64(0x5EED_0001), 0x5EED_0002])
    func randomRequestsMatchTheModel(seed: UInt64) async throws {
        var random = SeededRandom(seed: seed)
        let fixture = try await AuthFixture.start()
        var model = Model()
        // Roles with random permissions; users with random roles (some with none).
        for r in 0..<6 {
            let role = "role\(r)"
            _ = try await fixture.root.call(Etcdserverpb_AuthRPCs.roleAdd, .with { $0.name = role })
            var permissions: [Model.Grant] = []
            for _ in 0..<Int.random(in: 0...3, using: &random) {
                let range = Model.randomRange(&random)
                let access = [Authpb_Permission.TypeEnum.read, .write, .readwrite].randomElement(using: &random)!
                _ = try await fixture.root.call(Etcdserverpb_AuthRPCs.roleGrantPermission, .with {
                    $0.name = role
                    $0.perm = .with { $0.permType = access; $0.key = Data(range.key); $0.rangeEnd = Data(range.end) }
                })
                // A grant on the same range replaces the earlier one, as on the server.
                permissions.removeAll { $0.key == range.key && $0.end == range.end }
                permissions.append(Model.Grant(key: range.key, end: range.end, access: access))
            }
            model.roles[role] = permissions
        }
        var clients: [String: EtcdClient] = [:]
        for u in 0..<6 {
            let user = "user\(u)"
            _ = try await fixture.root.call(Etcdserverpb_AuthRPCs.userAdd, .with { $0.name = user; $0.password = "pw-\(user)" })
            let roles = (0..<6).map { "role\($0)" }.filter { _ in Int.random(in: 0..<3, using: &random) == 0 }
            for role in roles {
                _ = try await fixture.root.call(Etcdserverpb_AuthRPCs.userGrantRole, .with { $0.user = user; $0.role = role })
            }
            model.users[user] = roles
            clients[user] = try fixture.client(user)
        }
        var tally: [String: (allowed: Int, denied: Int)] = [:]
        for n in 0..<Self.cases {
            let user = "user\(Int.random(in: 0..<6, using: &random))"
            let client = clients[user]!
            let request = Model.randomRequest(&random)
            var needs = model.needs(of: request)
            var lease: Int64 = 0
            // Leases are granted with keys attached by root just before the request that uses them.
            if request.usesLease {
                lease = try await fixture.root.grantLease(ttl: 600).id
                let attached = (0..<Int.random(in: 1...2, using: &random)).map { _ in Model.randomKey(&random) }
                for key in attached { try await fixture.root.put(Data(key), Data("leased".utf8), lease: lease) }
                needs += attached.map { (Model.Access.write, $0, []) }
            }
            let allowed = needs.allSatisfy { model.allows(user, $0.0, key: $0.1, rangeEnd: $0.2) }
            let value = Data("v\(n)".utf8)
            let outcome = await Self.issue(request, lease: lease, value: value, client: client)
            let label = "seed \(seed) case \(n): \(user) \(request) needs \(needs.map { "\($0.0) [\(Model.text($0.1)), \(Model.text($0.2)))" })"
            if allowed {
                #expect(outcome == .ok, "\(label)")
            } else {
                #expect(outcome == .denied, "\(label)")
                // Nothing was written.
                if case .put(let key, _) = request {
                    let stored = try await fixture.root.get(Data(key))
                    #expect(stored.kvs.first?.value != value, "\(label)")
                }
            }
            if lease != 0 { _ = try? await fixture.root.revokeLease(lease) }
            tally[request.kind, default: (0, 0)].allowed += allowed ? 1 : 0
            tally[request.kind, default: (0, 0)].denied += allowed ? 0 : 1
        }
        print("auth model check seed \(seed): \(Self.cases) cases, " + tally.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value.allowed) allowed / \($0.value.denied) denied" }.joined(separator: ", "))
        // Both outcomes were exercised for every kind of request.
        for (kind, counts) in tally {
            #expect(counts.allowed > 0 && counts.denied > 0, "\(kind): \(counts)")
        }
        for client in clients.values { await client.close() }
        await fixture.stop()
    }

    enum Outcome: Equatable {
        case ok
        case denied
        case other(String)
    }

    static func issue(_ request: Model.Request, lease: Int64, value: Data, client: EtcdClient) async -> Outcome {
        do {
            switch request {
            case .range(let key, let end):
                _ = try await client.range(.with { $0.key = Data(key); $0.rangeEnd = Data(end) })
            case .put(let key, let prevKV):
                try await client.put(Data(key), value, lease: lease, prevKV: prevKV)
            case .delete(let key, let end, let prevKV):
                _ = try await client.delete(Data(key), rangeEnd: Data(end), prevKV: prevKV)
            case .txn(let txn):
                _ = try await client.txn(txn.message(value: value))
            case .leaseRevoke:
                _ = try await client.revokeLease(lease)
            case .watch(let key, let end):
                let stream = try await client.watch(Data(key), rangeEnd: Data(end))
                defer { stream.close() }
                var iterator = stream.makeAsyncIterator()
                guard let created = try await iterator.next() else { return .other("watch stream ended") }
                if created.canceled {
                    return created.cancelReason == "rpc error: code = PermissionDenied desc = etcdserver: permission denied"
                        && created.watchID == -1 && created.created ? .denied : .other(created.cancelReason)
                }
                return created.created ? .ok : .other("\(created)")
            }
            return .ok
        } catch {
            if let error = error as? EtcdClientError, error.code == .permissionDenied, error.message == "etcdserver: permission denied" {
                return .denied
            }
            return .other("\(error)")
        }
    }
}

/// The reference model: grants per role, roles per user, and what each request needs.
struct Model {
    enum Access { case read, write }

    struct Grant {
        var key: [UInt8]
        var end: [UInt8]
        var access: Authpb_Permission.TypeEnum

        func allows(_ wanted: Access) -> Bool {
            access == .readwrite || (wanted == .read ? access == .read : access == .write)
        }

        /// `[start, end)`; end nil is unbounded.
        var interval: (start: [UInt8], end: [UInt8]?) { Model.interval(key, end) }
    }

    var roles: [String: [Grant]] = [:]
    var users: [String: [String]] = [:]

    static func interval(_ key: [UInt8], _ end: [UInt8]) -> (start: [UInt8], end: [UInt8]?) {
        if end.isEmpty { return (key, key + [0]) }
        if end == [0] { return (key, nil) }
        return (key, end)
    }

    static func less(_ a: [UInt8], _ b: [UInt8]?) -> Bool {
        guard let b else { return true }
        return a.lexicographicallyPrecedes(b)
    }

    /// Whether the user's grants cover every key of the range: a sweep from the range's start,
    /// jumping to the farthest end of any grant holding the current point.
    func allows(_ user: String, _ access: Access, key: [UInt8], rangeEnd: [UInt8]) -> Bool {
        let grants = (users[user] ?? []).flatMap { roles[$0] ?? [] }.filter { $0.allows(access) }.map(\.interval)
        let wanted = Model.interval(key, rangeEnd)
        var point = wanted.start
        while Model.less(point, wanted.end) {
            let holding = grants.filter { !point.lexicographicallyPrecedes($0.start) && Model.less(point, $0.end) }
            guard !holding.isEmpty else { return false }
            if holding.contains(where: { $0.end == nil }) { return true }
            point = holding.map { $0.end! }.max { $0.lexicographicallyPrecedes($1) }!
        }
        return true
    }

    indirect enum Request: CustomStringConvertible {
        case range([UInt8], [UInt8])
        case put([UInt8], prevKV: Bool)
        case delete([UInt8], [UInt8], prevKV: Bool)
        case txn(Txn)
        case watch([UInt8], [UInt8])
        case leaseRevoke

        var usesLease: Bool {
            switch self {
            case .leaseRevoke: true
            case .put(let key, _): key.first == UInt8(ascii: "d")  // a quarter of puts attach a lease
            default: false
            }
        }

        var kind: String {
            switch self {
            case .range: "range"
            case .put: usesLease ? "put-with-lease" : "put"
            case .delete: "delete"
            case .txn: "txn"
            case .watch: "watch"
            case .leaseRevoke: "lease-revoke"
            }
        }

        var description: String {
            switch self {
            case .range(let k, let e): "range [\(text(k)), \(text(e)))"
            case .put(let k, let prev): "put \(text(k)) prev_kv=\(prev)"
            case .delete(let k, let e, let prev): "delete [\(text(k)), \(text(e))) prev_kv=\(prev)"
            case .txn(let txn): "txn \(txn)"
            case .watch(let k, let e): "watch [\(text(k)), \(text(e)))"
            case .leaseRevoke: "lease revoke"
            }
        }
    }

    /// A txn whose writes touch distinct single keys (so etcd's duplicate-key rule never fires).
    struct Txn: CustomStringConvertible {
        var compares: [([UInt8], [UInt8])]
        var success: [Request]
        var failure: [Request]

        func message(value: Data) -> Etcdserverpb_TxnRequest {
            .with { txn in
                txn.compare = compares.map { compare in
                    .with {
                        $0.key = Data(compare.0)
                        $0.rangeEnd = Data(compare.1)
                        $0.target = .version
                        $0.result = .greater
                        $0.version = 0
                    }
                }
                txn.success = success.map { Txn.operation($0, value: value) }
                txn.failure = failure.map { Txn.operation($0, value: value) }
            }
        }

        static func operation(_ request: Request, value: Data) -> Etcdserverpb_RequestOp {
            .with { operation in
                switch request {
                case .range(let k, let e): operation.requestRange = .with { $0.key = Data(k); $0.rangeEnd = Data(e) }
                case .put(let k, let prev): operation.requestPut = .with { $0.key = Data(k); $0.value = value; $0.prevKv = prev }
                case .delete(let k, let e, let prev):
                    operation.requestDeleteRange = .with { $0.key = Data(k); $0.rangeEnd = Data(e); $0.prevKv = prev }
                case .txn(let nested): operation.requestTxn = nested.message(value: value)
                case .watch, .leaseRevoke: break
                }
            }
        }

        var description: String { "if \(compares.map { "[\(text($0.0)), \(text($0.1)))" }) then \(success) else \(failure)" }
    }

    /// What a request needs, as (access, key, range end) triples.
    func needs(of request: Request) -> [(Access, [UInt8], [UInt8])] {
        switch request {
        case .range(let k, let e), .watch(let k, let e): [(.read, k, e)]
        case .put(let k, let prev): [(.write, k, [])] + (prev ? [(.read, k, [])] : [])
        case .delete(let k, let e, let prev): [(.write, k, e)] + (prev ? [(.read, k, e)] : [])
        case .txn(let txn): txn.compares.map { (.read, $0.0, $0.1) } + (txn.success + txn.failure).flatMap(needs(of:))
        case .leaseRevoke: []
        }
    }

    static let alphabet = Array("abcd".utf8)

    static func randomKey(_ random: inout SeededRandom) -> [UInt8] {
        (0..<Int.random(in: 1...2, using: &random)).map { _ in alphabet.randomElement(using: &random)! }
    }

    /// A range in one of etcd's forms: one key, `[a, b)`, a prefix, or from a key on.
    static func randomRange(_ random: inout SeededRandom) -> (key: [UInt8], end: [UInt8]) {
        let key = randomKey(&random)
        switch Int.random(in: 0..<4, using: &random) {
        case 0: return (key, [])
        case 1:
            var end = randomKey(&random)
            while !key.lexicographicallyPrecedes(end) { end = randomKey(&random) + [alphabet.last!] }
            return (key, end)
        case 2: return (key, Array(key.dropLast()) + [key.last! + 1])
        default: return (key, [0])
        }
    }

    static func randomRequest(_ random: inout SeededRandom) -> Request {
        switch Int.random(in: 0..<7, using: &random) {
        case 0:
            let range = randomRange(&random)
            return .range(range.key, range.end)
        case 1: return .put(randomKey(&random), prevKV: Bool.random(using: &random))
        case 2:
            let range = randomRange(&random)
            return .delete(range.key, range.end, prevKV: Bool.random(using: &random))
        case 3:
            var written: Set<[UInt8]> = []
            return .txn(randomTxn(&random, depth: 0, written: &written))
        case 4:
            let range = randomRange(&random)
            return .watch(range.key, range.end)
        case 5: return .leaseRevoke
        default: return .put([UInt8(ascii: "d")] + randomKey(&random), prevKV: Bool.random(using: &random))
        }
    }

    /// Writes in a txn (nested ones included) each take a key no other write of it takes, so
    /// etcd's duplicate-key rule never fires.
    static func randomTxn(_ random: inout SeededRandom, depth: Int, written: inout Set<[UInt8]>) -> Txn {
        func freshKey(_ random: inout SeededRandom) -> [UInt8]? {
            for _ in 0..<10 {
                let key = randomKey(&random)
                if written.insert(key).inserted { return key }
            }
            return nil
        }
        func operation(_ random: inout SeededRandom) -> Request {
            let choice = Int.random(in: 0..<(depth == 0 ? 4 : 3), using: &random)
            if choice == 1, let key = freshKey(&random) { return .put(key, prevKV: Bool.random(using: &random)) }
            if choice == 2, let key = freshKey(&random) { return .delete(key, [], prevKV: Bool.random(using: &random)) }
            if choice == 3 { return .txn(randomTxn(&random, depth: depth + 1, written: &written)) }
            let range = randomRange(&random)
            return .range(range.key, range.end)
        }
        let compares = (0..<Int.random(in: 0...2, using: &random)).map { _ in randomRange(&random) }.map { ($0.key, $0.end) }
        let success = (0..<Int.random(in: 0...2, using: &random)).map { _ in operation(&random) }
        let failure = (0..<Int.random(in: 0...2, using: &random)).map { _ in operation(&random) }
        return Txn(compares: compares, success: success, failure: failure)
    }

    static func text(_ bytes: [UInt8]) -> String {
        bytes == [0] ? "\\0" : String(decoding: bytes, as: UTF8.self)
    }
}
