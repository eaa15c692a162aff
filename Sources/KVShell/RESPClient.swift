#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import RESP

// The libc calls whose names the client's methods reuse.
private func closeDescriptor(_ fd: Int32) { _ = close(fd) }
private func sendBytes(_ fd: Int32, _ bytes: UnsafeRawPointer, _ count: Int, _ flags: Int32) -> Int { send(fd, bytes, count, flags) }
private func connectSocket(_ fd: Int32, _ address: UnsafePointer<sockaddr>?, _ length: socklen_t) -> Int32 { connect(fd, address, length) }

/// Why talking to the server failed. `message` is meant to follow `kvsh: ` on one line.
public struct RESPClientError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable {
        /// No connection could be made (refused, unknown host, timed out).
        case cannotConnect
        /// The connection broke, or the server closed it.
        case connectionLost
        /// The server sent bytes that are not RESP; the connection is no longer usable.
        case protocolError
        /// The server refused the credentials (AUTH).
        case authenticationFailed
    }

    public let kind: Kind
    /// `host:port` of the server.
    public let endpoint: String
    /// What happened, without the endpoint: `Connection refused`.
    public let reason: String

    public var message: String {
        switch kind {
        case .cannotConnect: return "cannot connect to \(endpoint): \(reason)"
        case .connectionLost: return "connection to \(endpoint) lost: \(reason)"
        case .protocolError: return "protocol error from \(endpoint): \(reason)"
        case .authenticationFailed: return "AUTH failed on \(endpoint): \(reason)"
        }
    }

    public var description: String { message }
}

/// What `kvsh --connect` authenticates with: `AUTH [user] password`, as redis-cli's `--user` and `-a`.
public struct RESPCredentials: Sendable {
    public var user: String?
    public var password: String

    public init(user: String?, password: String) {
        self.user = user
        self.password = password
    }

    var authCommand: [[UInt8]] {
        (["AUTH"] + (user.map { [$0] } ?? []) + [password]).map { Array($0.utf8) }
    }
}

/// A small blocking client for the Redis protocol over TCP (RESP2), on plain POSIX sockets; with ``RESPClientTLS``,
/// over TLS through a ``TLSTunnel`` (the same code path, on one end of a local socket pair).
///
/// Commands can be pipelined: ``send(_:)`` only queues a command, ``readReply()`` sends whatever is queued and
/// reads the next reply. While the client writes a long pipeline it also reads whatever replies have arrived, so a
/// server that stops reading until its replies are read can never deadlock it. One thread uses a client.
public final class RESPClient {
    public let host: String
    public let port: Int
    /// `host:port`, or `[v6-address]:port`.
    public let endpoint: String

    private var fd: Int32
    /// The TLS connection `fd` leads to, if any; it ends when the client is released.
    private var tunnel: TLSTunnel?
    /// Encoded commands not yet written.
    private var outgoing: [UInt8] = []
    /// Bytes received; `position` is where the next reply starts.
    private var incoming: [UInt8] = []
    private var position = 0
    private var scratch = [UInt8](repeating: 0, count: 256 << 10)
    /// Set once the connection is unusable; every later call throws it.
    private var broken: RESPClientError?
    /// Why writing failed, once it has: the server may still have sent replies (to the commands it did read, or
    /// an error explaining why it closed), so reading goes on until they are used up, and then fails with this.
    private var writeFailure: String?

    /// Queued commands are written once they reach this size, without waiting for a reply to be read.
    static let writeThreshold = 64 << 10

    // What a server can make the client do is bounded by ``RESPReplyParser``'s limits (nesting, element counts,
    // bulk lengths); beyond each the reply is a `protocolError` and the connection closes.
    private let parser = RESPReplyParser()

    /// Connects, trying every address `host` resolves to (over TLS with `tls`), then authenticates with
    /// `credentials` if given.
    /// - Throws: ``RESPClientError`` of kind `cannotConnect`, whose message names `host:port` and the reason, or
    ///   `authenticationFailed` with the server's refusal.
    public init(host: String, port: Int, tls: RESPClientTLS? = nil, timeout: Duration = .seconds(5),
                credentials: RESPCredentials? = nil) throws {
        self.host = host
        self.port = port
        endpoint = Self.endpoint(host: host, port: port)
        fd = -1
        if let tls {
            do {
                let tunnel = try TLSTunnel(host: host, port: port, tls: tls, timeout: timeout)
                self.tunnel = tunnel
                fd = tunnel.descriptor
            } catch {
                throw failure(.cannotConnect, TLSTunnel.describe(error))
            }
        } else {
            fd = try openConnection(timeout: timeout)
        }
        if let credentials {
            let reply = try call(credentials.authCommand)
            if case .error(let message) = reply {
                throw RESPClientError(kind: .authenticationFailed, endpoint: endpoint, reason: message)
            }
        }
    }

    deinit {
        if fd >= 0 { closeDescriptor(fd) }
    }

    /// `host:port`, with an IPv6 address in brackets.
    public static func endpoint(host: String, port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// Closes the connection; later calls throw.
    public func close() {
        if fd >= 0 { closeDescriptor(fd) }
        fd = -1
        if broken == nil { broken = failure(.connectionLost, "the connection was closed") }
    }

    // MARK: Commands

    /// Queues a command (a RESP array of bulk strings); it is written once enough are queued, or by the next
    /// ``flush()`` or ``readReply()``.
    public func send(_ arguments: [[UInt8]]) throws {
        if let broken { throw broken }
        RESPValue.appendCommand(arguments, to: &outgoing)
        if outgoing.count >= Self.writeThreshold { try flush() }
    }

    /// Sends a command and reads its reply (after the replies of any commands queued before it).
    public func call(_ arguments: [[UInt8]]) throws -> RESPValue {
        try send(arguments)
        return try readReply()
    }

    // MARK: Writing

    /// Writes every queued command. While the socket cannot take more, reads what the server sends meanwhile.
    public func flush() throws {
        if let broken { throw broken }
        guard writeFailure == nil else {
            outgoing.removeAll()  // these commands cannot reach the server; reading reports that
            return
        }
        var done = 0
        defer {
            if done > 0 { outgoing.removeFirst(done) }
        }
        while done < outgoing.count {
            let written = outgoing.withUnsafeBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return sendBytes(fd, base + done, raw.count - done, Int32(MSG_NOSIGNAL))
            }
            if written > 0 {
                done += written
                continue
            }
            if written < 0 && errno == EINTR { continue }
            guard written < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) else {
                stopWriting(String(cString: strerror(errno)))
                done = 0
                return
            }
            var entry = pollfd(fd: fd, events: Int16(POLLOUT | POLLIN), revents: 0)
            let ready = poll(&entry, 1, -1)
            if ready < 0 {
                if errno == EINTR { continue }
                throw fail(.connectionLost, String(cString: strerror(errno)))
            }
            if entry.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 && entry.revents & Int16(POLLOUT) == 0 {
                // The server is answering: take its replies off the socket so that it keeps reading ours. If it
                // has closed, stop writing; its replies are still read, in order, before the error.
                if let ended = try receive(deferringEnd: true) {
                    stopWriting(ended)
                    done = 0
                    return
                }
            }
        }
    }

    /// Gives up writing after `reason`, keeping the connection open for reading: what the server already sent
    /// (the replies to the commands it read, or an error saying why it closed) is still read before the error is
    /// reported. Shutting down our side makes sure the server sees the end, whatever the failure was.
    private func stopWriting(_ reason: String) {
        writeFailure = reason
        outgoing.removeAll()
        _ = shutdown(fd, Int32(SHUT_WR))
    }

    // MARK: Reading

    /// Reads the next reply, first writing any queued commands.
    /// - Throws: ``RESPClientError`` when the connection breaks or the server sends something that is not RESP.
    ///   An error reply is not thrown: it is ``RESPValue/error(_:)``.
    public func readReply() throws -> RESPValue {
        if let broken { throw broken }
        if !outgoing.isEmpty { try flush() }
        var source = SocketSource(client: self)
        let reply: RESPValue
        do {
            reply = try parser.parse(from: &source)
        } catch RESPParseError.invalid(let reason) {
            // 0x15 starts a TLS alert, 0x16 a handshake: what a TLS port answers to a client speaking RESP in clear.
            let speaksTLS = reason.hasPrefix("unexpected byte 0x15 ") || reason.hasPrefix("unexpected byte 0x16 ")
            throw fail(.protocolError, speaksTLS ? reason + " (the server speaks TLS on this port: connect with --tls)" : reason)
        }
        if position == incoming.count {
            incoming.removeAll(keepingCapacity: true)
            position = 0
        }
        return reply
    }

    /// The socket as the parser's byte source: reads wait for the server.
    private struct SocketSource: RESPByteSource {
        unowned let client: RESPClient
        func readByte() throws -> UInt8 { try client.readByte() }
        func readLine(limit: Int) throws -> ArraySlice<UInt8> { try client.readLine(limit: limit) }
        func readBytes(_ count: Int) throws -> [UInt8] { try client.readBytes(count) }
    }

    private func readByte() throws -> UInt8 {
        while position >= incoming.count { try receive() }
        defer { position += 1 }
        return incoming[position]
    }

    /// The bytes up to the next CRLF (consumed, not returned).
    private func readLine(limit: Int) throws -> ArraySlice<UInt8> {
        var searched = position
        while true {
            if let newline = incoming[searched...].firstIndex(of: 0x0A) {
                guard newline > position, incoming[newline - 1] == 0x0D else {
                    throw fail(.protocolError, "a line does not end in CRLF")
                }
                let line = incoming[position..<(newline - 1)]
                position = newline + 1
                return line
            }
            let scanned = incoming.count - position  // receive() may move the unread bytes to the front
            guard scanned <= limit + 2 else { throw fail(.protocolError, "a line is longer than \(limit) bytes") }
            try receive()
            searched = position + scanned
        }
    }

    private func readBytes(_ count: Int) throws -> [UInt8] {
        guard count >= 0 else { throw fail(.protocolError, "invalid length") }
        while incoming.count - position < count { try receive() }
        defer { position += count }
        return Array(incoming[position..<(position + count)])
    }

    /// Reads what has arrived (waiting for at least one byte) and appends it to `incoming`. When the connection has
    /// ended, throws, or with `deferringEnd` returns why instead (nil otherwise), so that the caller can first use
    /// what is already in `incoming`.
    @discardableResult
    private func receive(deferringEnd: Bool = false) throws -> String? {
        if let broken { throw broken }
        if position > 0 && position >= incoming.count / 2 {
            incoming.removeFirst(position)
            position = 0
        }
        while true {
            let count = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count > 0 {
                incoming.append(contentsOf: scratch[..<count])
                return nil
            }
            if count == 0 {
                let reason = writeFailure ?? "the server closed the connection"
                if deferringEnd { return reason }
                throw fail(.connectionLost, reason)
            }
            switch errno {
            case EINTR:
                continue
            case EAGAIN, EWOULDBLOCK:
                var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                if poll(&entry, 1, -1) < 0 && errno != EINTR {
                    throw fail(.connectionLost, String(cString: strerror(errno)))
                }
            default:
                let reason = writeFailure ?? String(cString: strerror(errno))
                if deferringEnd { return reason }
                throw fail(.connectionLost, reason)
            }
        }
    }

    private func failure(_ kind: RESPClientError.Kind, _ reason: String) -> RESPClientError {
        RESPClientError(kind: kind, endpoint: endpoint, reason: reason)
    }

    /// Marks the connection unusable and returns the error to throw.
    private func fail(_ kind: RESPClientError.Kind, _ reason: String) -> RESPClientError {
        let error = failure(kind, reason)
        broken = error
        if fd >= 0 { closeDescriptor(fd) }
        fd = -1
        return error
    }

    // MARK: Connecting

    private func openConnection(timeout: Duration) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_protocol = Int32(IPPROTO_TCP)
        var list: UnsafeMutablePointer<addrinfo>?
        let resolved = getaddrinfo(host, String(port), &hints, &list)
        guard resolved == 0, let first = list else {
            let reason = resolved == EAI_SYSTEM ? String(cString: strerror(errno)) : String(cString: gai_strerror(resolved))
            throw failure(.cannotConnect, reason)
        }
        defer { freeaddrinfo(list) }
        let deadline = ContinuousClock.now + timeout
        var lastError = "no address found"
        var next: UnsafeMutablePointer<addrinfo>? = first
        while let address = next {
            next = address.pointee.ai_next
            let socketFD = socket(address.pointee.ai_family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue),
                                  address.pointee.ai_protocol)
            guard socketFD >= 0 else {
                lastError = String(cString: strerror(errno))
                continue
            }
            if let error = Self.connect(socketFD, address.pointee.ai_addr, address.pointee.ai_addrlen, deadline: deadline, timeout: timeout) {
                lastError = error
                closeDescriptor(socketFD)
                continue
            }
            var one: Int32 = 1
            _ = setsockopt(socketFD, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            return socketFD
        }
        throw failure(.cannotConnect, lastError)
    }

    /// Connects a non-blocking socket by `deadline`; returns why not, or nil on success.
    private static func connect(_ fd: Int32, _ address: UnsafeMutablePointer<sockaddr>?, _ length: socklen_t,
                                deadline: ContinuousClock.Instant, timeout: Duration) -> String? {
        if connectSocket(fd, address, length) == 0 { return nil }
        guard errno == EINPROGRESS || errno == EINTR else { return String(cString: strerror(errno)) }
        while true {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { return "timed out after \(timeout)" }
            let (seconds, attoseconds) = left.components
            let milliseconds = Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1)
            var entry = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            let ready = poll(&entry, 1, milliseconds)
            if ready < 0 {
                if errno == EINTR { continue }
                return String(cString: strerror(errno))
            }
            if ready == 0 { continue }
            var error: Int32 = 0
            var size = socklen_t(MemoryLayout<Int32>.size)
            guard getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size) == 0 else { return String(cString: strerror(errno)) }
            return error == 0 ? nil : String(cString: strerror(error))
        }
    }
}
