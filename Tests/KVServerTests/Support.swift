// Helpers for the server tests: a tiny blocking RESP client on plain sockets, an in-process server on a
// temporary store, deterministic randomness and a heap probe.
//
// Every socket the client opens is close-on-exec, and every wait has a deadline, so that a server that hangs
// fails the test instead of blocking the suite.

#if canImport(Glibc)
import KVTestSupport
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVServer
import KVStore
import Logging
@testable import KVCommands
@testable import RESP

struct TestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension Array where Element == UInt8 {
    var text: String { String(decoding: self, as: UTF8.self) }
}


// MARK: - Temporary directories

/// A fresh directory made by mkdtemp under /tmp.
func makeTempDir() throws -> String {
    try makeTempDirectory(prefix: "kvsh-server")
}

// MARK: - The wire format, as a client sees it

/// A reply as it came over the wire, RESP2 and RESP3 types kept apart (a RESP2 nil is `nullBulk`, RESP3's is `null`).
/// Deliberately not the RESP module's reply parser, which reads every nil as one value: these tests assert the bytes
/// the server's encoder writes for each protocol version, so their reader must not share the encoder's view.
indirect enum Wire: Equatable, CustomStringConvertible {
    case simple(String)
    case error(String)
    case integer(Int)
    case bulk([UInt8])
    /// `$-1`
    case nullBulk
    /// `*-1`
    case nullArray
    /// RESP3 `_`
    case null
    case array([Wire])
    /// RESP3 `%`: keys and values alternating.
    case map([Wire])
    /// Any other RESP3 type: its marker and its line.
    case other(UInt8, String)

    static func text(_ text: String) -> Wire { .bulk(Array(text.utf8)) }

    var description: String {
        switch self {
        case .simple(let text): return "+\(text)"
        case .error(let text): return "-\(text)"
        case .integer(let number): return ":\(number)"
        case .bulk(let bytes): return "\"\(escaped(bytes, limit: 80))\""
        case .nullBulk: return "$-1"
        case .nullArray: return "*-1"
        case .null: return "_"
        case .array(let items): return "[" + items.map(\.description).joined(separator: ", ") + "]"
        case .map(let items): return "%{" + items.map(\.description).joined(separator: ", ") + "}"
        case .other(let marker, let line): return "\(Character(Unicode.Scalar(marker)))\(line)"
        }
    }

    /// The bulk string's text, if it is one.
    var string: String? {
        if case .bulk(let bytes) = self { return bytes.text }
        return nil
    }

    /// The value under `key` in a map, or in a RESP2 array of alternating keys and values.
    func field(_ key: String) -> Wire? {
        let items: [Wire]
        switch self {
        case .map(let pairs), .array(let pairs): items = pairs
        default: return nil
        }
        var index = 0
        while index + 1 < items.count {
            if items[index] == .text(key) { return items[index + 1] }
            index += 2
        }
        return nil
    }

    /// Parses one reply starting at `start`; nil if the bytes end before it does.
    /// - Throws: on bytes that are not RESP.
    static func parse(_ bytes: [UInt8], from start: Int) throws -> (Wire, end: Int)? {
        guard start < bytes.count else { return nil }
        guard let lineEnd = crlf(in: bytes, from: start + 1) else { return nil }
        let marker = bytes[start]
        let line = Array(bytes[(start + 1)..<lineEnd]).text
        let next = lineEnd + 2
        func number() throws -> Int {
            guard let value = Int(line) else { throw TestError("bad length or integer '\(line)' after '\(Character(Unicode.Scalar(marker)))'") }
            return value
        }
        func items(_ count: Int) throws -> ([Wire], Int)? {
            var position = next
            var result: [Wire] = []
            result.reserveCapacity(min(count, 4096))
            for _ in 0..<count {
                guard let (item, end) = try parse(bytes, from: position) else { return nil }
                result.append(item)
                position = end
            }
            return (result, position)
        }
        switch marker {
        case UInt8(ascii: "+"): return (.simple(line), next)
        case UInt8(ascii: "-"): return (.error(line), next)
        case UInt8(ascii: ":"): return (.integer(try number()), next)
        case UInt8(ascii: "_"): return (.null, next)
        case UInt8(ascii: "$"):
            let length = try number()
            if length < 0 { return (.nullBulk, next) }
            guard bytes.count >= next + length + 2 else { return nil }
            guard bytes[next + length] == 0x0D, bytes[next + length + 1] == 0x0A else {
                throw TestError("no CRLF after a bulk string of \(length) bytes")
            }
            return (.bulk(Array(bytes[next..<(next + length)])), next + length + 2)
        case UInt8(ascii: "*"):
            let count = try number()
            if count < 0 { return (.nullArray, next) }
            return try items(count).map { (.array($0.0), $0.1) }
        case UInt8(ascii: "%"):
            return try items(2 * number()).map { (.map($0.0), $0.1) }
        case UInt8(ascii: "~"), UInt8(ascii: ">"):
            return try items(number()).map { (.array($0.0), $0.1) }
        case UInt8(ascii: ","), UInt8(ascii: "#"), UInt8(ascii: "("):
            return (.other(marker, line), next)
        default:
            throw TestError("unexpected reply type byte 0x\(String(marker, radix: 16)) in \"\(escaped(bytes[start...]))\"")
        }
    }

    private static func crlf(in bytes: [UInt8], from start: Int) -> Int? {
        var index = start
        while index + 1 < bytes.count {
            if bytes[index] == 0x0D && bytes[index + 1] == 0x0A { return index }
            index += 1
        }
        return nil
    }
}

/// A request as a client encodes it: a multibulk array of bulk strings (the RESP module's encoder).
func encodeCommand(_ arguments: [[UInt8]]) -> [UInt8] {
    var bytes: [UInt8] = []
    RESPValue.appendCommand(arguments, to: &bytes)
    return bytes
}

func encodeCommand(_ arguments: String...) -> [UInt8] {
    encodeCommand(arguments.map { Array($0.utf8) })
}

// MARK: - A blocking client

/// A RESP client on a plain, non-blocking TCP socket with deadlines on every wait.
final class RESPClient {
    let fd: Int32
    /// Bytes received and not yet parsed start at `start`.
    private(set) var inbox: [UInt8] = []
    private var start = 0
    /// Whether the server closed its side.
    private(set) var sawEOF = false

    /// Connects to 127.0.0.1:`port`. Socket buffer sizes, when given, are set before connecting (they then stay
    /// fixed: no autotuning).
    init(port: Int, receiveBuffer: Int? = nil, sendBuffer: Int? = nil) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw TestError("socket: \(String(cString: strerror(errno)))") }
        func set(_ option: Int32, _ value: Int) {
            var value = Int32(value)
            _ = setsockopt(fd, SOL_SOCKET, option, &value, socklen_t(MemoryLayout<Int32>.size))
        }
        if let receiveBuffer { set(SO_RCVBUF, receiveBuffer) }
        if let sendBuffer { set(SO_SNDBUF, sendBuffer) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port)).bigEndian
        address.sin_addr = in_addr(s_addr: inet_addr("127.0.0.1"))
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            let message = String(cString: strerror(errno))
            // No close here: `fd` is set, so Swift runs deinit (which closes it) although init throws; a
            // second close would close whatever descriptor another thread opened meanwhile.
            throw TestError("connect to port \(port): \(message)")
        }
        var noDelay: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &noDelay, socklen_t(MemoryLayout<Int32>.size))
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    deinit { close(fd) }

    /// Closes the sending side (the server sees EOF).
    func shutdownWriting() { _ = Glibc.shutdown(fd, Int32(SHUT_WR)) }

    // MARK: Sending

    /// Writes what the socket takes now without blocking; returns how many bytes that was (0 when it is full).
    /// - Throws: when the connection is broken.
    func sendSome(_ bytes: UnsafeRawBufferPointer) throws -> Int {
        guard !bytes.isEmpty else { return 0 }
        while true {
            let n = Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
            if n >= 0 { return n }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { return 0 }
            throw TestError("send: \(String(cString: strerror(errno)))")
        }
    }

    /// Writes all of `bytes`, reading replies meanwhile (so that a server that answers as it reads cannot
    /// deadlock with us). Fails if that takes longer than `timeout`.
    func send(_ bytes: [UInt8], timeout: Duration = .seconds(20)) throws {
        let deadline = ContinuousClock.now + timeout
        var offset = 0
        while offset < bytes.count {
            let n = try bytes.withUnsafeBytes { try sendSome(UnsafeRawBufferPointer(rebasing: $0[offset...])) }
            offset += n
            if n == 0 {
                guard ContinuousClock.now < deadline else {
                    throw TestError("could not send \(bytes.count - offset) of \(bytes.count) bytes within \(timeout)")
                }
                _ = try waitFor(events: Int16(POLLOUT | POLLIN), milliseconds: 50)
                try receiveAvailable()
            }
        }
    }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    /// Polls the socket; returns the events that occurred (0 on timeout).
    func waitFor(events: Int16, milliseconds: Int32) throws -> Int16 {
        var entry = pollfd(fd: fd, events: events, revents: 0)
        let ready = poll(&entry, 1, milliseconds)
        if ready < 0 && errno != EINTR { throw TestError("poll: \(String(cString: strerror(errno)))") }
        return ready > 0 ? entry.revents : 0
    }

    // MARK: Receiving

    /// Reads whatever has arrived, without blocking. Returns the number of bytes read.
    @discardableResult
    func receiveAvailable() throws -> Int {
        var total = 0
        var chunk = [UInt8](repeating: 0, count: 65536)
        while !sawEOF {
            let n = chunk.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                inbox.append(contentsOf: chunk[..<n])
                total += n
            } else if n == 0 {
                sawEOF = true
            } else if errno == EINTR {
                continue
            } else if errno == EAGAIN || errno == EWOULDBLOCK {
                break
            } else if errno == ECONNRESET {
                sawEOF = true
            } else {
                throw TestError("recv: \(String(cString: strerror(errno)))")
            }
        }
        return total
    }

    /// Waits until at least one more byte arrives or the server closes; false on timeout.
    func receiveMore(until deadline: ContinuousClock.Instant) throws -> Bool {
        while !sawEOF {
            if try receiveAvailable() > 0 { return true }
            let left = deadline - ContinuousClock.now
            guard left > .zero else { return false }
            let milliseconds = Int32(min(100, left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1))
            _ = try waitFor(events: Int16(POLLIN), milliseconds: milliseconds)
        }
        return true
    }

    /// The next reply.
    /// - Throws: if none arrives within `timeout`, if the server closes first, or if the bytes are not RESP.
    func reply(timeout: Duration = .seconds(10)) throws -> Wire {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let (value, end) = try Wire.parse(inbox, from: start) {
                start = end
                compact()
                return value
            }
            if sawEOF {
                throw TestError("the server closed the connection; unparsed bytes: \"\(escaped(inbox[start...]))\"")
            }
            guard try receiveMore(until: deadline) else {
                throw TestError("no complete reply within \(timeout); unparsed bytes: \"\(escaped(inbox[start...]))\"")
            }
        }
    }

    /// `count` replies, in order.
    func replies(_ count: Int, timeout: Duration = .seconds(20)) throws -> [Wire] {
        let deadline = ContinuousClock.now + timeout
        return try (0..<count).map { _ in try reply(timeout: max(deadline - ContinuousClock.now, .milliseconds(1))) }
    }

    /// Sends one command and returns its reply.
    func call(_ arguments: [[UInt8]], timeout: Duration = .seconds(10)) throws -> Wire {
        try send(encodeCommand(arguments))
        return try reply(timeout: timeout)
    }

    func call(_ arguments: String..., timeout: Duration = .seconds(10)) throws -> Wire {
        try call(arguments.map { Array($0.utf8) }, timeout: timeout)
    }

    /// Takes (and removes) up to `count` unparsed bytes, waiting for them until `deadline`.
    func take(upTo count: Int, until deadline: ContinuousClock.Instant) throws -> ArraySlice<UInt8> {
        if inbox.count == start { _ = try receiveMore(until: deadline) }
        let end = count >= inbox.count - start ? inbox.count : start + count
        let slice = inbox[start..<end]
        start = end
        compact()
        return slice
    }

    /// Reads until the server closes the connection; returns the unparsed bytes received.
    /// - Throws: if the connection stays open past `timeout`.
    func readUntilClosed(timeout: Duration = .seconds(10)) throws -> [UInt8] {
        let deadline = ContinuousClock.now + timeout
        while !sawEOF {
            guard try receiveMore(until: deadline) else {
                throw TestError("the server did not close the connection within \(timeout); received \"\(escaped(inbox[start...]))\"")
            }
        }
        let rest = Array(inbox[start...])
        start = inbox.count
        compact()
        return rest
    }

    private func compact() {
        if start == inbox.count {
            inbox.removeAll(keepingCapacity: true)
            start = 0
        } else if start > 1 << 20 {
            inbox.removeFirst(start)
            start = 0
        }
    }
}

// MARK: - An in-process server

/// A ``KVServer`` on an ephemeral loopback port, in front of a store in a fresh temporary directory.
final class TestServer: @unchecked Sendable {
    let directory: String
    let store: KVStore
    let server: KVServer
    let port: Int
    private var stopped = false

    init(maxClients: Int = 10_000, syncPolicy: KVStore.SyncPolicy = .always, threads: Int = 2,
         fileSystem: any FileSystem = POSIXFileSystem(),
         configure: (inout KVServer.Configuration) -> Void = { _ in }) throws {
        directory = try makeTempDir()
        do {
            store = try KVStore(directory: directory + "/data", options: KVStore.Options(syncPolicy: syncPolicy, fileSystem: fileSystem))
            let logger = Logger(label: "kvsh.server.test", factory: { _ in SwiftLogNoOpLogHandler() })
            var configuration = KVServer.Configuration(host: "127.0.0.1", port: 0, maxClients: maxClients, threads: threads)
            configure(&configuration)
            server = try KVServer(store: store, configuration: configuration, logger: logger)
            guard let port = server.localAddress?.port, port > 0 else { throw TestError("the server has no local port") }
            self.port = port
        } catch {
            removeTree(directory)
            throw error
        }
    }

    func connect(receiveBuffer: Int? = nil, sendBuffer: Int? = nil) throws -> RESPClient {
        try RESPClient(port: port, receiveBuffer: receiveBuffer, sendBuffer: sendBuffer)
    }

    /// Shuts the server down, closes the store and removes its directory.
    func stop() {
        guard !stopped else { return }
        stopped = true
        server.shutdown()
        try? store.close()
        removeTree(directory)
    }

    deinit { stop() }
}

/// Runs `body` against a fresh server, stopping it afterwards however `body` ends.
func withServer<R>(maxClients: Int = 10_000, syncPolicy: KVStore.SyncPolicy = .always,
                   _ body: (TestServer) throws -> R) throws -> R {
    let server = try TestServer(maxClients: maxClients, syncPolicy: syncPolicy)
    defer { server.stop() }
    return try body(server)
}
