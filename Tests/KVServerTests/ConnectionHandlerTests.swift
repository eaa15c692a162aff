// ConnectionHandler on an EmbeddedChannel, for what the network cannot stage on demand: NIO calling back into the
// handler from inside one of its own writes; and the registry behind CLIENT LIST.

@testable import KVStore
import KVTestSupport
import Logging
import NIOCore
import NIOEmbedded
import NIOPosix
import Testing
@testable import KVServer
@testable import KVCommands
@testable import RESP

/// Does what NIO does when a write to the socket fails (the client reset the connection): from inside the write,
/// it drains the socket (`channelRead`, `channelReadComplete`) and then closes the channel.
private final class FailingWrite: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    /// What the socket still holds when the write fails; nil until a write is to fail.
    var unreadInput: ByteBuffer?
    private(set) var writesBeforeFailure: [ByteBuffer] = []

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard let input = unreadInput else {
            writesBeforeFailure.append(unwrapOutboundIn(data))
            context.write(data, promise: promise)
            return
        }
        unreadInput = nil
        promise?.fail(ChannelError.ioOnClosedChannel)
        context.fireChannelRead(NIOAny(input))
        context.fireChannelReadComplete()
        context.close(promise: nil)
    }
}

/// Runs `body` with a store in a fresh directory and the server context around it.
private func withServerContext(syncPolicy: KVStore.SyncPolicy, idleTimeout: Int = 0,
                               fileSystem: any FileSystem = POSIXFileSystem(),
                               _ body: (KVStore, ServerContext) throws -> Void) throws {
    try withTempDir { directory in
        let store = try KVStore(directory: directory, options: KVStore.Options(syncPolicy: syncPolicy, fileSystem: fileSystem))
        defer { try? store.close() }
        let threadPool = NIOThreadPool(numberOfThreads: 1)
        threadPool.start()
        defer { try? threadPool.syncShutdownGracefully() }
        let configuration = KVServer.Configuration(idleTimeout: idleTimeout)
        try body(store, ServerContext(store: store, configuration: configuration, logger: Logger(label: "test"), threadPool: threadPool))
    }
}

/// A connection on its own EmbeddedChannel: `first` (if any), then a ConnectionHandler with its loop's committer.
private func connection(_ context: ServerContext, after first: (any ChannelHandler)? = nil) throws -> EmbeddedChannel {
    let channel = EmbeddedChannel()
    if let first { try channel.pipeline.syncOperations.addHandler(first) }
    try channel.pipeline.syncOperations.addHandler(ConnectionHandler(
        context: context, committer: GroupCommitter(eventLoop: channel.embeddedEventLoop, store: context.store, replication: context.replication),
        decoder: RESPRequestDecoder()))
    return channel
}

@Suite("Connection handler")
struct ConnectionHandlerTests {
    @Test("a write that fails mid-decode: NIO's drained input is not decoded inside the decoder, and nothing more runs")
    func writeFailsDuringDecode() throws {
        try withServerContext(syncPolicy: .none) { store, context in
            let big = [UInt8](repeating: UInt8(ascii: "v"), count: 40 << 10)
            _ = try store.set(bytes("big"), big)
            let failing = FailingWrite()
            let channel = try connection(context, after: failing)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 7379)).wait()

            // One read: two GETs of a 40 KiB value pass the 64 KiB flush threshold, so the handler writes while it
            // is still decoding; that write fails, with a SET still unread in the socket. Then one more SET.
            failing.unreadInput = ByteBuffer(bytes: encodeCommand("SET", "drained", "x"))
            var read = encodeCommand("GET", "big") + encodeCommand("GET", "big")
            read += encodeCommand("SET", "after", "y")
            try channel.writeInbound(ByteBuffer(bytes: read))

            #expect(!channel.isActive, "the failed write closed the channel")
            #expect(failing.writesBeforeFailure.isEmpty, "the first write is the one that fails")
            // Neither the drained SET nor the rest of the read ran: no reply could have reached the client.
            #expect(store.get(bytes("drained")) == nil)
            #expect(store.get(bytes("after")) == nil)
            _ = try? channel.finish()
        }
    }

    @Test("with --sync always, a GET that sees another connection's write not yet on disk is answered after the fsync")
    func readsWaitForDurability() throws {
        let disk = FaultInjectionFileSystem()
        try withServerContext(syncPolicy: .always, fileSystem: disk) { store, context in
            // Two connections on two loops, each with its loop's committer; a loop's commit runs when the loop runs.
            let writer = try connection(context)
            let reader = try connection(context)
            func replies(_ channel: EmbeddedChannel) throws -> String {
                var bytes: [UInt8] = []
                while let buffer = try channel.readOutbound(as: ByteBuffer.self) { bytes += Array(buffer.readableBytesView) }
                return String(decoding: bytes, as: UTF8.self)
            }

            try writer.writeInbound(ByteBuffer(bytes: encodeCommand("SET", "k", "v")))
            #expect(try replies(writer) == "", "a SET is acknowledged only after its commit")
            #expect(store.hasUnsyncedWrites)
            try reader.writeInbound(ByteBuffer(bytes: encodeCommand("GET", "k") + encodeCommand("EXISTS", "k")))
            #expect(try replies(reader) == "", "the GET saw a write that a crash could still undo")
            reader.embeddedEventLoop.run()  // the reader's loop commits: the fsync covers the writer's SET too
            #expect(!store.hasUnsyncedWrites)
            #expect(try replies(reader) == "$1\r\nv\r\n:1\r\n")
            writer.embeddedEventLoop.run()
            #expect(try replies(writer) == "+OK\r\n")

            // With nothing pending, a read goes out at once.
            try reader.writeInbound(ByteBuffer(bytes: encodeCommand("GET", "k")))
            #expect(try replies(reader) == "$1\r\nv\r\n")

            // Once a failed write has disabled writes, nothing will sync what is pending: reads go out at once
            // rather than into commits that can only fail (which would close every connection).
            try writer.writeInbound(ByteBuffer(bytes: encodeCommand("SET", "k", "w")))
            disk.inject(.fdatasync, errno: EIO)
            #expect(throws: StoreError.self) { try store.commit() }  // another connection's commit fails
            #expect(!store.hasUnsyncedWrites)
            try reader.writeInbound(ByteBuffer(bytes: encodeCommand("PING")))
            #expect(try replies(reader) == "+PONG\r\n")
            writer.embeddedEventLoop.run()  // the writer's commit fails: its SET is not acknowledged
            #expect(try replies(writer).hasPrefix("-ERR write-ahead log failed"))
            _ = try? writer.finish()
            _ = try? reader.finish()
        }
    }

    @Test("the idle timeout, on virtual time: a client idle that long is closed; a request restarts the count")
    func idleTimeout() throws {
        try withServerContext(syncPolicy: .none, idleTimeout: 1) { _, context in
            let channel = try connection(context)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 7379)).wait()
            channel.embeddedEventLoop.advanceTime(by: .milliseconds(900))
            #expect(channel.isActive, "closed before the timeout")
            try channel.writeInbound(ByteBuffer(bytes: encodeCommand("PING")))
            #expect(try channel.readOutbound(as: ByteBuffer.self).map { String(buffer: $0) } == "+PONG\r\n")
            channel.embeddedEventLoop.advanceTime(by: .milliseconds(999))
            #expect(channel.isActive, "the PING 999 ms ago restarted the count")
            channel.embeddedEventLoop.advanceTime(by: .milliseconds(1))
            #expect(!channel.isActive, "idle for the whole timeout since the PING, and still open")
            _ = try? channel.finish()
        }
    }

    @Test("with no idle timeout (0, the default) a client idle for a day stays")
    func noIdleTimeout() throws {
        try withServerContext(syncPolicy: .none) { _, context in
            let channel = try connection(context)
            try channel.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 7379)).wait()
            channel.embeddedEventLoop.advanceTime(by: .hours(24))
            #expect(channel.isActive)
            _ = try? channel.finish()
        }
    }

    @Test("the client registry: a closed connection's late update (a command queued behind a slow one) does not bring it back")
    func registryIgnoresUpdatesAfterRemoval() {
        let registry = ClientRegistry()
        var client = ClientState(id: 7)
        registry.add(client)
        registry.add(ClientState(id: 3))
        client.name = bytes("renamed")
        registry.update(client)
        #expect(registry.all().map(\.id) == [3, 7])
        #expect(registry.entries([7, 99, 3, 7]).map(\.id) == [7, 3, 7])
        #expect(registry.entries([7]).first?.name == bytes("renamed"))
        registry.remove(id: 7)
        registry.update(client)
        #expect(registry.all().map(\.id) == [3])
    }

    @Test("local connections (loopback, IPv4 or IPv6) are told apart from remote ones, for KVSH.BACKUP/REBUILD paths")
    func localClients() {
        func client(_ address: String) -> ClientState {
            var state = ClientState(id: 1)
            state.address = address
            return state
        }
        #expect(client("127.0.0.1:5000").isLocal && client("[::1]:5000").isLocal && client("[::ffff:127.0.0.1]:5000").isLocal)
        #expect(!client("10.0.0.7:5000").isLocal && !client("[fe80::1]:5000").isLocal && !client("?").isLocal)
        #expect(!client("[::10]:5000").isLocal, "only ::1 itself")
    }
}
