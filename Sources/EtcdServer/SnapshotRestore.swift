import Backend
import Foundation
import MVCC
import Raft
import WAL

/// `etcdutl snapshot restore`: makes a new member's data directory from a backup, for a new
/// cluster whose members all restore the same file. The backup is swift-etcd's, or etcd's
/// (imported by ``EtcdSnapshotImport``: how a cluster moves from etcd). The keyspace, leases and auth come from
/// the backup; membership comes from `--initial-cluster`, as for a new cluster; alarms are
/// cleared (etcd keeps them, so a cluster restored from a member that had NOSPACE starts
/// refusing writes).
///
/// The backup's checksum is verified before anything is written, the directory is made under a
/// temporary name and renamed into place once complete, so a refused or failed restore leaves
/// nothing behind. The member starts from the backup as from a snapshot at index N (the number
/// of members) and term 1, which every member of the new cluster shares.
package struct SnapshotRestore {
    package var snapshotPath: String
    package var name = "default"
    /// Empty: `<name>.etcd`, as etcd.
    package var dataDirectory = ""
    /// Empty: `<data-dir>/member/wal`.
    package var walDirectory = ""
    package var initialCluster = "default=http://localhost:2380"
    package var initialClusterToken = "etcd-cluster"
    package var initialAdvertisePeerURLs = ["http://localhost:2380"]
    package var skipHashCheck = false
    /// Raises the revision by this much, so revisions clients saw before the backup are never reused.
    package var bumpRevision: Int64 = 0
    /// Compacts at the (bumped) revision, so watchers resuming from an older one learn it is gone.
    package var markCompacted = false

    package init(snapshotPath: String) {
        self.snapshotPath = snapshotPath
    }

    /// What a restore made.
    package struct Outcome: Sendable, Equatable {
        package var dataDirectory: String
        package var memberID: UInt64
        package var clusterID: UInt64
        package var revision: Int64
    }

    /// Restores; `progress` gets a phase name, bytes done and the total, for a progress bar.
    package func run(progress: (_ phase: String, _ done: Int64, _ total: Int64) -> Void = { _, _, _ in }) throws -> Outcome {
        if (bumpRevision == 0 && markCompacted) || (bumpRevision > 0 && !markCompacted) {
            throw BackupFile.Refusal("--mark-compacted required if --bump-revision > 0")
        }
        var configuration = EtcdServer.Configuration(
            name: name, dataDirectory: dataDirectory, initialCluster: initialCluster, initialClusterToken: initialClusterToken,
            advertiseClientURLs: [])
        configuration.initialAdvertisePeerURLs = initialAdvertisePeerURLs
        let (cluster, local) = try EtcdServer.verifyBootstrap(configuration)
        let dataDirectory = dataDirectory.isEmpty ? "\(name).etcd" : dataDirectory
        let fileManager = FileManager.default
        if let contents = try? fileManager.contentsOfDirectory(atPath: dataDirectory), !contents.isEmpty {
            throw BackupFile.Refusal("data-dir \"\(dataDirectory)\" not empty or could not be read")
        }
        if !walDirectory.isEmpty, fileManager.fileExists(atPath: walDirectory) {
            throw BackupFile.Refusal("wal-dir \"\(walDirectory)\" exists")
        }
        let (databaseBytes, format) = try BackupFile.verify(snapshotPath, skipHashCheck: skipHashCheck) { progress("verifying", $0, $1) }

        let staging = (dataDirectory as NSString).deletingLastPathComponent
        let temporary = ((staging.isEmpty ? "." : staging) as NSString)
            .appendingPathComponent(".\((dataDirectory as NSString).lastPathComponent).restoring-\(UUID().uuidString.prefix(8))")
        let snapDirectory = "\(temporary)/member/snap"
        try fileManager.createDirectory(atPath: snapDirectory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        var placed: [String] = [temporary]
        defer { for path in placed { try? fileManager.removeItem(atPath: path) } }

        let backendPath = "\(snapDirectory)/backend.sqlite"
        try BackupFile.copyDatabase(from: snapshotPath, bytes: databaseBytes, format: format, to: backendPath) {
            progress("copying", $0, $1)
        }
        let revision = try Self.prepare(
            backendPath, cluster: cluster, bumpRevision: bumpRevision, markCompacted: markCompacted)

        let walDirectory = walDirectory.isEmpty ? "\(temporary)/member/wal" : walDirectory
        if !self.walDirectory.isEmpty { placed.append(walDirectory) }
        let log = try WriteAheadLog.create(directory: walDirectory, metadata: WALMetadata(memberID: local.id, clusterID: cluster.id))
        log.close()
        if fileManager.fileExists(atPath: dataDirectory) { try fileManager.removeItem(atPath: dataDirectory) }
        try fileManager.moveItem(atPath: temporary, toPath: dataDirectory)
        placed = []
        return Outcome(dataDirectory: dataDirectory, memberID: local.id, clusterID: cluster.id, revision: revision)
    }

    /// Turns the backup's backend into the new member's: the new membership and Raft
    /// configuration, applied up to index N at term 1, no alarms, every lease's full TTL, and
    /// the revision bumped and compacted as asked. Returns the revision the member starts at.
    private static func prepare(
        _ path: String, cluster: ClusterConfiguration, bumpRevision: Int64, markCompacted: Bool
    ) throws -> Int64 {
        let backend = try SQLiteBackend(path: path, synchronousCommits: true)
        let members = cluster.members.sorted { $0.id < $1.id }
        let leases = try backend.leases().reduce(into: [Int64: SQLiteBackend.LeaseRow?]()) { rows, lease in
            rows[lease.id] = SQLiteBackend.LeaseRow(id: lease.id, ttl: lease.ttl, remainingMilliseconds: nil)
        }
        let stored = try KeyValueStore(restoringFrom: backend)
        let revision = stored.revision + bumpRevision
        try backend.commit(
            [],
            meta: [.consistentIndex: Int64(members.count), .consistentTerm: 1, .snapshotIndex: 0, .revision: revision],
            documents: [
                .membership: Membership(members: members).encoded(),
                .confState: PeerWire.encode(ConfState(voters: members.map(\.id))),
                .alarms: AlarmList().encoded(),
            ],
            leases: leases)
        if markCompacted {
            var store = try KeyValueStore(restoringFrom: backend)
            let kept = try store.compact(atMain: revision)
            try backend.commit([], meta: [.compactedRevision: revision], removingAtOrBefore: (revision, kept))
        }
        try backend.vacuum()
        return revision
    }
}
