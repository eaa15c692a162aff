import KVStore
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// This server's replication role and what goes with it: the primary side (always there, started when the first
/// replica asks) and, as a replica, the link to its primary. `REPLICAOF` switches between them at run time.
final class ReplicationController: Sendable {
    let settings: ReplicationSettings
    let primary: ReplicationPrimary
    private let store: KVStore
    private let logger: Logger
    /// One loop for the link to a primary, so that loading a full copy never stalls a client's loop.
    private let linkGroup = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    private let link = Mutex<ReplicaLink?>(nil)
    private let replicaFlag = Atomic<Bool>(false)
    private let timers = Mutex<[RepeatedTask]>([])
    /// Set when a primary detaches (fenced, then follows nobody): the link it starts later is a former primary's.
    private let formerPrimary = Atomic<Bool>(false)

    init(store: KVStore, settings: ReplicationSettings, logger: Logger) {
        self.settings = settings
        self.store = store
        self.logger = logger
        primary = ReplicationPrimary(store: store, settings: settings, logger: logger)
    }

    /// Whether this server is a replica (read-only for clients).
    var isReplica: Bool { replicaFlag.load(ordering: .relaxed) }

    /// A loop for waiting on replication futures from outside the server's loops.
    var loop: any EventLoop { linkGroup.next() }

    /// The failover cluster this server belongs to (`kvsh serve --cluster`), once it has joined.
    let cluster = Mutex<(any ClusterMembership)?>(nil)
    private let clustered = Atomic<Bool>(false)

    func join(_ membership: any ClusterMembership) {
        cluster.withLock { $0 = membership }
        clustered.store(true, ordering: .releasing)
    }

    var membership: (any ClusterMembership)? {
        clustered.load(ordering: .acquiring) ? cluster.withLock { $0 } : nil
    }

    /// Whether writes need a look before they run: refused on a replica, counted against `--min-replicas-to-write`,
    /// fenced in a cluster.
    var gatesWrites: Bool {
        isReplica || settings.minReplicasToWrite > 0 || settings.syncReplicas > 0 || clustered.load(ordering: .relaxed)
    }

    /// The refusal for a write, if any, in Redis's words.
    func refusalOfWrite() -> String? {
        if isReplica { return "READONLY You can't write against a read only replica." }
        if let refusal = membership?.writeRefusal() { return refusal }
        // With --sync-replicas N, a write that could not get N acknowledgements is refused at once rather than hang.
        let required = max(settings.minReplicasToWrite, settings.syncReplicas)
        if required > 0, primary.goodReplicas < required {
            return "NOREPLICAS Not enough good replicas to write."
        }
        return nil
    }

    var currentLink: ReplicaLink? { link.withLock { $0 } }

    /// Starts the timers (pings into the stream, replica timeouts) and, with `--replicaof`, the link.
    func start(context: ServerContext, on loop: any EventLoop) throws {
        let primary = self.primary
        let ping = loop.scheduleRepeatedTask(initialDelay: .seconds(Int64(settings.pingPeriod)), delay: .seconds(Int64(settings.pingPeriod))) { _ in
            primary.pingIfReplicas()
        }
        let timeouts = loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            primary.dropTimedOutReplicas()
        }
        timers.withLock { $0 = [ping, timeouts] }
        if settings.managedByCluster {
            try detach()  // read-only until the cluster says who is primary
        } else if let (host, port) = settings.replicaOf {
            try replicate(from: host, port: port, context: context)
        } else if store.replicationPosition?.role == .replica {
            // A replica restarted without --replicaof: it serves its data as a primary continuing the stream.
            try promote()
        } else if settings.syncReplicas > 0 || settings.minReplicasToWrite > 0 || store.replicationPosition != nil {
            try primary.startIfNeeded()
        }
    }

    /// `REPLICAOF host port`: drops the replicas of this server, becomes a replica and starts the link.
    func replicate(from host: String, port: Int, context: ServerContext) throws {
        primary.stop()
        let wasPrimary = !isReplica && store.replicationPosition?.role == .primary
        try store.becomeReplica()
        replicaFlag.store(true, ordering: .relaxed)
        let next = ReplicaLink(host: host, port: port, context: context, loop: linkGroup.next(),
                               formerPrimary: wasPrimary || formerPrimary.exchange(false, ordering: .relaxed))
        let previous = link.withLock { link in
            defer { link = next }
            return link
        }
        previous?.stop()
        logger.info("replicating", metadata: ["primary": "\(host):\(port)"])
        next.start()
    }

    /// Follows nobody and stays read-only: a cluster node that does not know (yet) who the primary is.
    func detach() throws {
        if !isReplica && store.replicationPosition?.role == .primary { formerPrimary.store(true, ordering: .relaxed) }
        primary.stop()
        try store.becomeReplica()
        replicaFlag.store(true, ordering: .relaxed)
        let previous = link.withLock { link in
            defer { link = nil }
            return link
        }
        previous?.stop()
    }

    /// `REPLICAOF NO ONE`: stops following, and becomes a primary whose stream continues the old one (replid2).
    func promote() throws {
        let previous = link.withLock { link in
            defer { link = nil }
            return link
        }
        previous?.stop()
        guard isReplica || store.replicationPosition?.role == .replica else { return }
        let position = try store.becomePrimary()
        replicaFlag.store(false, ordering: .relaxed)
        try primary.startIfNeeded()
        logger.info("promoted to primary", metadata: ["replid": "\(position.replidText)", "offset": "\(position.offset)",
                                                       "replid2": "\(position.replid2Text)"])
    }

    /// Replication's figures in `/metrics` (role, offset, per-replica lag in bytes and seconds, the link of a
    /// replica) and, for `/ready`, a replica's link.
    func report(to metrics: ServerMetrics) {
        metrics.addCollector { [self] in
            let offset = Double(store.replicationPosition?.offset ?? 0)
            var families: [MetricFamily] = [
                .gauge("kvsh_replication_role", help: "1 for this server's replication role (primary or replica).",
                       [([("role", isReplica ? "replica" : "primary")], 1)]),
                .gauge("kvsh_replication_offset_bytes", help: "The replication stream offset: master_repl_offset, or a replica's applied offset.",
                       unit: "bytes", value: offset),
            ]
            let replicas = primary.view.replicas
            families.append(.gauge("kvsh_replication_connected_replicas", help: "Replicas connected to this primary.", value: Double(replicas.count)))
            if !replicas.isEmpty {
                let named = replicas.map { (name: "\($0.ip):\($0.port)", replica: $0) }
                families.append(.gauge("kvsh_replica_lag_bytes", help: "Stream bytes a replica has not acknowledged yet.", unit: "bytes",
                                       named.map { ([("replica", $0.name)], max(0, offset - Double($0.replica.offset))) }))
                families.append(.gauge("kvsh_replica_lag_seconds", help: "Seconds since a replica's last acknowledgement.", unit: "seconds",
                                       named.map { ([("replica", $0.name)], Double($0.replica.lagSeconds)) }))
            }
            if isReplica {
                let status = currentLink?.status.withLock { $0 }
                families.append(.gauge("kvsh_replication_link_up", help: "1 while a replica's link to its primary is up.",
                                       value: status?.state == .connected ? 1 : 0))
                if let status {
                    families.append(.counter("kvsh_replication_full_syncs", help: "Full copies this replica loaded.", value: Double(status.fullSyncs)))
                    families.append(.counter("kvsh_replication_partial_syncs", help: "Partial resyncs this replica made.",
                                             value: Double(status.partialSyncs)))
                }
            }
            return families
        }
        metrics.addReadinessCheck("replication link") { [self] in
            guard isReplica else { return nil }
            guard let link = currentLink else { return "a replica of nobody: not following a primary (yet)" }
            let state = link.status.withLock { $0.state }
            return state == .connected ? nil : "the link to the primary \(link.host):\(link.port) is \(state.rawValue), not up"
        }
    }

    func shutdown() {
        timers.withLock { timers in
            for timer in timers { timer.cancel() }
            timers = []
        }
        link.withLock { $0 }?.stop()
        primary.stop()
        try? linkGroup.syncShutdownGracefully()
    }
}
