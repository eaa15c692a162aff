import KVStore
import NIOCore
import RESP

/// What a server in a failover cluster (`kvsh serve --cluster`, module KVCluster) asks of the cluster: whether it may
/// acknowledge writes now (fencing), the Sentinel API's answers, INFO's cluster fields, and FAILOVER. The server calls
/// it; it drives the server through ``ReplicationControl``.
public protocol ClusterMembership: Sendable {
    /// Why this node must not acknowledge a write now (it is not the primary, or cannot prove it still is), in Redis's
    /// words; nil when it may. Asked when a write runs and again just before its reply is released.
    func writeRefusal() -> String?
    /// `SENTINEL …`, answered from etcd's view of the cluster.
    func sentinel(_ arguments: [[UInt8]]) -> RESPValue
    /// Fields for INFO's `# Cluster` section.
    func infoFields() -> [(String, String)]
    /// `FAILOVER [TO host port] [TIMEOUT ms] [FORCE]` (arguments after the name): runs on the thread pool; replies
    /// once the handover is done or abandoned.
    func failover(_ arguments: [[UInt8]]) -> RESPValue
}

/// Replies refused for fencing: the replies a commit would release are withheld, the client gets this error.
struct WritesFenced: Error, CustomStringConvertible {
    let message: String
    var description: String { message }
}

/// The replication side of a running server, for the cluster layer: its role, offsets and replicas, and the switches
/// `REPLICAOF` makes.
public final class ReplicationControl: Sendable {
    let context: ServerContext

    init(context: ServerContext) {
        self.context = context
    }

    /// Follows the primary at `host`:`port` (a no-op when it already does).
    public func replicate(from host: String, port: Int) throws {
        if let link = context.replication.currentLink, link.host == host, link.port == port, context.replication.isReplica { return }
        try context.replication.replicate(from: host, port: port, context: context)
    }

    /// Becomes a primary (`REPLICAOF NO ONE`).
    public func promote() throws {
        try context.replication.promote()
    }

    /// Stops following anyone and stays read-only (a node that does not know who the primary is).
    public func detach() throws {
        try context.replication.detach()
    }

    public var isReplica: Bool { context.replication.isReplica }

    /// This store's stream offset (`master_repl_offset`, or a replica's applied offset).
    public var offset: Int64 { context.store.replicationPosition?.offset ?? 0 }

    /// Whether the link to the primary is up (replicas only).
    public var linkIsUp: Bool { context.replication.currentLink?.status.withLock { $0.state == .connected } ?? false }

    /// The primary this node follows, if any.
    public var following: (host: String, port: Int)? {
        guard context.replication.isReplica, let link = context.replication.currentLink else { return nil }
        return (link.host, link.port)
    }

    /// The replicas of this primary: address (as announced) and acknowledged offset, online ones only.
    public var replicas: [(host: String, port: Int, offset: Int64)] {
        context.replication.primary.view.replicas.filter { $0.state == .online }.map { ($0.ip, $0.port, $0.offset) }
    }

    /// Waits until `count` replicas acknowledged `offset`, or `timeout` passes; returns how many did.
    public func waitForAcknowledgements(count: Int, offset: Int64, timeout: Duration) -> Int {
        let loop = context.replication.loop
        let future = context.replication.primary.waitForAcknowledgements(
            count: count, offset: offset, timeout: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000
                                                                + timeout.components.attoseconds / 1_000_000_000),
            on: loop)
        return (try? future.wait()) ?? 0
    }

    /// The settings the server runs with.
    public var settings: ReplicationSettings { context.replication.settings }
}
