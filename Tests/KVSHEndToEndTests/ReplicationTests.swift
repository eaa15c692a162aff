// Replication with Redis's protocol: kvsh primaries and replicas, and real redis-server on either side.

import Foundation
import RESP
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A redis-server of its own on a free loopback port, with no persistence unless asked; killed when released.
final class RedisServerProcess {
    let port: Int
    let process: PipedProcess

    /// Starts redis-server in the sandbox directory `name` (kept between restarts), on `port` or a free one.
    init(_ sandbox: Sandbox, name: String, port: Int? = nil, options: [String] = []) throws {
        guard let executable = ExternalTool.path("redis-server") else { throw HarnessError("redis-server is not installed") }
        let directory = sandbox.path(name)
        mkdir(directory, 0o700)
        let port = try port ?? freePort()
        self.port = port
        process = try PipedProcess(executable: executable,
                                   arguments: ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                               "--dir", directory, "--repl-diskless-sync-delay", "0"] + options,
                                   environment: sandbox.environment(), directory: directory)
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline && process.isRunning && !accepting(port) {
            _ = process.wait(timeout: .milliseconds(20)) { _ in false }
        }
        guard accepting(port) else { throw HarnessError("redis-server did not start: \(escaped(process.stderr))") }
    }

    deinit {
        process.signal(SIGKILL)
        _ = try? process.finish(timeout: .seconds(5))
    }
}

/// A TCP peer the test plays by hand (a primary that sends garbage or stalls, a replica that never reads): listens on
/// a free loopback port and accepts connections.
final class ScriptedPeer {
    let port: Int
    private let listener: Int32

    init() throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        self.listener = listener
        guard listener >= 0 else { throw HarnessError("socket: \(String(cString: strerror(errno)))") }
        var yes: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(listener, 8) == 0 else { throw HarnessError("bind/listen: \(String(cString: strerror(errno)))") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(listener) }

    /// The next connection, within `timeout`; nil if none came.
    func accept(timeout: Duration = .seconds(20)) -> ScriptedConnection? {
        var entry = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
        guard poll(&entry, 1, Int32(timeout.components.seconds * 1000)) == 1 else { return nil }
        let fd = Glibc.accept(listener, nil, nil)
        return fd >= 0 ? ScriptedConnection(fd: fd) : nil
    }
}

final class ScriptedConnection {
    private(set) var fd: Int32
    private(set) var received: [UInt8] = []

    init(fd: Int32) { self.fd = fd }
    deinit { hangUp() }

    /// Closes the connection (once).
    func hangUp() {
        if fd >= 0 { close(fd) }
        fd = -1
    }

    /// A client connection to `port` with a small receive buffer (a peer that reads slowly fills it at once).
    static func connect(port: Int, receiveBuffer: Int32) throws -> ScriptedConnection {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket: \(String(cString: strerror(errno)))") }
        var size = receiveBuffer
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            throw HarnessError("connect: \(String(cString: strerror(errno)))")
        }
        return ScriptedConnection(fd: fd)
    }

    func send(_ text: String) { send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { return }
            offset += n
        }
    }

    /// Reads until `needle` has arrived (after the first `after` bytes received) (true), the peer closed, or `timeout`
    /// passed.
    @discardableResult
    func read(until needle: String, after: Int = 0, timeout: Duration = .seconds(20)) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !Array(received.dropFirst(after)).text.contains(needle) {
            guard ContinuousClock.now < deadline, readSome(timeout: deadline - ContinuousClock.now) else { return false }
        }
        return true
    }

    /// Whether the peer closed the connection within `timeout`.
    func closedByPeer(timeout: Duration) -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if !readSome(timeout: deadline - ContinuousClock.now) { return ContinuousClock.now < deadline }
        }
        return false
    }

    /// Reads what arrives within `timeout`; false once the peer closed (or nothing arrived in time).
    private func readSome(timeout: Duration) -> Bool {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        let milliseconds = Int32(max(1, min(1000, timeout.components.seconds * 1000 + timeout.components.attoseconds / 1_000_000_000_000_000)))
        guard poll(&entry, 1, milliseconds) == 1 else { return true }
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return false }
        received += chunk[..<n]
        return true
    }
}

/// The text of a bulk or simple string reply.
private func text(_ reply: RESPValue) -> String? {
    switch reply {
    case .bulkString(let bytes): String(decoding: bytes, as: UTF8.self)
    case .simpleString(let string): string
    case .integer(let value): String(value)
    default: nil
    }
}

/// Every key and value of the server on `port`, by KEYS and MGET.
private func contents(port: Int) throws -> [String: [UInt8]] {
    let connection = try RedisConnection(port: port)
    guard case .array(let keys) = try connection.call("KEYS", "*") else { throw HarnessError("KEYS did not reply with an array") }
    let names = keys.compactMap(text)
    guard !names.isEmpty else { return [:] }
    try connection.send(RedisConnection.encode(["MGET"] + names))
    guard case .array(let values) = try connection.reply() else { throw HarnessError("MGET did not reply with an array") }
    var result: [String: [UInt8]] = [:]
    for (name, value) in zip(names, values) {
        if case .bulkString(let bytes) = value { result[name] = bytes }
    }
    return result
}

/// Waits (bounded) until `condition` holds, polling; false if it never did.
private func eventually(_ timeout: Duration = .seconds(30), _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try condition() { return true }
        var nothing = pollfd(fd: -1, events: 0, revents: 0)
        _ = poll(&nothing, 0, 50)
    }
    return try condition()
}

private func waitUntil(_ timeout: Duration = .seconds(30), _ condition: () -> Bool) -> Bool {
    eventually(timeout, condition)
}

/// The fields of `INFO replication` on `port`.
private func replicationInfo(port: Int) throws -> [String: String] {
    let connection = try RedisConnection(port: port)
    guard let info = text(try connection.call("INFO", "replication")) else { return [:] }
    var fields: [String: String] = [:]
    // "\r\n" is one Character in Swift: split the lines on it.
    for line in info.split(whereSeparator: { $0 == "\r\n" || $0 == "\n" }) {
        guard let colon = line.firstIndex(of: ":") else { continue }
        fields[String(line[..<colon])] = String(line[line.index(after: colon)...])
    }
    return fields
}

private func serverLog(_ server: ServerProcess, contains needle: String, timeout: Duration = .seconds(20)) -> Bool {
    server.process.wait(timeout: timeout) { $0.stderr.text.contains(needle) }
}

private let redisAvailable = ExternalTool.path("redis-server") != nil || ExternalTool.required

@Suite("Replication", .timeLimit(.minutes(10)))
struct ReplicationTests {
    @Test("a kvsh primary with two kvsh replicas and a real redis-server replica: concurrent writes converge, WAIT counts, replicas refuse writes",
          .enabled(if: redisAvailable, "redis-server is not installed (apt-get install redis-server)"))
    func primaryWithTwoReplicas() throws {
        let sandbox = try Sandbox()
        let primary = try ServerProcess(sandbox, dataDir: sandbox.path("primary"))
        defer { _ = try? primary.stop() }
        let primaryPort = primary.port
        let seed = try RedisConnection(port: primary.port)
        for index in 0..<200 { _ = try seed.call("SET", "before:\(index)", String(repeating: "v", count: index)) }
        let replica = try ServerProcess(sandbox, dataDir: sandbox.path("replica"), options: ["--replicaof", "127.0.0.1", String(primary.port)])
        defer { _ = try? replica.stop() }
        let second = try ServerProcess(sandbox, dataDir: sandbox.path("second"), options: ["--replicaof", "127.0.0.1", String(primary.port)])
        defer { _ = try? second.stop() }
        let redis = try RedisServerProcess(sandbox, name: "redis", options: ["--replicaof", "127.0.0.1", String(primary.port)])

        // Two writers at once while the replicas sync: sets, increments, deletes, multi-key sets.
        let group = DispatchGroup()
        for writer in 0..<2 {
            group.enter()
            Thread {
                defer { group.leave() }
                guard let connection = try? RedisConnection(port: primaryPort) else { return }
                for index in 0..<300 {
                    _ = try? connection.call("SET", "w\(writer):\(index)", "value \(index) \u{1}\u{0}binary")
                    _ = try? connection.call("INCR", "counter")
                    if index % 10 == 0 { _ = try? connection.call("DEL", "before:\(index / 2)") }
                    if index % 25 == 0 { _ = try? connection.call("MSET", "m\(writer)a", "\(index)", "m\(writer)b", "\(index)") }
                }
            }.start()
        }
        #expect(group.wait(timeout: .now() + 90) == .success)

        let client = try RedisConnection(port: primary.port)
        #expect(try client.call("WAIT", "3", "10000") == .integer(3))
        let expected = try contents(port: primary.port)
        #expect(expected["counter"] == Array("600".utf8))
        #expect(try eventually { try contents(port: replica.port) == expected }, "the kvsh replica differs from its primary")
        #expect(try eventually { try contents(port: second.port) == expected }, "the second kvsh replica differs from its primary")
        #expect(try eventually { try contents(port: redis.port) == expected }, "redis-server differs from its kvsh primary")

        // Replicas are read-only; ROLE and INFO in Redis's shapes.
        let onReplica = try RedisConnection(port: replica.port)
        #expect(try onReplica.call("SET", "x", "1") == .error("READONLY You can't write against a read only replica."))
        #expect(try onReplica.call("WAIT", "1", "0") == .error("ERR WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is configured to be writable (which is not the default) writes to replicas are just local and are not propagated."))
        guard case .array(let role) = try client.call("ROLE") else { Issue.record("ROLE is not an array"); return }
        #expect(role.first == .bulkString(Array("master".utf8)))
        if case .array(let replicas) = role[2] { #expect(replicas.count == 3) }
        guard case .array(let replicaRole) = try onReplica.call("ROLE") else { Issue.record("ROLE is not an array"); return }
        #expect(replicaRole.count == 5 && replicaRole[0] == .bulkString(Array("slave".utf8)) && replicaRole[3] == .bulkString(Array("connected".utf8)))
        let info = try replicationInfo(port: primary.port)
        #expect(info["role"] == "master" && info["connected_slaves"] == "3", "\(info)")
        #expect(info["slave0"]?.contains("state=online") == true)
        #expect(info["master_replid"]?.count == 40)
        let replicaInfo = try replicationInfo(port: replica.port)
        #expect(replicaInfo["master_link_status"] == "up")
        #expect(replicaInfo["slave_repl_offset"] == info["master_repl_offset"])
        // The shell's :stats with --connect says where replication stands.
        let primaryStats = try sandbox.run(["--connect", primary.address], input: Array(":stats\n".utf8))
        #expect(primaryStats.stdout.text.contains("replication:     primary, offset \(info["master_repl_offset"] ?? "?"), 3 replicas"),
                "\(primaryStats.stdout.text)")
        let replicaStats = try sandbox.run(["--connect", replica.address], input: Array(":stats\n".utf8))
        #expect(replicaStats.stdout.text.contains("replication:     replica of 127.0.0.1:\(primary.port), link up"), "\(replicaStats.stdout.text)")
        if case .bulkString(let list) = try client.call("CLIENT", "LIST", "TYPE", "replica") {
            #expect(String(decoding: list, as: UTF8.self).split(separator: "\n").filter { $0.contains("flags=S") }.count == 3)
        }
    }

    @Test("a kvsh replica restarted mid-stream, or killed, continues with +CONTINUE; after a compaction too, from the log")
    func replicaRestartContinues() throws {
        let sandbox = try Sandbox()
        let primary = try ServerProcess(sandbox, dataDir: sandbox.path("primary"), options: ["--repl-backlog-size", "16384"])
        defer { _ = try? primary.stop() }
        let client = try RedisConnection(port: primary.port)
        for index in 0..<50 { _ = try client.call("SET", "k\(index)", "\(index)") }
        let options = ["--replicaof", "127.0.0.1", String(primary.port)]
        var replica = try ServerProcess(sandbox, dataDir: sandbox.path("replica"), options: options)
        #expect(try client.call("WAIT", "1", "10000") == .integer(1))
        try replica.stop()

        // Away while the primary writes more than its in-memory backlog holds and compacts: the log still covers it.
        for index in 0..<400 { _ = try client.call("SET", "later\(index)", String(repeating: "x", count: 100)) }
        #expect(try client.call("KVSH.COMPACT") != .error(""))
        replica = try ServerProcess(sandbox, dataDir: sandbox.path("replica"), options: options)
        #expect(serverLog(replica, contains: "partial resync"), "no partial resync: \(replica.process.stderr.text)")
        #expect(!replica.process.stderr.text.contains("full sync from the primary"))
        #expect(try eventually { try contents(port: replica.port) == contents(port: primary.port) })

        // kill -9 mid-stream: what it acknowledged is on its disk, and it continues from there.
        let primaryPort = primary.port
        let writer = Thread {
            guard let connection = try? RedisConnection(port: primaryPort) else { return }
            for index in 0..<300 { _ = try? connection.call("INCR", "n\(index % 7)") }
        }
        writer.start()
        replica.process.signal(SIGKILL)
        _ = try? replica.process.finish(timeout: .seconds(10))
        #expect(eventually { (try? RedisConnection(port: primaryPort).call("GET", "n6")) == .bulkString(Array("42".utf8)) },
                "primary: \(primary.process.wait(timeout: .milliseconds(100)) { _ in false } ? "" : String(primary.process.stderr.text.drop { _ in false }.split(separator: "\n").filter { $0.contains("Fatal") || $0.contains("crashed") || $0.contains(" in kvsh at /work/main/Sources") }.prefix(30).joined(separator: "\n")))")
        replica = try ServerProcess(sandbox, dataDir: sandbox.path("replica"), options: options)
        defer { _ = try? replica.stop() }
        #expect(serverLog(replica, contains: "partial resync"), "\(replica.process.stderr.text)")
        #expect(try eventually { try contents(port: replica.port) == contents(port: primary.port) })
    }

    @Test("a replica away longer than the log kept gets a full copy")
    func fullCopyWhenTheLogIsGone() throws {
        let sandbox = try Sandbox()
        let primary = try ServerProcess(sandbox, dataDir: sandbox.path("primary"),
                                        options: ["--repl-backlog-size", "16384", "--repl-backlog-log-bytes", "0"])
        defer { _ = try? primary.stop() }
        let client = try RedisConnection(port: primary.port)
        _ = try client.call("SET", "a", "1")
        let options = ["--replicaof", "127.0.0.1", String(primary.port)]
        var replica = try ServerProcess(sandbox, dataDir: sandbox.path("replica"), options: options)
        #expect(try client.call("WAIT", "1", "10000") == .integer(1))
        try replica.stop()
        for index in 0..<400 { _ = try client.call("SET", "later\(index)", String(repeating: "x", count: 100)) }
        _ = try client.call("KVSH.COMPACT")
        replica = try ServerProcess(sandbox, dataDir: sandbox.path("replica"), options: options)
        defer { _ = try? replica.stop() }
        #expect(serverLog(replica, contains: "full sync loaded"), "\(replica.process.stderr.text)")
        #expect(try eventually { try contents(port: replica.port) == contents(port: primary.port) })
    }

    @Test("a kvsh replica follows a real redis-server primary: RDB with int and LZF strings, live writes, a dropped link continues partially",
          .enabled(if: redisAvailable, "redis-server is not installed (apt-get install redis-server)"))
    func kvshFollowsRedis() throws {
        let sandbox = try Sandbox()
        let redis = try RedisServerProcess(sandbox, name: "redis")
        let client = try RedisConnection(port: redis.port)
        _ = try client.call("SET", "int", "12345")
        _ = try client.call("SET", "negative", "-7")
        _ = try client.call("SET", "compressible", String(repeating: "abc", count: 300))
        _ = try client.call("SET", "binary", "\u{0}\u{1}\u{2}\r\n")
        _ = try client.call("SET", "expiring", "soon", "EX", "1000")
        let replica = try ServerProcess(sandbox, dataDir: sandbox.path("replica"), options: ["--replicaof", "127.0.0.1", String(redis.port)])
        defer { _ = try? replica.stop() }
        #expect(serverLog(replica, contains: "full sync loaded"), "\(replica.process.stderr.text)")
        _ = try client.call("INCR", "int")
        _ = try client.call("SET", "live", "1", "EX", "500")
        _ = try client.call("INCRBYFLOAT", "float", "1.5")
        _ = try client.call("GETDEL", "negative")
        _ = try client.call("MSET", "m1", "a", "m2", "b")
        _ = try client.call("SETEX", "setex", "100", "v")
        #expect(try client.call("WAIT", "1", "10000") == .integer(1))
        let expected = try contents(port: redis.port)
        #expect(expected["int"] == Array("12346".utf8))
        #expect(try eventually { try contents(port: replica.port) == expected })

        // The primary drops the link: the replica comes back with +CONTINUE.
        _ = try client.call("CLIENT", "KILL", "TYPE", "replica")
        _ = try client.call("SET", "after", "drop")
        #expect(serverLog(replica, contains: "partial resync"), "\(replica.process.stderr.text)")
        #expect(try eventually { try contents(port: replica.port) == contents(port: redis.port) })
        #expect(try RedisConnection(port: replica.port).call("SET", "x", "y") == .error("READONLY You can't write against a read only replica."))

        // The primary restarts (its RDB keeps its replication id and offset, as Redis 7 does): the replica continues.
        let partialsBefore = replica.process.stderr.text.components(separatedBy: "partial resync").count
        _ = try? client.call("SHUTDOWN", "SAVE")
        _ = redis.process.wait(timeout: .seconds(20)) { !$0.isRunning }
        let restarted = try RedisServerProcess(sandbox, name: "redis", port: redis.port)
        _ = try RedisConnection(port: restarted.port).call("SET", "after", "restart")
        #expect(replica.process.wait(timeout: .seconds(30)) { $0.stderr.text.components(separatedBy: "partial resync").count > partialsBefore },
                "\(replica.process.stderr.text)")
        #expect(try eventually { try contents(port: replica.port) == contents(port: restarted.port) })
    }

    @Test("a primary holding a list: the replica refuses it, naming the key and the type",
          .enabled(if: redisAvailable, "redis-server is not installed (apt-get install redis-server)"))
    func nonStringTypesRefused() throws {
        let sandbox = try Sandbox()
        let redis = try RedisServerProcess(sandbox, name: "redis")
        _ = try RedisConnection(port: redis.port).call("RPUSH", "mylist", "a", "b")
        let replica = try ServerProcess(sandbox, dataDir: sandbox.path("replica"), options: ["--replicaof", "127.0.0.1", String(redis.port)])
        defer { _ = try? replica.stop() }
        #expect(replica.process.wait(timeout: .seconds(20)) { $0.stderr.text.contains("mylist") && $0.stderr.text.contains("list") },
                "\(replica.process.stderr.text)")
        #expect(try RedisConnection(port: replica.port).call("DBSIZE") == .integer(0))
    }

    @Test("redis-cli --rdb against kvsh writes a file redis-check-rdb accepts",
          .enabled(if: redisAvailable, "redis-tools are not installed"))
    func redisCLIRDB() throws {
        guard let cli = ExternalTool.redisCLI, let check = ExternalTool.path("redis-check-rdb") else {
            Issue.record("redis-cli and redis-check-rdb are required")
            return
        }
        let sandbox = try Sandbox()
        let server = try ServerProcess(sandbox)
        defer { _ = try? server.stop() }
        let client = try RedisConnection(port: server.port)
        for index in 0..<1000 { _ = try client.call("SET", "key:\(index)", index % 3 == 0 ? "\(index)" : String(repeating: "v\(index)", count: 10)) }
        let file = sandbox.path("dump.rdb")
        let saved = try ExternalTool.run(cli, ["-p", String(server.port), "--rdb", file], sandbox: sandbox)
        #expect(saved.termination == .exited(0), "\(saved.stderr.text)")
        let checked = try ExternalTool.run(check, [file], sandbox: sandbox)
        #expect(checked.termination == .exited(0), "\(checked.stdout.text)")
        #expect(checked.stdout.text.contains("keys read: 1000") || checked.stdout.text.contains("Checked 1000 keys") || checked.stdout.text.contains("1000"),
                "\(checked.stdout.text)")
    }

    @Test("--sync-replicas 1: kill -9 of the primary under load, then REPLICAOF NO ONE: every acknowledged write is on the replica")
    func syncReplicasLoseNothing() throws {
        let sandbox = try Sandbox()
        let primary = try ServerProcess(sandbox, dataDir: sandbox.path("primary"), options: ["--sync-replicas", "1", "--sync", "everysec"])
        let client = try RedisConnection(port: primary.port)
        #expect(try client.call("SET", "early", "1") == .error("NOREPLICAS Not enough good replicas to write."))
        let replica = try ServerProcess(sandbox, dataDir: sandbox.path("replica"),
                                        options: ["--replicaof", "127.0.0.1", String(primary.port), "--sync", "always"])
        defer { _ = try? replica.stop() }
        #expect(try eventually { try client.call("SET", "first", "1") == .simpleString("OK") })

        final class Acknowledged: @unchecked Sendable {
            let lock = NSLock()
            var keys: [String] = []
        }
        let acknowledged = Acknowledged()
        let primaryPort = primary.port
        let writers = (0..<3).map { writer in
            Thread {
                guard let connection = try? RedisConnection(port: primaryPort) else { return }
                for index in 0..<100_000 {
                    let key = "w\(writer):\(index)"
                    guard (try? connection.call("SET", key, key, timeout: .seconds(5))) == .simpleString("OK") else { return }
                    acknowledged.lock.lock(); acknowledged.keys.append(key); acknowledged.lock.unlock()
                }
            }
        }
        writers.forEach { $0.start() }
        #expect(eventually(.seconds(30)) { acknowledged.lock.lock(); defer { acknowledged.lock.unlock() }; return acknowledged.keys.count >= 300 })
        primary.process.signal(SIGKILL)
        _ = try? primary.process.finish(timeout: .seconds(10))
        #expect(eventually(.seconds(10)) { writers.allSatisfy(\.isFinished) })

        let promoted = try RedisConnection(port: replica.port)
        #expect(try promoted.call("REPLICAOF", "NO", "ONE") == .simpleString("OK"))
        let held = try contents(port: replica.port)
        acknowledged.lock.lock()
        let keys = acknowledged.keys
        acknowledged.lock.unlock()
        let missing = keys.filter { held[$0] == nil }
        #expect(missing.isEmpty, "\(missing.count) of \(keys.count) acknowledged writes are not on the promoted replica: \(missing.prefix(5))")
        #expect(try promoted.call("SET", "after", "promotion") == .simpleString("OK"))
        let info = try replicationInfo(port: replica.port)
        #expect(info["role"] == "master" && info["master_replid2"] != String(repeating: "0", count: 40))
    }

    @Test("redis-py against a kvsh replica: reads work, writes get READONLY",
          .enabled(if: ExternalTool.python != nil || ExternalTool.required, "python3 with redis-py 5+ is not installed"))
    func redisPyAgainstReplica() throws {
        guard let python = ExternalTool.python else { Issue.record("python3 with redis-py is required"); return }
        let sandbox = try Sandbox()
        let primary = try ServerProcess(sandbox, dataDir: sandbox.path("primary"))
        defer { _ = try? primary.stop() }
        _ = try RedisConnection(port: primary.port).call("SET", "greeting", "hello")
        let replica = try ServerProcess(sandbox, dataDir: sandbox.path("replica"), options: ["--replicaof", "127.0.0.1", String(primary.port)])
        defer { _ = try? replica.stop() }
        #expect(try eventually { try RedisConnection(port: replica.port).call("GET", "greeting") == .bulkString(Array("hello".utf8)) })
        let script = try sandbox.write("replica.py", """
            import redis, sys
            r = redis.Redis(port=\(replica.port))
            assert r.get("greeting") == b"hello", r.get("greeting")
            try:
                r.set("x", "1")
                sys.exit("the write was accepted")
            except redis.exceptions.ReadOnlyError as error:
                print("readonly:", error)
            """)
        let result = try ExternalTool.run(python, [script], sandbox: sandbox)
        #expect(result.termination == .exited(0), "\(result.stderr.text)")
        #expect(result.stdout.text.contains("readonly: You can't write against a read only replica."), "\(result.stdout.text)")
    }

    @Test("a primary that sends garbage, stalls past --repl-timeout, or drops the link mid-RDB: the replica closes, keeps its data and tries again")
    func badPrimaries() throws {
        let sandbox = try Sandbox()
        let peer = try ScriptedPeer()
        // The replica first copies a real kvsh primary, so that it has data to keep.
        let primary = try ServerProcess(sandbox, dataDir: sandbox.path("primary"))
        defer { _ = try? primary.stop() }
        _ = try RedisConnection(port: primary.port).call("SET", "kept", "yes")
        let replica = try ServerProcess(sandbox, dataDir: sandbox.path("replica"),
                                        options: ["--replicaof", "127.0.0.1", String(primary.port), "--repl-timeout", "2", "--repl-ping-replica-period", "1"])
        defer { _ = try? replica.stop() }
        let client = try RedisConnection(port: replica.port)
        #expect(try eventually { try client.call("GET", "kept") == .bulkString(Array("yes".utf8)) })
        #expect(try client.call("REPLICAOF", "127.0.0.1", String(peer.port)) == .simpleString("OK"))

        // Garbage in answer to PING.
        let first = try #require(peer.accept())
        #expect(first.read(until: "PING"))
        first.send("?not redis at all\r\n")
        #expect(first.closedByPeer(timeout: .seconds(10)), "the replica kept a link that answered PING with garbage")

        /// Answers the handshake as a primary does, up to the PSYNC.
        func handshake(_ connection: ScriptedConnection) -> Bool {
            guard connection.read(until: "PING") else { return false }
            connection.send("+PONG\r\n")
            guard connection.read(until: "psync2") else { return false }
            connection.send("+OK\r\n+OK\r\n")
            return connection.read(until: "PSYNC")
        }

        // A full sync cut off in the middle of the RDB.
        let second = try #require(peer.accept(), "the replica did not try again")
        #expect(handshake(second))
        second.send("+FULLRESYNC \(String(repeating: "a", count: 40)) 0\r\n$EOF:\(String(repeating: "m", count: 40))\r\nREDIS0010\u{fe}\u{00}\u{00}\u{03}key")
        second.hangUp()
        #expect(try client.call("GET", "kept") == .bulkString(Array("yes".utf8)), "the replica lost its data to a half sync")
        #expect(try client.call("DBSIZE") == .integer(1))

        // A primary that goes silent after the handshake: dropped after --repl-timeout.
        let third = try #require(peer.accept(), "the replica did not try again after the dropped sync")
        #expect(handshake(third))
        third.send("+CONTINUE\r\n")
        #expect(third.closedByPeer(timeout: .seconds(15)), "the replica kept a silent link past --repl-timeout")
        #expect(try client.call("GET", "kept") == .bulkString(Array("yes".utf8)))
        let info = try replicationInfo(port: replica.port)
        #expect(info["master_link_status"] == "down")
    }

    @Test("a replica that does not read is dropped at the output buffer limit instead of growing the primary")
    func slowReplicaDropped() throws {
        let sandbox = try Sandbox()
        let primary = try ServerProcess(sandbox, dataDir: sandbox.path("primary"),
                                        options: ["--sync", "none", "--client-output-buffer-limit-replica", "1048576"])
        defer { _ = try? primary.stop() }
        let fakeReplica = try ScriptedConnection.connect(port: primary.port, receiveBuffer: 4096)
        fakeReplica.send(RedisConnection.encode(["REPLCONF", "capa", "eof"]) + RedisConnection.encode(["PSYNC", "?", "-1"]))
        #expect(try eventually { try replicationInfo(port: primary.port)["connected_slaves"] == "1" })
        let writer = try RedisConnection(port: primary.port)
        let value = String(repeating: "x", count: 64 << 10)
        for index in 0..<64 { _ = try writer.call("SET", "big\(index)", value) }
        #expect(try eventually { try replicationInfo(port: primary.port)["connected_slaves"] == "0" }, "the replica that does not read was kept")
        #expect(primary.process.wait(timeout: .seconds(10)) { $0.stderr.text.contains("cannot keep up") })
    }

    @Test("a command split across reads counts its every byte in the replica's offset")
    func splitCommandOffset() throws {
        let sandbox = try Sandbox()
        let peer = try ScriptedPeer()
        let replica = try ServerProcess(sandbox, dataDir: sandbox.path("replica"), options: ["--replicaof", "127.0.0.1", String(peer.port)])
        defer { _ = try? replica.stop() }
        let link = try #require(peer.accept())
        #expect(link.read(until: "PING"))
        link.send("+PONG\r\n")
        #expect(link.read(until: "psync2"))
        link.send("+OK\r\n+OK\r\n")
        #expect(link.read(until: "PSYNC"))
        // An empty RDB with the checksum disabled, with the length framing.
        let rdb: [UInt8] = Array("REDIS0010".utf8) + [0xFE, 0x00, 0xFF] + [UInt8](repeating: 0, count: 8)
        link.send(Array("+FULLRESYNC \(String(repeating: "b", count: 40)) 100\r\n$\(rdb.count)\r\n".utf8) + rdb)
        #expect(link.read(until: "ACK"), "no first ACK after the full sync")
        let command = "*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n"
        let cut = command.index(command.startIndex, offsetBy: 17)
        link.send(String(command[..<cut]))
        // The next periodic ACK comes after the first part arrived, alone: only then the rest.
        let seen = link.received.count
        #expect(link.read(until: "ACK", after: seen), "no periodic ACK")
        link.send(String(command[cut...]))
        #expect(link.read(until: "ACK\r\n$3\r\n\(100 + command.utf8.count)\r\n"), "the replica acknowledged another offset: \(link.received.text.suffix(200))")
        #expect(try RedisConnection(port: replica.port).call("GET", "a") == .bulkString(Array("1".utf8)))
    }

    @Test("replication in /metrics and /ready: role, offset, each replica's lag; a replica is ready only while its link is up")
    func replicationMetrics() throws {
        let sandbox = try Sandbox()
        let primaryMetrics = try freePort()
        let primary = try ServerProcess(sandbox, dataDir: sandbox.path("primary"), options: ["--metrics-port", String(primaryMetrics)])
        let replicaMetrics = try freePort()
        let replica = try ServerProcess(sandbox, dataDir: sandbox.path("replica"),
                                        options: ["--replicaof", "127.0.0.1", String(primary.port), "--metrics-port", String(replicaMetrics)])
        defer { _ = try? replica.stop() }
        let client = try RedisConnection(port: primary.port)
        _ = try client.call("SET", "k", "v")
        #expect(try client.call("WAIT", "1", "10000") == .integer(1))
        let exposition = try httpGet(port: primaryMetrics, "/metrics").body
        #expect(exposition.contains("kvsh_replication_role{role=\"primary\"} 1"), "\(exposition)")
        #expect(exposition.contains("kvsh_replication_connected_replicas 1"))
        #expect(exposition.contains("kvsh_replica_lag_bytes{replica=\"127.0.0.1:\(replica.port)\"} 0"), "\(exposition)")
        #expect(exposition.contains("kvsh_replica_lag_seconds{replica=\"127.0.0.1:\(replica.port)\"}"))
        let replicaExposition = try httpGet(port: replicaMetrics, "/metrics").body
        #expect(replicaExposition.contains("kvsh_replication_role{role=\"replica\"} 1"))
        #expect(replicaExposition.contains("kvsh_replication_link_up 1"))
        #expect(try httpGet(port: replicaMetrics, "/ready").status == 200)
        // The primary goes away: the replica is live but not ready, and says why.
        try primary.stop()
        #expect(waitUntil { (try? httpGet(port: replicaMetrics, "/ready").status) == 503 })
        let notReady = try httpGet(port: replicaMetrics, "/ready").body
        #expect(notReady.contains("the link to the primary 127.0.0.1:\(primary.port)"), "\(notReady)")
        #expect(try httpGet(port: replicaMetrics, "/health").status == 200)
    }
}
