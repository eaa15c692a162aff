#if canImport(Glibc)
import Glibc
#endif
import KVCommands
import KVStore
import Logging
import NIOCore
import NIOSSL
import NIOPosix
import RDB
import RESP
import Synchronization

/// The replica side of replication: connects to the primary, shakes hands as a Redis 7.0 replica does (PING,
/// REPLCONF listening-port, REPLCONF capa eof capa psync2, PSYNC), loads a full copy into a new image and switches to
/// it whole, then applies the command stream, recording in its log how far it got and acknowledging that offset. A
/// link that breaks, stalls past `repl-timeout` or sends garbage is closed and tried again with back-off; the store
/// keeps serving the last consistent data meanwhile.
final class ReplicaLink: Sendable {
    /// Redis's `master_link_status` / ROLE states.
    enum LinkState: String, Sendable {
        case connect, connecting, handshake, sync, connected
    }

    struct Status: Sendable {
        var state: LinkState = .connect
        var downSince: ContinuousClock.Instant? = .now
        var lastInteraction: ContinuousClock.Instant = .now
        var syncBytesReceived = 0
        var fullSyncs = 0
        var partialSyncs = 0
        var lastError: String?
    }

    let host: String
    let port: Int
    let context: ServerContext
    /// This store was a primary until it became this link's replica: if the new primary cannot continue its stream
    /// (it wrote what was never replicated), the full copy keeps the old files aside instead of dropping them.
    let formerPrimary: Bool
    private let loop: any EventLoop
    let status = Mutex(Status())
    private let channel = Mutex<(any Channel)?>(nil)
    private let stopped = Atomic<Bool>(false)
    private let attempts = Atomic<Int>(0)

    init(host: String, port: Int, context: ServerContext, loop: any EventLoop, formerPrimary: Bool = false) {
        self.host = host
        self.port = port
        self.context = context
        self.formerPrimary = formerPrimary
        self.loop = loop
    }

    var logger: Logger { context.logger }

    func start() {
        connect()
    }

    func stop() {
        stopped.store(true, ordering: .releasing)
        channel.withLock { $0 }?.close(promise: nil)
    }

    var isStopped: Bool { stopped.load(ordering: .acquiring) }

    private func connect() {
        guard !isStopped else { return }
        if let failure = context.store.writeFailure {
            // Whatever it applied now could not be made durable, so it must not acknowledge anything: it stops here.
            status.withLock { $0.lastError = "the store refuses writes (\(failure)); not replicating until kvsh serve is restarted" }
            logger.error("not replicating: the store refuses writes after a failed write or fsync; restart kvsh serve once the disk is fixed",
                         metadata: ["error": "\(failure)"])
            return
        }
        status.withLock {
            $0.state = .connecting
            $0.lastInteraction = .now
        }
        let link = self
        // --tls-replication: the context current now, so that a link made after a certificate reload presents the new one.
        let tls = context.configuration.tlsReplication ? context.configuration.tls?.client : nil
        // SNI carries names only; an address is sent without it.
        let serverName = (try? SocketAddress(ipAddress: host, port: 0)) == nil ? host : nil
        ClientBootstrap(group: loop)
            .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(Int64(max(1, context.replication.settings.timeout))))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    if let tls { try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls, serverHostname: serverName)) }
                    try channel.pipeline.syncOperations.addHandler(ReplicaLinkHandler(link: link))
                }
            }
            .connect(host: host, port: port)
            .whenComplete { [self] result in
                switch result {
                case .success(let connected):
                    channel.withLock { $0 = connected }
                    if isStopped { connected.close(promise: nil) }
                    connected.closeFuture.whenComplete { [self] _ in linkClosed() }
                case .failure(let error):
                    linkFailed("cannot connect to the primary \(host):\(port): \(error)")
                }
            }
    }

    func linkFailed(_ reason: String) {
        status.withLock { $0.lastError = reason }
        logger.warning("replication link failed; will retry", metadata: ["primary": "\(host):\(port)", "reason": "\(reason)"])
        retryLater()
    }

    private func linkClosed() {
        channel.withLock { $0 = nil }
        status.withLock { status in
            if status.state == .connected { status.downSince = .now }
            status.state = .connect
        }
        retryLater()
    }

    /// Back-off: 1 s after the first failure, doubling to at most 8 s; reset once a sync succeeds.
    private func retryLater() {
        guard !isStopped else { return }
        status.withLock { $0.state = .connect }
        let attempt = attempts.wrappingAdd(1, ordering: .relaxed).oldValue
        let delay = Int64(min(8, 1 << min(attempt, 3)))
        loop.scheduleTask(in: .seconds(delay)) { [self] in connect() }
    }

    func synced(full: Bool) {
        attempts.store(0, ordering: .relaxed)
        status.withLock { status in
            status.state = .connected
            status.downSince = nil
            status.lastError = nil
            if full { status.fullSyncs += 1 } else { status.partialSyncs += 1 }
        }
    }
}

/// One connection of a replica to its primary, as a state machine over the bytes it receives.
final class ReplicaLinkHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum Phase {
        case awaitingPong
        case awaitingAuth
        case awaitingReplconf(remaining: Int)
        case awaitingPsyncReply
        case awaitingBulkPreamble(replid: [UInt8], offset: Int64)
        case loadingRDB(RDBLoad)
        case streaming
        /// A full copy is being worked on (moved out of the phase meanwhile, so that it is not copied).
        case loading
        case failed
    }

    /// A full copy as it arrives.
    struct RDBLoad {
        var replid: [UInt8]
        var offset: Int64
        var reader = RDBReader()
        /// `$EOF:` framing: the mark that follows the RDB; otherwise the RDB's length.
        var mark: [UInt8]?
        var remaining: Int
        var replacement = KVStore.Replacement()
        var database = 0
        var skippedOtherDatabases = 0
    }

    private unowned let link: ReplicaLink
    private var phase = Phase.awaitingPong
    private var input = ByteBuffer()
    private var decoder = RESPRequestDecoder()
    /// Bytes of a stream command the decoder holds while the rest of it has not arrived.
    private var partialCommandBytes: Int64 = 0
    /// The stream this replica follows and the offset of the last byte applied.
    private var replid: [UInt8] = ReplicationPosition.noReplid
    private var offset: Int64 = 0
    /// The offset last recorded in the log (and acknowledged).
    private var recordedOffset: Int64 = 0
    private var database = 0
    private var ackTimer: RepeatedTask?
    private var timeoutCheck: RepeatedTask?
    private var lastData = NIODeadline.now()

    init(link: ReplicaLink) {
        self.link = link
    }

    private var store: KVStore { link.context.store }
    private var logger: Logger { link.logger }

    func channelActive(context: ChannelHandlerContext) {
        link.status.withLock { $0.state = .handshake }
        send(["PING"], context: context)
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        let timeout = TimeAmount.seconds(Int64(link.context.replication.settings.timeout))
        lastData = .now()
        timeoutCheck = context.eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            let (handler, context) = bound.value
            if NIODeadline.now() - handler.lastData > timeout {
                handler.fail("no data from the primary for \(handler.link.context.replication.settings.timeout) s (repl-timeout)", context: context)
            }
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        ackTimer?.cancel()
        timeoutCheck?.cancel()
        if case .loadingRDB = phase {
            logger.warning("the link dropped during a full copy; the data stays as it was before it", metadata: ["primary": "\(link.host):\(link.port)"])
        }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail("link error: \(error)", context: context)
    }

    private func send(_ arguments: [String], context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: 64)
        RESPValue.writeCommand(arguments.map { Array($0.utf8) }, to: &buffer)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    private func fail(_ reason: String, context: ChannelHandlerContext) {
        guard !link.isStopped else { context.close(promise: nil); return }
        if case .failed = phase { return }
        phase = .failed
        link.status.withLock { $0.lastError = reason }
        logger.error("replication link closed", metadata: ["primary": "\(link.host):\(link.port)", "reason": "\(reason)"])
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var bytes = unwrapInboundIn(data)
        lastData = .now()
        link.status.withLock { $0.lastInteraction = .now }
        input.writeBuffer(&bytes)
        do {
            try process(context: context)
        } catch {
            fail("\(error)", context: context)
        }
        if input.readableBytes == 0 { input.clear() } else { input.discardReadBytes() }
    }

    /// A reply line (`+...`, `-...`, `$...`), skipping the bare newlines a primary sends while it prepares.
    private func readLine() -> String? {
        while input.readableBytes > 0, input.readableBytesView.first == UInt8(ascii: "\n") { input.moveReaderIndex(forwardBy: 1) }
        guard let newline = input.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
            return nil
        }
        let length = newline - input.readerIndex
        guard let line = input.readString(length: length) else { return nil }
        input.moveReaderIndex(forwardBy: 1)
        return line.hasSuffix("\r") ? String(line.dropLast()) : line
    }

    /// The handshake after PING (and AUTH): REPLCONF listening-port, ip-address, capa.
    private func sendReplconf(context: ChannelHandlerContext) {
        let settings = link.context.replication.settings
        let port = settings.announcePort ?? link.context.port.load(ordering: .relaxed)
        send(["REPLCONF", "listening-port", String(port)], context: context)
        var replies = 2
        if let ip = settings.announceIP {
            send(["REPLCONF", "ip-address", ip], context: context)
            replies += 1
        }
        // `capa kvsh`: this replica acknowledges after every batch it applies; a Redis primary ignores it.
        send(["REPLCONF", "capa", "eof", "capa", "psync2", "capa", "kvsh"], context: context)
        phase = .awaitingReplconf(remaining: replies)
    }

    private func process(context: ChannelHandlerContext) throws {
        while true {
            switch phase {
            case .awaitingPong:
                guard input.readableBytes < 64 << 10 else { throw LinkError("reply line too long") }
                guard let line = readLine() else { return }
                guard line.hasPrefix("+") || line.hasPrefix("-NOAUTH") || line.hasPrefix("-NOPERM") || line.hasPrefix("-ERR operation not permitted") else {
                    throw LinkError("the primary answered PING with \(line)")
                }
                let settings = link.context.replication.settings
                // As a Redis replica: AUTH [masteruser] masterauth between PING and REPLCONF.
                if let password = settings.masterAuth {
                    send(["AUTH"] + (settings.masterUser.map { [$0] } ?? []) + [password], context: context)
                    phase = .awaitingAuth
                    continue
                }
                sendReplconf(context: context)
            case .awaitingAuth:
                guard input.readableBytes < 64 << 10 else { throw LinkError("reply line too long") }
                guard let line = readLine() else { return }
                guard line.hasPrefix("+") else {
                    throw LinkError("the primary refused AUTH (check --masteruser and --masterauth): \(line)")
                }
                sendReplconf(context: context)
            case .awaitingReplconf(let remaining):
                guard let line = readLine() else { return }
                if line.hasPrefix("-") { logger.notice("the primary refused a REPLCONF (ignored, as Redis does)", metadata: ["reply": "\(line)"]) }
                if remaining > 1 {
                    phase = .awaitingReplconf(remaining: remaining - 1)
                } else {
                    // The next byte wanted: one past what this store has, or a full copy if it has nothing.
                    let position = store.replicationPosition
                    if let position, position.replid != ReplicationPosition.noReplid {
                        replid = position.replid
                        offset = position.offset
                        send(["PSYNC", position.replidText, String(position.offset + 1)], context: context)
                    } else {
                        send(["PSYNC", "?", "-1"], context: context)
                    }
                    phase = .awaitingPsyncReply
                }
            case .awaitingPsyncReply:
                guard let line = readLine() else { return }
                let words = line.split(separator: " ")
                if words.first == "+FULLRESYNC", words.count == 3, words[1].utf8.count == 40, let start = Int64(words[2]) {
                    link.status.withLock { $0.state = .sync }
                    phase = .awaitingBulkPreamble(replid: Array(words[1].utf8), offset: start)
                    logger.info("full sync from the primary", metadata: ["primary": "\(link.host):\(link.port)", "replid": "\(words[1])", "offset": "\(start)"])
                } else if words.first == "+CONTINUE" {
                    if words.count == 2, words[1].utf8.count == 40, Array(words[1].utf8) != replid {
                        // The primary's stream has a new id (it was promoted): the same bytes, a new name.
                        replid = Array(words[1].utf8)
                        try store.applyReplicated(replid: replid, offset: offset) {}
                    }
                    recordedOffset = offset
                    logger.info("partial resync: continuing the stream", metadata: ["primary": "\(link.host):\(link.port)", "offset": "\(offset)"])
                    startStreaming(context: context, full: false)
                } else if line.hasPrefix("-NOMASTERLINK") || line.hasPrefix("-LOADING") {
                    throw LinkError("the primary cannot sync now (\(line))")
                } else {
                    throw LinkError("unexpected reply to PSYNC: \(line)")
                }
            case .awaitingBulkPreamble(let replid, let start):
                guard let line = readLine() else { return }
                guard line.hasPrefix("$") else { throw LinkError("expected the RDB's preamble, got \(line.prefix(60))") }
                var load = RDBLoad(replid: replid, offset: start, remaining: 0)
                if line.hasPrefix("$EOF:") {
                    let mark = Array(line.utf8.dropFirst(5))
                    guard mark.count == 40 else { throw LinkError("bad EOF mark in the RDB preamble") }
                    load.mark = mark
                } else {
                    guard let length = Int(line.dropFirst()), length >= 0 else { throw LinkError("bad RDB length \(line)") }
                    load.remaining = length
                }
                phase = .loadingRDB(load)
            case .loadingRDB(var load):
                phase = .loading  // `load` is moved out while it is worked on
                let done = try loadRDB(&load)
                if !done {
                    phase = .loadingRDB(load)
                    return
                }
                try finishFullSync(load, context: context)
            case .streaming:
                try applyStream(context: context)
                return
            case .loading, .failed:
                input.clear()
                return
            }
        }
    }

    /// Feeds what arrived to the RDB reader; true once the whole RDB (and its mark) is in.
    private func loadRDB(_ load: inout RDBLoad) throws -> Bool {
        if !load.reader.isFinished {
            if load.mark == nil {
                let take = min(load.remaining, input.readableBytes)
                input.withUnsafeReadableBytes { load.reader.feed(UnsafeRawBufferPointer(rebasing: $0[..<take])) }
                input.moveReaderIndex(forwardBy: take)
                load.remaining -= take
            } else {
                input.withUnsafeReadableBytes { load.reader.feed($0) }
                input.moveReaderIndex(forwardBy: input.readableBytes)
            }
            link.status.withLock { $0.syncBytesReceived = load.reader.consumedByteCount }
            while let event = try load.reader.next() {
                switch event {
                case .selectDB(let index):
                    load.database = index
                case .entry(let key, let value, _):
                    // A key with a TTL is kept without one (kvsh keys do not expire); the primary's DEL removes it.
                    guard load.database == 0 else {
                        load.skippedOtherDatabases += 1
                        continue
                    }
                    try load.replacement.set(key, value)
                case .aux, .resizeDB, .end:
                    continue
                }
            }
            guard load.reader.isFinished else {
                if load.mark == nil, load.remaining == 0 { throw LinkError("the RDB ended before its EOF opcode") }
                return false
            }
            // What the reader was given past the RDB goes back in front of the input: the mark, then stream bytes.
            var rest = ByteBuffer(bytes: load.reader.takeTrailingBytes())
            if load.mark == nil, rest.readableBytes > 0 {
                throw LinkError("\(rest.readableBytes) bytes after the RDB's checksum within its length")
            }
            rest.writeBuffer(&input)
            input = rest
        }
        guard let mark = load.mark else { return true }
        guard input.readableBytes >= mark.count else { return false }  // the mark is split across reads
        guard input.readBytes(length: mark.count) == mark else { throw LinkError("the RDB's EOF mark does not match") }
        return true
    }

    private func finishFullSync(_ load: RDBLoad, context: ChannelHandlerContext) throws {
        if load.skippedOtherDatabases > 0 {
            logger.warning("keys in databases other than 0 were not copied (kvsh has one database)",
                           metadata: ["keys": "\(load.skippedOtherDatabases)"])
        }
        let position = ReplicationPosition(role: .replica, replid: load.replid, offset: load.offset)
        var keepAside: String?
        let ownOffset = store.replicationPosition?.offset ?? 0
        if store.count > 0 && (link.formerPrimary || ownOffset > load.offset) {
            // A former primary may hold writes nobody acknowledged; a replica further along than the copy holds stream
            // the new primary never had. Neither is dropped unseen.
            keepAside = "diverged-" + Self.timestamp()
            logger.warning("this node's data differs from the new primary's: its files are kept aside before the full copy",
                           metadata: ["kept-in": "\(keepAside ?? "")", "keys": "\(store.count)", "offset": "\(ownOffset)",
                                      "primary-offset": "\(load.offset)", "former-primary": "\(link.formerPrimary)"])
        }
        try store.replaceContents(with: load.replacement, position: position, keepAside: keepAside)
        replid = load.replid
        offset = load.offset
        recordedOffset = offset
        database = 0
        logger.info("full sync loaded", metadata: ["keys": "\(load.replacement.count)", "offset": "\(offset)"])
        startStreaming(context: context, full: true)
    }

    private func startStreaming(context: ChannelHandlerContext, full: Bool) {
        phase = .streaming
        link.synced(full: full)
        // The first ACK at once: a primary that sent the RDB with an EOF mark sends nothing more until it arrives.
        acknowledge(context: context)
        let bound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        ackTimer = context.eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            let (handler, context) = bound.value
            handler.acknowledge(context: context)
        }
    }

    private func acknowledge(context: ChannelHandlerContext) {
        send(["REPLCONF", "ACK", String(recordedOffset)], context: context)
    }

    // MARK: The command stream

    /// Applies every whole command that arrived, as one batch recorded with the offset it reaches; a GETACK ends a
    /// batch and is answered with the offset before it.
    private func applyStream(context: ChannelHandlerContext) throws {
        var batch: [[[UInt8]]] = []
        var batchEnd = offset
        func flushBatch() throws {
            guard batchEnd != recordedOffset || !batch.isEmpty else { return }
            let commands = batch
            try store.applyReplicated(replid: replid, offset: batchEnd) {
                for command in commands { try apply(command) }
            }
            try store.commit()
            batch.removeAll()
            offset = batchEnd
            recordedOffset = batchEnd
        }
        while input.readableBytes > 0 {
            let before = input.readerIndex
            guard let request = decoder.next(&input) else {
                // A command split across reads: the decoder keeps its first part; its bytes count when it completes.
                partialCommandBytes += Int64(input.readerIndex - before)
                break
            }
            let consumed = partialCommandBytes + Int64(input.readerIndex - before)
            partialCommandBytes = 0
            switch request {
            case .protocolError(let message):
                throw LinkError("protocol error in the replication stream: \(message)")
            case .command(let arguments):
                guard !arguments.isEmpty else { batchEnd += consumed; continue }
                let name = String(decoding: arguments[0], as: UTF8.self).uppercased()
                if name == "REPLCONF", arguments.count >= 2, String(decoding: arguments[1], as: UTF8.self).uppercased() == "GETACK" {
                    try flushBatch()
                    acknowledge(context: context)  // the offset before the GETACK, as Redis's replicas answer
                    batchEnd += consumed
                    continue
                }
                batch.append(arguments)
                batchEnd += consumed
            }
        }
        let applied = batchEnd != recordedOffset
        try flushBatch()
        // At once, not only every second: a primary's WAIT and --sync-replicas need no GETACK from a kvsh replica.
        if applied { acknowledge(context: context) }
    }

    /// Applies one command of the stream to the store, as the primary's effect: SET's expiry options are dropped (kvsh
    /// keys do not expire; the primary's later DEL removes the key), commands with no effect here are skipped, and
    /// commands on other types are logged and skipped.
    private func apply(_ arguments: [[UInt8]]) throws {
        let name = String(decoding: arguments[0], as: UTF8.self).uppercased()
        switch name {
        case "SELECT":
            database = arguments.count > 1 ? Int(String(decoding: arguments[1], as: UTF8.self)) ?? -1 : -1
            return
        case "PING", "PUBLISH", "MULTI", "EXEC", "REPLCONF", "EXPIRE", "PEXPIRE", "EXPIREAT", "PEXPIREAT", "PERSIST", "GETEX":
            return
        default:
            break
        }
        guard database == 0 else { return }
        var command = arguments
        switch name {
        case "SET":
            command = Self.withoutExpiry(arguments)
        case "SETEX", "PSETEX":
            guard arguments.count == 4 else { return }
            command = [Array("SET".utf8), arguments[1], arguments[3]]
        case "UNLINK":
            command[0] = Array("DEL".utf8)
        case "FLUSHALL", "FLUSHDB":
            var next: [UInt8]? = nil
            repeat {
                let page = store.keys(from: next, to: nil, limit: 1000)
                if !page.keys.isEmpty { try store.delete(page.keys) }
                next = page.next
            } while next != nil
            return
        default:
            break
        }
        guard let spec = CommandTable.lookup(command[0]), !spec.isMeta else {
            logger.error("skipping a command kvsh cannot apply (kvsh stores strings only)",
                         metadata: ["command": "\(name)", "key": "\(arguments.count > 1 ? String(decoding: arguments[1], as: UTF8.self) : "")"])
            return
        }
        guard spec.writesData else { return }
        do {
            _ = try link.context.executor.execute(spec, command)
        } catch let error as StoreError {
            throw error  // the disk: the link stops rather than skip a write
        } catch {
            logger.error("a command from the primary failed here and was skipped",
                         metadata: ["command": "\(name)", "error": "\(CommandError.redisText(for: error))"])
        }
    }

    /// UTC now as `YYYYMMDDTHHMMSSZ`.
    static func timestamp() -> String {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(parts.tm_year + 1900)\(two(parts.tm_mon + 1))\(two(parts.tm_mday))T\(two(parts.tm_hour))\(two(parts.tm_min))\(two(parts.tm_sec))Z"
    }

    private static let expiryWithArgument: Set<String> = ["EX", "PX", "EXAT", "PXAT"]

    static func withoutExpiry(_ arguments: [[UInt8]]) -> [[UInt8]] {
        var result: [[UInt8]] = Array(arguments.prefix(3))
        var index = 3
        while index < arguments.count {
            let option = String(decoding: arguments[index], as: UTF8.self).uppercased()
            if expiryWithArgument.contains(option) {
                index += 2
            } else if option == "KEEPTTL" {
                index += 1
            } else {
                result.append(arguments[index])
                index += 1
            }
        }
        return result
    }
}

struct LinkError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
