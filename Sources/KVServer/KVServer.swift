import KVShell
import KVStore
import Logging
import NIOCore
import NIOPosix
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

    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        public var maxClients: Int
        public var maxBulkLength: Int
        /// Event loops (threads). Defaults to one fewer than the cores (at least one), leaving a core for the
        /// fsync thread pool and, on a small machine, for clients on the same host.
        public var threads: Int

        public init(host: String = "127.0.0.1", port: Int = 7379, maxClients: Int = 10_000,
                    maxBulkLength: Int = 512 << 20, threads: Int = max(1, System.coreCount - 1)) {
            self.host = host
            self.port = port
            self.maxClients = maxClients
            self.maxBulkLength = maxBulkLength
            self.threads = threads
        }
    }

    private let context: ServerContext
    private let group: MultiThreadedEventLoopGroup
    private let serverChannel: any Channel
    private let connections = OpenConnections()
    private let stopped = Atomic<Bool>(false)

    /// The address the server listens on (with the actual port when 0 was asked for).
    public var localAddress: SocketAddress? { serverChannel.localAddress }

    /// Binds and starts serving.
    /// - Throws: when the address cannot be bound (in use, not local, no permission).
    public init(store: KVStore, configuration: Configuration, logger: Logger) throws {
        let threadPool = NIOThreadPool(numberOfThreads: 2)
        threadPool.start()
        let context = ServerContext(store: store, configuration: configuration, logger: logger, threadPool: threadPool)
        self.context = context
        group = MultiThreadedEventLoopGroup(numberOfThreads: max(1, configuration.threads))
        var committers: [ObjectIdentifier: GroupCommitter] = [:]
        for loop in group.makeIterator() {
            committers[ObjectIdentifier(loop)] = GroupCommitter(eventLoop: loop, store: store)
        }
        let committersByLoop = committers
        let connections = self.connections
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.backlog, value: 1024)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(ChannelOptions.writeBufferWaterMark, value: ChannelOptions.Types.WriteBufferWaterMark(low: 64 << 10, high: 256 << 10))
            .childChannelOption(ChannelOptions.maxMessagesPerRead, value: 1)
            .childChannelInitializer { channel in
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
        do {
            serverChannel = try bootstrap.bind(host: configuration.host, port: configuration.port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            try? threadPool.syncShutdownGracefully()
            throw error
        }
        context.port.store(serverChannel.localAddress?.port ?? configuration.port, ordering: .relaxed)
        logger.info("kvsh server listening", metadata: [
            "address": "\(serverChannel.localAddress.map { "\($0)" } ?? "?")",
            "data-dir": "\(store.directory)", "sync": "\(store.syncPolicy.rawValue)",
        ])
    }

    /// Blocks until ``shutdown()`` has finished.
    public func waitUntilClosed() {
        try? serverChannel.closeFuture.wait()
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
        context.logger.info("shutting down: no new connections; finishing requests in flight")
        let graceEnds = DispatchTime.now() + .nanoseconds(Int(max(0, grace.nanoseconds)))
        try? serverChannel.close().wait()
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
