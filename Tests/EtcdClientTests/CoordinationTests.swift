import EtcdClient
import EtcdProto
import Foundation
import GRPCWire
import SwiftProtobuf
import TestSupport
import Testing

/// The Lock and Election services, against swift-etcd and Debian's etcd: the same keys,
/// waits, releases and errors; and the client's Session, Mutex, Election and STM recipes.
@Suite("Locks and elections", .server, .serialized)
struct CoordinationTests {
    private func hex(_ lease: Int64) -> String { String(UInt64(bitPattern: lease), radix: 16) }

    private func count(_ client: EtcdClient, prefix: String) async throws -> Int64 {
        try await client.get(Data(prefix.utf8), rangeEnd: prefixEnd(prefix)).count
    }

    /// Polls until `condition` holds, for at most ten seconds.
    private func eventually(_ what: Comment, _ condition: () async throws -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("timed out waiting: \(what)")
    }

    @Test(arguments: EtcdClientTests.kinds)
    func lockQueuesHoldersAndReleasesOnUnlockCancelAndRevoke(kind: ServerProcess.Kind) async throws {
        try await ServerProcess.withFreshServer(kind) { _, client in
            let first = try await client.grantLease(ttl: 60).id
            let second = try await client.grantLease(ttl: 60).id
            let third = try await client.grantLease(ttl: 60).id
            let name = Data("job".utf8)

            let held = try await client.lock(name, lease: first)
            #expect(String(decoding: held.key, as: UTF8.self) == "job/\(hex(first))")
            // The same lease again: the same key at once.
            #expect(try await client.lock(name, lease: first).key == held.key)

            // A second holder waits until the first unlocks.
            let waiting = Task { try await client.lock(name, lease: second) }
            try await eventually("the second key") { try await count(client, prefix: "job/") == 2 }
            try await Task.sleep(for: .milliseconds(200))
            #expect(try await client.get(held.key).kvs.count == 1)
            let unlocked = try await client.unlock(key: held.key)
            let next = try await waiting.value
            #expect(String(decoding: next.key, as: UTF8.self) == "job/\(hex(second))")
            #expect(next.header.revision >= unlocked.header.revision)

            // A third waiter that gives up leaves no key behind.
            let impatient = Task { try await client.lock(name, lease: third) }
            try await eventually("the third key") { try await count(client, prefix: "job/") == 2 }
            impatient.cancel()
            await #expect(throws: (any Error).self) { try await impatient.value }
            try await eventually("the cancelled key removed") { try await count(client, prefix: "job/") == 1 }

            // A holder whose lease goes releases the lock to the next.
            let last = Task { try await client.lock(name, lease: third) }
            try await eventually("the third key again") { try await count(client, prefix: "job/") == 2 }
            try await client.revokeLease(second)
            #expect(String(decoding: try await last.value.key, as: UTF8.self) == "job/\(hex(third))")
        }
    }

    @Test(arguments: EtcdClientTests.kinds)
    func cancelledWaitsLeaveNothingBehind(kind: ServerProcess.Kind) async throws {
        try await ServerProcess.withFreshServer(kind) { _, client in
            // The client's mutex: a waiter whose task is cancelled removes its key.
            let holder = try await EtcdSession.open(client)
            try await EtcdMutex(session: holder, name: "m").lock()
            let waiter = EtcdMutex(session: try await EtcdSession.open(client), name: "m")
            let waiting = Task { try await waiter.lock() }
            try await eventually("the waiter's key") { try await count(client, prefix: "m/") == 2 }
            waiting.cancel()
            await #expect(throws: EtcdClientError(code: .cancelled, message: "context canceled")) { try await waiting.value }
            try await eventually("the waiter's key removed") { try await count(client, prefix: "m/") == 1 }

            // Campaigns, through the service and through the client's election: cancelled, withdrawn.
            let leader = try await client.grantLease(ttl: 60).id
            _ = try await client.campaign(Data("c".utf8), lease: leader, value: Data("first".utf8))
            let other = try await client.grantLease(ttl: 60).id
            let rpcCampaign = Task { try await client.campaign(Data("c".utf8), lease: other, value: Data("second".utf8)) }
            try await eventually("the second campaign") { try await count(client, prefix: "c/") == 2 }
            rpcCampaign.cancel()
            await #expect(throws: (any Error).self) { try await rpcCampaign.value }
            try await eventually("the second campaign withdrawn") { try await count(client, prefix: "c/") == 1 }
            let election = EtcdElection(session: try await EtcdSession.open(client), name: "c")
            let recipeCampaign = Task { try await election.campaign(Data("third".utf8)) }
            try await eventually("the third campaign") { try await count(client, prefix: "c/") == 2 }
            recipeCampaign.cancel()
            await #expect(throws: EtcdClientError(code: .cancelled, message: "context canceled")) { try await recipeCampaign.value }
            try await eventually("the third campaign withdrawn") { try await count(client, prefix: "c/") == 1 }
            #expect(try await client.leader(of: Data("c".utf8)).kv.value == Data("first".utf8))

            // An empty name is no error: the lock is the key "/<lease>", as in etcd.
            let unnamed = try await client.lock(Data(), lease: leader)
            #expect(String(decoding: unnamed.key, as: UTF8.self) == "/\(hex(leader))")
        }
    }

    @Test(arguments: EtcdClientTests.kinds)
    func badRequestsGetEtcdsErrors(kind: ServerProcess.Kind) async throws {
        try await ServerProcess.withFreshServer(kind) { _, client in
            // etcd answers every failure of these services with UNKNOWN and its message.
            await #expect(throws: EtcdClientError(code: .unknown, message: "etcdserver: requested lease not found")) {
                _ = try await client.lock(Data("l".utf8), lease: 0x1234)
            }
            await #expect(throws: EtcdClientError(code: .unknown, message: "etcdserver: key is not provided")) {
                _ = try await client.unlock(key: Data())
            }
            // Unlocking a key nobody holds changes nothing and is no error.
            let revision = try await client.status().header.revision
            #expect(try await client.unlock(key: Data("l/99".utf8)).header.revision == revision)

            await #expect(throws: EtcdClientError(code: .unknown, message: "election: no leader")) {
                _ = try await client.leader(of: Data("e".utf8))
            }
            await #expect(throws: EtcdClientError(code: .unknown, message: #""leader" field must be provided"#)) {
                _ = try await client.call(V3electionpb_ElectionRPCs.proclaim, .with { $0.value = Data("v".utf8) })
            }
            await #expect(throws: EtcdClientError(code: .unknown, message: #""leader" field must be provided"#)) {
                _ = try await client.call(V3electionpb_ElectionRPCs.resign, V3electionpb_ResignRequest())
            }
            await #expect(throws: EtcdClientError(code: .unknown, message: "etcdserver: requested lease not found")) {
                _ = try await client.campaign(Data("e".utf8), lease: 0x1234, value: Data("v".utf8))
            }
            let lease = try await client.grantLease(ttl: 60).id
            let leader = try await client.campaign(Data("e".utf8), lease: lease, value: Data("v".utf8)).leader
            var stale = leader
            stale.rev += 1
            await #expect(throws: EtcdClientError(code: .unknown, message: "election: not leader")) {
                _ = try await client.proclaim(Data("w".utf8), as: stale)
            }
            // Resigning with a stale key is no error and leaves the leader in place.
            try await client.resign(stale)
            #expect(try await client.leader(of: Data("e".utf8)).kv.value == Data("v".utf8))
        }
    }

    /// The recipes' transactions pass `--max-request-bytes` as any client's do: a value too
    /// large for it fails the call with etcd's message (UNKNOWN, as etcd relays its in-process
    /// client's error), and nothing is written.
    @Test(arguments: EtcdClientTests.kinds)
    func valuesOverTheRequestLimitAreRefused(kind: ServerProcess.Kind) async throws {
        try await ServerProcess.withFreshServer(kind, arguments: ["--max-request-bytes", "4096"]) { _, client in
            let lease = try await client.grantLease(ttl: 60).id
            let large = Data(repeating: UInt8(ascii: "v"), count: 5000)
            await #expect(throws: EtcdClientError(code: .unknown, message: "etcdserver: request is too large")) {
                _ = try await client.campaign(Data("big".utf8), lease: lease, value: large)
            }
            #expect(try await count(client, prefix: "big/") == 0)
            let leader = try await client.campaign(Data("big".utf8), lease: lease, value: Data("small".utf8)).leader
            await #expect(throws: EtcdClientError(code: .unknown, message: "etcdserver: request is too large")) {
                _ = try await client.proclaim(large, as: leader)
            }
            #expect(try await client.leader(of: Data("big".utf8)).kv.value == Data("small".utf8))
        }
    }

    @Test(arguments: EtcdClientTests.kinds)
    func campaignProclaimResignAndObserve(kind: ServerProcess.Kind) async throws {
        try await ServerProcess.withFreshServer(kind) { _, client in
            let name = Data("office".utf8)
            let alice = try await client.grantLease(ttl: 60).id
            let bob = try await client.grantLease(ttl: 60).id
            let observed = try await client.observe(name)
            var leaders = observed.makeAsyncIterator()

            let won = try await client.campaign(name, lease: alice, value: Data("alice".utf8))
            #expect(String(decoding: won.leader.key, as: UTF8.self) == "office/\(hex(alice))")
            #expect(won.leader.name == name && won.leader.lease == alice && won.leader.rev == won.header.revision)
            #expect(try await leaders.next()?.kv.value == Data("alice".utf8))

            let waiting = Task { try await client.campaign(name, lease: bob, value: Data("bob".utf8)) }
            try await eventually("bob's campaign") { try await count(client, prefix: "office/") == 2 }
            try await client.proclaim(Data("alice-2".utf8), as: won.leader)
            #expect(try await leaders.next()?.kv.value == Data("alice-2".utf8))
            #expect(try await client.leader(of: name).kv.value == Data("alice-2".utf8))

            try await client.resign(won.leader)
            let bobWon = try await waiting.value
            #expect(String(decoding: bobWon.leader.key, as: UTF8.self) == "office/\(hex(bob))")
            let next = try await leaders.next()
            #expect(next?.kv.value == Data("bob".utf8))
            #expect(next?.kv.createRevision == bobWon.leader.rev)
            // Campaigning again with the leading lease and a new value proclaims it.
            let again = try await client.campaign(name, lease: bob, value: Data("bob-2".utf8))
            #expect(again.leader.rev == bobWon.leader.rev)
            #expect(try await leaders.next()?.kv.value == Data("bob-2".utf8))
        }
    }

    @Test(arguments: EtcdClientTests.kinds)
    func mutexesKeepACounterExact(kind: ServerProcess.Kind) async throws {
        try await ServerProcess.withFreshServer(kind) { _, client in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        let session = try await EtcdSession.open(client, ttl: 10)
                        let mutex = EtcdMutex(session: session, name: "counter-lock")
                        for _ in 0..<5 {
                            try await mutex.lock()
                            let now = Int(try await client.get("counter").kvs.first.map { String(decoding: $0.value, as: UTF8.self) } ?? "0")!
                            try await client.put("counter", String(now + 1))
                            try await mutex.unlock()
                        }
                        try await session.close()
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await client.get("counter").kvs.first?.value == Data("20".utf8))
            #expect(try await count(client, prefix: "counter-lock/") == 0)
        }
    }

    @Test(arguments: EtcdClientTests.kinds)
    func tryLockSessionsAndTheFencingToken(kind: ServerProcess.Kind) async throws {
        try await ServerProcess.withFreshServer(kind) { _, client in
            let holder = try await EtcdSession.open(client, ttl: 5)
            let first = EtcdMutex(session: holder, name: "fence")
            let held = try await first.lock()
            let other = try await EtcdSession.open(client, ttl: 60)
            let second = EtcdMutex(session: other, name: "fence")
            await #expect(throws: EtcdClientError(code: .unknown, message: "mutex: Locked by another session")) {
                try await second.tryLock()
            }
            #expect(try await count(client, prefix: "fence/") == 1)

            // The holder pauses past its TTL: its lease expires, the session says so, and the
            // lock passes on. The stale holder's fenced write is refused; the new one's lands.
            holder.orphan()
            #expect(await holder.ended() == .closed)
            let taken = try await second.lock()
            #expect(taken.revision > held.revision)
            func fencedWrite(_ lock: EtcdLock, _ value: String) async throws -> Bool {
                try await client.txn(.with {
                    $0.compare = [lock.fence]
                    $0.success = [.with { $0.requestPut = .with { $0.key = Data("resource".utf8); $0.value = Data(value.utf8) } }]
                }).succeeded
            }
            #expect(try await fencedWrite(held, "stale") == false)
            #expect(try await fencedWrite(taken, "fresh") == true)
            #expect(try await client.get("resource").kvs.first?.value == Data("fresh".utf8))

            // A session whose lease is revoked under it ends as lost.
            let doomed = try await EtcdSession.open(client, ttl: 3)
            try await client.revokeLease(doomed.lease)
            #expect(await doomed.ended() == .lost(EtcdClientError(code: .notFound, message: "etcdserver: requested lease not found")))
            try await other.close()
            #expect(try await count(client, prefix: "fence/") == 0)
        }
    }

    @Test func aSessionNobodyHoldsLetsItsLeaseExpire() async throws {
        try await ServerProcess.withFreshServer(.swiftEtcd) { _, client in
            // Renewed every second; a TTL of 4 s leaves room for a loaded machine (2 s expired in CI).
            var session: EtcdSession? = try await EtcdSession.open(client, ttl: 4)
            let lease = try #require(session?.lease)
            try await Task.sleep(for: .seconds(6))
            #expect(try await client.leaseTimeToLive(lease).ttl > 0)  // renewed while held
            session = nil
            try await eventually("the dropped session's lease expired") { try await client.leaseTimeToLive(lease).ttl == -1 }
        }
    }

    @Test(arguments: EtcdClientTests.kinds)
    func electionRecipeObserversSeeEveryLeaderInOrder(kind: ServerProcess.Kind) async throws {
        try await ServerProcess.withFreshServer(kind) { _, client in
            let watcherSession = try await EtcdSession.open(client)
            let observer = EtcdElection(session: watcherSession, name: "team")
            var seen = observer.observe().makeAsyncIterator()
            var sessions: [EtcdSession] = []
            for index in 0..<3 {
                let session = try await EtcdSession.open(client, ttl: 60)
                sessions.append(session)
                let election = EtcdElection(session: session, name: "team")
                if index == 0 {
                    try await election.campaign(Data("c0".utf8))
                    #expect(try await election.leader().value == Data("c0".utf8))
                    try await election.proclaim(Data("c0-again".utf8))
                } else {
                    Task { try await election.campaign(Data("c\(index)".utf8)) }
                }
            }
            try await eventually("three campaigns") { try await count(client, prefix: "team/") == 3 }
            // Each leader's session ends in turn (as if its process died): each campaign leads.
            for session in sessions { try await session.close() }
            var values: [String] = []
            while values.count < 4, let leader = try await seen.next() { values.append(String(decoding: leader.value, as: UTF8.self)) }
            #expect(values == ["c0", "c0-again", "c1", "c2"])
            await #expect(throws: EtcdClientError(code: .unknown, message: "election: no leader")) { _ = try await observer.leader() }
            await #expect(throws: EtcdClientError(code: .unknown, message: "election: not leader")) {
                try await observer.proclaim(Data("x".utf8))
            }
            try await watcherSession.close()
        }
    }

    @Test(arguments: [EtcdIsolation.serializableSnapshot, .serializable, .repeatableReads])
    func softwareTransactionsKeepTheTotalOfTransfers(isolation: EtcdIsolation) async throws {
        try await ServerProcess.withFreshServer(.swiftEtcd) { _, client in
            let accounts = 5
            for account in 0..<accounts { try await client.put("account/\(account)", "100") }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for worker in 0..<4 {
                    group.addTask {
                        var random = SeededRandom(seed: UInt64(worker + 1))
                        for _ in 0..<15 {
                            let from = Int.random(in: 0..<accounts, using: &random)
                            let to = (from + Int.random(in: 1..<accounts, using: &random)) % accounts
                            let amount = Int.random(in: 1...20, using: &random)
                            try await client.stm(isolation: isolation) { stm in
                                let source = Int(try await stm.get("account/\(from)"))!
                                let target = Int(try await stm.get("account/\(to)"))!
                                let moved = min(amount, source)
                                stm.put("account/\(from)", String(source - moved))
                                stm.put("account/\(to)", String(target + moved))
                            }
                        }
                    }
                }
                try await group.waitForAll()
            }
            let balances = try await client.get(Data("account/".utf8), rangeEnd: prefixEnd("account/")).kvs
                .map { Int(String(decoding: $0.value, as: UTF8.self))! }
            #expect(balances.count == accounts)
            #expect(balances.reduce(0, +) == 100 * accounts)
            #expect(balances.allSatisfy { $0 >= 0 })
        }
    }
}
