#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import KVAccess
import KVCommands
import RESP
import KVStore
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization
import Dispatch

/// A Redis-protocol (RESP2, and RESP3 after `HELLO 3`) server in front of a store, on SwiftNIO.
///
/// Every connection runs its commands on its event loop; replies to writes wait for a group commit that covers
/// every write of the loop's pass (see ``GroupCommitter``). ``shutdown()`` stops accepting, lets each connection
/// finish the request it is on and get its replies out, then closes the event loops; the caller then closes the
/// store (fsync, lock release).
public final class KVServer: Sendable {
    public static let version = "1.0.0"
    /// The longest `tcpKeepAlive` the kernel accepts as the idle time before the first probe (Linux's limit).
    public static let maxTCPKeepAlive = 32767

    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        public var maxClients: Int
        public var maxBulkLength: Int
        /// Event loops (threads). Defaults to one fewer than the cores (at least one), leaving a core for the
        /// fsync thread pool and, on a small machine, for clients on the same host.
        public var threads: Int
        /// Redis's `timeout`: a client that has neither sent a request nor been sent a reply for this many seconds is
        /// closed. 0 (the default, as in Redis) never closes idle clients. A client whose command is still running
        /// (a maintenance command, a write waiting for its commit) is not idle, as Redis exempts blocked clients.
        public var idleTimeout: Int
        /// Redis's `tcp-keepalive`: accepted sockets get SO_KEEPALIVE with the first probe after this many seconds of
        /// silence, then one every third of that (at least 1 s), giving up after 3, as Redis's `anetKeepAlive`; so a
        /// client whose machine or network vanished is closed and its slot freed. 0 turns it off; 300 by default.
        public var tcpKeepAlive: Int
        /// Which clients may name a file (`KVSH.BACKUP PATH`, `KVSH.REBUILD PATH`): nobody by default.
        public var pathCommands: PathCommandPolicy = .no
        /// Where `KVSH.BACKUP` without a path writes (and periodic backups go); nil refuses it.
        public var backupDirectory: BackupDirectory?
        /// Replication: `--replicaof`, `--sync-replicas`, `--min-replicas-to-write` and the rest.
        public var replication = ReplicationSettings()
        /// Where the server counts commands, keeps its slow log and latency samples, and reports readiness; what the
        /// metrics endpoint (``MetricsEndpoint``) reads. Made before the store when the endpoint should answer while
        /// the store opens.
        public var metrics = ServerMetrics()
        /// Whether `port` is listened on. Off only beside a TLS listener (Redis's `port 0` with a `tls-port`).
        public var listensPlain = true
        /// Redis's `tls-port`: a second listener that speaks TLS with ``tls``'s certificate (0: any free port).
        public var tlsPort: Int?
        /// The certificate, key and CA of the TLS listener and of replication over TLS; reloaded by ``reloadTLS()``.
        public var tls: TLSContexts?
        /// Redis's `tls-replication`: the link to a primary speaks TLS (with ``tls``'s client context).
        public var tlsReplication = false
        /// The users (`--requirepass`, `--aclfile`): made by ``KVServer/makeAccessControl(aclFile:requirePass:)``; nil
        /// is Redis's default, one `default` user without a password and with every permission.
        public var access: AccessControl?
        /// Redis's protected mode: while the default user has no password, only loopback clients are served; others
        /// get `-DENIED` with what to do.
        public var protectedMode = true
        /// `--audit-log FILE`: every command, its keys and result (never values), as JSON lines.
        public var auditLog: AuditLog?
        /// What `SHUTDOWN` asks of the process that runs the server: the clean stop SIGTERM makes. nil: the command
        /// is refused (a server embedded in a test).
        public var shutdownRequested: (@Sendable () -> Void)?

        public init(host: String = "127.0.0.1", port: Int = 7379, maxClients: Int = 10_000,
                    maxBulkLength: Int = 512 << 20, threads: Int = max(1, System.coreCount - 1),
                    idleTimeout: Int = 0, tcpKeepAlive: Int = 300) {
            self.host = host
            self.port = port
            self.maxClients = maxClients
            self.maxBulkLength = maxBulkLength
            self.threads = threads
            self.idleTimeout = idleTimeout
            self.tcpKeepAlive = tcpKeepAlive
        }
    }

    /// The users of the ACL file `aclFile` (Redis's format), or the default user with `requirePass` as its password.
    /// - Throws: ``ACLFileError`` naming the file and line of the first bad rule.
    public static func makeAccessControl(aclFile: String? = nil, requirePass: String? = nil) throws(ACLFileError) -> AccessControl {
        if let aclFile { return try AccessControl.loading(catalog: AccessCommands.catalog, aclFile: aclFile) }
        return AccessControl(catalog: AccessCommands.catalog, requirePass: requirePass)
    }

    /// Redis's `enable-debug-command` values, for the commands that read or write a file a client names.
    public enum PathCommandPolicy: String, Sendable, CaseIterable {
        /// No client may (the default).
        case no
        /// Only clients on a loopback connection.
        case local
        /// Every client: only where the network and the machine's users are all trusted.
        case yes
    }

    private let context: ServerContext
    private let group: MultiThreadedEventLoopGroup
    /// The listeners: plain TCP, TLS, or both; never none.
    private let serverChannels: [any Channel]
    private let plainChannel: (any Channel)?
    private let tlsChannel: (any Channel)?
    private let connections = OpenConnections()
    private let stopped = Atomic<Bool>(false)

    /// The replication side, for a failover cluster to drive.
    public var replicationControl: ReplicationControl { ReplicationControl(context: context) }

    /// Makes this server a member of a failover cluster: writes are fenced by it, and it answers SENTINEL, FAILOVER
    /// and INFO's cluster fields.
    public func join(_ membership: any ClusterMembership) {
        context.replication.join(membership)
    }

    /// The address the server listens on for plain TCP (with the actual port when 0 was asked for), or the TLS
    /// listener's when there is no plain one.
    public var localAddress: SocketAddress? { (plainChannel ?? tlsChannel)?.localAddress }

    /// The address of the TLS listener, if there is one.
    public var tlsLocalAddress: SocketAddress? { tlsChannel?.localAddress }

    /// Reads the TLS certificate, key and CA files again (SIGHUP): connections accepted from now on, and replication
    /// links made from now on, use them; open connections keep theirs. On an error the files in use stay in use.
    public func reloadTLS() throws {
        try context.configuration.tls?.reload()
    }

    /// Binds and starts serving.
    /// - Throws: when the address cannot be bound (in use, not local, no permission).
    public init(store: KVStore, configuration: Configuration, logger: Logger) throws {
        let threadPool = NIOThreadPool(numberOfThreads: 2)
        threadPool.start()
        let context = ServerContext(store: store, configuration: configuration, logger: logger, threadPool: threadPool)
        self.context = context
        let group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, configuration.threads))
        self.group = group
        var committers: [ObjectIdentifier: GroupCommitter] = [:]
        for loop in group.makeIterator() {
            committers[ObjectIdentifier(loop)] = GroupCommitter(eventLoop: loop, store: store, replication: context.replication)
        }
        let committersByLoop = committers
        let connections = self.connections
        // One bootstrap per listener: each has its own child initializer.
        func makeBootstrap() -> ServerBootstrap {
            var bootstrap = ServerBootstrap(group: group)
                .serverChannelOption(ChannelOptions.backlog, value: 1024)
                .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                .childChannelOption(ChannelOptions.writeBufferWaterMark, value: ChannelOptions.Types.WriteBufferWaterMark(low: 64 << 10, high: 256 << 10))
                .childChannelOption(ChannelOptions.maxMessagesPerRead, value: 1)
            for (option, value) in Self.keepAliveOptions(seconds: configuration.tcpKeepAlive) {
                bootstrap = bootstrap.childChannelOption(option, value: value)
            }
            return bootstrap
        }
        let tlsContexts = configuration.tls
        /// Sets up an accepted connection; `secure`: behind a TLS handler, which decrypts before the RESP handler.
        @Sendable func initialize(_ channel: any Channel, secure: Bool) -> EventLoopFuture<Void> {
            if secure, let tlsContexts {
                do {
                    try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: tlsContexts.server))
                } catch {
                    return channel.eventLoop.makeFailedFuture(error)
                }
            }
            context.totalConnections.wrappingAdd(1, ordering: .relaxed)
            let clients = context.connectedClients.wrappingAdd(1, ordering: .relaxed).newValue
            let id = ObjectIdentifier(channel)
            connections.channels.withLock { $0[id] = channel }
            channel.closeFuture.whenComplete { _ in
                context.connectedClients.wrappingSubtract(1, ordering: .relaxed)
                _ = connections.channels.withLock { $0.removeValue(forKey: id) }
            }
            if clients > configuration.maxClients {
                context.rejectedConnections.wrappingAdd(1, ordering: .relaxed)
                return channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(RejectingHandler())
                }
            }
            guard let committer = committersByLoop[ObjectIdentifier(channel.eventLoop)] else {
                return channel.close()
            }
            var decoder = RESPRequestDecoder()
            decoder.limits.maxBulkLength = configuration.maxBulkLength
            return channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(ConnectionHandler(context: context, committer: committer, decoder: decoder))
            }
        }
        var listeners: [any Channel] = []
        do {
            if configuration.listensPlain {
                listeners.append(try makeBootstrap().childChannelInitializer { initialize($0, secure: false) }
                    .bind(host: configuration.host, port: configuration.port).wait())
            }
            if let tlsPort = configuration.tlsPort {
                guard tlsContexts != nil else { throw TLSConfigurationError(message: "a TLS port needs a certificate and a key") }
                listeners.append(try makeBootstrap().childChannelInitializer { initialize($0, secure: true) }
                    .bind(host: configuration.host, port: tlsPort).wait())
            }
        } catch {
            for listener in listeners { try? listener.close().wait() }
            try? group.syncShutdownGracefully()
            try? threadPool.syncShutdownGracefully()
            throw error
        }
        serverChannels = listeners
        plainChannel = configuration.listensPlain ? listeners.first : nil
        tlsChannel = configuration.tlsPort == nil ? nil : listeners.last
        // The port replicas announce to their primary: the one the link's protocol is spoken on, as Redis.
        let announced = configuration.tlsReplication ? (tlsChannel ?? plainChannel) : (plainChannel ?? tlsChannel)
        context.port.store(announced?.localAddress?.port ?? configuration.port, ordering: .relaxed)
        context.plainPort.store(plainChannel?.localAddress?.port ?? 0, ordering: .relaxed)
        do {
            try context.replication.start(context: context, on: group.next())
        } catch {
            for listener in listeners { try? listener.close().wait() }
            context.replication.shutdown()
            try? group.syncShutdownGracefully()
            try? threadPool.syncShutdownGracefully()
            throw error
        }
        logger.info("kvsh server listening", metadata: [
            "address": "\(plainChannel?.localAddress.map { "\($0)" } ?? "-")",
            "tls-address": "\(tlsChannel?.localAddress.map { "\($0)" } ?? "-")",
            "data-dir": "\(store.directory)", "sync": "\(store.syncPolicy.rawValue)",
        ])
    }

    /// The socket options of Redis's `anetKeepAlive` for `tcp-keepalive` `seconds` (none for 0): SO_KEEPALIVE, the
    /// first probe after `seconds` of silence, then one every third of that (at least 1 s), giving up after 3 unanswered
    /// probes. So a client whose machine crashed or whose network vanished without a FIN is found dead and closed after
    /// about `seconds` + 2 × `seconds` / 3, and its slot (and its entry in CLIENT LIST) is freed.
    static func keepAliveOptions(seconds: Int) -> [(ChannelOptions.Types.SocketOption, Int)] {
        guard seconds > 0 else { return [] }
        let idle = min(seconds, maxTCPKeepAlive)
        let tcp = NIOBSDSocket.OptionLevel.tcp
        #if canImport(Darwin)
        let idleOption = TCP_KEEPALIVE  // Darwin's name for TCP_KEEPIDLE
        #else
        let idleOption = TCP_KEEPIDLE
        #endif
        return [
            (ChannelOptions.socketOption(.so_keepalive), 1),
            (ChannelOptions.Types.SocketOption(level: tcp, name: NIOBSDSocket.Option(rawValue: idleOption)), idle),
            (ChannelOptions.Types.SocketOption(level: tcp, name: NIOBSDSocket.Option(rawValue: TCP_KEEPINTVL)), max(1, idle / 3)),
            (ChannelOptions.Types.SocketOption(level: tcp, name: NIOBSDSocket.Option(rawValue: TCP_KEEPCNT)), 3),
        ]
    }

    /// The open client connections' channels (for tests: their socket options).
    func clientChannels() -> [any Channel] {
        connections.channels.withLock { Array($0.values) }
    }

    /// Blocks until ``shutdown()`` has finished.
    public func waitUntilClosed() {
        for listener in serverChannels { try? listener.closeFuture.wait() }
    }

    /// Stops accepting connections, lets every connection finish its current request and write its replies
    /// (writes acknowledged only once committed), waits up to `grace` for them to close, then stops the loops.
    ///
    /// Maintenance commands (KVSH.REBUILD PATH, KVSH.CHECK, KVSH.COMPACT, KVSH.BACKUP) still running when the
    /// grace period ends are cancelled (``KVStore/cancelMaintenance()``): they stop at their next record or
    /// block, leaving the store as it was, so the grace period holds however large their files are. A background
    /// compaction still running then is cancelled too (it runs again after the next start).
    public func shutdown(grace: TimeAmount = .seconds(5)) {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        context.metrics.serverStopping()  // /ready: 503 from now on
        context.logger.info("shutting down: no new connections; finishing requests in flight")
        let graceEnds = DispatchTime.now() + .nanoseconds(Int(max(0, grace.nanoseconds)))
        for listener in serverChannels { try? listener.close().wait() }
        // Replicas and the link to a primary first: they are not clients finishing requests.
        context.replication.shutdown()
        let open = connections.channels.withLock { Array($0.values) }
        for channel in open { channel.pipeline.fireUserInboundEventTriggered(DrainAndClose()) }
        let everyClose = EventLoopFuture.andAllComplete(open.map(\.closeFuture), on: group.next())
        let deadline = group.next().scheduleTask(in: grace) { open.forEach { $0.close(promise: nil) } }
        try? everyClose.wait()
        deadline.cancel()
        // The thread pool first: a maintenance command still running there completes on its connection's loop.
        // It gets what is left of the grace period, then it is cancelled.
        let poolStopped = DispatchSemaphore(value: 0)
        // Called back on a queue of its own, not a global one: those may be busy (at most one thread per core).
        context.threadPool.shutdownGracefully(queue: DispatchQueue(label: "kvsh.shutdown")) { _ in poolStopped.signal() }
        if poolStopped.wait(timeout: graceEnds) == .timedOut {
            context.logger.warning("maintenance still running at the end of the grace period: cancelling it (the store stays as it was)")
            context.store.cancelMaintenance()
            poolStopped.wait()
        }
        context.store.cancelMaintenance()  // a background compaction: the store's close would wait for it
        try? group.syncShutdownGracefully()
        context.logger.info("server stopped")
    }
}

/// The open client connections, so that shutdown can ask each to finish.
private final class OpenConnections: Sendable {
    let channels = Mutex<[ObjectIdentifier: any Channel]>([:])
}

/// Answers a connection beyond `maxClients` with Redis's error, then closes it.
private final class RejectingHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    func channelActive(context: ChannelHandlerContext) {
        var message = context.channel.allocator.buffer(capacity: 64)
        message.writeStaticString("-ERR max number of clients reached\r\n")
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(message)).whenComplete { _ in channel.close(promise: nil) }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {}
}
