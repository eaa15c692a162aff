import KVAccess
import KVCommands
import RESP
import KVStore
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// What every connection of a server shares: the store, the configuration, counters for INFO.
final class ServerContext: Sendable {
    let store: KVStore
    let executor: CommandExecutor
    let configuration: KVServer.Configuration
    let logger: Logger
    let threadPool: NIOThreadPool
    /// Command statistics, the slow log, the latency monitor, readiness (``KVServer/Configuration/metrics``).
    let metrics: ServerMetrics
    let startedAt = ContinuousClock.now

    let connectedClients = Atomic<Int>(0)
    let totalConnections = Atomic<Int>(0)
    let totalCommands = Atomic<Int>(0)
    let rejectedConnections = Atomic<Int>(0)
    /// The port a replica announces to its primary: the one actually listened on (differs from the configuration's
    /// when that asked for 0) for the link's protocol (the TLS port with `--tls-replication`).
    let port = Atomic<Int>(0)
    /// The plain TCP port actually listened on, 0 when TLS only (INFO's `tcp_port`, CONFIG GET port).
    let plainPort = Atomic<Int>(0)
    private let nextClientID = Atomic<Int>(1)
    /// Every open connection, for CLIENT LIST.
    let clients = ClientRegistry()

    /// The replication role: primary side, and the link to a primary when this server is a replica.
    let replication: ReplicationController
    /// The users and their permissions (``KVServer/Configuration/access``), and the brake on password guessing.
    let access: AccessControl
    let authThrottle = AuthThrottle()

    init(store: KVStore, configuration: KVServer.Configuration, logger: Logger, threadPool: NIOThreadPool) {
        self.store = store
        executor = CommandExecutor(store: store)
        replication = ReplicationController(store: store, settings: configuration.replication, logger: logger)
        self.configuration = configuration
        access = configuration.access ?? AccessControl(catalog: AccessCommands.catalog)
        self.logger = logger
        self.threadPool = threadPool
        metrics = configuration.metrics
        metrics.attach(self)
        replication.report(to: metrics)
    }

    func makeClientID() -> Int {
        nextClientID.wrappingAdd(1, ordering: .relaxed).oldValue
    }
}

/// The open connections' ``ClientState``s, by ID. A connection adds itself when it starts, refreshes its entry
/// when a command changes its state (HELLO, CLIENT SETNAME, CLIENT SETINFO) and removes it when it closes: the
/// hot path never touches the lock.
final class ClientRegistry: Sendable {
    private let states = Mutex<[Int: ClientState]>([:])

    func add(_ client: ClientState) {
        states.withLock { $0[client.id] = client }
    }

    /// Replaces `client`'s entry if it still has one: commands queued behind a slow command or a commit can still
    /// run after their connection closed and was removed, and must not bring it back.
    func update(_ client: ClientState) {
        states.withLock { states in
            if states[client.id] != nil { states[client.id] = client }
        }
    }

    func remove(id: Int) {
        _ = states.withLock { $0.removeValue(forKey: id) }
    }

    /// Every entry, oldest connection first.
    func all() -> [ClientState] {
        states.withLock { $0.values.sorted { $0.id < $1.id } }
    }

    /// The entries of `ids`, in that order, skipping IDs of no open connection (as Redis's CLIENT LIST ID does).
    func entries(_ ids: [Int]) -> [ClientState] {
        states.withLock { states in ids.compactMap { states[$0] } }
    }
}
