#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Etcd
import Foundation
import KVServer
import KVStore
import Logging
import RESP
import Synchronization

/// `kvsh serve --cluster …`: how this node takes part in a failover cluster.
public struct ClusterSettings: Sendable {
    public var cluster: String
    public var etcd: EtcdConfiguration
    /// Where clients and the other nodes reach this node.
    public var announceHost: String
    public var announcePort: Int
    /// This node's name in the cluster (default: its announced address).
    public var nodeName: String
    /// The leader lease's TTL: how long a dead primary keeps the role.
    public var ttl: Duration = .seconds(5)
    /// 0: never primary; otherwise higher wins ties of offset.
    public var priority = 100

    public init(cluster: String, etcd: EtcdConfiguration, announceHost: String, announcePort: Int, nodeName: String? = nil) {
        self.cluster = cluster
        self.etcd = etcd
        self.announceHost = announceHost
        self.announcePort = announcePort
        self.nodeName = nodeName ?? "\(announceHost):\(announcePort)"
    }

    public var address: String { "\(announceHost):\(announcePort)" }
}

/// Why a node refuses to join its cluster: starting it would risk data.
public struct ClusterRefusal: Error, CustomStringConvertible {
    public let description: String
}

/// One node of a failover cluster on etcd (see Docs/Failover.md).
///
/// Every node publishes a record (name, address, replication offset, the term whose stream its data follows,
/// priority, role) under its own lease, and campaigns for the leader key only when no live node with a non-zero
/// priority is more up to date (the newest term, then offset, then priority, then name:
/// ``NodeRecord/isMoreUpToDate(than:)``), so the node elected has every write `--sync-replicas`/`WAIT` acknowledged. The leader is the
/// primary; the others replicate from it and follow changes of the key. A leader that cannot prove its lease is
/// still valid (``LeaderElection/leadershipDeadline()``, before the lease could expire) acknowledges no write: writes
/// get `-READONLY`, which makes Redis clients look for the primary again.
public final class ClusterNode: ClusterMembership, @unchecked Sendable {
    public let settings: ClusterSettings
    let keys: ClusterKeys
    let client: EtcdClient
    let control: ReplicationControl
    let store: KVStore
    let logger: Logger

    /// What this node knows of the cluster, for fencing, SENTINEL, INFO and the election's decisions.
    struct View {
        var election: LeaderElection?
        var state: ElectionState = .idle
        /// The current leader's record, and the lease and term it holds the key with.
        var leader: NodeRecord?
        var leaderTerm: Int64 = 0
        /// The last leader seen, kept while the key is vacant (SENTINEL shows it down).
        var lastLeader: NodeRecord?
        var nodes: [NodeRecord] = []
        var etcdReachable = false
        var etcdError: String?
        /// When the key was first seen vacant (nil while someone holds it): candidates wait for fresh offsets.
        var vacantSince: ContinuousClock.Instant?
        /// A planned handover in progress (FAILOVER): writes wait, nobody else campaigns.
        var handingOver = false
        var lastFailover: (at: Date, from: String, to: String, reason: String)?
        var joined = false
        /// The term whose stream this node's data follows (``NodeRecord/term``): the term it led, or that of the
        /// primary it last finished a sync with. Kept while the link is down; unknown after a restart.
        var syncedTerm: Int64?
    }
    let view = Mutex(View())
    private let tasks = Mutex<[Task<Void, Never>]>([])

    /// How often a node publishes its offset; candidates wait two of these after the key falls vacant, so that
    /// every live node's last offset is known before anyone campaigns. Two are enough: a primary stops streaming
    /// at its fence, at least the fence margin (0.5 s or more) before its lease, and so the key, can expire; the
    /// replicas' final offsets are published by then, and the wait covers one more publication whose etcd call
    /// was slow.
    static let publishInterval = Duration.milliseconds(200)

    public init(settings: ClusterSettings, control: ReplicationControl, store: KVStore, logger: Logger) throws {
        self.settings = settings
        keys = try ClusterKeys(cluster: settings.cluster)
        client = try EtcdClient(settings.etcd, logger: logger)
        self.control = control
        self.store = store
        self.logger = logger
    }

    // MARK: Joining

    /// Joins: checks the cluster's identity and this node's address with etcd, publishes this node, and campaigns
    /// and follows from then on (in tasks of its own). Until etcd answers the node serves reads only, as a replica of
    /// nobody, and retries with back-off, saying so.
    ///
    /// - Throws: ``ClusterRefusal`` when joining would risk data: the data directory belongs to another cluster, or
    ///   another live node announces this node's address.
    public func start() async throws {
        try control.detach()
        var delay = Duration.milliseconds(500)
        while true {
            do {
                try await checkIdentity()
                break
            } catch let refusal as ClusterRefusal {
                throw refusal
            } catch {
                view.withLock {
                    $0.etcdReachable = false
                    $0.etcdError = "\(error)"
                }
                logger.warning("etcd unreachable; serving reads only (a replica of nobody) and retrying",
                               metadata: ["endpoints": "\(settings.etcd.endpoints.joined(separator: ","))", "retry-in": "\(delay)", "error": "\(error)"])
                try await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(8))
            }
        }
        view.withLock {
            $0.etcdReachable = true
            $0.etcdError = nil
            $0.joined = true
        }
        let publishing = Task { await self.publishLoop() }
        let campaigning = Task { await self.electionLoop() }
        tasks.withLock { $0 += [publishing, campaigning] }
        logger.info("joined the cluster", metadata: ["cluster": "\(settings.cluster)", "node": "\(settings.nodeName)",
                                                     "address": "\(settings.address)", "priority": "\(settings.priority)"])
    }

    /// Refuses data from another cluster (the cluster's id, made by its first node, is kept in the data directory)
    /// and a second live node with this node's address.
    private func checkIdentity() async throws {
        let idKey = keys.root + "/id"
        let fresh = UUID().uuidString.lowercased()
        let created = try await client.txn(compare: [.absent(idKey)], success: [.put(key: idKey, value: Array(fresh.utf8), lease: 0)],
                                           failure: [.range(key: idKey, prefix: false)])
        var clusterID = fresh
        if !created.succeeded, case .range(let kvs)? = created.responses.first, let kv = kvs.first { clusterID = kv.valueString }
        let file = store.directory + "/cluster-id"
        let recorded = (try? String(contentsOfFile: file, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        if let recorded, recorded != clusterID {
            throw ClusterRefusal(description: "the data directory \(store.directory) belongs to another cluster (id \(recorded); cluster "
                                 + "\"\(settings.cluster)\" has id \(clusterID)): refusing to join; start this node with an empty --data-dir")
        }
        if recorded == nil {
            if !created.succeeded && store.count > 0 {
                throw ClusterRefusal(description: "the data directory \(store.directory) holds \(store.count) keys that are not from cluster "
                                     + "\"\(settings.cluster)\": refusing to join (its data would be replaced); start with an empty --data-dir")
            }
            try (clusterID + "\n").write(toFile: file, atomically: true, encoding: .utf8)
        }
        let nodes = try await client.nodes(in: keys).nodes
        if let twin = nodes.first(where: { $0.address == settings.address && $0.name != settings.nodeName }) {
            throw ClusterRefusal(description: "node \"\(twin.name)\" already announces \(settings.address) in cluster \"\(settings.cluster)\": "
                                 + "two nodes cannot share an address; give this one another --announce")
        }
    }

    // MARK: Publishing

    private func record() -> NodeRecord {
        // Read before the view's lock, which is never held while another is taken.
        let offset = control.offset
        let synced = control.linkIsUp ? control.following.map { "\($0.host):\($0.port)" } : nil
        let (isLeader, term) = view.withLock { view -> (Bool, Int64?) in
            if !view.state.isLeader, let synced, let leader = view.leader, leader.address == synced {
                view.syncedTerm = view.leaderTerm  // the link finished its sync with this term's primary
            }
            return (view.state.isLeader, view.syncedTerm)
        }
        return NodeRecord(name: settings.nodeName, address: settings.address, offset: offset, priority: settings.priority,
                          role: isLeader ? "primary" : "replica", term: term)
    }

    /// Keeps this node's record (its offset above all) fresh under a lease of its own, and refreshes the view of the
    /// others; a lost lease is replaced.
    private func publishLoop() async {
        var lease: Int64?
        var lastRenewal = ContinuousClock.now
        while !Task.isCancelled {
            do {
                if lease == nil {
                    lease = try await client.grantLease(ttl: settings.ttl).id
                    lastRenewal = .now
                }
                guard let current = lease else { continue }
                try await client.publish(record(), in: keys, lease: current)
                if ContinuousClock.now - lastRenewal > settings.ttl / 3 {
                    try await client.keepAlive(current)
                    lastRenewal = .now
                }
                let nodes = try await client.nodes(in: keys).nodes
                view.withLock {
                    $0.nodes = nodes
                    $0.etcdReachable = true
                    $0.etcdError = nil
                }
            } catch EtcdError.leaseLost {
                lease = nil
            } catch {
                view.withLock {
                    $0.etcdReachable = false
                    $0.etcdError = "\(error)"
                }
            }
            try? await Task.sleep(for: Self.publishInterval)
        }
        if let lease { try? await client.revokeLease(lease) }
    }

    // MARK: The election

    private func electionLoop() async {
        while !Task.isCancelled {
            let value = (try? record().encoded()) ?? []
            let options = ElectionOptions(key: keys.leader, value: value, ttl: settings.ttl, vacancyRecheckInterval: Self.publishInterval / 2)
            let election = LeaderElection(client: client, options: options,
                                          logger: logger, shouldCampaign: { [weak self] in await self?.shouldCampaign() ?? false })
            view.withLock { $0.election = election }
            let running = Task { try? await election.run() }
            for await state in election.states {
                await handle(state)
            }
            _ = await running.value
            // Resigned (a handover): campaign again, as a follower of the new primary.
            view.withLock { $0.handingOver = false }
        }
    }

    /// Whether this node should campaign for the vacant key: it has a priority, no planned handover names another
    /// node, and (once every node had time to publish its last offset) no live node is more up to date.
    private func shouldCampaign() async -> Bool {
        guard settings.priority > 0 else { return false }
        if let target = try? await client.get(handoverKey)?.valueString {
            return target == settings.nodeName
        }
        let waited = view.withLock { view -> Bool in
            if view.vacantSince == nil { view.vacantSince = .now }
            return ContinuousClock.now - (view.vacantSince ?? .now) >= Self.publishInterval * 2
        }
        guard waited else { return false }
        guard let nodes = try? await client.nodes(in: keys).nodes else { return false }
        var candidates = nodes.filter { $0.priority > 0 && $0.name != settings.nodeName }
        candidates.append(record())
        return candidates.max { $1.isMoreUpToDate(than: $0) }?.name == settings.nodeName
    }

    var handoverKey: String { keys.root + "/handover" }

    private func handle(_ state: ElectionState) async {
        let previous = view.withLock { view -> NodeRecord? in
            view.state = state
            return view.leader ?? view.lastLeader
        }
        switch state {
        case .leader(let term):
            do {
                if control.isReplica { try control.promote() }
            } catch {
                logger.error("could not become primary", metadata: ["error": "\(error)"])
            }
            view.withLock { $0.syncedTerm = term.revision }
            let me = record()
            view.withLock { view in
                view.vacantSince = nil
                view.leader = me
                view.lastLeader = me
                view.leaderTerm = term.revision
                if previous?.name != me.name {
                    view.lastFailover = (Date(), previous?.name ?? "nobody", me.name,
                                         view.handingOver ? "handover" : (previous == nil ? "first election" : "the primary's lease expired"))
                }
            }
            _ = try? await client.delete(handoverKey)
            logger.info("elected primary", metadata: ["term": "\(term.revision)", "previous": "\(previous?.name ?? "none")", "offset": "\(control.offset)"])
        case .fenced(let term, let reason):
            logger.warning("fenced: acknowledging no writes (another node may be elected)", metadata: ["term": "\(term.revision)", "reason": "\(reason)"])
        case .follower(let info?):
            guard let leader = try? NodeRecord.decode(info.value) else {
                logger.error("the leader key holds no node record", metadata: ["value": "\(info.valueString)"])
                return
            }
            if leader.name == settings.nodeName {
                // Our own key from before a restart (this data directory is ours, locked by this process): clear it.
                _ = try? await client.revokeLease(info.leaseID)
                return
            }
            view.withLock { view in
                view.vacantSince = nil
                if view.leader?.name != leader.name, let previous, previous.name != leader.name {
                    view.lastFailover = (Date(), previous.name, leader.name, "elected by the cluster")
                }
                view.leader = leader
                view.lastLeader = leader
                view.leaderTerm = info.revision
            }
            follow(leader)
        case .follower(nil):
            view.withLock { view in
                if view.leader != nil { view.lastLeader = view.leader }
                view.leader = nil
            }
        case .idle, .campaigning, .resigned, .stopped:
            break
        }
    }

    private func follow(_ leader: NodeRecord) {
        guard let colon = leader.address.lastIndex(of: ":"), let port = Int(leader.address[leader.address.index(after: colon)...]) else {
            logger.error("the leader's address is not host:port", metadata: ["address": "\(leader.address)"])
            return
        }
        let host = String(leader.address[..<colon])
        do {
            try control.replicate(from: host, port: port)
        } catch {
            logger.error("could not follow the new primary", metadata: ["primary": "\(leader.address)", "error": "\(error)"])
        }
    }

    /// Resigns (a planned stop): another node takes over at once instead of after the TTL.
    public func stop() async {
        let election = view.withLock { view -> LeaderElection? in
            view.handingOver = true
            return view.state.isLeader ? view.election : nil
        }
        election?.resign()
        for task in tasks.withLock({ $0 }) { task.cancel() }
        try? await client.shutdown()
    }

    // MARK: ClusterMembership

    public func writeRefusal() -> String? {
        let (election, handingOver) = view.withLock { ($0.election, $0.handingOver) }
        guard !handingOver, let deadline = election?.leadershipDeadline(), ContinuousClock.now < deadline else {
            return "READONLY You can't write against a read only replica."
        }
        return nil
    }

    public func infoFields() -> [(String, String)] {
        let snapshot = view.withLock { $0 }
        var fields: [(String, String)] = [
            ("kvsh_cluster", settings.cluster), ("kvsh_cluster_node", settings.nodeName),
            ("kvsh_cluster_role", snapshot.state.isLeader ? "primary" : "replica"),
            ("kvsh_etcd_endpoints", settings.etcd.endpoints.joined(separator: ",")),
            ("kvsh_etcd_status", snapshot.etcdReachable ? "ok" : "unreachable" + (snapshot.etcdError.map { " (\(Self.oneLine($0)))" } ?? "")),
            ("kvsh_leader", snapshot.leader.map { "\($0.name)@\($0.address)" } ?? "none"),
            ("kvsh_leader_term", String(snapshot.leaderTerm)),
            ("kvsh_cluster_nodes", String(snapshot.nodes.count)),
        ]
        if let deadline = snapshot.election?.leadershipDeadline() {
            fields.append(("kvsh_lease_remaining_ms", String(max(0, Int((deadline - .now).components.seconds * 1000
                                                                        + (deadline - .now).components.attoseconds / 1_000_000_000_000_000)))))
        }
        if let failover = snapshot.lastFailover {
            fields.append(("kvsh_last_failover", "at=\(Int(failover.at.timeIntervalSince1970)),from=\(failover.from),to=\(failover.to),reason=\(failover.reason)"))
        }
        return fields
    }

    static func oneLine(_ text: String) -> String {
        String(text.map { $0 == "\r" || $0 == "\n" || $0 == "\r\n" ? " " : $0 })
    }
}
