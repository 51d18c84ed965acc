import EtcdClient
import Foundation
import NIOCore
import Testing
import TestSupport

@testable import EtcdEmbed

/// The `/v3` JSON gateway on the client port, through raw HTTP/1.1 exchanges.
@Suite("JSON gateway", .server)
struct GatewayTests {
    /// A started member and what its answers' headers say about it.
    struct Member {
        let etcd: EmbeddedEtcd
        let port: Int
        let directory: URL

        var header: String {
            #""cluster_id":"\#(etcd.clusterID)","member_id":"\#(etcd.memberID)""#
        }

        func post(_ path: String, _ body: String, headers: [String] = []) async throws -> HTTPProbe.Answer {
            try await HTTPProbe.post(path, body, headers: headers, port: port)
        }

        func stop() async {
            await etcd.stop()
            try? FileManager.default.removeItem(at: directory)
        }
    }

    static func start() async throws -> Member {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("gateway-\(UUID().uuidString)")
        let etcd = try await EmbeddedEtcd.start(try await EmbeddedEtcdTests().configuration(directory: directory))
        return Member(etcd: etcd, port: try #require(etcd.clientAddresses.first?.port), directory: directory)
    }

    static func b64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }

    @Test("unary calls answer etcd 3.6's JSON: proto names, int64 as strings, base64 bytes, defaults left out")
    func unaryCalls() async throws {
        let member = try await Self.start()
        let h = member.header
        let put = try await member.post("/v3/kv/put", #"{"key":"Zm9v","value":"YmFy"}"#)
        #expect(put.status == 200)
        #expect(put.headers["content-type"] == "application/json")
        #expect(put.body == #"{"header":{\#(h),"revision":"2","raft_term":"2"}}"#)
        // lowerCamel names and unknown fields are accepted; /v3beta is an alias.
        let previous = try await member.post("/v3beta/kv/put", #"{"key":"Zm9v","value":"YmF6","prevKv":true,"nope":1}"#)
        #expect(previous.body == #"{"header":{\#(h),"revision":"3","raft_term":"2"},"prev_kv":{"key":"Zm9v","create_revision":"2","mod_revision":"2","version":"1","value":"YmFy"}}"#)
        let range = try await member.post("/v3/kv/range", #"{"key":"Zm9v","keys_only":true}"#)
        #expect(range.body == #"{"header":{\#(h),"revision":"3","raft_term":"2"},"kvs":[{"key":"Zm9v","create_revision":"2","mod_revision":"3","version":"2"}],"count":"1"}"#)
        let txn = try await member.post("/v3/kv/txn", #"""
            {"compare":[{"key":"Zm9v","target":"VALUE","result":"EQUAL","value":"YmF6"}],
             "success":[{"request_delete_range":{"key":"Zm9v"}}]}
            """#)
        #expect(txn.body == #"{"header":{\#(h),"revision":"4","raft_term":"2"},"succeeded":true,"responses":[{"response_delete_range":{"header":{"revision":"4"},"deleted":"1"}}]}"#)
        let lease = try await member.post("/v3/lease/grant", #"{"TTL":30,"ID":77}"#)
        #expect(lease.body == #"{"header":{\#(h),"revision":"4","raft_term":"2"},"ID":"77","TTL":"30"}"#)
        let members = try await member.post("/v3/cluster/member/list", "{}")
        #expect(members.body.hasPrefix(#"{"header":{\#(h),"raft_term":"2"},"members":[{"ID":"\#(member.etcd.memberID)","name":"embedded""#))

        // etcd's errors, as grpc-gateway v2 maps them.
        let noKey = try await member.post("/v3/kv/put", "")
        #expect(noKey.status == 400 && noKey.body == #"{"code":3,"message":"etcdserver: key is not provided"}"#)
        let noLease = try await member.post("/v3/lease/revoke", #"{"ID":5}"#)
        #expect(noLease.status == 404 && noLease.body == #"{"code":5,"message":"etcdserver: requested lease not found"}"#)
        let notEnabled = try await member.post("/v3/auth/disable", "{}")
        #expect(notEnabled.status == 200)
        let compacted = try await member.post("/v3/kv/compaction", #"{"revision":100}"#)
        #expect(compacted.status == 400 && compacted.body == #"{"code":11,"message":"etcdserver: mvcc: required revision is a future revision"}"#)
        for bad in [#"{bad"#, #"{"key":"@@"}"#, #"{"key":1}"#, #"{"limit":"x"}"#, #"[1]"#] {
            let refused = try await member.post("/v3/kv/range", bad)
            #expect(refused.status == 400 && refused.body.hasPrefix(#"{"code":3,"message":"#), "\(bad): \(refused.raw)")
        }
        let unknown = try await member.post("/v3/kv/nothing", "{}")
        #expect(unknown.status == 404 && unknown.body == #"{"code":5,"message":"Not Found"}"#)
        let get = try await HTTPProbe.request("/v3/kv/range", port: member.port)
        #expect(get.status == 501 && get.body == #"{"code":12,"message":"Method Not Allowed"}"#)
        // A body over twice the gRPC message limit is refused before it is read; one under it
        // that decodes to more than --max-request-bytes is refused by the member.
        let huge = try await member.post("/v3/kv/put", #"{"key":"aA==","value":""# + String(repeating: "A", count: 5 << 20) + #""}"#)
        #expect(huge.status == 413)
        let large = try await member.post("/v3/kv/put", #"{"key":"aA==","value":""# + String(repeating: "A", count: 2_200_000) + #""}"#)
        #expect(large.status == 400 && large.body == #"{"code":3,"message":"etcdserver: request is too large"}"#)
        await member.stop()
    }

    @Test("a watch streams one {\"result\"} line per response until the client leaves; a keep-alive ends with its requests")
    func streams() async throws {
        let member = try await Self.start()
        let client = try EtcdClient(endpoints: ["127.0.0.1:\(member.port)"])
        // From revision 2, so the events arrive however the writes and the watch interleave.
        let writes = Task {
            try await Task.sleep(for: .milliseconds(200))
            try await client.put("w", "1")
            try await client.delete(Data("w".utf8))
        }
        let watch = try await HTTPProbe.post(
            "/v3/watch", #"{"create_request":{"key":"dw==","start_revision":2}}"#, port: member.port, timeout: .seconds(30),
            until: { $0.body.contains(#""mod_revision":"3""#) })
        try await writes.value
        #expect(watch.status == 200)
        #expect(watch.headers["transfer-encoding"] == "chunked")
        let h = member.header
        let lines = watch.jsonLines
        #expect(lines.first?.hasPrefix(#"{"result":{"header":{\#(h),"revision":""#) == true)
        #expect(lines.first?.hasSuffix(#""raft_term":"2"},"created":true}}"#) == true)
        #expect(lines.allSatisfy { $0.hasPrefix(#"{"result":{"header":{\#(h),"revision":""#) && $0.hasSuffix("}}") })
        // One line per response; the two events may share one if they were history by then.
        let events = lines.dropFirst().joined()
        let put = try #require(events.range(of: #"{"kv":{"key":"dw==","create_revision":"2","mod_revision":"2","version":"1","value":"MQ=="}}"#))
        let delete = try #require(events.range(of: #"{"type":"DELETE","kv":{"key":"dw==","mod_revision":"3"}}"#))
        #expect(put.upperBound <= delete.lowerBound)

        // Two requests in one body: two answers, then the call (and the response) ends.
        _ = try await member.post("/v3/lease/grant", #"{"TTL":60,"ID":9}"#)
        let keepAlive = try await member.post("/v3/lease/keepalive", #"{"ID":9} {"ID":"9"}"#)
        #expect(keepAlive.jsonLines.count == 2)
        #expect(keepAlive.jsonLines.allSatisfy { $0.hasSuffix(#""ID":"9","TTL":"60"}}"#) })
        #expect(keepAlive.body.hasSuffix("0\r\n\r\n"))

        // A request that is not JSON ends the exchange with its error (grpc-gateway would
        // silently stop sending).
        let garbage = try await HTTPProbe.post("/v3/watch", #"{"create_request":{"key":"dw=="}} nonsense"#, port: member.port, timeout: .seconds(5))
        #expect(garbage.jsonLines.last?.hasPrefix(#"{"error":{"code":3,"message":"#) == true)
        await client.close()
        await member.stop()
    }

    @Test("the Authorization header carries a token, raw or after Bearer; a bad one is 401")
    func authorization() async throws {
        let member = try await Self.start()
        _ = try await member.post("/v3/auth/user/add", #"{"name":"root","password":"pw"}"#)
        _ = try await member.post("/v3/auth/user/grant", #"{"user":"root","role":"root"}"#)
        #expect(try await member.post("/v3/auth/enable", "{}").status == 200)
        let denied = try await member.post("/v3/kv/range", #"{"key":"aA=="}"#)
        #expect(denied.status == 400 && denied.body == #"{"code":3,"message":"etcdserver: user name is empty"}"#)
        let login = try await member.post("/v3/auth/authenticate", #"{"name":"root","password":"pw"}"#)
        let token = try #require(login.body.split(separator: "\"").split(separator: "token").last?.dropFirst().first)
        for header in ["Authorization: \(token)", "Authorization: Bearer \(token)"] {
            #expect(try await member.post("/v3/kv/range", #"{"key":"aA=="}"#, headers: [header]).status == 200, "\(header)")
        }
        let bad = try await member.post("/v3/kv/range", #"{"key":"aA=="}"#, headers: ["Authorization: nope"])
        #expect(bad.status == 401 && bad.body == #"{"code":16,"message":"etcdserver: invalid auth token"}"#)
        #expect(bad.headers["www-authenticate"] == "etcdserver: invalid auth token")
        await member.stop()
    }
}
