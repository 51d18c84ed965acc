import Auth
import Backend
import Dispatch
import Foundation
import Locking
import MVCC
import Synchronization
import Testing

@testable import EtcdServer

/// The published store is lent back to the apply loop for a batch only when no read took it,
/// and a read that comes meanwhile waits for the batch's publication.
@Suite("Published state")
struct PublishedStateTests {
    /// A store whose revision is `revision` (one put per revision after the first).
    private func store(at revision: Int64) -> KeyValueStore {
        var store = KeyValueStore()
        let empty = OverlayReader(layers: [], base: EmptyRevisionReader())
        for index in 1..<revision {
            _ = store.write(reader: empty) { $0.put(Array("k\(index)".utf8), value: [1], lease: 0) }
        }
        return store
    }

    private func published(_ store: KeyValueStore) -> PublishedState {
        PublishedState(EtcdServer.Published(
            store: store, appliedIndex: 0, committedRevision: store.revision, voters: 1, membership: Membership(),
            auth: AuthState(), alarms: AlarmList()))
    }

    /// Runs `body` on a thread of its own (the apply loop's stand-in: a read must not wait on
    /// the thread the store is lent to).
    private func onThread(_ body: @escaping @Sendable () -> Void) {
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            body()
            done.signal()
        }
        done.wait()
    }

    @Test func aBatchTakesTheStoreBackOnlyWhenNoReadTookIt() {
        let state = published(store(at: 3))
        let lent = Locked<[Bool]>([])
        onThread {
            let first = state.lendStoreIfUntaken()
            let again = state.lendStoreIfUntaken()
            lent.withLock { $0 += [first, again] }
        }
        #expect(lent.withLock { $0 } == [true, false])
        state.publish(store: store(at: 5), appliedIndex: 4, uncommitted: [:])
        #expect(state.withLock { $0.storeFacts.revision } == 5)
        // A read takes it: the next batch leaves it published.
        #expect(state.withStore { store, _ in store.revision } == 5)
        onThread { lent.withLock { $0.append(state.lendStoreIfUntaken()) } }
        #expect(lent.withLock { $0 } == [true, false, false])
        // A new publication nobody read yet can be taken back again.
        state.publish(store: store(at: 6), appliedIndex: 5, uncommitted: [:])
        onThread { lent.withLock { $0.append(state.lendStoreIfUntaken()) } }
        #expect(lent.withLock { $0 } == [true, false, false, true])
    }

    @Test func aReadWaitsForTheBatchAndSeesItsPublication() {
        let state = published(store(at: 3))
        let later = store(at: 9)
        // The apply loop's stand-in lends the store, then publishes when told; it lives until
        // then, as the loop does (a read must not wait on the thread the store is lent to).
        let lent = Locked<Bool?>(nil)
        let (hasLent, publishNow, published) = (DispatchSemaphore(value: 0), DispatchSemaphore(value: 0), DispatchSemaphore(value: 0))
        Thread.detachNewThread {
            lent.withLock { $0 = state.lendStoreIfUntaken() }
            hasLent.signal()
            publishNow.wait()
            state.publish(store: later, appliedIndex: 8, uncommitted: [:])
            published.signal()
        }
        hasLent.wait()
        #expect(lent.withLock { $0 } == true)
        // Facts stay readable while the store is lent.
        #expect(state.withLock { $0.storeFacts.revision } == 3)
        let seen = Locked<[Int64]>([])
        let readerDone = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            let revision = state.withStore { store, _ in store.revision }
            seen.withLock { $0.append(revision) }
            readerDone.signal()
        }
        // The reader is still waiting 100 ms later: the batch has not published.
        #expect(readerDone.wait(timeout: .now() + .milliseconds(100)) == .timedOut)
        #expect(seen.withLock { $0 }.isEmpty)
        publishNow.signal()
        #expect(readerDone.wait(timeout: .now() + .seconds(10)) == .success)
        #expect(published.wait(timeout: .now() + .seconds(10)) == .success)
        #expect(seen.withLock { $0 } == [9])
        // The waiting read counts as taking the publication: the next batch leaves it.
        onThread { #expect(!state.lendStoreIfUntaken()) }
    }
}

/// Reads of a store that never needed the backend (every record is in memory here).
private struct EmptyRevisionReader: RevisionReader {
    func keyValues(at revisions: [Revision]) throws -> [KeyValue?] { revisions.map { _ in nil } }
}
