import EtcdProto
import Foundation
import SwiftProtobuf

/// The cluster's active alarms (etcd's alarm store): which member raised which alarm. It
/// changes only through Raft (``WriteRequest/alarm(_:)``), is kept in the backend (the
/// `alarms` document) and travels with snapshots.
package struct AlarmList: Sendable, Equatable {
    private struct Raised: Codable, Equatable, Hashable {
        var member: UInt64
        var alarm: Int
    }

    private var raised: [Raised] = []

    package init() {}

    package init(encoded: [UInt8]) throws {
        raised = try JSONDecoder().decode([Raised].self, from: Data(encoded))
    }

    package func encoded() -> [UInt8] {
        // Sorted keys: every member stores the same bytes (backend hashes compare them).
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        // Encoding plain integers cannot fail.
        return [UInt8](try! encoder.encode(raised))
    }

    package var isEmpty: Bool { raised.isEmpty }

    /// Whether any member has raised `type`.
    package func contains(_ type: Etcdserverpb_AlarmType) -> Bool {
        raised.contains { $0.alarm == type.rawValue }
    }

    /// The alarms of `type`, or every alarm for `.none`, oldest first.
    package func members(of type: Etcdserverpb_AlarmType = .none) -> [Etcdserverpb_AlarmMember] {
        raised.filter { type == .none || $0.alarm == type.rawValue }.map { raised in
            .with {
                $0.memberID = raised.member
                $0.alarm = Etcdserverpb_AlarmType(rawValue: raised.alarm) ?? .none
            }
        }
    }

    /// Raises `type` for `member`; the alarm if it is new, nil if it was already raised.
    mutating func activate(_ type: Etcdserverpb_AlarmType, member: UInt64) -> Etcdserverpb_AlarmMember? {
        let entry = Raised(member: member, alarm: type.rawValue)
        guard type != .none, !raised.contains(entry) else { return nil }
        raised.append(entry)
        return members(of: type).first { $0.memberID == member }
    }

    /// Clears `type` for `member`; the alarm if it was raised, nil if it was not.
    mutating func deactivate(_ type: Etcdserverpb_AlarmType, member: UInt64) -> Etcdserverpb_AlarmMember? {
        let entry = Raised(member: member, alarm: type.rawValue)
        guard let index = raised.firstIndex(of: entry) else { return nil }
        raised.remove(at: index)
        return .with {
            $0.memberID = member
            $0.alarm = type
        }
    }

    /// etcd's text for an alarm in `Status.errors` (gogoproto's compact text).
    package static func describe(_ alarm: Etcdserverpb_AlarmMember) -> String {
        "memberID:\(alarm.memberID) alarm:\(Self.name(of: alarm.alarm)) "
    }

    /// The alarm's name as etcd spells it (`NOSPACE`, `CORRUPT`).
    package static func name(of type: Etcdserverpb_AlarmType) -> String {
        switch type {
        case .none: "NONE"
        case .nospace: "NOSPACE"
        case .corrupt: "CORRUPT"
        case .UNRECOGNIZED(let value): "\(value)"
        }
    }
}
