import EtcdMetrics
import EtcdProto
import EtcdServer
import NIOHTTP1

/// etcd 3.6's health and version endpoints: `/health` (JSON, for load balancers and etcdctl),
/// `/livez` and `/readyz` (text, Kubernetes style, each check also alone at `/readyz/<check>`),
/// `/version`. Only GET is allowed (405 otherwise, as etcd). The checks run in a fixed order
/// (etcd's order varies from request to request).
package struct HealthEndpoints: Sendable {
    let server: EtcdServer
    let metrics: EtcdMetrics

    package init(server: EtcdServer, metrics: EtcdMetrics) {
        self.server = server
        self.metrics = metrics
    }

    /// A named check; `completion` gets nil when it passed, else why not.
    struct Check: Sendable {
        let name: String
        let run: @Sendable (EtcdServer, @escaping @Sendable (String?) -> Void) -> Void
    }

    static let serializableRead = Check(name: "serializable_read") { server, done in
        server.probeRead(serializable: true) { done($0.map(\.description)) }
    }
    static let linearizableRead = Check(name: "linearizable_read") { server, done in
        server.probeRead(serializable: false) { done($0.map(\.description)) }
    }
    static let dataCorruption = Check(name: "data_corruption") { server, done in
        done(server.alarms.contains(.corrupt) ? "alarm activated: CORRUPT" : nil)
    }
    static let nonLearner = Check(name: "non_learner") { server, done in
        done(server.isLearner ? "not supported for learner" : nil)
    }

    static let livez = [serializableRead]
    static let readyz = [dataCorruption, serializableRead, linearizableRead, nonLearner]

    /// The response for `request` when its path is one of these endpoints; nil otherwise.
    func respond(to request: HTTPRequest, completion: @escaping @Sendable (HTTPResponse) -> Void) -> Bool {
        let path = request.path
        let suite: [Check]
        let base: String
        switch path {
        case "/health": return get(request, completion) { health(request, completion) }
        case "/version": return get(request, completion) { completion(.json(Self.versionJSON(server.downgradeTarget))) }
        case _ where path == "/livez" || path.hasPrefix("/livez/"): (suite, base) = (Self.livez, "/livez")
        case _ where path == "/readyz" || path.hasPrefix("/readyz/"): (suite, base) = (Self.readyz, "/readyz")
        default: return false
        }
        var checks = suite
        if path != base {
            let name = String(path.dropFirst(base.count + 1))
            guard let check = suite.first(where: { $0.name == name }) else { return false }
            checks = [check]
        } else {
            let excluded = Set(request.parameters("exclude"))
            checks.removeAll { excluded.contains($0.name) }
        }
        let verbose = request.parameter("verbose") != nil
        return get(request, completion) { Self.run(checks[...], on: server, passed: [], verbose: verbose, completion) }
    }

    /// etcd's `/version` for the version this member reports: while a downgrade is enabled,
    /// the cluster version is its target, as etcd 3.6 lowers it.
    static func versionJSON(_ downgradeTarget: String?) -> String {
        #"{"etcdserver":"\#(EtcdServer.version)","etcdcluster":"\#(downgradeTarget ?? "3.6.0")","storage":"3.6.0"}"#
    }

    private func get(_ request: HTTPRequest, _ completion: @escaping @Sendable (HTTPResponse) -> Void, _ body: () -> Void) -> Bool {
        guard request.method == .GET else {
            completion(.methodNotAllowed(allow: [.GET]))
            return true
        }
        body()
        return true
    }

    /// `/health`: no alarm but those in `exclude` (`ALARM NOSPACE`), a leader unless
    /// `serializable=true`, then a read.
    private func health(_ request: HTTPRequest, _ completion: @escaping @Sendable (HTTPResponse) -> Void) {
        let serializable = request.parameter("serializable") == "true"
        let metrics = metrics
        let unhealthy: @Sendable (String) -> Void = { reason in
            metrics.healthChecked(healthy: false)
            completion(.error(.serviceUnavailable, #"{"health":"false","reason":"\#(reason)"}"#))
        }
        let excluded = Set(request.parameters("exclude"))
        if let alarm = server.alarms.members().first(where: { !excluded.contains(AlarmList.name(of: $0.alarm)) }) {
            return unhealthy("ALARM \(AlarmList.name(of: alarm.alarm))")
        }
        if !serializable, server.leaderID == nil { return unhealthy("RAFT NO LEADER") }
        server.probeRead(serializable: serializable) { error in
            if let error { return unhealthy("RANGE ERROR:\(error)") }
            metrics.healthChecked(healthy: true)
            completion(HTTPResponse(.ok, contentType: "text/plain; charset=utf-8", body: #"{"health":"true","reason":""}"#))
        }
    }

    /// Runs `checks` one after another; 200 `ok` when all pass, 503 with every check's line
    /// when one fails (with `verbose`, the lines also on success).
    private static func run(
        _ checks: ArraySlice<Check>, on server: EtcdServer, passed results: [(name: String, failure: String?)], verbose: Bool,
        _ completion: @escaping @Sendable (HTTPResponse) -> Void
    ) {
        guard let check = checks.first else {
            let lines = results.map { result in result.failure.map { "[-]\(result.name) failed: \($0)\n" } ?? "[+]\(result.name) ok\n" }
            if results.contains(where: { $0.failure != nil }) { return completion(.error(.serviceUnavailable, lines.joined())) }
            return completion(.text((verbose ? lines.joined() : "") + "ok\n"))
        }
        check.run(server) { failure in
            run(checks.dropFirst(), on: server, passed: results + [(check.name, failure)], verbose: verbose, completion)
        }
    }
}
