// The RDB module against Debian's redis-server 7.0.15: files the writer makes are checked by redis-check-rdb and
// loaded by redis-server; files redis-server saves (SAVE, and redis-cli --rdb) are read by the reader. Each test
// runs its own redis-server on a free loopback port in a temporary directory and stops it at the end.
//
// Skipped when the tools are not installed, unless KVSH_REQUIRE_TOOLS (or CI) is set, as under `make test`: then a
// missing tool fails the test.

import Foundation
import KVTestSupport
import RESP
import Testing
@testable import RDB

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

enum Tools {
    static func path(_ name: String) -> String? {
        let directories = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":")
        return directories.map { "\($0)/\(name)" }.first { access($0, X_OK) == 0 }
    }

    static let required: Bool = ["KVSH_REQUIRE_TOOLS", "CI"].contains { variable in
        ProcessInfo.processInfo.environment[variable].map { !$0.isEmpty && $0 != "0" && $0.lowercased() != "false" } ?? false
    }

    static let server = path("redis-server")
    static let checkRDB = path("redis-check-rdb")
    static let cli = path("redis-cli")
    static var allPresent: Bool { server != nil && checkRDB != nil && cli != nil }

    /// The three tools, or nil after recording a failure naming what is missing (reached only when required).
    static func require() -> (server: String, checkRDB: String, cli: String)? {
        guard let server, let checkRDB, let cli else {
            Issue.record("redis-server, redis-check-rdb and redis-cli are required here (KVSH_REQUIRE_TOOLS or CI is set) but not all found: apt-get install redis-server redis-tools")
            return nil
        }
        return (server, checkRDB, cli)
    }
}

struct InteropError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A TCP port on 127.0.0.1 that nobody listened on a moment ago: bind port 0, read the port, close.
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw InteropError("socket: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw InteropError("bind: \(String(cString: strerror(errno)))") }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// A blocking RESP connection with a deadline on every reply.
final class RedisConnection {
    private let fd: Int32
    private var inbox: [UInt8] = []

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw InteropError("socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            let message = String(cString: strerror(errno))
            // No close here: `fd` is set, so Swift runs deinit (which closes it) although init throws; a
            // second close would close whatever descriptor another thread opened meanwhile.
            throw InteropError("connect to port \(port): \(message)")
        }
    }

    deinit { close(fd) }

    func command(_ arguments: [[UInt8]], timeout: Duration = .seconds(30)) throws -> RESPValue {
        try pipeline([arguments], timeout: timeout)[0]
    }

    /// Sends every command at once and reads their replies, in order: thousands of keys in a few round trips.
    func pipeline(_ commands: [[[UInt8]]], timeout: Duration = .seconds(60)) throws -> [RESPValue] {
        var request: [UInt8] = []
        for arguments in commands { RESPValue.appendCommand(arguments, to: &request) }
        var sent = 0
        while sent < request.count {
            let written = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard written > 0 else { throw InteropError("send: \(String(cString: strerror(errno)))") }
            sent += written
        }
        let deadline = ContinuousClock.now + timeout
        var replies: [RESPValue] = []
        while true {
            let (values, consumed) = try RESPReplyParser().parseAll(inbox)
            replies += values
            inbox.removeFirst(consumed)
            if replies.count >= commands.count { return replies }
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw InteropError("\(replies.count) replies of \(commands.count) in time") }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&poller, 1, Int32(left.components.seconds * 1000 + 1))
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            let received = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if received == 0 { throw InteropError("the server closed the connection") }
            if received > 0 { inbox.append(contentsOf: chunk[..<received]) }
        }
    }

    func command(_ arguments: String...) throws -> RESPValue {
        try command(arguments.map { Array($0.utf8) })
    }
}

/// A child process started with posix_spawn, stdin from /dev/null, stdout and stderr into `outputPath`. Reaped
/// with waitpid here (not Foundation's Process, whose exit monitoring lagged by seconds under the test runner).
struct Child {
    let pid: pid_t

    init(_ executable: String, _ arguments: [String], outputPath: String) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // The test runner's threads may block or ignore signals, and a child inherits both: give it the defaults,
        // so that SIGTERM stops redis-server at once.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGPIPE, SIGINT, SIGTERM, SIGHUP] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attributes, &mask)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let error = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        guard error == 0 else { throw InteropError("posix_spawn \(executable): \(String(cString: strerror(error)))") }
        self.pid = pid
    }

    /// The exit status once the child has exited, or nil if it is still running at `deadline` (checked every 5 ms).
    func wait(until deadline: ContinuousClock.Instant) -> Int32? {
        while true {
            var status: Int32 = 0
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid { return (status & 0x7F) == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F) }
            if result < 0 && errno != EINTR { return -1 }
            if ContinuousClock.now >= deadline { return nil }
            var none = pollfd(fd: -1, events: 0, revents: 0)
            _ = poll(&none, 0, 5)
        }
    }

    var isRunning: Bool { kill(pid, 0) == 0 && wait(until: .now) == nil }

    /// SIGTERM, a bounded wait, then SIGKILL.
    func stop() {
        kill(pid, SIGTERM)
        if wait(until: .now + .seconds(20)) == nil {
            kill(pid, SIGKILL)
            _ = wait(until: .now + .seconds(20))
        }
    }
}

/// A redis-server of its own on a free port, with its files in `directory`. No background saves and no AOF: the
/// tests say when to save.
final class RedisServer {
    let port: Int
    let directory: String
    private let child: Child
    private var stopped = false

    /// `options` go after the defaults, so they may override them.
    init(executable: String, directory: String, options: [String] = []) throws {
        self.directory = directory
        var lastFailure = ""
        for _ in 0..<3 {  // someone else may take the free port before the server binds it
            let port = try freePort()
            let child = try Child(executable, ["--port", String(port), "--bind", "127.0.0.1", "--dir", directory,
                                               "--dbfilename", "dump.rdb", "--save", "", "--appendonly", "no", "--daemonize", "no"] + options,
                                  outputPath: directory + "/redis.log")
            // Ready once PING answers (the dump, if any, is loaded by then), with a deadline, never a fixed sleep.
            let deadline = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < deadline, child.wait(until: .now) == nil {
                if let connection = try? RedisConnection(port: port), (try? connection.command("PING")) == .simpleString("PONG") {
                    self.port = port
                    self.child = child
                    return
                }
                var none = pollfd(fd: -1, events: 0, revents: 0)
                _ = poll(&none, 0, 10)  // between attempts; the deadline above bounds the whole wait
            }
            child.stop()
            lastFailure = (try? String(contentsOfFile: directory + "/redis.log", encoding: .utf8)) ?? "no log"
        }
        throw InteropError("redis-server did not start: \(lastFailure)")
    }

    func connect() throws -> RedisConnection { try RedisConnection(port: port) }

    func stop() {
        guard !stopped else { return }
        stopped = true
        child.stop()
    }

    deinit { stop() }
}

/// Runs a tool to completion (bounded) and returns its exit status and output.
func runTool(_ executable: String, _ arguments: [String], directory: String) throws -> (status: Int32, output: String) {
    let outputPath = directory + "/tool-\(UInt32.random(in: 0...UInt32.max)).out"
    let child = try Child(executable, arguments, outputPath: outputPath)
    let status = child.wait(until: .now + .seconds(60))
    if status == nil { child.stop() }
    let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
    return (status ?? -1, text)
}

/// Reads a whole RDB file through the reader, in 64 KiB chunks.
func readFile(_ path: String) throws -> [RDBEvent] {
    guard let data = FileManager.default.contents(atPath: path) else { throw InteropError("cannot read \(path)") }
    let bytes = [UInt8](data)
    return try readAll(stride(from: 0, to: bytes.count, by: 1 << 16).map { Array(bytes[$0..<min($0 + (1 << 16), bytes.count)]) })
}

func unixMilliseconds() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

@Suite("RDB against redis-server 7.0", .serialized, .enabled(if: Tools.allPresent || Tools.required, "redis-server, redis-check-rdb or redis-cli is not installed"))
struct RedisInteropTests {
    /// Keys of every kind the writer encodes differently.
    static func sampleEntries() -> [Entry] {
        var random = SplitMix64(seed: 2026)
        let future = unixMilliseconds() + 3_600_000
        var items: [Entry] = [
            Entry(bytes("int:small"), bytes("12")), Entry(bytes("int:negative"), bytes("-7")), Entry(bytes("int:16"), bytes("12345")),
            Entry(bytes("int:32"), bytes("2147483647")), Entry(bytes("int:min"), bytes("-2147483648")),
            Entry(bytes("int:over"), bytes("2147483648")), Entry(bytes("int:zeros"), bytes("007")), Entry(bytes("int:zero"), bytes("0")),
            Entry(bytes("empty"), []), Entry([], bytes("the empty key")),
            Entry(bytes("long:repetitive"), bytes(String(repeating: "hello world ", count: 500))),
            Entry(bytes("long:run"), Array(repeating: 0x61, count: 100_000)),
            Entry(bytes("binary:all"), (0...255).map { UInt8($0) }), Entry(bytes("binary:random"), random.bytes(5000)),
            Entry([0x00, 0xFF, 0x0D, 0x0A], bytes("binary key")),
            Entry(bytes("expiring"), bytes("soon"), future), Entry(bytes("expiring:int"), bytes("42"), future + 1),
            Entry(bytes("expiring:long"), bytes(String(repeating: "x", count: 300)), future + 2),
            Entry(bytes("12345"), bytes("an int-encoded key")),
        ]
        for index in 0..<3000 {
            items.append(Entry(bytes("key:\(index)"), bytes("value-\(index)-" + String(repeating: "v", count: index % 150)),
                               index % 10 == 0 ? future + Int64(index) : nil))
        }
        return items
    }

    /// Every key's value and absolute expiry as the server holds them.
    func contents(of server: RedisServer, keys: [[UInt8]]) throws -> [Entry] {
        let connection = try server.connect()
        let replies = try connection.pipeline(keys.flatMap { [[bytes("GET"), $0], [bytes("PEXPIRETIME"), $0]] })
        return try keys.enumerated().map { index, key in
            let (value, expiry) = (replies[2 * index], replies[2 * index + 1])
            guard case .bulkString(let stored) = value, case .integer(let expireAt) = expiry else {
                throw InteropError("GET/PEXPIRETIME \(printable(key)): \(value) \(expiry)")
            }
            return Entry(key, stored, expireAt >= 0 ? Int64(expireAt) : nil)
        }
    }

    @Test("the writer's files pass redis-check-rdb and redis-server loads every key", arguments: [true, false])
    func writerToRedis(compression: Bool) throws {
        guard let tools = Tools.require() else { return }
        try withTempDir { directory in
            let items = Self.sampleEntries()
            let id = String(repeating: "0123456789abcdef", count: 3).prefix(40)
            var writer = RDBWriter(auxFields: RDBWriter.replicationAuxFields(replicationID: String(id), replicationOffset: 777),
                                   compression: compression)
            writer.selectDB(0)
            writer.resizeDB(keys: items.count, expires: items.filter { $0.expireAtMs != nil }.count)
            var file: [UInt8] = []
            for item in items {
                writer.append(key: item.key, value: item.value, expireAtMs: item.expireAtMs)
                if writer.pendingByteCount >= 1 << 14 { writer.drain { file.append(contentsOf: $0) } }
            }
            writer.finish()
            writer.drain { file.append(contentsOf: $0) }
            let path = directory + "/dump.rdb"
            try Data(file).write(to: URL(fileURLWithPath: path))
            if compression {
                // The 100 000-byte run alone would make the file bigger than this without LZF.
                #expect(file.count < 100_000)
            }

            let check = try runTool(tools.checkRDB, [path], directory: directory)
            #expect(check.status == 0, "redis-check-rdb: \(check.output)")
            #expect(check.output.contains("RDB looks OK"), "\(check.output)")

            let server = try RedisServer(executable: tools.server, directory: directory)
            defer { server.stop() }
            let connection = try server.connect()
            #expect(try connection.command("DBSIZE") == .integer(items.count))
            #expect(try contents(of: server, keys: items.map(\.key)) == items)
        }
    }

    @Test("the reader reads what redis-server saves and what redis-cli --rdb receives")
    func redisToReader() throws {
        guard let tools = Tools.require() else { return }
        try withTempDir { directory in
            // No 5-second wait for more replicas before a diskless transfer to redis-cli --rdb.
            let server = try RedisServer(executable: tools.server, directory: directory, options: ["--repl-diskless-sync-delay", "0"])
            defer { server.stop() }
            let connection = try server.connect()
            var random = SplitMix64(seed: 70)
            var keys: [[UInt8]] = []
            var sets: [[[UInt8]]] = []
            func set(_ key: [UInt8], _ value: [UInt8], _ options: [String] = []) {
                sets.append([bytes("SET"), key, value] + options.map(bytes))
                keys.append(key)
            }
            set(bytes("int"), bytes("12345"))
            set(bytes("negative"), bytes("-7"))
            set(bytes("big"), bytes("9223372036854775807"))
            set(bytes("empty"), [])
            set(bytes("repetitive"), bytes(String(repeating: "abcdefgh", count: 1000)))
            set(bytes("run"), Array(repeating: 0x2A, count: 50_000))
            set(bytes("binary"), (0...255).map { UInt8($0) } + random.bytes(1000))
            set([0xC3, 0x00, 0xFF], bytes("binary key"))
            set(bytes("ttl"), bytes("expires"), ["EX", "3600"])
            set(bytes("ttl:long"), bytes(String(repeating: "ttl ", count: 100)), ["PX", "7200000"])
            for index in 0..<2000 { set(bytes("k\(index)"), bytes("\(index)-" + String(repeating: "q", count: index % 64))) }
            #expect(try connection.pipeline(sets).allSatisfy { $0 == .simpleString("OK") })
            #expect(try connection.command("SAVE") == .simpleString("OK"))
            let expected = try contents(of: server, keys: keys)
            #expect(expected.filter { $0.expireAtMs != nil }.count == 2)

            func check(_ events: [RDBEvent], _ source: String) {
                #expect(events.contains(.aux(key: "redis-ver", value: "7.0.15")), "\(source)")
                #expect(events.contains(.selectDB(0)), "\(source)")
                #expect(events.last == .end, "\(source)")
                let read = entries(events)
                #expect(read.count == expected.count, "\(source)")
                let byKey = Dictionary(read.map { ($0.key, $0) }, uniquingKeysWith: { first, _ in first })
                for entry in expected where byKey[entry.key] != entry {
                    Issue.record("\(source): \(entry) read as \(byKey[entry.key].map(\.description) ?? "missing")")
                }
            }
            let saved = directory + "/dump.rdb"
            // The repeated values were stored compressed: the file is smaller than their text.
            let size = (try FileManager.default.attributesOfItem(atPath: saved)[.size] as? Int) ?? 0
            #expect(size > 0 && size < 50_000)
            check(try readFile(saved), "SAVE")

            let received = directory + "/received.rdb"
            let cli = try runTool(tools.cli, ["-p", String(server.port), "--rdb", received], directory: directory)
            #expect(cli.status == 0, "redis-cli --rdb: \(cli.output)")
            check(try readFile(received), "redis-cli --rdb")
        }
    }

    @Test("a list key is refused with an error naming the key and the type")
    func listRefused() throws {
        guard let tools = Tools.require() else { return }
        try withTempDir { directory in
            let server = try RedisServer(executable: tools.server, directory: directory)
            defer { server.stop() }
            let connection = try server.connect()
            #expect(try connection.command("SET", "a", "1") == .simpleString("OK"))
            #expect(try connection.command("RPUSH", "mylist", "x", "y") == .integer(2))
            #expect(try connection.command("SAVE") == .simpleString("OK"))
            do {
                let events = try readFile(directory + "/dump.rdb")
                Issue.record("read a file with a list: \(events)")
            } catch let error as RDBError {
                guard case .unsupportedType(let key, let type) = error.kind else { Issue.record("\(error)"); return }
                #expect(key == bytes("mylist"))
                #expect(type == 18)  // 7.0 saves lists as quicklist2
                #expect(error.description.contains("key 'mylist' holds a list"), "\(error)")
            }
        }
    }
}
