import EtcdProto
import Foundation
import Testing

@testable import EtcdServer

/// What `apply request took too long` prints: durations as Go prints them, requests by their
/// keys with values only by size.
@Suite("Slow applies, as etcd logs them")
struct SlowApplyTests {
    @Test func durationsPrintAsGoPrintsThem() {
        #expect(GoFormat.duration(.nanoseconds(1)) == "1ns")
        #expect(GoFormat.duration(.nanoseconds(1500)) == "1.5µs")
        #expect(GoFormat.duration(.milliseconds(100)) == "100ms")
        #expect(GoFormat.duration(.microseconds(123_456)) == "123.456ms")
        #expect(GoFormat.duration(.milliseconds(2500)) == "2.5s")
        #expect(GoFormat.duration(.nanoseconds(1_234_567_891)) == "1.234567891s")
        #expect(GoFormat.duration(.seconds(60)) == "1m0s")
        #expect(GoFormat.duration(.seconds(90)) == "1m30s")
        #expect(GoFormat.duration(.milliseconds(7_205_250)) == "2h0m5.25s")
        #expect(GoFormat.duration(.microseconds(100)) == "100µs")
    }

    @Test func requestsShowTheirKeysNeverTheirValues() {
        var put = Etcdserverpb_PutRequest()
        put.key = Data("config/db".utf8)
        put.value = Data("hunter2".utf8)
        #expect(WriteRequest.put(put).loggable == #"put:<key:"config/db" value_size:7 lease:0 >"#)
        var txn = Etcdserverpb_TxnRequest()
        txn.success = [Etcdserverpb_RequestOp(), Etcdserverpb_RequestOp()]
        #expect(WriteRequest.txn(txn).loggable == "txn:<compare_size:0 success_size:2 failure_size:0 >")
    }

    /// A slow range is logged with the request as etcd prints it (protobuf's compact text).
    @Test func rangesPrintAsProtobufsCompactText() {
        var range = Etcdserverpb_RangeRequest()
        range.key = Data("a\"b\\c".utf8) + Data([0x00, 0x7F, 0xC3])
        range.rangeEnd = Data("z".utf8)
        range.limit = 10
        range.sortOrder = .descend
        range.sortTarget = .mod
        range.serializable = true
        range.countOnly = true
        range.minCreateRevision = 3
        #expect(range.compactText
            == #"key:"a\"b\\c\000\177\303" range_end:"z" limit:10 sort_order:DESCEND sort_target:MOD serializable:true count_only:true min_create_revision:3 "#)
        #expect(Etcdserverpb_RangeRequest().compactText.isEmpty)
        var unknown = Etcdserverpb_RangeRequest()
        unknown.sortTarget = .UNRECOGNIZED(9)
        #expect(unknown.compactText == "sort_target:9 ")
    }

    /// What `request stats` prints of a request: the forms etcd's loggable requests print,
    /// checked against etcd 3.4's lines for the same calls (docs/OPERATIONS.md).
    @Test func requestsPrintAsEtcdsLoggableRequests() {
        var put = Etcdserverpb_PutRequest()
        (put.key, put.value, put.lease, put.prevKv) = (Data("k".utf8), Data("secret".utf8), 7, true)
        #expect(put.loggableText == #"key:"k" value_size:6 lease:7 prev_kv:true "#)
        var delete = Etcdserverpb_DeleteRangeRequest()
        (delete.key, delete.rangeEnd, delete.prevKv) = (Data("a".utf8), Data("b".utf8), true)
        #expect(delete.compactText == #"key:"a" range_end:"b" prev_kv:true "#)
        // A oneof target is printed even at zero; EQUAL and VERSION, the zero values, are not.
        var version = Etcdserverpb_Compare()
        (version.key, version.version) = (Data("k".utf8), 0)
        var inner = Etcdserverpb_TxnRequest()
        inner.compare = [version]
        var nested = Etcdserverpb_RequestOp()
        nested.requestTxn = inner
        var outer = Etcdserverpb_TxnRequest()
        var less = Etcdserverpb_Compare()
        (less.result, less.target, less.key, less.modRevision) = (.less, .mod, Data("m".utf8), 5)
        outer.compare = [less]
        outer.success = [nested]
        #expect(outer.loggableText
            == #"compare:<result:LESS target:MOD key:"m" mod_revision:5 > success:<request_txn:<compare:<key:"k" version:0 > success:<> failure:<>>> failure:<>"#)
        #expect(ProtoText.name(Etcdserverpb_Compare.CompareResult.notEqual) == "NOT_EQUAL")
    }
}
