// redis-cli's habits in kvsh: help, quit, exit, clear, PING and ECHO in both modes; no data directory for what needs
// no store; multi-line reports as lines; COMMAND DOCS that redis-cli builds its help from.

import Foundation
import RESP
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

@Suite("redis-cli habits", .timeLimit(.minutes(10)))
struct ShellHabitTests {
    static let script = "help GET\nhelp @connection\nPING\nPING hi\nECHO \"a b\"\nclear\nquit\nGET never\n"

    /// What the script above prints, in human format, embedded or connected.
    /// Connected, `quit` (any letter case) is still sent to the server as QUIT, which replies OK and closes.
    static func expectHabits(_ result: RunResult, connected: Bool = false, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(result.termination == .exited(0) && result.stderr.isEmpty, "\(result.summary)", sourceLocation: sourceLocation)
        let text = result.stdout.text
        #expect(text.hasPrefix("GET key\n  Get the value of key"), "\(result.summary)", sourceLocation: sourceLocation)
        #expect(text.contains("Commands in @connection:\n  PING [message]"), "\(result.summary)", sourceLocation: sourceLocation)
        #expect(text.hasSuffix("\nPONG\n\"hi\"\n\"a b\"\n" + (connected ? "OK\n" : "")), "quit ends the script, clear prints nothing on a pipe: \(result.summary)",
                sourceLocation: sourceLocation)
    }

    @Test("help, PING, ECHO, clear and quit work in a script on a store")
    func embedded() throws {
        let sandbox = try Sandbox()
        Self.expectHabits(try sandbox.kvsh(["--format", "human"], script: Self.script))
        let exit = try sandbox.kvsh(["--format", "human"], script: "help\nexit\nPING\n")
        #expect(exit.termination == .exited(0) && exit.stderr.isEmpty, "\(exit.summary)")
        #expect(exit.stdout.text.hasPrefix("Commands by group (names are case-insensitive):") && !exit.stdout.text.hasSuffix("PONG\n"), "\(exit.summary)")
    }

    @Test("the same words work connected to a server; QUIT still goes to the server")
    func connected() throws {
        let sandbox = try Sandbox()
        let server = try ServerProcess(sandbox)
        defer { _ = try? server.stop() }
        Self.expectHabits(try sandbox.run(["--connect", server.address, "--format", "human"], input: Array(Self.script.utf8)), connected: true)
        let quit = try sandbox.run(["--connect", server.address], input: Array("QUIT\nPING\n".utf8))
        #expect(quit.termination == .exited(0) && quit.stdoutLines == ["OK"], "\(quit.summary)")
    }

    @Test("one-shot help, :help and PING open no store; :help suggests; kvsh -h alone prints usage")
    func noStoreNeeded() throws {
        let sandbox = try Sandbox()
        let defaultDir = sandbox.path("kvsh-data")
        let usage = try sandbox.run(["help"])
        #expect(usage.termination == .exited(0) && usage.stdout.text.contains("USAGE: kvsh"), "\(usage.summary)")
        let helpGet = try sandbox.run(["help", "GET"])
        #expect(helpGet.termination == .exited(0) && helpGet.stdout.text.hasPrefix("GET key\n"), "\(helpGet.summary)")
        let metaHelp = try sandbox.run([":help"])
        #expect(metaHelp.termination == .exited(0) && metaHelp.stdout.text.hasPrefix("Commands"), "\(metaHelp.summary)")
        let group = try sandbox.run(["help", "@string"])
        #expect(group.termination == .exited(0) && group.stdout.text.hasPrefix("Commands in @string:"), "\(group.summary)")
        let ping = try sandbox.run(["PING"])
        #expect(ping.termination == .exited(0) && ping.stdoutLines == ["PONG"], "\(ping.summary)")
        let echo = try sandbox.run(["--format", "human", "ECHO", "x y"])
        #expect(echo.termination == .exited(0) && echo.stdoutLines == ["\"x y\""], "\(echo.summary)")
        let typo = try sandbox.run([":help", "SETT"])
        #expect(typo.termination == .exited(1) && typo.stderrText.contains("did you mean 'SET'?"), "\(typo.summary)")
        let unknown = try sandbox.run(["help", "SETT"])
        #expect(unknown.termination == .exited(2) && unknown.stderrText.contains("did you mean 'SET'?"), "\(unknown.summary)")
        #expect(!exists(defaultDir), "a command that needs no store created \(defaultDir)")
        let h = try sandbox.run(["-h"])
        #expect(h.termination == .exited(0) && h.stdout.text.contains("USAGE: kvsh") && h.stdout.text.contains("-h HOST connects"),
                "\(h.summary)")
        #expect(!exists(defaultDir))
    }

    @Test("a --file that does not exist is a usage error (exit 2) and opens no store")
    func missingFile() throws {
        let sandbox = try Sandbox()
        expectRefusal(try sandbox.kvsh(["--file", sandbox.path("nope.kv")]), mentioning: ["nope.kv", "No such file"])
        #expect(!exists(sandbox.dataDir))
    }

    @Test(":timing off prints no timing")
    func timingOff() throws {
        let sandbox = try Sandbox()
        let result = try sandbox.kvsh([], script: ":timing on\n:timing off\nGET k\n")
        #expect(result.termination == .exited(0) && result.stdoutLines == [""] && result.stderr.isEmpty, "\(result.summary)")
    }

    @Test("INFO prints as lines in human format, as redis-cli prints it; raw and JSON are unchanged")
    func infoAsLines() throws {
        let sandbox = try Sandbox()
        let server = try ServerProcess(sandbox)
        defer { _ = try? server.stop() }
        let human = try sandbox.run(["--connect", server.address, "--format", "human", "INFO", "server"])
        #expect(human.termination == .exited(0), "\(human.summary)")
        #expect(human.stdoutLines.first == "# Server" && human.stdoutLines.count > 2 && !human.stdout.contains(0x0D), "\(human.summary)")
        let json = try sandbox.run(["--connect", server.address, "--format", "json", "INFO", "server"])
        #expect(json.stdoutLines.count == 1 && json.stdout.text.hasPrefix("\"# Server\\r\\n"), "\(json.summary)")
        // A value with a line break stays one quoted line (it can be pasted back).
        _ = try sandbox.run(["--connect", server.address, "SET", "k", "a\nb"])
        let value = try sandbox.run(["--connect", server.address, "--format", "human", "GET", "k"])
        #expect(value.stdoutLines == ["\"a\\nb\""], "\(value.summary)")
    }

    @Test("redis-cli's help SET against kvsh serve shows the synopsis from COMMAND DOCS",
          .enabled(if: ExternalTool.redisCLI != nil || ExternalTool.required, "redis-cli is not installed (apt-get install redis-tools)"))
    func redisCLIHelp() throws {
        guard let cli = ExternalTool.redisCLI else {
            Issue.record("redis-cli is required here (KVSH_REQUIRE_TOOLS or CI is set) but not found: apt-get install redis-tools")
            return
        }
        let sandbox = try Sandbox()
        let server = try ServerProcess(sandbox)
        defer { _ = try? server.stop() }
        let input = sandbox.path("help.txt")
        try Data("help SET\nhelp MSET\nhelp SCAN\n".utf8).write(to: URL(fileURLWithPath: input))
        let result = try ExternalTool.run(cli, ["-p", String(server.port)], sandbox: sandbox, stdinFile: input)
        #expect(result.termination == .exited(0), "\(result.summary)")
        // Without its colours (redis-cli colours help even on a pipe).
        let plain = result.stdout.text.replacing(/\u{1B}\[[0-9;]*m/, with: "")
        let lines = plain.split(whereSeparator: \.isNewline).map(String.init)
        #expect(lines.contains("  SET key value [NX|XX] [GET]"), "\(plain)")
        #expect(lines.contains("  group: string"), "\(plain)")
        #expect(lines.contains("  MSET key value [key value ...]"), "\(plain)")
        #expect(lines.contains("  SCAN cursor [MATCH pattern] [COUNT n]"), "\(plain)")
        #expect(lines.contains("  group: generic"), "\(plain)")
    }

    @Test("COMMAND DOCS: the fields kvsh sends, and their types, are those redis-server 7.0 sends for the same commands",
          .enabled(if: ExternalTool.path("redis-server") != nil || ExternalTool.required, "redis-server is not installed (apt-get install redis-server)"))
    func commandDocsAsRedisSendsThem() throws {
        guard let redisServer = ExternalTool.path("redis-server") else {
            Issue.record("redis-server is required here (KVSH_REQUIRE_TOOLS or CI is set) but not found: apt-get install redis-server")
            return
        }
        let sandbox = try Sandbox()
        let kvsh = try ServerProcess(sandbox)
        defer { _ = try? kvsh.stop() }
        let port = try freePort()
        let redis = try PipedProcess(executable: redisServer, arguments: ["--port", String(port), "--bind", "127.0.0.1", "--save", "",
                                                                          "--appendonly", "no", "--dir", sandbox.root],
                                     environment: sandbox.environment(), directory: sandbox.root)
        defer {
            redis.signal(SIGKILL)
            _ = try? redis.finish(timeout: .seconds(5))
        }
        let deadline = ContinuousClock.now + .seconds(20)
        while ContinuousClock.now < deadline && redis.isRunning && !accepting(port) {
            _ = redis.wait(timeout: .milliseconds(20)) { _ in false }
        }
        try #require(accepting(port), "redis-server --port \(port) did not start: stderr \"\(escaped(redis.stderr))\"")

        func name(_ value: RESPValue) -> String {
            switch value {
            case .bulkString(let bytes): String(decoding: bytes, as: UTF8.self)
            case .simpleString(let text): text
            default: "\(value)"
            }
        }
        /// A map's fields, from a RESP3 map or a RESP2 flat array of names and values.
        func fields(_ value: RESPValue) -> [(String, RESPValue)] {
            switch value {
            case .map(let pairs):
                return pairs.map { (name($0.0), $0.1) }
            case .array(let items):
                return stride(from: 0, to: items.count - 1, by: 2).map { (name(items[$0]), items[$0 + 1]) }
            default:
                return []
            }
        }
        func kind(_ value: RESPValue) -> String {
            switch value {
            case .simpleString: "simple string"
            case .bulkString: "bulk string"
            case .integer: "integer"
            case .array: "array"
            case .map: "map"
            default: "\(value)"
            }
        }
        /// Every field kvsh sends is one Redis sends there, with the same type; the fields Redis always sends are there.
        func compare(_ ours: RESPValue, _ theirs: RESPValue, at path: String, required: [String]) {
            #expect(kind(ours) == kind(theirs), "\(path): \(kind(ours)), Redis sends \(kind(theirs))")
            let mine = fields(ours), real = Dictionary(fields(theirs), uniquingKeysWith: { first, _ in first })
            for name in required { #expect(mine.contains { $0.0 == name }, "\(path): no \(name)") }
            for (name, value) in mine {
                guard let expected = real[name] else {
                    Issue.record("\(path): kvsh sends \(name), Redis does not")
                    continue
                }
                if name == "arguments" {
                    guard case .array(let ourArguments) = value, case .array(let theirArguments) = expected else {
                        Issue.record("\(path).arguments: not arrays")
                        continue
                    }
                    for (index, (argument, real)) in zip(ourArguments, theirArguments).enumerated() {
                        compare(argument, real, at: "\(path).arguments[\(index)]", required: ["name", "type"])
                        #expect(fields(argument).first { $0.0 == "type" }?.1 == fields(real).first { $0.0 == "type" }?.1,
                                "\(path).arguments[\(index)]: type differs")
                    }
                } else if name == "flags" {
                    #expect(value == expected, "\(path).flags: \(value), Redis sends \(expected)")
                } else {
                    #expect(kind(value) == kind(expected), "\(path).\(name): \(kind(value)), Redis sends \(kind(expected))")
                }
            }
        }
        for version in ["2", "3"] {
            let ours = try RedisConnection(port: kvsh.port), theirs = try RedisConnection(port: port)
            _ = try ours.call("HELLO", version)
            _ = try theirs.call("HELLO", version)
            for name in ["get", "set", "mset", "mget", "del", "exists", "incrby", "keys", "scan", "dbsize", "ping", "echo"] {
                let mine = try ours.call("COMMAND", "DOCS", name), real = try theirs.call("COMMAND", "DOCS", name)
                let entry = try #require(fields(mine).first { $0.0 == name }?.1, "RESP\(version): no docs for \(name): \(mine)")
                let expected = try #require(fields(real).first { $0.0 == name }?.1, "RESP\(version): Redis has no docs for \(name)")
                compare(entry, expected, at: "RESP\(version) \(name)", required: ["summary", "since", "group", "complexity"])
            }
        }
    }
}
