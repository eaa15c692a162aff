#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Foundation
import KVTestSupport
import Testing
@testable import KVShell
@testable import KVCommands
@testable import RESP

/// A one-connection server on a thread: accepts, then runs `script` with the connected socket.
private final class FakeServer: @unchecked Sendable {
    let port: Int
    private let listener: Int32
    private let finished = DispatchSemaphore(value: 0)

    init(_ script: @escaping @Sendable (Int32) -> Void) throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(listener >= 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        let listening = bound == 0 && listen(listener, 4) == 0
        try #require(listening, "bind/listen failed: errno \(errno)")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        self.listener = listener
        port = Int(UInt16(bigEndian: address.sin_port))
        let finished = self.finished
        Thread.detachNewThread {
            let connection = accept(listener, nil, nil)
            if connection >= 0 {
                script(connection)
                close(connection)
            }
            finished.signal()
        }
    }

    /// Waits for the script to end (up to 10 s) and stops listening.
    func finish() {
        _ = finished.wait(timeout: .now() + 10)
        close(listener)
    }

    static func readExactly(_ fd: Int32, _ count: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = bytes.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + done, count - done, 0) }
            if n <= 0 { break }
            done += n
        }
        return Array(bytes[..<done])
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + done, $0.count - done, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            done += n
        }
    }
}

/// Keeps a fake server's connection open until the test has seen what it needs (instead of sleeping): the
/// script waits on it, the test opens it when done (bounded, so a failing test cannot hang).
private final class Gate: @unchecked Sendable {
    private let semaphore = DispatchSemaphore(value: 0)
    func wait() { _ = semaphore.wait(timeout: .now() + 30) }
    func open() { semaphore.signal() }
}

/// Bytes the fake server received, handed to the test thread.
private final class Received: @unchecked Sendable {
    private let lock = NSLock()
    private var bytes: [UInt8] = []
    func set(_ new: [UInt8]) { lock.withLock { bytes = new } }
    func get() -> [UInt8] { lock.withLock { bytes } }
}

private func encoded(_ arguments: [String]) -> [UInt8] {
    var buffer: [UInt8] = []
    RESPValue.appendCommand(arguments.map { Array($0.utf8) }, to: &buffer)
    return buffer
}

@Suite("RESPClient")
struct RESPClientTests {
    @Test("commands go out as RESP arrays of bulk strings")
    func encoding() {
        var buffer: [UInt8] = []
        RESPValue.appendCommand([Array("SET".utf8), [0x00, 0x0D, 0x0A], []], to: &buffer)
        #expect(buffer == Array("*3\r\n$3\r\nSET\r\n$3\r\n".utf8) + [0x00, 0x0D, 0x0A] + Array("\r\n$0\r\n\r\n".utf8))
    }

    @Test("every RESP2 and RESP3 reply type is parsed, also when it arrives a few bytes at a time")
    func parsesReplies() throws {
        let canned: [UInt8] = Array("""
            +OK\r
            +PONG\r
            -ERR unknown command 'X'\r
            :42\r
            :-9223372036854775808\r
            $5\r
            hello\r
            $0\r
            \r
            $-1\r
            $5\r
            a\r
            b\u{0}\r
            *-1\r
            *0\r
            *3\r
            $1\r
            a\r
            :1\r
            *2\r
            $-1\r
            +x\r
            _\r
            #t\r
            ,1.5\r
            (12345678901234567890\r
            %1\r
            $1\r
            k\r
            $1\r
            v\r
            ~2\r
            :1\r
            :2\r
            =7\r
            txt:abc\r
            !5\r
            ERR x\r
            |1\r
            +key\r
            +value\r
            :5\r

            """.utf8)
        let request = encoded(["SET", "k", "v\r\n"])
        let received = Received()
        let gate = Gate()
        let server = try FakeServer { fd in
            received.set(FakeServer.readExactly(fd, request.count))
            var offset = 0
            while offset < canned.count {  // three bytes at a time, so replies are split everywhere
                let end = min(offset + 3, canned.count)
                FakeServer.writeAll(fd, Array(canned[offset..<end]))
                offset = end
                usleep(200)  // pacing, so that the pieces arrive apart; nothing waits on it
            }
            gate.wait()
        }
        defer {
            gate.open()
            server.finish()
        }
        let client = try RESPClient(host: "127.0.0.1", port: server.port)
        #expect(client.endpoint == "127.0.0.1:\(server.port)")
        try client.send([Array("SET".utf8), Array("k".utf8), Array("v\r\n".utf8)])
        let expected: [RESPValue] = [
            .simpleString("OK"), .simpleString("PONG"), .error("ERR unknown command 'X'"), .integer(42), .integer(Int.min),
            .bulkString(Array("hello".utf8)), .bulkString([]), .null, .bulkString(Array("a\r\nb\u{0}".utf8)), .null, .array([]),
            .array([.bulkString([UInt8(ascii: "a")]), .integer(1), .array([.null, .simpleString("x")])]),
            .null, .boolean(true), .number("1.5"), .number("12345678901234567890"),
            .map([(.bulkString([UInt8(ascii: "k")]), .bulkString([UInt8(ascii: "v")]))]),
            .array([.integer(1), .integer(2)]), .bulkString(Array("abc".utf8)), .error("ERR x"), .integer(5),
        ]
        for (index, want) in expected.enumerated() {
            let got = try client.readReply()
            #expect(got == want, "reply \(index)")
        }
        #expect(received.get() == request)
    }

    @Test("a long pipeline does not deadlock against a server that answers while the client still writes")
    func pipelineWithLargeReplies() throws {
        let value = [UInt8](repeating: UInt8(ascii: "v"), count: 64 << 10)
        let commands = 200
        let request = { (index: Int) -> [UInt8] in
            var buffer: [UInt8] = []
            RESPValue.appendCommand([Array("SET".utf8), Array("key:\(index)".utf8), value], to: &buffer)
            return buffer
        }
        let requestSizes = (0..<commands).map { request($0).count }
        // The server reads one request at a time and answers it with a 64 KiB bulk string, blocking while the
        // client does not read: a client that only wrote would fill both directions and hang.
        let server = try FakeServer { fd in
            var reply = Array("$\(value.count)\r\n".utf8) + value + Array("\r\n".utf8)
            for index in 0..<commands {
                guard FakeServer.readExactly(fd, requestSizes[index]).count == requestSizes[index] else { return }
                reply[reply.count - 3] = UInt8(ascii: "0") + UInt8(index % 10)
                FakeServer.writeAll(fd, reply)
            }
        }
        defer { server.finish() }
        let client = try RESPClient(host: "localhost", port: server.port)
        for index in 0..<commands {
            try client.send([Array("SET".utf8), Array("key:\(index)".utf8), value])
        }
        try client.flush()
        for index in 0..<commands {
            let reply = try client.readReply()
            guard case .bulkString(let bytes) = reply else {
                Issue.record("reply \(index) is \(reply)")
                return
            }
            #expect(bytes.count == value.count && bytes.last == UInt8(ascii: "0") + UInt8(index % 10), "reply \(index)")
        }
    }

    @Test("no server: cannotConnect, naming host:port and the reason")
    func connectionRefused() throws {
        // A port nobody listens on: bind one, note it, close it.
        let port: Int
        do {
            let server = try FakeServer { _ in }
            port = server.port
            // Let the accept thread take a connection and end, so the port is free again.
            let probe = try? RESPClient(host: "127.0.0.1", port: port)
            probe?.close()
            server.finish()
        }
        do {
            _ = try RESPClient(host: "127.0.0.1", port: port, timeout: .seconds(2))
            Issue.record("connected to a closed port")
        } catch let error as RESPClientError {
            #expect(error.kind == .cannotConnect)
            #expect(error.message == "cannot connect to 127.0.0.1:\(port): Connection refused")
        }
        do {
            _ = try RESPClient(host: "no-such-host.invalid", port: 7379, timeout: .seconds(2))
            Issue.record("resolved no-such-host.invalid")
        } catch let error as RESPClientError {
            #expect(error.kind == .cannotConnect)
            #expect(error.message.hasPrefix("cannot connect to no-such-host.invalid:7379: "))
        }
    }

    @Test("a server that closes mid-reply: connectionLost, then every call fails")
    func connectionLost() throws {
        let server = try FakeServer { fd in
            _ = FakeServer.readExactly(fd, encoded(["GET", "k"]).count)
            FakeServer.writeAll(fd, Array("+OK\r\n$10\r\nabc".utf8))
        }
        defer { server.finish() }
        let client = try RESPClient(host: "127.0.0.1", port: server.port)
        #expect(try client.call([Array("GET".utf8), Array("k".utf8)]) == .simpleString("OK"))
        do {
            _ = try client.readReply()
            Issue.record("read a reply that never arrived in full")
        } catch let error as RESPClientError {
            #expect(error.kind == .connectionLost)
            #expect(error.message == "connection to 127.0.0.1:\(server.port) lost: the server closed the connection")
        }
        #expect(throws: RESPClientError.self) { try client.call([Array("PING".utf8)]) }
    }

    /// Sends `SET k 1`, then 400 SETs of 64 KiB values: far more than the sockets buffer, so the client is still
    /// writing (or waiting to) when a server that read only the first request closes.
    private func writeLongPipeline(_ client: RESPClient, flushingTheFirstAlone: Bool) throws {
        try client.send([Array("SET".utf8), Array("k".utf8), Array("1".utf8)])
        if flushingTheFirstAlone { try client.flush() }
        let value = [UInt8](repeating: UInt8(ascii: "v"), count: 64 << 10)
        for index in 0..<400 { try client.send([Array("SET".utf8), Array("k\(index)".utf8), value]) }
        try client.flush()
    }

    @Test("a server that answers, then closes while the client is still writing: its replies are read first")
    func repliesBeforeBrokenPipe() throws {
        let first = encoded(["SET", "k", "1"])
        let server = try FakeServer { fd in
            _ = FakeServer.readExactly(fd, first.count)
            // The reply to what was read, and why the server gives up; then it closes with unread input (a reset).
            FakeServer.writeAll(fd, Array("+OK\r\n-ERR write-ahead log failed, writes are not acknowledged\r\n".utf8))
        }
        defer { server.finish() }
        let client = try RESPClient(host: "127.0.0.1", port: server.port)
        // Keep writing a long pipeline until the closed connection refuses it.
        try writeLongPipeline(client, flushingTheFirstAlone: true)
        #expect(try client.readReply() == .simpleString("OK"))
        #expect(try client.readReply() == .error("ERR write-ahead log failed, writes are not acknowledged"))
        do {
            _ = try client.readReply()
            Issue.record("a reply to a command the server never read")
        } catch let error as RESPClientError {
            #expect(error.kind == .connectionLost, "\(error.message)")
        }
    }

    @Test("a server that answers, then closes while the client waits to write more: its replies are still read")
    func repliesBeforeCloseSeenWhileWriting() throws {
        // The server reads nothing more after the first request, so the client's long pipeline fills the socket
        // and the client waits to write; meanwhile the server's reply and its close arrive.
        let first = encoded(["SET", "k", "1"])
        let gate = Gate()
        let server = try FakeServer { fd in
            _ = FakeServer.readExactly(fd, first.count)
            FakeServer.writeAll(fd, Array("+OK\r\n-ERR shutting down\r\n".utf8))
            shutdown(fd, Int32(SHUT_WR))
            gate.wait()  // keep the socket open (unread input and all) while the client is blocked writing
        }
        defer {
            gate.open()
            server.finish()
        }
        let client = try RESPClient(host: "127.0.0.1", port: server.port)
        try writeLongPipeline(client, flushingTheFirstAlone: false)
        #expect(try client.readReply() == .simpleString("OK"))
        #expect(try client.readReply() == .error("ERR shutting down"))
        #expect(throws: RESPClientError.self) { _ = try client.readReply() }
    }

    /// Connects to a fake server that reads one PING and answers with `reply` (then closes), and returns the error
    /// the client reports for it.
    private func errorFromReply(_ reply: [UInt8]) throws -> RESPClientError? {
        let server = try FakeServer { fd in
            _ = FakeServer.readExactly(fd, encoded(["PING"]).count)
            FakeServer.writeAll(fd, reply)  // stops early once the client gives up and closes
        }
        defer { server.finish() }
        let client = try RESPClient(host: "127.0.0.1", port: server.port)
        do {
            let reply = try client.call([Array("PING".utf8)])
            Issue.record("accepted a hostile reply: \(String(describing: reply).prefix(200))")
            return nil
        } catch let error as RESPClientError {
            #expect(throws: RESPClientError.self, "the connection is unusable afterwards") { try client.call([Array("PING".utf8)]) }
            return error
        }
    }

    private func repeated(_ text: String, _ times: Int) -> [UInt8] {
        let unit = Array(text.utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(unit.count * times)
        for _ in 0..<times { bytes.append(contentsOf: unit) }
        return bytes
    }

    @Test("a hostile server's endless RESP3 attributes are a protocol error, not a stack overflow")
    func endlessAttributes() throws {
        let error = try #require(try errorFromReply(repeated("|0\r\n", 2_000_000) + Array("+OK\r\n".utf8)))
        #expect(error.kind == .protocolError)
        #expect(error.reason == "reply nested more than \(RESPReplyParser.maxNesting) levels", "\(error.message)")
        // Attributes inside an attribute's values count too.
        let inner = try #require(try errorFromReply(repeated("|1\r\n+k\r\n", 200) + Array("+OK\r\n".utf8)))
        #expect(inner.kind == .protocolError && inner.reason.hasPrefix("reply nested more than"), "\(inner.message)")
    }

    @Test("nesting beyond the limit is a protocol error for every aggregate type; at the limit it is parsed")
    func nestingLimit() throws {
        for opener in ["*1", "~1", ">1", "%1\r\n+k"] {
            let error = try #require(try errorFromReply(repeated(opener + "\r\n", 2_000_000) + Array(":1\r\n".utf8)))
            #expect(error.kind == .protocolError, "\(opener)")
            #expect(error.reason == "reply nested more than \(RESPReplyParser.maxNesting) levels", "\(opener): \(error.message)")
        }
        // Exactly `maxNesting` levels are fine (Redis's replies nest a few levels at most).
        let deepest = repeated("*1\r\n", RESPReplyParser.maxNesting) + Array(":7\r\n".utf8)
        let server = try FakeServer { fd in
            _ = FakeServer.readExactly(fd, encoded(["PING"]).count)
            FakeServer.writeAll(fd, deepest)
            _ = FakeServer.readExactly(fd, 1)  // until the client closes
        }
        defer { server.finish() }
        let client = try RESPClient(host: "127.0.0.1", port: server.port)
        var reply = try client.call([Array("PING".utf8)])
        var levels = 0
        while case .array(let items) = reply, items.count == 1 {
            levels += 1
            reply = items[0]
        }
        #expect(levels == RESPReplyParser.maxNesting && reply == .integer(7))
        client.close()
    }

    @Test("announced counts and lengths beyond the limits are protocol errors, and nothing is allocated for them")
    func countAndLengthLimits() throws {
        let tooMany = try #require(try errorFromReply(Array("*4294967296\r\n".utf8)))
        #expect(tooMany.kind == .protocolError && tooMany.reason == "aggregate of 4294967296 elements exceeds the limit of 4294967295", "\(tooMany.message)")
        let tooManyPairs = try #require(try errorFromReply(Array("%2147483648\r\n".utf8)))
        #expect(tooManyPairs.kind == .protocolError, "\(tooManyPairs.message)")
        let tooLong = try #require(try errorFromReply(Array("$536870913\r\n".utf8)))
        #expect(tooLong.kind == .protocolError && tooLong.reason == "bulk string of 536870913 bytes exceeds the limit of 536870912 (512 MiB)", "\(tooLong.message)")
        let verbatim = try #require(try errorFromReply(Array("=9223372036854775807\r\n".utf8)))
        #expect(verbatim.kind == .protocolError, "\(verbatim.message)")
        // A large count within the limit is not allocated up front: the server closing after the header is a lost
        // connection, not a crash or a 2-billion-element allocation.
        let announced = try #require(try errorFromReply(Array("*2147483647\r\n:1\r\n".utf8)))
        #expect(announced.kind == .connectionLost, "\(announced.message)")
    }

    @Test("bytes that are not RESP are a protocol error")
    func protocolError() throws {
        let gate = Gate()
        let server = try FakeServer { fd in
            _ = FakeServer.readExactly(fd, encoded(["PING"]).count)
            FakeServer.writeAll(fd, Array("HTTP/1.1 400 Bad Request\r\n\r\n".utf8))
            gate.wait()
        }
        defer {
            gate.open()
            server.finish()
        }
        let client = try RESPClient(host: "127.0.0.1", port: server.port)
        do {
            _ = try client.call([Array("PING".utf8)])
            Issue.record("parsed HTTP as RESP")
        } catch let error as RESPClientError {
            #expect(error.kind == .protocolError)
        }
    }
}

@Suite("Session connected to a server: the shell's wording of server errors")
struct RemoteErrorWordingTests {
    private func shellMessage(_ serverText: String, _ line: [String]) -> String {
        let arguments = line.map { Array($0.utf8) }
        return CommandError(serverReply: serverText, spec: CommandTable.lookup(arguments[0]), arguments: arguments).message
    }

    @Test("Redis's texts get the hints the embedded shell prints")
    func hints() throws {
        let set = try #require(CommandTable.lookup("SET"))
        let scan = try #require(CommandTable.lookup("SCAN"))
        let incrby = try #require(CommandTable.lookup("INCRBY"))
        let mset = try #require(CommandTable.lookup("MSET"))
        #expect(shellMessage("ERR syntax error", ["SET", "k", "v", "BOGUS"]) == CommandError.syntax(set).message)
        #expect(shellMessage("ERR the EX option is not supported: keys do not expire in kvsh", ["set", "k", "v", "ex", "10"])
                == CommandError.expiryNotSupported("EX").message)
        #expect(shellMessage("ERR value is not an integer or out of range", ["SCAN", "0", "COUNT", "0"])
                == "ERR value is not an integer or out of range (COUNT n takes an integer >= 1)")
        #expect(shellMessage("ERR invalid cursor", ["SCAN", "x"]) == CommandError.invalidCursor.message)
        _ = scan
        #expect(shellMessage("ERR value is not an integer or out of range", ["RANGE", "a", "b", "LIMIT", "x"])
                == "ERR value is not an integer or out of range (LIMIT n takes an integer >= 0)")
        #expect(shellMessage("ERR value is not an integer or out of range", ["INCRBY", "k", "x"])
                == CommandError.amountNotAnInteger(incrby).message)
        #expect(shellMessage("ERR value is not an integer or out of range", ["INCRBY", "k", "5"])
                == CommandError.valueNotAnInteger.message)
        #expect(shellMessage("ERR value is not an integer or out of range", ["INCR", "k"]) == CommandError.valueNotAnInteger.message)
        #expect(shellMessage("ERR wrong number of arguments for 'mset' command", ["MSET", "a", "1", "b"])
                == CommandError.wrongArity(mset).message)
        #expect(shellMessage("ERR unknown command 'SETT', with args beginning with: 'k' ", ["SETT", "k"])
                == CommandError.unknownCommand("SETT", arguments: [Array("k".utf8)]).message)
        // Texts the shell has no wording for print as the server sent them.
        #expect(shellMessage("ERR max number of clients reached", ["GET", "k"]) == "ERR max number of clients reached")
        #expect(shellMessage("WRONGTYPE whatever", ["PING"]) == "WRONGTYPE whatever")
    }
}
