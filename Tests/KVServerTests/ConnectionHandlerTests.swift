// ConnectionHandler on an EmbeddedChannel, for what the network cannot stage on demand: NIO calling back into the
// handler from inside one of its own writes.

import KVStore
import KVTestSupport
import Logging
import NIOCore
import NIOEmbedded
import NIOPosix
import Testing
@testable import KVServer

/// Does what NIO does when a write to the socket fails (the client reset the connection): before closing, it
/// drains the socket, firing `channelRead` from inside the write.
private final class DrainDuringWrite: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    var pendingInput: ByteBuffer?

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        context.write(data, promise: promise)
        if let input = pendingInput {
            pendingInput = nil
            context.fireChannelRead(NIOAny(input))
        }
    }
}

@Suite("Connection handler")
struct ConnectionHandlerTests {
    @Test("input NIO drains into the handler from inside a write made mid-decode is dropped, and the read goes on")
    func readDuringWrite() throws {
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
            let drain = DrainDuringWrite()
            try channel.pipeline.syncOperations.addHandler(drain)
            try channel.pipeline.syncOperations.addHandler(ConnectionHandler(
                context: context, committer: GroupCommitter(eventLoop: channel.embeddedEventLoop, store: store),
                decoder: RESPRequestDecoder()))

            // Four GETs of a 40 KiB value in one read: the replies pass the 64 KiB flush threshold after the second,
            // so the handler writes while it is still decoding, and that write delivers more input.
            drain.pendingInput = ByteBuffer(bytes: encodeCommand("PING", "drained"))
            try channel.writeInbound(ByteBuffer(bytes: Array(repeating: encodeCommand("GET", "big"), count: 4).joined()))
            var replies: [UInt8] = []
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) { replies += Array(buffer.readableBytesView) }
            let oneReply = Array("$\(big.count)\r\n".utf8) + big + Array("\r\n".utf8)
            #expect(replies == Array(repeating: oneReply, count: 4).joined().map { $0 }, "got \(replies.count) bytes, expected 4 replies")
            #expect(drain.pendingInput == nil, "the write delivered the drained input")

            // The connection still decodes what comes next.
            try channel.writeInbound(ByteBuffer(bytes: encodeCommand("PING")))
            var pong: [UInt8] = []
            while let buffer = try channel.readOutbound(as: ByteBuffer.self) { pong += Array(buffer.readableBytesView) }
            #expect(pong == Array("+PONG\r\n".utf8))
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
