// `kvsh serve` as a process: durability across kill -9, a graceful SIGTERM, refusals at start-up, and real Redis
// clients (redis-cli, redis-cli --pipe, redis-benchmark, redis-py) speaking to it.
//
// Uses ServerProcess and freePort (ClientTests.swift) to run the server on a free port.

import Foundation
import Synchronization
import Testing
import RESP

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

// MARK: - A small RESP client

/// A reply as it came over the wire: the RESP module's value, read by its parser (no codec of the tests' own).
typealias RedisReply = RESPValue

extension RESPValue {
    static func simple(_ text: String) -> RESPValue { .simpleString(text) }
    static func text(_ text: String) -> RESPValue { .bulkString(Array(text.utf8)) }
}

/// A blocking RESP2 client on a plain socket, with a deadline on every wait.
final class RedisConnection {
    private let fd: Int32
    private var inbox: [UInt8] = []
    private var start = 0
    private(set) var closedByServer = false

    init(port: Int, host: String = "127.0.0.1") throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HarnessError("socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr(host)
        address.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            let message = String(cString: strerror(errno))
            // No close here: `fd` is set, so Swift runs deinit (which closes it) although init throws; a
            // second close would close whatever descriptor another thread opened meanwhile.
            throw HarnessError("connect to port \(port): \(message)")
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
    }

    deinit { close(fd) }

    static func encode(_ arguments: [String]) -> [UInt8] {
        var bytes: [UInt8] = []
        RESPValue.appendCommand(arguments.map { Array($0.utf8) }, to: &bytes)
        return bytes
    }

    /// Sends all of `bytes` (reading replies meanwhile, so a server answering as it reads cannot deadlock us).
    func send(_ bytes: [UInt8], timeout: Duration = .seconds(20)) throws {
        let deadline = ContinuousClock.now + timeout
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n > 0 {
                offset += n
            } else if n < 0 && (errno == EAGAIN || errno == EINTR) {
                guard ContinuousClock.now < deadline else { throw HarnessError("send did not finish within \(timeout)") }
                var entry = pollfd(fd: fd, events: Int16(POLLOUT | POLLIN), revents: 0)
                _ = poll(&entry, 1, 50)
                try receive()
            } else {
                throw HarnessError("send: \(String(cString: strerror(errno)))")
            }
        }
    }

    func call(_ arguments: String..., timeout: Duration = .seconds(10)) throws -> RedisReply {
        try send(Self.encode(arguments))
        return try reply(timeout: timeout)
    }

    /// Reads what has arrived without blocking.
    private func receive() throws {
        var chunk = [UInt8](repeating: 0, count: 65536)
        while !closedByServer {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 {
                inbox.append(contentsOf: chunk[..<n])
            } else if n == 0 || (n < 0 && errno == ECONNRESET) {
                closedByServer = true
            } else if errno == EINTR {
                continue
            } else if errno == EAGAIN {
                return
            } else {
                throw HarnessError("recv: \(String(cString: strerror(errno)))")
            }
        }
    }

    /// The next reply; throws on a timeout or when the server closes first.
    func reply(timeout: Duration = .seconds(10)) throws -> RedisReply {
        let deadline = ContinuousClock.now + timeout
        while true {
            if let (value, end) = try parse(from: start) {
                start = end
                if start == inbox.count {
                    inbox.removeAll(keepingCapacity: true)
                    start = 0
                }
                return value
            }
            if closedByServer { throw HarnessError("the server closed the connection") }
            guard ContinuousClock.now < deadline else {
                throw HarnessError("no reply within \(timeout); unparsed: \"\(escaped(inbox[start...]))\"")
            }
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&entry, 1, 50)
            try receive()
        }
    }

    /// Waits for the server to close the connection; returns what arrived unparsed before that.
    func waitForClose(timeout: Duration = .seconds(10)) throws -> [UInt8] {
        let deadline = ContinuousClock.now + timeout
        while !closedByServer {
            guard ContinuousClock.now < deadline else { throw HarnessError("the server kept the connection open for \(timeout)") }
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            _ = poll(&entry, 1, 50)
            try receive()
        }
        return Array(inbox[start...])
    }

    /// The reply starting at `index`, and where it ends; nil while it has not all arrived.
    private func parse(from index: Int) throws -> (RedisReply, Int)? {
        guard index < inbox.count else { return nil }
        var source = RESPBufferSource(Array(inbox[index...]))
        do {
            let value = try RESPReplyParser().parse(from: &source)
            return (value, index + source.position)
        } catch RESPParseError.incomplete {
            return nil
        } catch {
            throw HarnessError("not RESP: \(error) in \"\(escaped(inbox[index...]))\"")
        }
    }
}

// MARK: - Other programs

/// Redis's own tools and Python, found on PATH.
enum ExternalTool {
    static func path(_ name: String) -> String? {
        let directories = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":")
        for directory in directories {
            let candidate = "\(directory)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    /// Whether the tools `.ci/install-deps test` installs are required, so that a missing one is a failure rather
    /// than a reason to skip: under `make test` (which sets KVSH_REQUIRE_TOOLS=1 after installing them) and on CI.
    /// A developer running `swift test` by hand without them gets the tests skipped.
    static let required = isSet("KVSH_REQUIRE_TOOLS") || isSet("CI")

    private static func isSet(_ variable: String) -> Bool {
        ProcessInfo.processInfo.environment[variable].map { !$0.isEmpty && $0 != "0" && $0.lowercased() != "false" } ?? false
    }

    static let redisCLI = path("redis-cli")
    static let redisBenchmark = path("redis-benchmark")
    /// python3, if it has redis-py 5 or newer (RESP3 support).
    static let python: String? = {
        guard let python = path("python3"), let sandbox = try? Sandbox(),
              let result = try? run(python, ["-c", "import redis, sys; sys.exit(0 if int(redis.__version__.split('.')[0]) >= 5 else 1)"],
                                    sandbox: sandbox, timeout: .seconds(30)) else { return nil }
        return result.termination == .exited(0) ? python : nil
    }()

    /// Runs `executable` with stdin from `stdinFile` (else /dev/null), stdout and stderr into files, to completion.
    /// Files rather than pipes: nothing is left open in this process for another test's child to inherit.
    static func run(_ executable: String, _ arguments: [String], sandbox: Sandbox, stdinFile: String? = nil,
                    timeout: Duration = .seconds(60)) throws -> RunResult {
        let stamp = UInt64.random(in: 0...UInt64.max)
        let outPath = sandbox.path("tool-\(stamp).out"), errPath = sandbox.path("tool-\(stamp).err")
        func contents(_ path: String) -> [UInt8] { (try? Data(contentsOf: URL(fileURLWithPath: path))).map { [UInt8]($0) } ?? [] }
        let pid = try spawn(executable: executable, arguments: arguments, environment: sandbox.environment(),
                            directory: nil, newSession: false) {
            posix_spawn_file_actions_addopen(&$0, 0, stdinFile ?? "/dev/null", O_RDONLY, 0)
            posix_spawn_file_actions_addopen(&$0, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
            posix_spawn_file_actions_addopen(&$0, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        }
        guard let termination = reap(pid, by: ContinuousClock.now + timeout) else {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            _ = waitpid(pid, &status, 0)
            throw HarnessError("\(executable) \(arguments.joined(separator: " ")) did not finish within \(timeout); "
                               + "stdout: \"\(escaped(contents(outPath)))\"")
        }
        let output = contents(outPath), errors = contents(errPath)
        unlink(outPath)
        unlink(errPath)
        return RunResult(termination: termination, stdout: output, stderr: errors)
    }
}

/// Words on stderr that mean the server crashed rather than stopped.
private func expectNoCrash(_ stderr: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) {
    let text = stderr.text.lowercased()
    for trap in ["fatal error", "backtrac", "stack dump", "program crashed", "💣"] {
        #expect(!text.contains(trap), "the server's stderr shows a crash ('\(trap)'): \"\(escaped(stderr))\"", sourceLocation: sourceLocation)
    }
}

// MARK: - The server process

/// Shared between the writer threads of the kill -9 test and the test itself.
private final class WriteProgress: Sendable {
    let acknowledged = Atomic<Int>(0)
    let killed = Atomic<Bool>(false)
    let failures = Mutex<[String]>([])
}

/// One writer's record: per key, the highest sequence number sent and the highest acknowledged with +OK.
private final class WriterRecord: @unchecked Sendable {
    var sent: [Int: Int] = [:]
    var acknowledged: [Int: Int] = [:]
}

@Suite("kvsh serve", .timeLimit(.minutes(10)))
struct ServerTests {
    /// Several clients pipeline SETs; the server is killed with SIGKILL mid-traffic; every write acknowledged
    /// with +OK must be there after a restart (writes sent but not acknowledged may or may not be).
    @Test("kill -9 mid-traffic: every acknowledged write survives a restart (plain and encrypted)", arguments: [false, true])
    func killNineKeepsAcknowledgedWrites(encrypted: Bool) throws {
        let sandbox = try Sandbox()
        let keyOptions = encrypted ? ["--encryption-key-file", try makeKeyFile(sandbox)] : []
        let server = try ServerProcess(sandbox, dataDir: sandbox.dataDir, options: keyOptions)
        let writers = 4, keysPerWriter = 50, batch = 50
        let progress = WriteProgress()
        let records = (0..<writers).map { _ in WriterRecord() }
        let finished = DispatchSemaphore(value: 0)
        let port = server.port
        for writer in 0..<writers {
            let record = records[writer]
            let thread = Thread {
                defer { finished.signal() }
                do {
                    let client = try RedisConnection(port: port)
                    var sequence = 0
                    // Each SET writes its sequence number under key (sequence % keysPerWriter): per key, values only grow.
                    while !progress.killed.load(ordering: .relaxed) && sequence < 1_000_000 {
                        let first = sequence
                        var bytes: [UInt8] = []
                        for _ in 0..<batch {
                            let key = sequence % keysPerWriter
                            bytes += RedisConnection.encode(["SET", "w\(writer):k\(key)", String(sequence)])
                            record.sent[key] = sequence
                            sequence += 1
                        }
                        try client.send(bytes)
                        for offset in 0..<batch {
                            let reply = try client.reply(timeout: .seconds(30))
                            guard reply == .simple("OK") else {
                                progress.failures.withLock { $0.append("writer \(writer): SET \(first + offset) got \(reply)") }
                                return
                            }
                            record.acknowledged[(first + offset) % keysPerWriter] = first + offset
                            progress.acknowledged.add(1, ordering: .relaxed)
                        }
                    }
                } catch {
                    // After the kill the connection breaks: that is the point. Before it, it is a failure.
                    if !progress.killed.load(ordering: .relaxed) {
                        progress.failures.withLock { $0.append("writer \(writer) before the kill: \(error)") }
                    }
                }
            }
            thread.start()
        }

        let deadline = ContinuousClock.now + .seconds(60)
        while progress.acknowledged.load(ordering: .relaxed) < 4000 && ContinuousClock.now < deadline
              && progress.failures.withLock({ $0.isEmpty }) {
            usleep(5_000)
        }
        let acknowledgedAtKill = progress.acknowledged.load(ordering: .relaxed)
        progress.killed.store(true, ordering: .relaxed)
        server.process.signal(SIGKILL)
        for _ in 0..<writers {
            #expect(finished.wait(timeout: .now() + .seconds(60)) == .success, "a writer thread did not end after the kill")
        }
        #expect(try server.process.finish() == .signaled(SIGKILL))
        #expect(acknowledgedAtKill >= 4000, "only \(acknowledgedAtKill) SETs were acknowledged within 60 s")
        let failures = progress.failures.withLock { $0 }
        #expect(failures.isEmpty, "\(failures)")

        // Restart on the same data directory and read every key back.
        let restarted = try ServerProcess(sandbox, dataDir: sandbox.dataDir, options: keyOptions)
        let reader = try RedisConnection(port: restarted.port)
        var lost: [String] = []
        var checked = 0
        for writer in 0..<writers {
            let record = records[writer]
            let keys = (0..<keysPerWriter).map { "w\(writer):k\($0)" }
            try reader.send(keys.flatMap { RedisConnection.encode(["GET", $0]) })
            for key in 0..<keysPerWriter {
                let reply = try reader.reply()
                let stored: Int?
                switch reply {
                case .null: stored = nil
                case .bulkString(let bytes): stored = Int(bytes.text)
                default:
                    lost.append("\(keys[key]): unexpected \(reply)")
                    continue
                }
                // Per key the values only grow: at least the last acknowledged one must be there.
                if let acknowledged = record.acknowledged[key] {
                    checked += 1
                    if (stored ?? -1) < acknowledged {
                        lost.append("\(keys[key]): acknowledged \(acknowledged), found \(reply)")
                    }
                }
                // Whatever is there was sent, under this key.
                if let stored, stored % keysPerWriter != key || stored > (record.sent[key] ?? -1) {
                    lost.append("\(keys[key]): holds \(stored), which was never sent to it")
                }
            }
        }
        #expect(checked > 0)
        #expect(lost.isEmpty, "\(lost.count) keys lost acknowledged writes: \(lost.prefix(10))")
        #expect(try restarted.stop() == .exited(0))
    }

    /// SIGTERM: requests in flight are finished and acknowledged, idle connections closed, exit 0, lock released.
    @Test("SIGTERM: exit 0, connections closed, acknowledged writes kept, the lock released")
    func sigtermIsGraceful() throws {
        let sandbox = try Sandbox()
        let server = try ServerProcess(sandbox, dataDir: sandbox.dataDir)
        let client = try RedisConnection(port: server.port)
        #expect(try client.call("SET", "k", "v") == .simple("OK"))
        let idle = try RedisConnection(port: server.port)
        #expect(try idle.call("PING") == .simple("PONG"))

        // A pipeline in flight when the signal arrives.
        let busy = try RedisConnection(port: server.port)
        let count = 3000
        try busy.send((0..<count).flatMap { RedisConnection.encode(["SET", "p:\($0)", String($0)]) })
        #expect(try busy.reply(timeout: .seconds(20)) == .simple("OK"))

        let ended = try server.stop()
        #expect(ended == .exited(0), "\(ended); stderr: \"\(escaped(server.process.stderr))\"")
        expectNoCrash(server.process.stderr)

        // The busy client gets +OK for a prefix of its SETs, then the connection closes.
        var acknowledged = 1
        while true {
            guard let reply = try? busy.reply(timeout: .seconds(10)) else { break }
            #expect(reply == .simple("OK"), "reply \(acknowledged): \(reply)")
            guard reply == .simple("OK") else { break }
            acknowledged += 1
        }
        #expect(busy.closedByServer)
        #expect(acknowledged <= count)
        #expect(try idle.waitForClose().isEmpty, "the idle connection got bytes before it was closed")

        // The lock is released: a one-shot kvsh opens the store, and finds the data.
        let get = try sandbox.kvsh(["GET", "k"])
        #expect(get.termination == .exited(0) && get.stdout == Array("v\n".utf8), "\(get.summary)")
        let script = (0..<acknowledged).map { "GET p:\($0)\n" }.joined()
        let read = try sandbox.kvsh([], script: script)
        #expect(read.termination == .exited(0), "\(read.summary)")
        let lines = read.stdoutLines
        #expect(lines == (0..<acknowledged).map(String.init), "acknowledged SETs missing after SIGTERM (\(acknowledged) acknowledged)")
    }

    @Test("a second serve on the same data directory, or on a port in use, exits 2 with one clear line")
    func refusals() throws {
        let sandbox = try Sandbox()
        let server = try ServerProcess(sandbox, dataDir: sandbox.dataDir)

        let second = try sandbox.run(["serve", "--data-dir", sandbox.dataDir, "--port", String(try freePort())])
        expectRefusal(second, mentioning: ["in use", "pid \(server.process.pid)"])

        let clash = try sandbox.run(["serve", "--data-dir", sandbox.path("other-data"), "--port", String(server.port)])
        expectRefusal(clash, mentioning: ["cannot listen", "127.0.0.1:\(server.port)", "address already in use"])

        // The first server is unharmed.
        let client = try RedisConnection(port: server.port)
        #expect(try client.call("PING") == .simple("PONG"))
        #expect(try server.stop() == .exited(0))
    }

    @Test("--timeout closes idle clients and --tcp-keepalive sets the probes; CONFIG GET reports both; bad values are refused")
    func timeoutAndKeepaliveFlags() throws {
        let sandbox = try Sandbox()
        let server = try ServerProcess(sandbox, options: ["--timeout", "1", "--tcp-keepalive", "60"])
        let idle = try RedisConnection(port: server.port)
        #expect(try idle.call("CONFIG", "GET", "timeout") == .array([.text("timeout"), .text("1")]))
        #expect(try idle.call("CONFIG", "GET", "tcp-keepalive") == .array([.text("tcp-keepalive"), .text("60")]))
        _ = try idle.waitForClose(timeout: .seconds(15))  // throws if the server keeps it open that long
        #expect(try server.stop() == .exited(0))

        for (flag, value) in [("--timeout", "-1"), ("--timeout", "x"), ("--tcp-keepalive", "-5"), ("--tcp-keepalive", "40000")] {
            let refused = try sandbox.run(["serve", "--data-dir", sandbox.path("other"), "--port", "0", flag, value])
            #expect(refused.termination == .exited(2), "\(flag) \(value): \(refused.summary)")
            #expect(refused.stderrText.contains(flag), "\(flag) \(value): \(refused.summary)")
        }
    }

    @Test("SHUTDOWN stops the server as SIGTERM does: no reply, exit 0, every write kept; its options are Redis's")
    func shutdownCommand() throws {
        let sandbox = try Sandbox()
        let server = try ServerProcess(sandbox)
        let client = try RedisConnection(port: server.port)
        #expect(try client.call("SET", "k", "v") == .simpleString("OK"))
        #expect(try client.call("SHUTDOWN", "ABORT") == .error("ERR No shutdown in progress."))
        #expect(try client.call("SHUTDOWN", "BOGUS") == .error("ERR syntax error"))
        #expect(try client.call("SHUTDOWN", "SAVE", "NOSAVE") == .error("ERR syntax error"))
        try client.send(RedisConnection.encode(["SHUTDOWN", "NOSAVE", "NOW"]))
        let reply = try? client.reply(timeout: .seconds(20))
        #expect(reply == nil, "SHUTDOWN replied \(String(describing: reply))")
        #expect(try server.process.finish(timeout: .seconds(20)) == .exited(0))
        #expect(server.process.errorOutput.text.contains("shutdown requested by a client"), "\(server.process.errorOutput.text)")
        let again = try ServerProcess(sandbox)
        #expect(try RedisConnection(port: again.port).call("GET", "k") == .text("v"))
        #expect(try again.stop() == .exited(0))
    }

    @Test("listening beyond loopback without a password is warned about (protected mode on or off); loopback is not")
    func warnsWhenExposed() throws {
        let sandbox = try Sandbox()
        // Port 0: the kernel picks a free port, so no other test's server can race for it.
        func serve(_ arguments: [String], until line: String) throws -> (found: Bool, stderr: String, ended: Termination) {
            let process = try PipedProcess(arguments: ["serve", "--port", "0"] + arguments,
                                           environment: sandbox.environment(), directory: sandbox.root)
            let found = process.wait(timeout: .seconds(20)) { $0.stderr.text.contains(line) }
            process.signal(SIGTERM)
            let ended = try process.finish(timeout: .seconds(20))
            return (found, process.stderr.text, ended)
        }
        let guarded = try serve(["--data-dir", sandbox.path("guarded-data"), "--bind", "0.0.0.0"], until: "protected mode refuses")
        #expect(guarded.found && guarded.ended == .exited(0), "\(guarded.ended); stderr: \(guarded.stderr)")
        let exposed = try serve(["--data-dir", sandbox.path("exposed-data"), "--bind", "0.0.0.0", "--protected-mode", "no"],
                                until: "without authentication")
        #expect(exposed.found && exposed.ended == .exited(0), "\(exposed.ended); stderr: \(exposed.stderr)")
        // The warning names the port actually listened on, not the 0 asked for.
        let port = exposed.stderr.split(separator: "listening on 0.0.0.0 without authentication: anyone who can reach port ").dropFirst().first?
            .prefix { $0.isNumber }
        #expect(port.flatMap { Int($0) }.map { $0 > 0 } == true, "stderr: \(exposed.stderr)")

        let local = try serve(["--data-dir", sandbox.path("local-data")], until: "kvsh server listening")
        #expect(local.found && local.ended == .exited(0), "\(local.ended); stderr: \(local.stderr)")
        #expect(!local.stderr.contains("without authentication") && !local.stderr.contains("protected mode"), "stderr: \(local.stderr)")
        let withPassword = try serve(["--data-dir", sandbox.path("password-data"), "--bind", "0.0.0.0", "--requirepass", "pw"],
                                     until: "kvsh server listening")
        #expect(withPassword.found && !withPassword.stderr.contains("without"), "stderr: \(withPassword.stderr)")
    }
}

// MARK: - Real clients

/// Whether a test that needs `tool` runs: always when the tools are required (`make test`, CI: a missing tool is an
/// install bug and fails the test), elsewhere only when it is installed.
private func runs(with tool: String?) -> Bool { tool != nil || ExternalTool.required }

@Suite("Real Redis clients against kvsh serve", .timeLimit(.minutes(10)))
struct RedisClientInteropTests {
    /// `tool`, or a failure saying what to install (reached only when the tools are required).
    private func require(_ tool: String?, _ name: String, install: String) -> String? {
        if tool == nil {
            Issue.record("\(name) is required here (KVSH_REQUIRE_TOOLS or CI is set) but not found: \(install), or run `make test-deps` (.ci/install-deps test)")
        }
        return tool
    }

    @Test("redis-cli one-shot commands", .enabled(if: runs(with: ExternalTool.redisCLI), "redis-cli is not installed (apt-get install redis-tools)"))
    func redisCLIOneShot() throws {
        guard let cli = require(ExternalTool.redisCLI, "redis-cli", install: "apt-get install redis-tools") else { return }
        let sandbox = try Sandbox()
        let server = try ServerProcess(sandbox)
        func cliRun(_ arguments: String...) throws -> RunResult {
            try ExternalTool.run(cli, ["-p", String(server.port)] + arguments, sandbox: sandbox)
        }
        let set = try cliRun("SET", "k", "hello world")
        #expect(set.termination == .exited(0) && set.stdout.text == "OK\n", "\(set.summary)")
        let get = try cliRun("GET", "k")
        #expect(get.termination == .exited(0) && get.stdout.text == "hello world\n", "\(get.summary)")
        let missing = try cliRun("GET", "missing")
        #expect(missing.stdout.text == "\n", "\(missing.summary)")
        let ping = try cliRun("PING")
        #expect(ping.stdout.text == "PONG\n", "\(ping.summary)")
        let dbsize = try cliRun("DBSIZE")
        #expect(dbsize.stdout.text == "1\n", "\(dbsize.summary)")
        let unknown = try cliRun("NOSUCH", "x")
        #expect(unknown.stdout.text.contains("ERR unknown command 'NOSUCH'"), "\(unknown.summary)")
        // Walking the keyspace: --scan (SCAN) and --bigkeys (SCAN, TYPE, STRLEN).
        let scan = try cliRun("--scan", "--pattern", "k*")
        #expect(scan.termination == .exited(0) && scan.stdout.text == "k\n", "\(scan.summary)")
        let bigKeys = try cliRun("--bigkeys")
        #expect(bigKeys.termination == .exited(0), "\(bigKeys.summary)")
        #expect(bigKeys.stdout.text.contains("Biggest string found") && bigKeys.stdout.text.contains("has 11 bytes"), "\(bigKeys.summary)")
        // RESP3 (redis-cli -3 sends HELLO 3 first).
        let three = try cliRun("-3", "GET", "k")
        #expect(three.termination == .exited(0) && three.stdout.text == "hello world\n", "\(three.summary)")
        #expect(try server.stop() == .exited(0))
    }

    @Test("redis-cli --pipe mass insertion of 100k SETs", .enabled(if: runs(with: ExternalTool.redisCLI), "redis-cli is not installed (apt-get install redis-tools)"))
    func redisCLIPipe() throws {
        guard let cli = require(ExternalTool.redisCLI, "redis-cli", install: "apt-get install redis-tools") else { return }
        let sandbox = try Sandbox()
        let server = try ServerProcess(sandbox)
        // The protocol as the mass-insertion documentation generates it.
        var protocolText: [UInt8] = []
        protocolText.reserveCapacity(100_000 * 48)
        for index in 0..<100_000 {
            protocolText += RedisConnection.encode(["SET", "key:\(index)", "value:\(index)"])
        }
        let input = sandbox.path("mass-insert.resp")
        try Data(protocolText).write(to: URL(fileURLWithPath: input))
        let pipe = try ExternalTool.run(cli, ["-p", String(server.port), "--pipe"], sandbox: sandbox, stdinFile: input, timeout: .seconds(120))
        #expect(pipe.termination == .exited(0), "\(pipe.summary)")
        #expect(pipe.stdout.text.contains("errors: 0, replies: 100000"), "\(pipe.summary)")
        let dbsize = try ExternalTool.run(cli, ["-p", String(server.port), "DBSIZE"], sandbox: sandbox)
        #expect(dbsize.stdout.text == "100000\n", "\(dbsize.summary)")
        let sample = try ExternalTool.run(cli, ["-p", String(server.port), "GET", "key:99999"], sandbox: sandbox)
        #expect(sample.stdout.text == "value:99999\n", "\(sample.summary)")
        #expect(try server.stop() == .exited(0))
    }

    @Test("redis-benchmark -t set,get smoke run", .enabled(if: runs(with: ExternalTool.redisBenchmark), "redis-benchmark is not installed (apt-get install redis-tools)"))
    func redisBenchmark() throws {
        guard let benchmark = require(ExternalTool.redisBenchmark, "redis-benchmark", install: "apt-get install redis-tools") else { return }
        let sandbox = try Sandbox()
        let server = try ServerProcess(sandbox)
        let result = try ExternalTool.run(benchmark, ["-p", String(server.port), "-t", "set,get", "-n", "20000", "-c", "20", "-q"],
                                          sandbox: sandbox, timeout: .seconds(120))
        #expect(result.termination == .exited(0), "\(result.summary)")
        // -q prints progress with carriage returns; the final report per test is "NAME: N requests per second, ...".
        let lines = result.stdout.text.split(whereSeparator: \.isNewline).map(String.init)
        for test in ["SET", "GET"] {
            let report = lines.last { $0.hasPrefix("\(test): ") && $0.contains("requests per second") }
            #expect(report != nil, "no \(test) report: \(result.summary)")
            if let report {
                let rate = Double(report.dropFirst(test.count + 2).prefix { $0 != " " }) ?? 0
                #expect(rate > 0, "\(report)")
            }
        }
        #expect(!result.stdout.text.contains("ERR"), "\(result.summary)")
        #expect(try server.stop() == .exited(0))
    }

    @Test("redis-py in RESP2 and RESP3", .enabled(if: runs(with: ExternalTool.python), "python3 with redis-py 5 or newer is not installed (python3 -m pip install redis)"))
    func redisPy() throws {
        guard let python = require(ExternalTool.python, "python3 with redis-py 5 or newer", install: "python3 -m pip install 'redis>=5'") else { return }
        let sandbox = try Sandbox()
        let server = try ServerProcess(sandbox)
        let script = try sandbox.write("redis_py_check.py", redisPyScript)
        let result = try ExternalTool.run(python, [script, String(server.port)], sandbox: sandbox, timeout: .seconds(60))
        #expect(result.termination == .exited(0) && result.stdout.text == "OK\n", "\(result.summary)")
        #expect(try server.stop() == .exited(0))
    }
}

/// Exercises kvsh's commands through redis-py with both protocols; prints OK, or fails with the first difference.
private let redisPyScript = #"""
import sys

import redis

port = int(sys.argv[1])


def check(protocol):
    r = redis.Redis(host="127.0.0.1", port=port, protocol=protocol, socket_timeout=10)
    p = f"p{protocol}:"

    def eq(got, want, what):
        if got != want:
            raise AssertionError(f"RESP{protocol} {what}: want {want!r}, got {got!r}")

    def fails(call, words, what):
        try:
            call()
        except redis.ResponseError as error:
            if words not in str(error):
                raise AssertionError(f"RESP{protocol} {what}: error {error!r} does not say {words!r}")
            return
        raise AssertionError(f"RESP{protocol} {what}: no error")

    eq(r.ping(), True, "PING")
    eq(r.echo("hi there"), b"hi there", "ECHO")
    hello = r.execute_command("HELLO", protocol)
    if isinstance(hello, list):
        hello = dict(zip(hello[::2], hello[1::2]))
    eq(hello.get(b"proto"), protocol, "HELLO proto")
    eq(hello.get(b"server"), b"kvsh", "HELLO server")
    eq(r.client_setname(f"py{protocol}"), True, "CLIENT SETNAME")
    name = r.client_getname()  # redis-py decodes the name
    eq(name.decode() if isinstance(name, bytes) else name, f"py{protocol}", "CLIENT GETNAME")

    k = p + "k"
    eq(r.set(k, "v1"), True, "SET")
    eq(r.get(k), b"v1", "GET")
    eq(r.get(p + "missing"), None, "GET of a missing key")
    eq(r.set(k, "v2", nx=True), None, "SET NX on an existing key")
    eq(r.set(p + "fresh", "x", nx=True), True, "SET NX on a missing key")
    eq(r.set(k, "v2", xx=True), True, "SET XX on an existing key")
    eq(r.set(p + "absent", "x", xx=True), None, "SET XX on a missing key")
    eq(r.get(p + "absent"), None, "GET after SET XX on a missing key")
    eq(r.set(k, "v3", get=True), b"v2", "SET GET")
    eq(r.set(p + "new", "n", get=True), None, "SET GET on a missing key")
    eq(r.set(k, bytes(range(256))), True, "SET of binary bytes")
    eq(r.get(k), bytes(range(256)), "GET of binary bytes")

    eq(r.mset({p + "a": "1", p + "b": "2"}), True, "MSET")
    eq(r.mget(p + "a", p + "missing", p + "b"), [b"1", None, b"2"], "MGET")
    eq(r.incr(p + "a"), 2, "INCR")
    eq(r.incrby(p + "a", 10), 12, "INCRBY")
    eq(r.decr(p + "a"), 11, "DECR")
    eq(r.decrby(p + "a", 20), -9, "DECRBY")
    eq(r.incr(p + "counter"), 1, "INCR of a missing key")
    eq(r.get(p + "a"), b"-9", "GET after DECRBY")
    fails(lambda: r.incr(k), "not an integer", "INCR of a non-integer")

    eq(r.append(p + "s", "hello"), 5, "APPEND to a missing key")
    eq(r.append(p + "s", " world"), 11, "APPEND")
    eq(r.strlen(p + "s"), 11, "STRLEN")
    eq(r.strlen(p + "missing"), 0, "STRLEN of a missing key")
    eq(r.getdel(p + "s"), b"hello world", "GETDEL")
    eq(r.getdel(p + "s"), None, "GETDEL of a missing key")

    eq(r.exists(p + "a", p + "b", p + "missing"), 2, "EXISTS")
    eq(r.delete(p + "a", p + "b", p + "missing"), 2, "DEL")
    eq(r.exists(p + "a"), 0, "EXISTS after DEL")

    pipe = r.pipeline(transaction=False)
    for i in range(100):
        pipe.set(f"{p}pipe:{i}", i)
    for i in range(100):
        pipe.get(f"{p}pipe:{i}")
    results = pipe.execute()
    eq(results[:100], [True] * 100, "pipelined SETs")
    eq(results[100:], [str(i).encode() for i in range(100)], "pipelined GETs")

    fails(lambda: r.execute_command("NOSUCH", "x"), "unknown command", "an unknown command")
    fails(lambda: r.execute_command("GET"), "wrong number of arguments", "GET without a key")
    r.close()


check(2)
check(3)
print("OK")
"""#
