import Backend
import Dispatch
import EtcdProto
import Foundation
import Locking
import Logging
import MVCC
import NIOCore
import NIOPosix
import Raft
import SwiftProtobuf
import Synchronization

/// etcd's corruption checks: members compare their keyspace hashes (`HashKV`) at the same
/// revision, so data that differs from the peers' (a flipped bit on disk, a bug) is found
/// instead of served.
extension EtcdServer {
    /// How this member's hash compares with its peers' at one revision.
    struct HashComparison {
        var local: KeyspaceHash
        /// Peers that answered with a hash comparable with ours (same compaction).
        var agreeing: [UInt64] = []
        var differing: [(peer: UInt64, hash: KeyspaceHash)] = []
        /// Peers that could not be compared, and why.
        var skipped: [(peer: UInt64, reason: String)] = []
    }

    /// Asks every peer for its hash at `local.hashRevision` and sorts the answers. Blocks the
    /// calling thread (never an event loop) for at most 20 s.
    func compareWithPeers(_ local: KeyspaceHash) -> HashComparison {
        let peers = members.map(\.id).filter { $0 != memberID }
        let answers = Locked<[UInt64: Result<PeerResponse, EtcdError>]>([:])
        let group = DispatchGroup()
        for peer in peers {
            group.enter()
            transport.forward(.hashKV(revision: local.hashRevision), to: peer) { result in
                answers.withLock { $0[peer] = result }
                group.leave()
            }
        }
        _ = group.wait(timeout: .now() + 20)
        var comparison = HashComparison(local: local)
        let received = answers.withLock { $0 }
        for peer in peers {
            switch received[peer] {
            case nil:
                comparison.skipped.append((peer, "no answer"))
            case .failure(.futureRevision)?:
                comparison.skipped.append((peer, "the peer is behind (it has not applied revision \(local.hashRevision) yet)"))
            case .failure(.compacted)?:
                comparison.skipped.append((peer, "the peer compacted past revision \(local.hashRevision); this member is behind"))
            case .failure(let error)?:
                comparison.skipped.append((peer, error.description))
            case .success(let response)?:
                guard let hash = response.hashKV else {
                    comparison.skipped.append((peer, "no hash in the answer"))
                    continue
                }
                if hash.compactRevision != local.compactRevision {
                    comparison.skipped.append((peer, "compacted at \(hash.compactRevision), this member at \(local.compactRevision)"))
                } else if hash.hash == local.hash {
                    comparison.agreeing.append(peer)
                } else {
                    comparison.differing.append((peer, hash))
                }
            }
        }
        return comparison
    }

    /// etcd's `--experimental-initial-corrupt-check`: before serving clients, compares this
    /// member's hash at its revision with every peer that can answer, and refuses to start when
    /// one differs (a peer that cannot answer is logged and skipped, as in etcd) or when a
    /// record of its own backend fails its checksum.
    package func checkForCorruptionAtStart() throws {
        let id = String(memberID, radix: 16)
        let local: KeyspaceHash
        do {
            // A corrupt record stops this start; it raises no alarm for a member that does not run.
            local = try Self.keyspaceHash(at: 0, published: published, backend: backend, committer: committer, reportingCorruption: false)
        } catch .corrupt {
            throw ConfigurationError(
                "\(id) found a corrupt record in its backend (\(snapDirectory)/backend.sqlite): a record does not match its checksum")
        } catch {
            throw ConfigurationError("initial corruption check: cannot hash the local keyspace: \(error)")
        }
        logger.info(
            "starting initial corruption check",
            metadata: ["local-member-id": "\(id)", "revision": "\(local.hashRevision)", "hash": "\(local.hash)"])
        let comparison = compareWithPeers(local)
        for (peer, reason) in comparison.skipped {
            logger.warning(
                "cannot compare hash with remote peer", metadata: ["remote-peer-id": "\(String(peer, radix: 16))", "reason": "\(reason)"])
        }
        guard comparison.differing.isEmpty else {
            let details = comparison.differing.map { peer, hash in
                "peer \(String(peer, radix: 16)) has hash \(hash.hash) at revision \(hash.hashRevision), this member \(local.hash)"
            }
            throw ConfigurationError("\(id) found data inconsistency with peers (\(details.joined(separator: "; ")))")
        }
        logger.info(
            "initial corruption checking passed; no corruption",
            metadata: ["local-member-id": "\(id)", "compared-peers": "\(comparison.agreeing.count)"])
    }

    /// One corruption check by the leader (others do nothing): its hash at its current revision
    /// (`atCompaction`: at the newest compaction's revision, etcd's compaction hash check)
    /// against every follower's. A mismatch raises the CORRUPT alarm through Raft: for the
    /// leader itself when the followers that answered agree with one another and outnumber
    /// those agreeing with it, otherwise for each follower that differs.
    func checkForCorruption(atCompaction: Bool) {
        let (isLeader, compacted) = published.withLock { ($0.raft.role == .leader, $0.storeFacts.compactedRevision) }
        guard isLeader, !atCompaction || compacted > 0 else { return }
        guard let local = try? Self.keyspaceHash(at: atCompaction ? compacted : 0, published: published, backend: backend, committer: committer) else { return }
        let comparison = compareWithPeers(local)
        guard !comparison.differing.isEmpty else { return }
        let differingHashes = Set(comparison.differing.map(\.hash.hash))
        let corrupt =
            differingHashes.count == 1 && comparison.differing.count > comparison.agreeing.count
            ? [memberID] : comparison.differing.map(\.peer)
        for (peer, hash) in comparison.differing {
            logger.error(
                "found data inconsistency with a peer",
                metadata: [
                    "check": "\(atCompaction ? "compaction hash" : "periodic")", "remote-peer-id": "\(String(peer, radix: 16))",
                    "revision": "\(local.hashRevision)", "local-hash": "\(local.hash)", "remote-hash": "\(hash.hash)",
                ])
        }
        for member in corrupt { raiseCorruptAlarm(for: member) }
    }

    /// Proposes the CORRUPT alarm for `member`, saying so.
    private func raiseCorruptAlarm(for member: UInt64) {
        logger.error("raising the CORRUPT alarm", metadata: ["member-id": "\(String(member, radix: 16))"])
        let alarm = Etcdserverpb_AlarmRequest.with {
            $0.action = .activate
            $0.memberID = member
            $0.alarm = .corrupt
        }
        propose(.alarm(alarm), origin: .member) { _ in }
    }

    /// A backend record failed its checksum as it was read: the read failed, and this logs it
    /// and raises the CORRUPT alarm for this member, as etcd does for a member whose data
    /// differs from its peers' (the cluster then refuses requests until an operator replaces
    /// the member and disarms the alarm). Each record is reported once.
    func reportCorruptRecord(_ corrupt: SQLiteBackend.CorruptRecord) {
        guard corruptRecords.withLock({ $0.insert(corrupt.revision).inserted }) else { return }
        logger.error("backend record failed its checksum", metadata: ["error": "\(corrupt)"])
        raiseCorruptAlarm(for: memberID)
    }

    /// Runs ``checkForCorruption(atCompaction:)`` `interval` after the previous one ended, off
    /// the event loops, for as long as the member runs.
    func scheduleCorruptionChecks(every interval: Duration, atCompaction: Bool) {
        let delay = TimeAmount.nanoseconds(Int64(interval / .nanoseconds(1)))
        let eventLoop = peerEventLoops.next()
        eventLoop.scheduleRepeatedAsyncTask(initialDelay: delay, delay: delay) { [self] _ in
            let done = eventLoop.makePromise(of: Void.self)
            DispatchQueue.global().async {
                self.checkForCorruption(atCompaction: atCompaction)
                done.succeed()
            }
            return done.futureResult
        }
    }
}
