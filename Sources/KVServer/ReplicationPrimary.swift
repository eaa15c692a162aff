import KVStore
import KVCommands
import Logging
import NIOCore
import RDB
import RESP
import Synchronization

/// A replica's bytes in flight.
final class InFlightBytes: Sendable {
    let bytes = Atomic<Int>(0)
}

/// Redis's replication settings, as `kvsh serve` flags.
public struct ReplicationSettings: Sendable {
    /// `--replicaof HOST PORT`: start as a replica of that primary.
    public var replicaOf: (host: String, port: Int)?
    /// `--replica-announce-ip` / `--replica-announce-port`: what this replica tells its primary to list.
    public var announceIP: String?
    public var announcePort: Int?
    /// `--min-replicas-to-write N --min-replicas-max-lag S`: writes are refused with `-NOREPLICAS` unless N replicas
    /// acknowledged within S seconds.
    public var minReplicasToWrite = 0
    public var minReplicasMaxLag = 10
    /// `--sync-replicas N`: a write's reply waits until N replicas have acknowledged it (kvsh replicas acknowledge once
    /// it is as durable on them as their `--sync` makes it).
    public var syncReplicas = 0
    /// `--repl-backlog-size`: the stream bytes kept in memory for replicas that reconnect (beyond it, the log).
    public var backlogSize = 1 << 20
    /// `--repl-backlog-log-bytes`: log files kept for replicas after a checkpoint (``KVStore/Options/replicationBacklogBytes``).
    public var backlogLogBytes = 256 << 20
    /// `--repl-timeout`: seconds without data after which a link is dropped (both ends).
    public var timeout = 60
    /// `--repl-ping-replica-period`: seconds between the pings a primary puts in its stream.
    public var pingPeriod = 10
    /// `client-output-buffer-limit replica`'s hard limit: a replica that falls this far behind is dropped.
    public var outputBufferLimit = 256 << 20
    /// A failover cluster decides the role (`kvsh serve --cluster`): the server starts read-only and never promotes
    /// itself.
    public var managedByCluster = false
    /// `--masteruser` / `--masterauth`: the credentials this replica sends its primary (AUTH before REPLCONF).
    public var masterUser: String?
    public var masterAuth: String?

    public init() {}
}

/// The primary side of replication: the live feed of the log to replicas, the in-memory backlog, PSYNC and SYNC,
/// acknowledgements, WAIT and `--sync-replicas`.
///
/// The feed is the store's write observer: every run of records written to the log is turned into stream bytes
/// (``ReplicationStream``) under the log's lock, so the stream's order is the log's, appended to the backlog and
/// written to every online replica's channel. A replica being synced gets its bytes buffered until its snapshot or
/// backlog has gone out.
final class ReplicationPrimary: Sendable {
    enum ReplicaState: String, Sendable {
        /// Its snapshot (or the log since its offset) is being sent; new stream bytes wait in `pending`.
        case waitingForSnapshot = "wait_bgsave"
        case sendingSnapshot = "send_bulk"
        /// The RDB went out with an EOF mark: nothing more may go out until its first ACK (Redis's rule).
        case waitingForFirstAck = "wait_ack"
        case online
    }

    struct Replica {
        let id: Int
        let channel: any Channel
        let address: String
        var listeningPort: Int
        var announcedIP: String?
        var state: ReplicaState
        var ackOffset: Int64 = 0
        var lastAck = ContinuousClock.now
        /// Bytes handed to the channel and not yet written to the socket. An atomic, not feed state: a write's
        /// completion can run inside `writeAndFlush`, under the feed's lock.
        let inFlight = InFlightBytes()
        /// Stream bytes that arrived while the replica was syncing.
        var pending: [UInt8] = []
        /// It acknowledges after every batch it applies (a kvsh replica), so waits need no GETACK.
        var acksEagerly = false

        var ip: String {
            if let announcedIP { return announcedIP }
            guard let colon = address.lastIndex(of: ":") else { return address }
            return String(address[..<colon].filter { $0 != "[" && $0 != "]" })
        }
    }

    struct Waiter {
        let count: Int
        let offset: Int64
        let promise: EventLoopPromise<Int>
    }

    struct Feed {
        var started = false
        var replid: [UInt8] = ReplicationPosition.noReplid
        /// The offset of the last stream byte fed.
        var offset: Int64 = 0
        /// The last bytes of the stream, ending at `offset`.
        var backlog: [UInt8] = []
        var replicas: [Int: Replica] = [:]
        var waiters: [Waiter] = []
        /// Replicas ever attached; the in-memory backlog exists from the first.
        var lastGetAck = ContinuousClock.now - .seconds(1)
    }

    let store: KVStore
    let settings: ReplicationSettings
    let logger: Logger
    let feed = Mutex(Feed())

    init(store: KVStore, settings: ReplicationSettings, logger: Logger) {
        self.store = store
        self.settings = settings
        self.logger = logger
    }

    static let ping: [UInt8] = Array("*1\r\n$4\r\nping\r\n".utf8)
    static let getAck: [UInt8] = Array("*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n".utf8)

    // MARK: Starting the stream

    /// Starts the feed the first time a replica asks: makes the store a primary of a stream (a position in its log)
    /// and observes its writes.
    func startIfNeeded() throws {
        let started = feed.withLock { $0.started }
        guard !started else { return }
        try store.becomePrimary()
        let position = try store.observeWrites { [weak self] records in self?.recordsWritten(records) }
        feed.withLock { feed in
            feed.started = true
            feed.replid = position?.replid ?? ReplicationPosition.noReplid
            feed.offset = position?.offset ?? 0
            feed.backlog.removeAll()
        }
    }

    /// Stops the feed (this server becomes a replica): replicas are dropped, waiting writes are released with what
    /// was acknowledged.
    func stop() {
        _ = try? store.observeWrites(nil)
        let (replicas, waiters) = feed.withLock { feed -> ([Replica], [Waiter]) in
            defer { feed = Feed() }
            return (Array(feed.replicas.values), feed.waiters)
        }
        for replica in replicas { replica.channel.close(promise: nil) }
        for waiter in waiters { waiter.promise.succeed(0) }
    }

    /// The write observer: under the store's log lock, in log order.
    private func recordsWritten(_ records: UnsafeRawBufferPointer) {
        var bytes: [UInt8] = []
        let conversion = ReplicationStream.convert(records: records, to: &bytes)
        var drop: [any Channel] = []
        feed.withLock { feed in
            if let position = conversion.position, position.replid != feed.replid {
                // A new stream (promotion): what was buffered belongs to the old one.
                feed.replid = position.replid
                feed.offset = position.offset
                feed.backlog.removeAll()
                let skipped = bytes.count - conversion.bytesAfterPosition
                bytes.removeFirst(skipped)
            }
            guard !bytes.isEmpty else { return }
            feed.offset += Int64(bytes.count)
            feed.backlog.append(contentsOf: bytes)
            if feed.backlog.count > 2 * settings.backlogSize {
                feed.backlog.removeFirst(feed.backlog.count - settings.backlogSize)
            }
            for id in feed.replicas.keys {
                guard var replica = feed.replicas[id] else { continue }
                if replica.state == .online {
                    if replica.inFlight.bytes.load(ordering: .relaxed) + bytes.count > settings.outputBufferLimit {
                        drop.append(replica.channel)
                        continue
                    }
                    send(bytes, to: replica)
                } else {
                    if replica.pending.count + bytes.count > settings.outputBufferLimit {
                        drop.append(replica.channel)
                        continue
                    }
                    replica.pending.append(contentsOf: bytes)
                }
                feed.replicas[id] = replica
            }
        }
        for channel in drop {
            logger.warning("dropping a replica that cannot keep up (client-output-buffer-limit replica)",
                           metadata: ["replica": "\(channel.remoteAddress.map { "\($0)" } ?? "?")", "limit": "\(settings.outputBufferLimit)"])
            channel.close(promise: nil)
        }
    }

    /// Writes stream bytes to a replica's channel, counting them in flight until the socket has them. Called under
    /// the feed's lock, so that bytes go out in stream order.
    ///
    /// The write is handed to the channel's event loop as a task, even from that loop: a write that fails there closes
    /// the channel at once, and its `channelInactive` (which takes the feed's lock) must not run under this lock.
    /// Tasks run in the order they are queued, so the stream's order holds.
    private func send(_ bytes: [UInt8], to replica: Replica) {
        let channel = replica.channel
        let count = bytes.count
        let inFlight = replica.inFlight
        inFlight.bytes.wrappingAdd(count, ordering: .relaxed)
        channel.eventLoop.execute {
            channel.writeAndFlush(channel.allocator.buffer(bytes: bytes)).whenComplete { _ in
                inFlight.bytes.wrappingSubtract(count, ordering: .relaxed)
            }
        }
    }

    // MARK: Replicas arriving

    /// Handles `PSYNC replid offset` (or `SYNC`, with `psync` false) from the connection `channel`, on the thread pool:
    /// `+CONTINUE` and the stream since the replica's offset (from the in-memory backlog, else the log) when this
    /// store can continue its stream, else `+FULLRESYNC` and an RDB snapshot. The connection is a replica link from
    /// here on.
    func synchronize(replicaID: Int, channel: any Channel, address: String, listeningPort: Int, announcedIP: String?,
                     capabilities: Set<String>, psync: Bool, request: (replid: [UInt8], offset: Int64)?) throws {
        try startIfNeeded()
        var replica = Replica(id: replicaID, channel: channel, address: address, listeningPort: listeningPort,
                              announcedIP: announcedIP, state: .waitingForSnapshot)
        replica.acksEagerly = capabilities.contains("kvsh")
        if let request, try continuePartially(replica, from: request) { return }
        try fullSync(replica, eofFraming: capabilities.contains("eof"), psync: psync)
    }

    /// Partial resync, if the stream since `request.offset` is still in the backlog or the log.
    private func continuePartially(_ replica: Replica, from request: (replid: [UInt8], offset: Int64)) throws -> Bool {
        // The offset a replica sends is the next byte it wants: it has everything before.
        let have = request.offset - 1
        let registered = try store.atWriteBoundary(snapshot: false) { position, _ -> (end: Int64, bytes: [UInt8]?, replid: [UInt8])? in
            guard let position, position.role == .primary, position.canContinue(replid: request.replid, offset: have) else { return nil }
            return feed.withLock { feed in
                let end = feed.offset
                guard have <= end else { return nil }
                feed.replicas[replica.id] = replica
                let backlogStart = end - Int64(feed.backlog.count)
                let bytes = have >= backlogStart ? Array(feed.backlog[Int(have - backlogStart)...]) : nil
                return (end, bytes, feed.replid)
            }
        }
        guard let registered else { return false }
        var bytes = registered.bytes
        if bytes == nil {
            bytes = try store.streamFromLog(replid: request.replid, after: have, through: registered.end, limit: settings.outputBufferLimit)
        }
        guard let bytes else {
            feed.withLock { _ = $0.replicas.removeValue(forKey: replica.id) }
            return false
        }
        var reply = replica.channel.allocator.buffer(capacity: 64 + bytes.count)
        reply.writeString("+CONTINUE \(String(decoding: registered.replid, as: UTF8.self))\r\n")
        reply.writeBytes(bytes)
        try replica.channel.writeAndFlush(reply).wait()
        logger.info("replica continues partially", metadata: [
            "replica": "\(replica.address)", "from-offset": "\(have)", "bytes": "\(bytes.count)",
            "source": "\(registered.bytes != nil ? "memory backlog" : "log")",
        ])
        goOnline(replica.id)
        return true
    }

    /// A full copy: `+FULLRESYNC replid offset` (for PSYNC), then the RDB of a snapshot taken at that offset.
    private func fullSync(_ replica: Replica, eofFraming: Bool, psync: Bool) throws {
        let (position, snapshot) = try store.atWriteBoundary(snapshot: true) { position, snapshot -> (ReplicationPosition, KVStore.Snapshot) in
            guard let position, let snapshot else { throw StoreError.replication(reason: "the store has no replication stream") }
            feed.withLock { feed in
                var replica = replica
                replica.state = .sendingSnapshot
                feed.replicas[replica.id] = replica
            }
            return (position, snapshot)
        }
        let channel = replica.channel
        let start = ContinuousClock.now
        if psync {
            var line = channel.allocator.buffer(capacity: 64)
            line.writeString("+FULLRESYNC \(position.replidText) \(position.offset)\r\n")
            try channel.writeAndFlush(line).wait()
        }
        // No LZF: on the links replication runs over it costs the writer 4x its speed for a fifth fewer bytes.
        var writer = RDBWriter(auxFields: RDBWriter.replicationAuxFields(replicationID: position.replidText, replicationOffset: position.offset),
                               compression: false)
        writer.selectDB(0)
        writer.resizeDB(keys: snapshot.count, expires: 0)
        let chunkSize = 4 << 20
        var total = 0
        if eofFraming {
            let mark = ReplicationPosition.randomReplid()
            var preamble = channel.allocator.buffer(capacity: 48)
            preamble.writeString("$EOF:")
            preamble.writeBytes(mark)
            preamble.writeString("\r\n")
            channel.write(preamble, promise: nil)
            var failure: (any Error)?
            // Two chunks in flight: the next is encoded while the socket (and the replica) take the last, and memory
            // stays bounded.
            var inFlight: [EventLoopFuture<Void>] = []
            snapshot.forEach { key, value in
                writer.append(key: key, value: value)
                if writer.pendingByteCount >= chunkSize {
                    let bytes = writer.takeBytes()
                    total += bytes.count
                    inFlight.append(channel.writeAndFlush(channel.allocator.buffer(bytes: bytes)))
                    if inFlight.count > 2 {
                        do { try inFlight.removeFirst().wait() } catch {
                            failure = error
                            return false
                        }
                    }
                }
                return true
            }
            for write in inFlight where failure == nil {
                do { try write.wait() } catch { failure = error }
            }
            if let failure { throw failure }
            writer.finish()
            var tail = channel.allocator.buffer(bytes: writer.takeBytes())
            total += tail.readableBytes
            tail.writeBytes(mark)
            try channel.writeAndFlush(tail).wait()
            feed.withLock { $0.replicas[replica.id]?.state = .waitingForFirstAck }
        } else {
            // `$<length>` needs the length first: the RDB is built whole in memory.
            var rdb: [UInt8] = []
            snapshot.forEach { key, value in
                writer.append(key: key, value: value)
                if writer.pendingByteCount >= chunkSize { rdb += writer.takeBytes() }
                return true
            }
            writer.finish()
            rdb += writer.takeBytes()
            total = rdb.count
            var bulk = channel.allocator.buffer(capacity: rdb.count + 32)
            bulk.writeString("$\(rdb.count)\r\n")
            bulk.writeBytes(rdb)
            try channel.writeAndFlush(bulk).wait()
            goOnline(replica.id)
        }
        logger.info("full sync sent", metadata: [
            "replica": "\(replica.address)", "keys": "\(snapshot.count)", "rdb-bytes": "\(total)", "offset": "\(position.offset)",
            "framing": "\(eofFraming ? "eof" : "length")", "seconds": "\(ContinuousClock.now - start)",
        ])
    }

    /// Sends what the replica missed while syncing and feeds it live from now on.
    private func goOnline(_ id: Int) {
        feed.withLock { feed in
            guard var replica = feed.replicas[id] else { return }
            replica.state = .online
            replica.lastAck = .now
            if !replica.pending.isEmpty {
                send(replica.pending, to: replica)
                replica.pending = []
            }
            feed.replicas[id] = replica
        }
    }

    /// A replica's connection closed.
    func replicaGone(_ id: Int) {
        let gone = feed.withLock { $0.replicas.removeValue(forKey: id) }
        if let gone { logger.info("replica disconnected", metadata: ["replica": "\(gone.address)"]) }
    }

    func isReplica(_ id: Int) -> Bool {
        feed.withLock { $0.replicas[id] != nil }
    }

    // MARK: Acknowledgements

    /// `REPLCONF ACK offset` from replica `id`.
    func acknowledged(_ id: Int, offset: Int64) {
        var ready: [(EventLoopPromise<Int>, Int)] = []
        var firstAck = false
        feed.withLock { feed in
            guard var replica = feed.replicas[id] else { return }
            replica.ackOffset = max(replica.ackOffset, offset)
            replica.lastAck = .now
            firstAck = replica.state == .waitingForFirstAck
            feed.replicas[id] = replica
            let snapshot = feed
            feed.waiters.removeAll { waiter in
                let count = Self.count(snapshot, atLeast: waiter.offset)
                guard count >= waiter.count else { return false }
                ready.append((waiter.promise, count))
                return true
            }
        }
        if firstAck { goOnline(id) }
        for (promise, count) in ready { promise.succeed(count) }
    }

    private static func count(_ feed: Feed, atLeast offset: Int64) -> Int {
        feed.replicas.values.reduce(0) { $0 + ($1.state == .online && $1.ackOffset >= offset ? 1 : 0) }
    }

    /// The replicas that have acknowledged `offset`, once there are `count` of them, or when `timeout` passes (nil:
    /// never), whichever is first. Asks replicas that acknowledge only once a second for an early ACK.
    func waitForAcknowledgements(count: Int, offset: Int64, timeout: TimeAmount?, on eventLoop: any EventLoop) -> EventLoopFuture<Int> {
        let promise = eventLoop.makePromise(of: Int.self)
        let (now, askForAcks) = feed.withLock { feed -> (Int?, Bool) in
            let acknowledged = Self.count(feed, atLeast: offset)
            if acknowledged >= count { return (acknowledged, false) }
            feed.waiters.append(Waiter(count: count, offset: offset, promise: promise))
            let slow = feed.replicas.values.contains { $0.state == .online && !$0.acksEagerly }
            let due = ContinuousClock.now - feed.lastGetAck > .milliseconds(1)
            if slow && due { feed.lastGetAck = .now }
            return (nil, slow && due)
        }
        if let now { promise.succeed(now); return promise.futureResult }
        if askForAcks { requestAcknowledgements() }
        if let timeout {
            let task = eventLoop.scheduleTask(in: timeout) { [weak self] in
                guard let self else { return }
                let count = self.feed.withLock { feed -> Int? in
                    guard let index = feed.waiters.firstIndex(where: { $0.promise.futureResult === promise.futureResult }) else { return nil }
                    feed.waiters.remove(at: index)
                    return Self.count(feed, atLeast: offset)
                }
                if let count { promise.succeed(count) }
            }
            promise.futureResult.whenComplete { _ in task.cancel() }
        }
        return promise.futureResult
    }

    /// Puts `REPLCONF GETACK *` into the stream: every replica answers with its offset at once.
    func requestAcknowledgements() {
        do {
            try store.appendStreamBytes(Self.getAck)
            try store.commit()
        } catch {
            logger.warning("could not ask replicas for acknowledgements", metadata: ["error": "\(error)"])
        }
    }

    /// The ping a primary puts in its stream every `repl-ping-replica-period` while it has replicas.
    func pingIfReplicas() {
        let hasReplicas = feed.withLock { !$0.replicas.isEmpty }
        guard hasReplicas else { return }
        do {
            try store.appendStreamBytes(Self.ping)
            try store.commit()
        } catch {
            logger.debug("could not ping replicas", metadata: ["error": "\(error)"])
        }
    }

    /// Closes links that have not acknowledged within `repl-timeout` (Redis drops such replicas too).
    func dropTimedOutReplicas() {
        let limit = Duration.seconds(settings.timeout)
        let stale = feed.withLock { feed in
            feed.replicas.values.filter { $0.state == .online && ContinuousClock.now - $0.lastAck > limit }.map(\.channel)
        }
        for channel in stale {
            logger.warning("replica timed out (no ACK within repl-timeout)", metadata: ["replica": "\(channel.remoteAddress.map { "\($0)" } ?? "?")"])
            channel.close(promise: nil)
        }
    }

    // MARK: What INFO, ROLE and --min-replicas-to-write see

    struct ReplicaView {
        var ip: String
        var port: Int
        var state: ReplicaState
        var offset: Int64
        var lagSeconds: Int
    }

    struct View {
        var replid: [UInt8]
        var offset: Int64
        var backlogBytes: Int
        var replicas: [ReplicaView]
    }

    var view: View {
        feed.withLock { feed in
            View(replid: feed.replid, offset: feed.offset, backlogBytes: feed.backlog.count,
                 replicas: feed.replicas.values.sorted { $0.id < $1.id }.map { replica in
                     ReplicaView(ip: replica.ip, port: replica.listeningPort, state: replica.state, offset: replica.ackOffset,
                                 lagSeconds: Int((ContinuousClock.now - replica.lastAck).components.seconds))
                 })
        }
    }

    /// Online replicas that acknowledged within `--min-replicas-max-lag` seconds.
    var goodReplicas: Int {
        let lag = Duration.seconds(settings.minReplicasMaxLag)
        return feed.withLock { feed in
            feed.replicas.values.reduce(0) { $0 + ($1.state == .online && ContinuousClock.now - $1.lastAck <= lag ? 1 : 0) }
        }
    }
}
