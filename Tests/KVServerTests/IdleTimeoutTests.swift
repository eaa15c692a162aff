// Dead and idle clients: TCP keepalive on accepted sockets (Redis's tcp-keepalive) and the idle timeout (Redis's
// timeout), on a real server. The idle timeout's arithmetic is tested on virtual time in ConnectionHandlerTests.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import NIOCore
import Testing
@testable import KVServer
@testable import KVCommands
@testable import RESP

@Suite("Dead and idle clients")
struct IdleTimeoutTests {
    /// The server side of the only client connection of `server` (which has answered a PING, so it is set up).
    private func acceptedChannel(_ server: TestServer) throws -> any Channel {
        let channels = server.server.clientChannels()
        try #require(channels.count == 1, "\(channels.count) client channels")
        return channels[0]
    }

    private func socketOption(_ channel: any Channel, _ level: NIOBSDSocket.OptionLevel, _ name: Int32) throws -> Int {
        try channel.getOption(ChannelOptions.Types.SocketOption(level: level, name: NIOBSDSocket.Option(rawValue: name))).wait()
    }

    @Test("accepted sockets get TCP keepalive as Redis's anetKeepAlive: idle, idle/3 between probes, 3 probes",
          arguments: [(300, 100), (7, 2), (2, 1)])
    func keepalive(idle: Int, interval: Int) throws {
        let server = try TestServer(configure: { $0.tcpKeepAlive = idle })
        defer { server.stop() }
        let client = try server.connect()
        #expect(try client.call("PING") == .simple("PONG"))
        let channel = try acceptedChannel(server)
        // getsockopt on the accepted socket itself.
        #expect(try channel.getOption(ChannelOptions.socketOption(.so_keepalive)).wait() != 0)
        #expect(try socketOption(channel, .tcp, TCP_KEEPIDLE) == idle)
        #expect(try socketOption(channel, .tcp, TCP_KEEPINTVL) == interval)
        #expect(try socketOption(channel, .tcp, TCP_KEEPCNT) == 3)
        #expect(try client.call("CONFIG", "GET", "tcp-keepalive") == .array([.text("tcp-keepalive"), .text("\(idle)")]))
    }

    @Test("--tcp-keepalive 0 leaves keepalive off")
    func keepaliveOff() throws {
        let server = try TestServer(configure: { $0.tcpKeepAlive = 0 })
        defer { server.stop() }
        let client = try server.connect()
        #expect(try client.call("PING") == .simple("PONG"))
        #expect(try acceptedChannel(server).getOption(ChannelOptions.socketOption(.so_keepalive)).wait() == 0)
        #expect(try client.call("CONFIG", "GET", "tcp-keepalive") == .array([.text("tcp-keepalive"), .text("0")]))
    }

    @Test("with a timeout an idle client is closed, while one that keeps sending commands stays")
    func idleClientClosed() throws {
        let server = try TestServer(configure: { $0.idleTimeout = 2 })
        defer { server.stop() }
        let idle = try server.connect()
        let active = try server.connect()
        #expect(try idle.call("PING") == .simple("PONG"))
        #expect(try active.call("CONFIG", "GET", "timeout") == .array([.text("timeout"), .text("2")]))
        // The idle connection's close is the clock: until it comes, the active one sends a PING every 100 ms at most
        // (the wait for the close), far more often than the timeout.
        let deadline = ContinuousClock.now + .seconds(20)
        var closed = false
        while !closed {
            #expect(try active.call("PING") == .simple("PONG"))
            closed = (try? idle.readUntilClosed(timeout: .milliseconds(100))) != nil
            try #require(closed || ContinuousClock.now < deadline, "the idle client was not closed")
        }
        #expect(try active.call("PING") == .simple("PONG"), "the active client was closed too")
    }

    @Test("without a timeout (the default) nothing is closed for being idle")
    func noTimeoutByDefault() throws {
        let server = try TestServer()
        defer { server.stop() }
        let client = try server.connect()
        #expect(try client.call("CONFIG", "GET", "timeout") == .array([.text("timeout"), .text("0")]))
        #expect(try client.call("CONFIG", "GET", "tcp-keepalive") == .array([.text("tcp-keepalive"), .text("300")]))
    }
}
