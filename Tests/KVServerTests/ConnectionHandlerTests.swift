// ConnectionHandler on an EmbeddedChannel, for what the network cannot stage on demand: NIO calling back into the
// handler from inside one of its own writes; and the registry behind CLIENT LIST.

import KVStore
import KVTestSupport
import Logging
import NIOCore
import NIOEmbedded
import NIOPosix
import Testing
@testable import KVServer

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

@Suite("Connection handler")
struct ConnectionHandlerTests {
    @Test("a write that fails mid-decode: NIO's drained input is not decoded inside the decoder, and nothing more runs")
    func writeFailsDuringDecode() throws {
        try withTempDir { directory in
            let store = try KVStore(directory: directory, syncPolicy: .none)
            defer { store.close() }
            let big = [UInt8](repeating: UInt8(ascii: "v"), count: 40 << 10)
            _ = try store.set(bytes("big"), big)
            let threadPool = NIOThreadPool(numberOfThreads: 1)
            threadPool.start()
            defer { try? threadPool.syncShutdownGracefully() }
            let context = ServerContext(store: store, configuration: .init(), logger: Logger(label: "test"), threadPool: threadPool)
            let channel = EmbeddedChannel()
            let failing = FailingWrite()
            try channel.pipeline.syncOperations.addHandler(failing)
            try channel.pipeline.syncOperations.addHandler(ConnectionHandler(
                context: context, committer: GroupCommitter(eventLoop: channel.embeddedEventLoop, store: store),
                decoder: RESPRequestDecoder()))
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
}
