import Backend
import DequeModule
import EtcdProto
import EtcdServer
import Foundation
import GRPCWire
import MVCC
import NIOCore
import SwiftProtobuf
import Synchronization

/// Encodes event responses for one drain of a stream's backlog, reusing the bytes of events
/// and headers that many watchers share (a put watched by a thousand watchers is encoded once).
/// A response's fields are encoded apart and joined: protobuf allows it.
struct FanOutEncoder {
    let server: EtcdServer
    private var events: [[Revision]: [UInt8]] = [:]
    private var headers: [Int64: [UInt8]] = [:]

    init(server: EtcdServer) {
        self.server = server
    }

    mutating func parts(_ changes: [Change], watchID: Int64, revision: Int64) -> [[UInt8]] {
        let key = changes.map(\.revision)
        let eventBytes = events[key] ?? {
            var response = Etcdserverpb_WatchResponse()
            response.events = changes.map(Mvccpb_Event.init)
            let bytes: [UInt8] = (try? response.serializedBytes()) ?? []
            events[key] = bytes
            return bytes
        }()
        let headerBytes = headers[revision] ?? {
            var response = Etcdserverpb_WatchResponse()
            response.header = server.header(revision: revision)
            let bytes: [UInt8] = (try? response.serializedBytes()) ?? []
            headers[revision] = bytes
            return bytes
        }()
        return [headerBytes, Self.watchIDField(watchID), eventBytes]
    }

    /// `WatchResponse.watch_id` (field 2, a varint) as protobuf encodes it; nothing for 0,
    /// the default.
    static func watchIDField(_ watchID: Int64) -> [UInt8] {
        guard watchID != 0 else { return [] }
        var bytes: [UInt8] = [0x10]
        var rest = UInt64(bitPattern: watchID)
        while rest >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
            rest >>= 7
        }
        bytes.append(UInt8(rest))
        return bytes
    }
}

extension Mvccpb_Event {
    /// The wire form of a change, without the record before it.
    init(_ change: Change) {
        self.init()
        type = change.kind == .put ? .put : .delete
        kv = Mvccpb_KeyValue(change.kv)
    }
}

extension WatchDelivery {
    /// Bytes it counts against a stream's backlog: its events' (others count nothing).
    var size: Int {
        guard case .events(let changes) = kind else { return 0 }
        return changes.reduce(0) { $0 + $1.estimatedSize }
    }
}
