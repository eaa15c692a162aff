// kvsh --connect: the shell against a kvsh server, compared with the same shell on an embedded store.

import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A TCP port on 127.0.0.1 that nobody listened on a moment ago: bind port 0, read the port, close.
func freePort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw HarnessError("socket: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard bound == 0 else { throw HarnessError("bind: \(String(cString: strerror(errno)))") }
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
    }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
func accepting(_ port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    } == 0
}

/// `kvsh serve` on a free port with its own data directory in the sandbox. Stop it with ``stop()`` (SIGTERM, then
/// wait); if a test fails first, the process is killed when this is released.
final class ServerProcess {
    let port: Int
    let process: PipedProcess
    var address: String { "127.0.0.1:\(port)" }

    /// Starts it on `port`, or on a free port (then tried up to three times: another test may take it first); its
    /// output goes to `outputFile` when given (see ``PipedProcess``).
    init(_ sandbox: Sandbox, dataDir: String? = nil, port fixedPort: Int? = nil, options: [String] = [], outputFile: String? = nil) throws {
        var lastFailure = ""
        for _ in 0..<(fixedPort == nil ? 3 : 1) {
            let port = try fixedPort ?? freePort()
            let process = try PipedProcess(arguments: ["serve", "--data-dir", dataDir ?? sandbox.path("server-data"), "--port", String(port)] + options,
                                           environment: sandbox.environment(), directory: sandbox.root, outputFile: outputFile)
            let deadline = ContinuousClock.now + .seconds(20)
            while ContinuousClock.now < deadline && process.isRunning && !accepting(port) {
                process.wait(timeout: .milliseconds(20)) { _ in false }
            }
            if process.isRunning && accepting(port) {
                self.port = port
                self.process = process
                return
            }
            process.signal(SIGKILL)
            _ = try? process.finish(timeout: .seconds(5))
            lastFailure = "kvsh serve --port \(port) did not start listening: \(process.termination.map { "\($0)" } ?? "still running"); "
                + "stderr: \"\(escaped(process.errorOutput))\""
        }
        throw HarnessError(lastFailure)
    }

    private var stopped: Termination?

    /// SIGTERM, then waits for the server to exit; a second call returns how it ended.
    @discardableResult
    func stop() throws -> Termination {
        if let stopped { return stopped }
        process.signal(SIGTERM)
        let ended = try process.finish(timeout: .seconds(20))
        stopped = ended
        return ended
    }
}

/// Runs `arguments` both connected to `server` and on an embedded store (in `embeddedDir`), with the same input,
/// and checks that stdout, stderr and the exit status are identical.
@discardableResult
private func expectSameOutput(_ sandbox: Sandbox, _ server: ServerProcess, embeddedDir: String, _ arguments: [String],
                              input: String = "", sourceLocation: SourceLocation = #_sourceLocation) throws -> (remote: RunResult, embedded: RunResult) {
    let remote = try sandbox.run(["--connect", server.address] + arguments, input: Array(input.utf8))
    let embedded = try sandbox.run(["--data-dir", embeddedDir] + arguments, input: Array(input.utf8))
    #expect(remote.termination == embedded.termination,
            "exit status: connected \(remote.termination), embedded \(embedded.termination)", sourceLocation: sourceLocation)
    #expect(remote.stdout == embedded.stdout,
            "stdout differs:\nconnected: \"\(escaped(remote.stdout))\"\nembedded:  \"\(escaped(embedded.stdout))\"", sourceLocation: sourceLocation)
    #expect(remote.stderr == embedded.stderr,
            "stderr differs:\nconnected: \"\(escaped(remote.stderr))\"\nembedded:  \"\(escaped(embedded.stderr))\"", sourceLocation: sourceLocation)
    return (remote, embedded)
}

/// Every kind of reply and error the shell prints, in one script (run on a fresh store each time).
private let mixedScript = #"""
    SET a 1
    GET a
    GET missing
    SET bin "\x00\xff\r\n"
    GET bin
    SET u "h\xc3\xa9 \"q\" \\ \t"
    GET u
    INCR a
    INCRBY a 10
    INCRBY a x
    INCR bin
    GET
    SETT a 1
    SET a 1 EX 10
    SET a 2 NX
    SET a 3 XX GET
    SET a 1 BOGUS
    :bogus
    EXISTS a a missing
    MSET k1 v1 k2 v2 k3 v3
    MSET k1 v1 k2
    MGET k1 missing k3
    KEYS k*
    KEYS zzz*
    RANGE k l
    RANGE - + LIMIT 2
    RANGE k l LIMIT x
    SCAN 0 COUNT 2
    SCAN 0 MATCH k* COUNT 100
    SCAN 0 COUNT 0
    SCAN nonsense
    COUNT k l
    DBSIZE
    DEL k1 missing
    SETNX k1 again
    SETNX k1 again
    GETDEL k2
    GETDEL k2
    APPEND k3 xyz
    STRLEN k3
    DECRBY a -9223372036854775808
    SET "unbalanced
    # a comment

    :help GET
    :format json
    MGET k1 k3 bin u
    :format raw
    GET bin
    RANGE - +
    """# + "\n"

@Suite("kvsh --connect", .timeLimit(.minutes(10)))
struct ClientTests {
    @Test("a script prints the same through --connect as on an embedded store", arguments: ["human", "raw", "json"])
    func sameOutputAsEmbedded(format: String) throws {
        let sandbox = try Sandbox()
        let server = try ServerProcess(sandbox)
        defer { _ = try? server.stop() }
        let (remote, _) = try expectSameOutput(sandbox, server, embeddedDir: sandbox.dataDir, ["--format", format], input: mixedScript)
        #expect(remote.termination == .exited(1), "the script has errors: \(remote.summary)")
        #expect(remote.stderrLines.count == 13, "\(remote.summary)")
        #expect(remote.stderrLines.first == "kvsh: line 10: ERR value is not an integer or out of range (usage: INCRBY key increment; "
                + "the increment must be an integer from -9223372036854775808 to 9223372036854775807)", "\(remote.summary)")
        #expect(try server.stop() == .exited(0))
    }

    @Test("--bail stops at the same line; --file names the script the same way")
    func bailAndFile() throws {
        let sandbox = try Sandbox()
        let server = try ServerProcess(sandbox)
        defer { _ = try? server.stop() }
        let script = (1...50).map { "SET key:\($0) \($0)" }.joined(separator: "\n") + "\nINCRBY key:1 x\n"
            + (1...50).map { "GET key:\($0)" }.joined(separator: "\n") + "\n"
        let (remote, _) = try expectSameOutput(sandbox, server, embeddedDir: sandbox.dataDir, ["--bail"], input: script)
        #expect(remote.termination == .exited(1))
        #expect(remote.stdoutLines.count == 50 && remote.stderrLines.count == 1 && remote.stderrText.hasPrefix("kvsh: line 51: "),
                "\(remote.summary)")

        try sandbox.write("script.kv", "GET key:1\nGET\nGET key:2\n:source nested.kv\nGET key:3\n")
        try sandbox.write("nested.kv", "GET key:4\nNOPE\n")
        let (fromFile, _) = try expectSameOutput(sandbox, server, embeddedDir: sandbox.dataDir, ["--file", "script.kv"])
        #expect(fromFile.stderrLines == ["kvsh: script.kv: line 2: ERR wrong number of arguments for 'GET' (usage: GET key)",
                                         "kvsh: nested.kv: line 2: ERR unknown command 'NOPE' (type :help for the list)"],
                "\(fromFile.summary)")
        try expectSameOutput(sandbox, server, embeddedDir: sandbox.dataDir, ["--file", "script.kv", "--bail"])
    }

    @Test("a long pipelined script: same replies, errors with the right line numbers", arguments: [[], ["--bail"]])
    func longScript(options: [String]) throws {
        let sandbox = try Sandbox()
        let server = try ServerProcess(sandbox)
        defer { _ = try? server.stop() }
        var lines: [String] = []
        for index in 0..<6000 {
            lines.append("SET key:\(index) \(String(repeating: "v", count: 1 + index % 300))")
            if index % 997 == 0 { lines.append("INCR key:\(index)") }  // "v..." is not an integer: an error line
            if index % 3 == 0 { lines.append("GET key:\(index / 2)") }
        }
        lines.append("KEYS key:59*")
        let (remote, _) = try expectSameOutput(sandbox, server, embeddedDir: sandbox.dataDir, options,
                                               input: lines.joined(separator: "\n") + "\n")
        guard options.isEmpty else {
            #expect(remote.stderrLines == ["kvsh: line 2: ERR value is not an integer or out of range "
                                           + "(the value stored at the key is not a decimal integer within 64 bits)"], "\(remote.summary)")
            return
        }
        #expect(remote.stderrLines.count == 7, "\(remote.summary)")
        #expect(remote.stderrLines.last?.hasPrefix("kvsh: line \(lines.firstIndex(of: "INCR key:5982")! + 1): ERR value is not an integer") == true,
                "\(remote.summary)")
    }

    @Test("one-shot commands: --connect, -h and -p, replies and errors as on an embedded store")
    func oneShot() throws {
        let sandbox = try Sandbox()
        let server = try ServerProcess(sandbox)
        defer { _ = try? server.stop() }
        for command in [["SET", "k", "v\u{1}"], ["MSET", "a", "1", "b", "2"]] {
            try expectSameOutput(sandbox, server, embeddedDir: sandbox.dataDir, command)
        }
        for command in [["GET", "k"], ["--format", "human", "GET", "k"], ["--format", "json", "MGET", "k", "a", "nope"],
                        ["--format", "human", "KEYS", "*"], ["GET"], ["SETT", "k"], ["INCR", "k"], [":nope"], [":help", "DEL"]] {
            try expectSameOutput(sandbox, server, embeddedDir: sandbox.dataDir, command)
        }
        let viaFlags = try sandbox.run(["-h", "127.0.0.1", "-p", String(server.port), "GET", "k"])
        #expect(viaFlags.termination == .exited(0) && viaFlags.stdout == Array("v\u{1}\n".utf8), "\(viaFlags.summary)")
        let portOnly = try sandbox.run(["-p", String(server.port), "--format", "human", "GET", "k"])
        #expect(portOnly.termination == .exited(0) && portOnly.stdoutLines == ["\"v\\x01\""], "\(portOnly.summary)")
        let longHost = try sandbox.run(["--host", "localhost", "--port", String(server.port), "EXISTS", "k", "a"])
        #expect(longHost.termination == .exited(0) && longHost.stdoutLines == ["2"], "\(longHost.summary)")
        // A command the server knows and the shell does not goes through.
        let ping = try sandbox.run(["--connect", server.address, "PING"])
        #expect(ping.termination == .exited(0) && ping.stdoutLines == ["PONG"], "\(ping.summary)")
        // QUIT ends the session: the server closes the connection after its OK.
        let quit = try sandbox.run(["--connect", server.address, "--format", "json"], input: Array("GET k\nQUIT\nGET k\n".utf8))
        #expect(quit.termination == .exited(0) && quit.stdoutLines == ["\"v\\u0001\"", "\"OK\""] && quit.stderr.isEmpty, "\(quit.summary)")
    }

    @Test("the maintenance meta-commands run on the server and print what the shell prints")
    func maintenanceOverTheConnection() throws {
        let sandbox = try Sandbox()
        let backups = sandbox.path("backups")
        let server = try ServerProcess(sandbox, options: ["--enable-path-commands", "local", "--backup-dir", backups])
        defer { _ = try? server.stop() }
        let setup = try sandbox.run(["--connect", server.address], input: Array("SET a 1\nSET b 2\nDEL b\n".utf8))
        #expect(setup.termination == .exited(0) && setup.stdoutLines == ["OK", "OK", "1"], "\(setup.summary)")

        let stats = try sandbox.run(["--connect", server.address, ":stats"])
        #expect(stats.termination == .exited(0) && stats.stderr.isEmpty, "\(stats.summary)")
        #expect(stats.stdoutLines.first == "keys:            1", "\(stats.summary)")
        #expect(stats.stdout.text.contains("sync policy:     always") && stats.stdout.text.contains("last sequence:   3"), "\(stats.summary)")

        let backup = sandbox.path("copy.kvbak")
        let script = ":check\n:compact\n:backup \(backup)\n:rebuild\n:stats\n:backup \(backup)\n:backup\n:backup a b\n"
        let result = try sandbox.run(["--connect", server.address, "--format", "json"], input: Array(script.utf8))
        #expect(result.termination == .exited(1), "\(result.summary)")
        let text = result.stdout.text
        #expect(text.hasPrefix("check of "), "\(result.summary)")
        #expect(text.contains("\ncompacted through sequence 3: "), "\(result.summary)")
        #expect(text.contains("\nbackup written to \(backup): 1 key through sequence 3"), "\(result.summary)")
        #expect(text.contains("\nrebuilt from the log: 1 key"), "\(result.summary)")
        #expect(exists(backup), "no backup file at \(backup)")
        // Without a path, into the server's --backup-dir; an existing file is not replaced without --force.
        #expect(text.contains("\nbackup written to \(backups)/kvsh-backup-"), "\(result.summary)")
        #expect(result.stderrLines == ["kvsh: line 6: ERR '\(backup)' already exists; choose another name, or pass --force to replace it",
                                       "kvsh: line 8: ERR syntax error (usage: :backup path [--force])"], "\(result.summary)")
        let forced = try sandbox.run(["--connect", server.address, ":backup", backup, "--force"])
        #expect(forced.termination == .exited(0) && forced.stdout.text.hasPrefix("backup written to \(backup)"), "\(forced.summary)")
    }

    @Test("an interactive shell connected to a server says so and works")
    func interactive() throws {
        let sandbox = try Sandbox()
        let server = try ServerProcess(sandbox)
        defer { _ = try? server.stop() }
        let shell = try TerminalSession(arguments: ["--connect", server.address], environment: sandbox.environment(term: "xterm"),
                                        directory: sandbox.root)
        try shell.expect("kvsh 1.0: connected to \(server.address)", "no banner")
        try shell.expect("kvsh> ")
        try shell.waitUntilEditing()
        try shell.send("SET a \"x y\"\r")
        try shell.expect("\r\nOK\r\n")
        try shell.expect("kvsh> ")
        try shell.waitUntilEditing()
        try shell.send("GETT a\r")
        try shell.expect("(error) ERR unknown command 'GETT' (did you mean 'GET'?")
        try shell.expect("kvsh> ")
        try shell.waitUntilEditing()
        try shell.send("GET a\r")
        try shell.expect("\r\n\"x y\"\r\n")
        try shell.expect("kvsh> ")
        try shell.waitUntilEditing()
        try shell.send(":quit\r")
        #expect(shell.waitForExit() == .exited(0))
    }

    @Test("an interactive shell whose server goes away reports it and exits 1")
    func interactiveConnectionLost() throws {
        let sandbox = try Sandbox()
        let server = try ServerProcess(sandbox)
        defer { _ = try? server.stop() }
        let shell = try TerminalSession(arguments: ["-p", String(server.port)], environment: sandbox.environment(term: "xterm"),
                                        directory: sandbox.root)
        try shell.expect("connected to \(server.address)", "no banner")
        try shell.expect("kvsh> ")
        try shell.waitUntilEditing()
        #expect(try server.stop() == .exited(0))
        try shell.send("GET a\r")
        try shell.expect("kvsh: connection to \(server.address) lost: ")
        #expect(shell.waitForExit() == .exited(1))
    }

    @Test("no server: exit 2 with one line naming host:port")
    func connectionRefused() throws {
        let sandbox = try Sandbox()
        let port = try freePort()
        let result = try sandbox.run(["--connect", "127.0.0.1:\(port)", "GET", "k"])
        expectRefusal(result, mentioning: ["cannot connect to 127.0.0.1:\(port): ", "refused"])
        let script = try sandbox.run(["-p", String(port)], input: Array("GET k\n".utf8))
        expectRefusal(script, mentioning: ["cannot connect to 127.0.0.1:\(port): "])
        #expect(!exists(sandbox.path("kvsh-data")), "client mode created ./kvsh-data")
    }

    @Test("client-mode usage errors exit 2", arguments: [
        ["--connect", "127.0.0.1:notaport"],
        ["--connect", "127.0.0.1:0"],
        ["--connect", "::1:7379"],
        ["--connect", "127.0.0.1:7379", "-p", "7380"],
        ["--connect", "127.0.0.1:7379", "--data-dir", "d"],
        ["-p", "7379", "--sync", "none"],
        ["-p", "70000", "GET", "k"],
        ["-h", ""],  // -h alone prints the usage (ShellHabitTests)
    ])
    func usageErrors(arguments: [String]) throws {
        let sandbox = try Sandbox()
        expectRefusal(try sandbox.run(arguments))
    }

    @Test("a server that goes away mid-script: the error names the line, exit 1")
    func connectionLost() throws {
        let sandbox = try Sandbox()
        let server = try ServerProcess(sandbox)
        defer { _ = try? server.stop() }
        let client = try PipedProcess(arguments: ["--connect", server.address], environment: sandbox.environment(), directory: sandbox.root)
        client.send("SET a 1\n")
        #expect(client.waitForLines(1), "no reply: \"\(escaped(client.stdout))\"")
        #expect(try server.stop() == .exited(0))
        client.send("GET a\nGET a\n")
        client.closeInput()
        let ended = try client.finish()
        #expect(ended == .exited(1), "stderr: \"\(escaped(client.stderr))\"")
        #expect(client.stdout == Array("OK\n".utf8))
        let errors = client.stderr.lines
        #expect(errors.count == 1 && errors[0].hasPrefix("kvsh: line 2: connection to \(server.address) lost: "),
                "stderr: \"\(escaped(client.stderr))\"")
    }
}
