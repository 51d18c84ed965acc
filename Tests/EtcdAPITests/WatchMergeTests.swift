import Backend
import EtcdProto
import SwiftProtobuf
import Testing

@testable import EtcdAPI
@testable import MVCC

/// A stream that fell behind sends each watcher's queued events in one response, without
/// reordering a watcher's deliveries or moving anything across a stream-wide one.
@Suite("Watch stream backlog merging")
struct WatchMergeTests {
    private func put(_ main: Int64) -> Change {
        Change(
            kind: .put, revision: Revision(main: main),
            kv: KeyValue(key: Array("k".utf8), value: [UInt8(main)], createRevision: 2, modRevision: main, version: main - 1, lease: 0))
    }

    private func events(_ watchID: Int64, _ mains: [Int64]) -> WatchDelivery {
        WatchDelivery(watchID: watchID, kind: .events(mains.map(put)), revision: mains.last!)
    }

    @Test func eachWatchersConsecutiveEventsJoinInOrder() {
        let merged = WatchStream.merged([events(1, [2]), events(2, [2]), events(1, [3]), events(2, [3, 4]), events(1, [5])])
        #expect(merged == [events(1, [2, 3, 5]), events(2, [2, 3, 4])])
    }

    @Test func aWatchersOtherDeliveriesAndStreamWideOnesAreBarriers() {
        let progress = WatchDelivery(watchID: -1, kind: .progress, revision: 3)
        let canceled = WatchDelivery(watchID: 2, kind: .canceled, revision: 4)
        let merged = WatchStream.merged([
            events(1, [2]), events(2, [2]), events(1, [3]), progress, events(1, [4]), canceled, events(2, [4]), events(1, [5]),
        ])
        #expect(merged == [events(1, [2, 3]), events(2, [2]), progress, events(1, [4, 5]), canceled, events(2, [4])])
    }

    @Test(arguments: [Int64(0), 1, 127, 128, 300, Int64.max, -1])
    func theWatchIDFieldIsWhatProtobufWrites(watchID: Int64) throws {
        var response = Etcdserverpb_WatchResponse()
        response.watchID = watchID
        #expect(FanOutEncoder.watchIDField(watchID) == (try response.serializedBytes() as [UInt8]))
    }
}
