import KVAccess
import KVCommands
import RESP
import KVStore
import Logging
import NIOCore

/// Asks a connection to finish what it is doing and close (server shutdown).
struct DrainAndClose: Sendable {}

/// Where a connection is in its life. It only moves forward (`open` → `finishing` → `shuttingDown` →
/// `commitFailed`, skipping steps as needed); each step keeps the restrictions of those before it.
enum ConnectionLifecycle: Int, Comparable {
    /// Reads, runs and replies.
    case open
    /// No command runs any more (QUIT, a protocol error, an HTTP request, the client went away): what is queued is
    /// dropped, later input ignored, and the connection closes once the replies already made are out.
    case finishing
    /// The server is stopping: as `finishing`, and nothing more is read.
    case shuttingDown
    /// A commit failed: as `shuttingDown`, and the replies made are withheld (they would acknowledge writes that
    /// are not durable); only the error goes out, then the connection closes.
    case commitFailed

    static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }

    var runsCommands: Bool { self == .open }
    var readsInput: Bool { self < .shuttingDown }
    var sendsReplies: Bool { self != .commitFailed }
}

/// One client connection: runs each decoded request and writes the replies in order.
///
/// Replies are collected while a read is processed and written at its end. Replies that acknowledge writes
/// first wait for the loop's ``GroupCommitter``; while they wait, later replies queue behind them.
///
/// A client can never make the server buffer without bound: while it does not take its replies (the channel
/// is not writable, or 256 KiB of replies wait) or a slow command runs, requests already read wait, unrun, in
/// `queued` (so what is held is bounded by what was read, not by what replies would amplify it to), and
/// reading stops until the backlog clears.
///
/// The handler lives on its channel's event loop. Two kinds of handler code run while one of its properties is
/// being accessed: `handle`, called back by the decoder while `decoder` is being modified, and whatever NIO calls
/// synchronously from a write `handle` makes: `channelWritabilityChanged`, and, when the write fails (any write
/// error, such as a client that reset the connection), `channelRead` and `channelReadComplete` with what NIO drains
/// from the socket, then `errorCaught` and `channelInactive` as it closes the channel. None of those touches
/// `decoder` or `partialInput` (a `channelRead` that arrives during decoding returns at once, see `decoding`), and
/// no other property is held across a call out of the handler. The properties touched per request therefore opt
/// out of the runtime's exclusivity checks (`@exclusivity(unchecked)`): with a handful of them per request, the
/// checks cost about as much as running a pipelined GET itself (measured with perf). `decoder` and `partialInput`,
/// touched once per read, keep the checks, as a backstop.
final class ConnectionHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let context: ServerContext
    private let store: KVStore
    private let committer: GroupCommitter
    private let syncAlways: Bool
    /// Unchecked: passed `inout` to `ServerCommands.run`, which never calls back into the handler.
    @exclusivity(unchecked) private var client: ClientState

    /// Replies not yet handed on, and whether any of them acknowledges a write. Unchecked: passed `inout` to
    /// `runInPlace` and `RESPValue.write`, which never call back into the handler; taken out (`takeOutput`) before
    /// every write that could.
    @exclusivity(unchecked) private var output: ByteBuffer
    @exclusivity(unchecked) private var outputNeedsCommit = false
    /// Replies handed to the committer and not yet released. (This and the flags below are read and assigned, never
    /// held across a call: unchecked costs nothing in safety.)
    @exclusivity(unchecked) private var waitingForCommit = false
    /// Whether the replies in `output` (and in `awaitingCommit`) acknowledge a write, rather than only wait for a
    /// commit to show no unsynced data: a fenced cluster node withholds only the former.
    @exclusivity(unchecked) private var outputAcknowledgesWrites = false
    @exclusivity(unchecked) private var awaitingAcknowledgesWrites = false

    /// Whether the replies waiting for the committer acknowledge writes (`--sync-replicas` holds only those).
    var awaitsWriteAcknowledgement: Bool { awaitingAcknowledgesWrites }
    /// Those replies, kept here until the committer calls ``commitFinished(_:context:)``.
    @exclusivity(unchecked) private var awaitingCommit = ByteBuffer()
    /// The buffer of the replies last sent, reused for later ones once written (see `takeOutput`).
    @exclusivity(unchecked) private var spare = ByteBuffer()
    /// Requests read but not yet run, oldest first from `queuedStart`: they run once the client takes its
    /// replies and no slow command runs. Unchecked: appended to or read one element at a time, never held across
    /// running a request (`runQueued` copies the arguments out first).
    @exclusivity(unchecked) private var queued: [[[UInt8]]] = []
    @exclusivity(unchecked) private var queuedStart = 0
    @exclusivity(unchecked) private var drainingQueue = false
    @exclusivity(unchecked) private var slowCommandRunning = false
    /// See ``ConnectionLifecycle``; changed only through ``advance(to:)``.
    @exclusivity(unchecked) private var lifecycle = ConnectionLifecycle.open
    @exclusivity(unchecked) private var reading = true
    /// Decodes requests from the bytes read; what is left of an incomplete request waits in `partialInput`.
    /// Decoding here rather than in a `ByteToMessageHandler` saves a pipeline hop per request.
    private var decoder: RESPRequestDecoder
    private var partialInput: ByteBuffer?
    /// Whether `channelRead` is decoding: NIO can call it again from inside a write that a request made.
    @exclusivity(unchecked) private var decoding = false
    /// The channel's writability, tracked from its events rather than asked of the channel for every request.
    @exclusivity(unchecked) private var channelWritable = true
    /// Set by PSYNC or SYNC: the connection is a replica's link (see ``becomeReplicaLink(psync:request:context:)``).
    @exclusivity(unchecked) private var isReplicaLink = false
    /// Commands run but not yet added to the shared counter: one atomic add per read, not per command.
    @exclusivity(unchecked) private var uncountedCommands = 0
    /// This event loop's command statistics (no lock: see ``LoopStatistics``), and whether commands are timed.
    private let statistics: LoopStatistics
    private let timesCommands: Bool
    private let slowLog: SlowLog
    /// `--audit-log`: while set, GET and SET take the general path, where commands are recorded.
    private let audit: AuditLog?
    /// When the previous command in place finished (or the read began): a command's time runs from there to its
    /// end, so timing costs one clock read per command.
    @exclusivity(unchecked) private var commandClock: UInt64 = 0

    /// Redis's `timeout` (nil: off): the connection closes once it has been idle that long (see `checkIdle`).
    private let idleTimeout: TimeAmount?
    /// When the client last sent bytes or was handed replies (only kept with an idle timeout).
    @exclusivity(unchecked) private var lastInteraction = NIODeadline.uptimeNanoseconds(0)
    /// The next idle check, while one is scheduled.
    private var idleCheck: Scheduled<Void>?

    /// Output beyond this is sent (or committed) without waiting for the end of the read.
    private static let flushThreshold = 64 << 10
    /// Replies held (waiting for a commit) beyond this make requests wait unrun.
    private static let backlogLimit = 256 << 10
    /// Reply and input buffers larger than this are not kept for reuse.
    private static let largestKeptBuffer = 1 << 20

    init(context: ServerContext, committer: GroupCommitter, decoder: RESPRequestDecoder) {
        self.context = context
        store = context.store
        syncAlways = context.store.syncPolicy == .always
        self.committer = committer
        self.decoder = decoder
        client = ClientState(id: context.makeClientID(), user: context.access.user(named: "default")
                                ?? ACLUser(name: "default", catalog: context.access.catalog))
        output = ByteBuffer()
        statistics = context.metrics.loopStatistics(for: committer.eventLoop)
        timesCommands = context.metrics.settings.commandStatistics
        slowLog = context.metrics.slowLog
        audit = context.configuration.auditLog
        let timeout = context.configuration.idleTimeout
        idleTimeout = timeout > 0 ? .seconds(Int64(timeout)) : nil
    }

    func handlerAdded(context: ChannelHandlerContext) {
        output = context.channel.allocator.buffer(capacity: 1024)
        spare = context.channel.allocator.buffer(capacity: 1024)
        channelWritable = context.channel.isWritable
        client.address = ClientState.describe(context.channel.remoteAddress)
        client.localAddress = ClientState.describe(context.channel.localAddress)
        self.context.clients.add(client)
        if context.channel.isActive { startIdleChecks(context: context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context.clients.remove(id: client.id)
        idleCheck?.cancel()
        idleCheck = nil
    }

    func channelActive(context: ChannelHandlerContext) {
        startIdleChecks(context: context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        // A write that fails inside `decode` (the client reset the connection, say) makes NIO drain the socket
        // into this method before it closes the channel. Those bytes can get no reply: drop them rather than
        // decode them in the middle of decoding. (`channelInactive` then stops the rest of the read too.)
        guard !decoding else { return }
        decoding = true
        defer { decoding = false }
        if idleTimeout != nil { lastInteraction = context.eventLoop.now }
        var input = unwrapInboundIn(data)
        statistics.netInputBytes &+= UInt64(input.readableBytes)
        if timesCommands { commandClock = monotonicNanoseconds() }
        if var partial = partialInput {
            partialInput = nil  // first, so that `partial` is the only reference and grows in place, not copied
            partial.writeBuffer(&input)
            input = partial
        }
        decoder.decode(&input, inPlace: { handle($0, context: context) }, decoded: { handle($0, context: context) })
        if input.readableBytes > 0 {
            input.discardReadBytes()
            if input.capacity > Self.largestKeptBuffer && input.readableBytes <= Self.largestKeptBuffer / 2 {
                // What is left after a large value is small: do not keep the large buffer for it.
                var smaller = context.channel.allocator.buffer(capacity: input.readableBytes)
                smaller.writeBuffer(&input)
                input = smaller
            }
            partialInput = input
        }
    }

    /// Runs a request in place in the read buffer, copying its arguments only when it must wait in `queued` or
    /// takes the general path.
    private func handle(_ request: BorrowedRequest, context: ChannelHandlerContext) {
        guard lifecycle.runsCommands else { return }  // after QUIT or a protocol error, input is dropped
        if queuedStart < queued.count || !canRunNow() {
            queued.append(request.copied())
            return
        }
        if isReplicaLink {
            replicaSent(request.copied())
            return
        }
        let replyStart = output.writerIndex
        // In place once the connection's user is known and current (one relaxed load): for a user with every
        // permission, no check at all; for another, its GET and SET permissions and its key patterns, on the
        // request's bytes. Anything else goes the general way, through the whole check.
        if let inPlace = client.inPlace, audit == nil, client.aclGeneration == self.context.access.generation.load(ordering: .relaxed),
           let wrote = ServerCommands.runInPlace(request, protocolVersion: client.protocolVersion, store: store,
                                                 writesGated: self.context.replication.gatesWrites, access: inPlace, output: &output) {
            uncountedCommands += 1
            if wrote {
                outputNeedsCommit = true
                outputAcknowledgesWrites = true
            }
            if timesCommands { recordInPlace(request, replyStart: replyStart) }
            if output.readableBytes >= Self.flushThreshold {
                sendOutput(context: context)
                if timesCommands { commandClock = monotonicNanoseconds() }  // the write is no command's time
            }
        } else {
            run(request.copied(), context: context)
        }
    }

    private func handle(_ request: RESPRequest, context: ChannelHandlerContext) {
        switch request {
        case .command(let arguments):
            guard lifecycle.runsCommands else { return }
            if queuedStart < queued.count || !canRunNow() {
                queued.append(arguments)
                return
            }
            run(arguments, context: context)
        case .protocolError(let message):
            guard lifecycle.runsCommands else { return }
            RESPValue.error("ERR Protocol error: \(message)").write(to: &output, protocolVersion: client.protocolVersion)
            self.context.logger.debug("protocol error, closing the connection", metadata: ["client": "\(client.id)", "error": "\(message)"])
            stopRunningCommands()
            sendOutput(context: context)
        }
    }

    /// The connection is gone (the client closed it, a write failed, or the server closed it): no reply can reach
    /// the client any more, so nothing more runs, neither the rest of a read being decoded nor what waits in
    /// `queued`.
    func channelInactive(context: ChannelHandlerContext) {
        if isReplicaLink { self.context.replication.primary.replicaGone(client.id) }
        stopRunningCommands()
        idleCheck?.cancel()
        idleCheck = nil
        context.fireChannelInactive()
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        countCommands()
        sendOutput(context: context)
        updateReading(context: context)
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        channelWritable = context.channel.isWritable
        if idleTimeout != nil { lastInteraction = context.eventLoop.now }  // the client is taking its replies
        runQueued(context: context)
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is DrainAndClose {
            advance(to: .shuttingDown)
            sendOutput(context: context)
            updateReading(context: context)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        self.context.logger.debug("connection error", metadata: ["client": "\(client.id)", "error": "\(error)"])
        context.close(promise: nil)
    }

    // MARK: Idle clients

    /// With an idle timeout, starts the count when the connection becomes active, and schedules the first check.
    private func startIdleChecks(context: ChannelHandlerContext) {
        guard let idleTimeout, idleCheck == nil else { return }
        lastInteraction = context.eventLoop.now
        scheduleIdleCheck(at: lastInteraction + idleTimeout, context: context)
    }

    private func scheduleIdleCheck(at deadline: NIODeadline, context: ChannelHandlerContext) {
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        idleCheck = context.eventLoop.scheduleTask(deadline: deadline) {
            let (handler, context) = bound.value
            handler.checkIdle(context: context)
        }
    }

    /// Closes the connection if the client has neither sent anything nor been handed a reply for the idle timeout,
    /// as Redis's `clientsCronHandleTimeout`; otherwise checks again when it could next have been idle that long. A
    /// client whose command is still running (a maintenance command on the thread pool, writes waiting for their
    /// commit) is not idle, as Redis exempts blocked clients.
    private func checkIdle(context: ChannelHandlerContext) {
        idleCheck = nil
        guard let idleTimeout, context.channel.isActive else { return }
        let now = context.eventLoop.now
        if slowCommandRunning || waitingForCommit {
            scheduleIdleCheck(at: now + idleTimeout, context: context)
        } else if now - lastInteraction >= idleTimeout {
            self.context.logger.debug("closing idle client", metadata: ["client": "\(client.id)",
                                                                        "timeout": "\(self.context.configuration.idleTimeout) s"])
            stopRunningCommands()
            context.close(promise: nil)
        } else {
            scheduleIdleCheck(at: lastInteraction + idleTimeout, context: context)
        }
    }

    // MARK: Running commands

    /// - Parameter again: the second run of a command that asked for it (``CommandEffect/rerunAfter(_:)``): counted once.
    private func run(_ arguments: [[UInt8]], again: Bool = false, context: ChannelHandlerContext) {
        if isReplicaLink {
            replicaSent(arguments)
            return
        }
        if !again {
            uncountedCommands += 1
            countCommands()  // before the command: INFO counts every command before it
        }
        let started = timesCommands ? monotonicNanoseconds() : 0
        let (reply, effect) = ServerCommands.run(arguments, client: &client, context: self.context)
        if timesCommands, effect.isCountedNow { record(arguments, reply: reply, started: started) }
        if let audit, effect.isCountedNow { audit.record(arguments, reply: reply, client: client) }
        switch effect {
        case .none:
            reply.write(to: &output, protocolVersion: client.protocolVersion)
        case .wrote:
            reply.write(to: &output, protocolVersion: client.protocolVersion)
            outputNeedsCommit = true
            outputAcknowledgesWrites = true
        case .close:
            reply.write(to: &output, protocolVersion: client.protocolVersion)
            stopRunningCommands()
        case .drop:
            stopRunningCommands()
        case .delayed(let delay):
            let delayed = context.eventLoop.scheduleTask(in: delay) { reply }.futureResult
            startSlowCommand(delayed, mayHaveWritten: false, arguments: arguments, started: started, context: context)
            return
        case .slow(let work):
            startSlowCommand(self.context.threadPool.runIfActive(eventLoop: context.eventLoop, work), mayHaveWritten: true,
                             arguments: arguments, started: started, context: context)
            return
        case .slowNoWrites(let work):
            startSlowCommand(self.context.threadPool.runIfActive(eventLoop: context.eventLoop, work), mayHaveWritten: false,
                             arguments: arguments, started: started, context: context)
            return
        case .waitForReplicas(let count, let offset, let timeout):
            let acknowledged = self.context.replication.primary.waitForAcknowledgements(count: count, offset: offset, timeout: timeout,
                                                                                       on: context.eventLoop)
            startSlowCommand(acknowledged.map { RESPValue.integer($0) }, mayHaveWritten: false, arguments: arguments, started: started,
                             context: context)
            return
        case .becomeReplicaLink(let psync, let request):
            becomeReplicaLink(psync: psync, request: request, context: context)
            return
        case .rerunAfter(let work):
            slowCommandRunning = true
            updateReading(context: context)
            let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
            self.context.threadPool.runIfActive(eventLoop: context.eventLoop, work).whenComplete { result in
                let (handler, context) = bound.value
                handler.slowCommandRunning = false
                guard handler.lifecycle.runsCommands else { return }
                if case .failure(let error) = result {  // the server is stopping: no second run
                    RESPValue.error(CommandError.redisText(for: error)).write(to: &handler.output, protocolVersion: handler.client.protocolVersion)
                } else {
                    handler.run(arguments, again: true, context: context)
                }
                handler.runQueued(context: context)
            }
            return
        }
        if output.readableBytes >= Self.flushThreshold { sendOutput(context: context) }
    }

    /// Waits for `result` (work on the thread pool, a WAIT); commands after it wait, so replies stay in order.
    private func startSlowCommand(_ result: EventLoopFuture<RESPValue>, mayHaveWritten: Bool, arguments: [[UInt8]], started: UInt64,
                                  context: ChannelHandlerContext) {
        slowCommandRunning = true
        updateReading(context: context)
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        result.whenComplete { result in
            let (handler, context) = bound.value
            handler.slowCommandRunning = false
            let reply: RESPValue
            switch result {
            case .success(let value): reply = value
            case .failure(let error): reply = .error(CommandError.redisText(for: error))
            }
            if handler.timesCommands { handler.record(arguments, reply: reply, started: started) }
            handler.audit?.record(arguments, reply: reply, client: handler.client)
            reply.write(to: &handler.output, protocolVersion: handler.client.protocolVersion)
            if mayHaveWritten {  // maintenance may have written (an import)
                handler.outputNeedsCommit = true
                handler.outputAcknowledgesWrites = true
            }
            handler.runQueued(context: context)
        }
    }

    // MARK: A replica's link

    /// PSYNC or SYNC: from now on this connection carries the replication stream out (written by the primary side,
    /// not by this handler) and only `REPLCONF ACK` in. The sync itself (a snapshot or the backlog) runs on the
    /// thread pool; a failure closes the link, and the replica tries again.
    private func becomeReplicaLink(psync: Bool, request: (replid: [UInt8], offset: Int64)?, context: ChannelHandlerContext) {
        isReplicaLink = true
        client.isReplica = true
        self.context.clients.update(client)
        queued.removeAll()
        queuedStart = 0
        // Replies made before the PSYNC go out first, in order.
        if output.readableBytes > 0 { context.writeAndFlush(wrapOutboundOut(takeOutput()), promise: nil) }
        let primary = self.context.replication.primary
        let channel = context.channel
        let client = self.client
        let logger = self.context.logger
        self.context.threadPool.runIfActive(eventLoop: context.eventLoop) {
            try primary.synchronize(replicaID: client.id, channel: channel, address: client.address,
                                    listeningPort: client.replicaListeningPort, announcedIP: client.replicaAnnouncedIP,
                                    capabilities: client.replicaCapabilities, psync: psync, request: request)
        }.whenFailure { error in
            logger.warning("sync to a replica failed; closing its link", metadata: ["replica": "\(client.address)", "error": "\(error)"])
            channel.close(promise: nil)
        }
    }

    /// What a replica sends on its link: `REPLCONF ACK offset` is recorded; nothing gets a reply (as Redis sends none
    /// to its replicas).
    private func replicaSent(_ arguments: [[UInt8]]) {
        guard arguments.count >= 3,
              String(decoding: arguments[0], as: UTF8.self).uppercased() == "REPLCONF",
              String(decoding: arguments[1], as: UTF8.self).uppercased() == "ACK",
              let offset = Int64(String(decoding: arguments[2], as: UTF8.self)) else { return }
        self.context.replication.primary.acknowledged(client.id, offset: offset)
    }

    /// No request after this one runs: those queued are dropped, later input is ignored, and the connection
    /// closes once the replies already made are out.
    private func stopRunningCommands() {
        advance(to: .finishing)
    }

    /// Moves the connection on in its life (never back: a later step than `next` is kept), dropping the requests
    /// queued, which can no longer run.
    private func advance(to next: ConnectionLifecycle) {
        assert(next != .open, "a connection never reopens")
        lifecycle = max(lifecycle, next)
        queued.removeAll()
        queuedStart = 0
    }

    private func countCommands() {
        guard uncountedCommands > 0 else { return }
        self.context.totalCommands.wrappingAdd(uncountedCommands, ordering: .relaxed)
        uncountedCommands = 0
    }

    /// Whether a request may run now rather than wait in `queued`.
    private func canRunNow() -> Bool {
        !slowCommandRunning && channelWritable && output.readableBytes < Self.backlogLimit
    }

    /// Runs queued requests while nothing holds them back, then sends the replies and resumes reading.
    private func runQueued(context: ChannelHandlerContext) {
        // Writing replies can report a writability change, which calls back here: one drain at a time.
        guard !drainingQueue else { return }
        drainingQueue = true
        defer { drainingQueue = false }
        while queuedStart < queued.count, canRunNow(), lifecycle.runsCommands {
            let arguments = queued[queuedStart]
            queuedStart += 1
            run(arguments, context: context)
        }
        if queuedStart == queued.count {
            queued.removeAll(keepingCapacity: true)
            queuedStart = 0
        }
        sendOutput(context: context)
        updateReading(context: context)
    }

    // MARK: Statistics

    /// Counts a GET or SET run in place, whose reply starts at `replyStart` in `output`: it took the time since
    /// `commandClock`.
    @inline(__always)
    private func recordInPlace(_ request: BorrowedRequest, replyStart: Int) {
        let now = monotonicNanoseconds()
        let elapsed = now &- commandClock
        commandClock = now
        let id = request.arguments.count == 2 ? CommandNames.get : CommandNames.set
        statistics.record(id, nanoseconds: elapsed)
        if output.getInteger(at: replyStart, as: UInt8.self) == UInt8(ascii: "-"),
           let line = output.getBytes(at: replyStart + 1, length: min(64, output.writerIndex - replyStart - 1)) {
            statistics.recordError(line, command: id)
        }
        if slowLog.isSlow(microseconds: elapsed / 1000) {
            slowLog.add(request.copied(), microseconds: elapsed / 1000, client: client)
        }
    }

    /// Counts a command of the general path that began at `started` and replied `reply`. An unknown command counts
    /// only as an error; one refused before it ran (arity, syntax) as rejected, not as a call; as in Redis.
    private func record(_ arguments: [[UInt8]], reply: RESPValue, started: UInt64) {
        let now = monotonicNanoseconds()
        commandClock = now
        let elapsed = now &- started
        var errorMessage: String?
        if case .error(let message) = reply { errorMessage = message }
        if let errorMessage, errorMessage.hasPrefix("ERR unknown command") {
            statistics.recordError(errorMessage.utf8, command: nil)
            return
        }
        // Named as sent, as Redis names it: DEL and kvsh's DELETE apart.
        let id = statistics.id(for: String(decoding: arguments[0], as: UTF8.self).uppercased())
        if let errorMessage {
            statistics.recordError(errorMessage.utf8, command: id)
            if LoopStatistics.isRejection(errorMessage.utf8) { return }
        }
        statistics.record(id, nanoseconds: elapsed)
        if slowLog.isSlow(microseconds: elapsed / 1000) {
            slowLog.add(arguments, microseconds: elapsed / 1000, client: client)
        }
    }

    // MARK: Output

    /// Hands the collected replies on: straight to the socket, or to the committer when they acknowledge
    /// writes, or (while earlier replies wait for a commit) keeps them queued behind those.
    private func sendOutput(context: ChannelHandlerContext) {
        guard !waitingForCommit, lifecycle.sendsReplies else { return }
        // With `--sync always`, replies that acknowledge nothing (a GET, say) may still show writes that other
        // connections made and that are not on disk yet: those replies wait for the same commit, as Redis sends
        // no reply before the fsync of its event-loop pass, so no client ever sees a value a crash could undo.
        if !outputNeedsCommit, output.readableBytes > 0, syncAlways, store.hasUnsyncedWrites {
            outputNeedsCommit = true
        }
        if outputNeedsCommit {
            waitingForCommit = true
            outputNeedsCommit = false
            awaitingAcknowledgesWrites = outputAcknowledgesWrites
            outputAcknowledgesWrites = false
            awaitingCommit = takeOutput()
            committer.enqueue(self, context: context)
            return
        }
        if output.readableBytes > 0 {
            if idleTimeout != nil { lastInteraction = context.eventLoop.now }
            // Take the replies out first: writing can call back into this handler (writability changes).
            context.writeAndFlush(wrapOutboundOut(takeOutput()), promise: nil)
        }
        if !lifecycle.runsCommands && !slowCommandRunning {
            context.flush()  // replies written by commitFinished go out before the close
            context.close(promise: nil)
        }
    }

    /// Takes the collected replies out of `output`, leaving it empty. `output` then reuses the buffer of an earlier
    /// batch (`spare`) when the socket has let go of it, so that a batch of replies usually allocates nothing.
    private func takeOutput() -> ByteBuffer {
        let replies = output
        statistics.netOutputBytes &+= UInt64(replies.readableBytes)
        swap(&output, &spare)  // `spare` now shares the storage of `replies`, for a later batch
        output.clear()  // allocates fresh storage only if the socket still holds this one
        // A connection that once sent a huge reply should not keep a buffer that size while idle.
        if spare.capacity > Self.largestKeptBuffer { spare = ByteBuffer() }
        if output.capacity > Self.largestKeptBuffer { output = ByteBuffer() }
        return replies
    }

    /// Called by the committer once the writes the replies in `awaitingCommit` acknowledge are durable (or not).
    func commitFinished(_ result: Result<Void, any Error>, context: ChannelHandlerContext) {
        var result = result
        if case .failure(let error) = result, error is WritesFenced, !awaitingAcknowledgesWrites {
            result = .success(())  // fencing withholds acknowledgements of writes; these replies acknowledge none
        }
        waitingForCommit = false
        let replies = awaitingCommit
        awaitingCommit = ByteBuffer()
        switch result {
        case .success:
            if idleTimeout != nil { lastInteraction = context.eventLoop.now }
            context.writeAndFlush(wrapOutboundOut(replies), promise: nil)
            runQueued(context: context)
        case .failure(let error):
            // The replies would acknowledge writes that are not durable: withhold them and end the connection.
            // Nothing more is read, run or sent on it but the error (the store refuses writes from now on).
            if let fenced = error as? WritesFenced {
                self.context.logger.warning("writes fenced; closing the connection without acknowledging them",
                                            metadata: ["client": "\(client.id)", "reason": "\(fenced.message)"])
            } else {
                self.context.logger.error("commit failed; closing the connection without acknowledging its writes",
                                          metadata: ["client": "\(client.id)", "error": "\(error)"])
            }
            advance(to: .commitFailed)
            output.clear()
            outputNeedsCommit = false
            updateReading(context: context)
            var message = context.channel.allocator.buffer(capacity: 256)
            RESPValue.error((error as? WritesFenced)?.message ?? "ERR write-ahead log failed, writes are not acknowledged: \(error)")
                .write(to: &message, protocolVersion: client.protocolVersion)
            let channel = context.channel
            context.writeAndFlush(wrapOutboundOut(message)).whenComplete { _ in channel.close(promise: nil) }
        }
    }

    /// Reads only while the client keeps up with its replies and no slow command or commit backlog is pending.
    private func updateReading(context: ChannelHandlerContext) {
        let shouldRead = canRunNow() && queuedStart == queued.count && lifecycle.readsInput
        guard shouldRead != reading else { return }
        reading = shouldRead
        context.channel.setOption(ChannelOptions.autoRead, value: shouldRead).whenFailure { _ in }
    }
}
