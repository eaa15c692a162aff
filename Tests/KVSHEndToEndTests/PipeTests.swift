// kvsh run the way scripts and programs run it: arguments, stdin and stdout on pipes, files on disk.

import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Checks that kvsh refused to start the way the contract says: exit status 2, nothing on stdout, and exactly one
/// line on stderr that starts with "kvsh:" and mentions each of `words` (case-insensitively), with no Swift trap.
func expectRefusal(_ result: RunResult, mentioning words: [String] = [], sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(result.termination == .exited(2), "want exit status 2: \(result.summary)", sourceLocation: sourceLocation)
    #expect(result.stdout.isEmpty, "want nothing on stdout: \(result.summary)", sourceLocation: sourceLocation)
    let lines = result.stderrLines
    #expect(lines.count == 1, "want exactly one line on stderr, got \(lines.count): \(result.summary)", sourceLocation: sourceLocation)
    #expect(lines.first?.hasPrefix("kvsh:") == true, "stderr must start with 'kvsh:': \(result.summary)", sourceLocation: sourceLocation)
    for trap in ["fatal error", "backtrac", "stack dump", "stack trace", "program crashed", "💣"] {
        #expect(!result.stderrText.lowercased().contains(trap), "stderr shows a crash ('\(trap)'): \(result.summary)",
                sourceLocation: sourceLocation)
    }
    for word in words {
        #expect(result.stderrText.lowercased().contains(word.lowercased()),
                "stderr does not mention '\(word)': \(result.summary)", sourceLocation: sourceLocation)
    }
}

func exists(_ path: String) -> Bool { FileManager.default.fileExists(atPath: path) }

/// Feeds `commands` to a live kvsh, waits for all their replies, then kills it with SIGKILL, so that nothing a
/// clean shutdown might do (a checkpoint, a compaction) changes the log the test is about to damage.
/// - Returns: how many replies arrived.
func loadThenKill(_ sandbox: Sandbox, _ commands: [String]) throws -> Int {
    let process = try sandbox.start()
    process.send(commands.map { $0 + "\n" }.joined())
    process.waitForLines(commands.count, timeout: .seconds(15))
    process.signal(SIGKILL)
    try process.finish()
    return process.stdout.lines.count
}

/// The data directory's largest log file.
func largestLog(_ sandbox: Sandbox) throws -> String {
    try #require(try sandbox.logFiles().max { fileSize($0) < fileSize($1) }, "no non-empty *.log in \(sandbox.dataDir)")
}

@Suite("kvsh on pipes", .timeLimit(.minutes(10)))
struct PipeTests {
    // MARK: Formats

    @Test("SET, GET, EXISTS, DELETE in human format")
    func humanFormat() throws {
        let sandbox = try Sandbox()
        let result = try sandbox.kvsh(["--format", "human"], script: """
            SET "Customer 1" "$547.45"
            GET "Customer 1"
            EXISTS "Customer 1" "Customer 1" nobody
            DELETE "Customer 1" nobody
            EXISTS "Customer 1"
            GET "Customer 1"
            SET nl "a\\nb\\x41\\"q\\\\"
            GET nl

            """)
        #expect(result.termination == .exited(0), "\(result.summary)")
        #expect(result.stderr.isEmpty, "\(result.summary)")
        #expect(result.stdoutLines == ["OK", "\"$547.45\"", "(integer) 2", "(integer) 1", "(integer) 0", "(nil)",
                                       "OK", "\"a\\nbA\\\"q\\\\\""])
    }

    @Test("raw is the default on a pipe: values as exact bytes, binary included")
    func rawIsDefaultOnPipes() throws {
        let sandbox = try Sandbox()
        let script = try sandbox.kvsh(script: "SET bin \"\\x00\\xff\\n\"\nSET text \"x y\"\nGET bin\nGET missing\nGET text\nEXISTS bin text\n")
        #expect(script.termination == .exited(0), "\(script.summary)")
        #expect(script.stdout == Array("OK\nOK\n".utf8) + [0x00, 0xFF, 0x0A, 0x0A] + Array("\nx y\n2\n".utf8),
                "raw output was \"\(escaped(script.stdout))\"")

        let oneShot = try sandbox.kvsh(["GET", "bin"])
        #expect(oneShot.termination == .exited(0), "\(oneShot.summary)")
        #expect(oneShot.stdout == [0x00, 0xFF, 0x0A, 0x0A], "`kvsh GET bin | …` printed \"\(escaped(oneShot.stdout))\"")
    }

    @Test("json format: one JSON value per reply, base64 for bytes that are not UTF-8")
    func jsonFormat() throws {
        let sandbox = try Sandbox()
        let result = try sandbox.kvsh(["--format", "json"], script: """
            SET j "x\\"y"
            GET j
            GET nope
            EXISTS j
            SET u "h\\xc3\\xa9"
            GET u
            SET bin "\\x00\\xff"
            GET bin
            DELETE j

            """)
        #expect(result.termination == .exited(0), "\(result.summary)")
        #expect(result.stdoutLines == ["\"OK\"", "\"x\\\"y\"", "null", "1", "\"OK\"", "\"hé\"", "\"OK\"",
                                       "{\"base64\":\"AP8=\"}", "1"])
        for line in result.stdoutLines {
            #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8), options: [.fragmentsAllowed])) != nil,
                    "not valid JSON: \(line)")
        }
    }

    // MARK: Modes

    @Test("one-shot commands from arguments; an unknown command exits 1")
    func oneShotCommands() throws {
        let sandbox = try Sandbox()
        let set = try sandbox.kvsh(["SET", "greeting", "hello world"])
        #expect(set.termination == .exited(0) && set.stdout == Array("OK\n".utf8), "\(set.summary)")
        let get = try sandbox.kvsh(["--format", "human", "GET", "greeting"])
        #expect(get.termination == .exited(0) && get.stdoutLines == ["\"hello world\""], "\(get.summary)")
        // An argument that looks like a flag, after the command, is data.
        let dashed = try sandbox.kvsh(["SET", "opt", "--format"])
        #expect(dashed.termination == .exited(0), "\(dashed.summary)")

        let unknown = try sandbox.kvsh(["FROB", "a"])
        #expect(unknown.termination == .exited(1), "\(unknown.summary)")
        #expect(unknown.stdout.isEmpty)
        #expect(unknown.stderrLines.count == 1 && unknown.stderrText.hasPrefix("kvsh: ERR unknown command 'FROB'"),
                "\(unknown.summary)")
        let arity = try sandbox.kvsh(["GET", "a", "b"])
        #expect(arity.termination == .exited(1) && arity.stderrText.contains("wrong number of arguments"), "\(arity.summary)")
    }

    @Test("-- ends the options: what follows is the command, even where it looks like an option")
    func doubleDashEndsOptions() throws {
        let sandbox = try Sandbox()
        let set = try sandbox.kvsh(["--", "SET", "k", "-5"])
        #expect(set.termination == .exited(0) && set.stdout == Array("OK\n".utf8), "\(set.summary)")
        let get = try sandbox.kvsh(["--", "GET", "k"])
        #expect(get.stdout == Array("-5\n".utf8), "\(get.summary)")
        let optionLike = try sandbox.kvsh(["--", "--format"])
        #expect(optionLike.termination == .exited(1) && optionLike.stderrText.contains("unknown command '--format'"),
                "\(optionLike.summary)")
    }

    @Test("a closed standard output is refused, and no reply lands in a store file")
    func closedStandardOutput() throws {
        let sandbox = try Sandbox()
        _ = try sandbox.kvsh(["SET", "k", "v"])
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", "exec \"$0\" --data-dir \"$1\" GET k >&-", try KVSHBinary.path(), sandbox.dataDir]
        let errors = Pipe()
        process.standardError = errors
        try process.run()
        let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 2, "stderr: \(message)")
        #expect(message.contains("standard output is closed"), "stderr: \(message)")
        let get = try sandbox.kvsh(["GET", "k"])
        #expect(get.termination == .exited(0) && get.stdout == Array("v\n".utf8), "\(get.summary)")
    }

    @Test("--file runs a script; comments, indented comments and blank lines are skipped")
    func scriptFile() throws {
        let sandbox = try Sandbox()
        let file = try sandbox.write("fixtures.kv", "# fixtures\n\n   \nSET f 1\n  # indented comment\n\t\nGET f\r\nEXISTS f\n")
        let result = try sandbox.kvsh(["--file", file])
        #expect(result.termination == .exited(0), "\(result.summary)")
        #expect(result.stderr.isEmpty, "\(result.summary)")
        #expect(result.stdoutLines == ["OK", "1", "1"])

        let viaStdin = try sandbox.kvsh(script: "# only a comment\n\n")
        #expect(viaStdin.termination == .exited(0) && viaStdin.stdout.isEmpty && viaStdin.stderr.isEmpty, "\(viaStdin.summary)")
    }

    @Test("script errors go to stderr with their line numbers, and the script goes on")
    func scriptErrorsHaveLineNumbers() throws {
        let sandbox = try Sandbox()
        let result = try sandbox.kvsh(script: "SET a 1\nFROB a\nGET\nSET k \"open\nSET b 2\nGET b\n")
        #expect(result.termination == .exited(1), "\(result.summary)")
        #expect(result.stdoutLines == ["OK", "OK", "2"], "later commands must still run: \(result.summary)")
        let errors = result.stderrLines
        #expect(errors.count == 3, "\(result.summary)")
        if errors.count == 3 {
            #expect(errors[0].hasPrefix("kvsh: line 2: ERR unknown command 'FROB'"))
            #expect(errors[1].hasPrefix("kvsh: line 3: ERR wrong number of arguments for 'GET'"))
            #expect(errors[2].hasPrefix("kvsh: line 4: ERR unbalanced quotes"))
        }

        // The same through --file: the line number is still given (the file name may be too).
        let file = try sandbox.write("bad.kv", "SET c 3\n\nFROB\n")
        let fromFile = try sandbox.kvsh(["--file", file])
        #expect(fromFile.termination == .exited(1), "\(fromFile.summary)")
        #expect(fromFile.stderrLines.count == 1 && fromFile.stderrText.hasPrefix("kvsh: ")
                    && fromFile.stderrText.contains("line 3: ERR unknown command 'FROB'"), "\(fromFile.summary)")
    }

    @Test("with 2>&1, replies and error messages come out in script order, also past the reply buffer")
    func repliesAndErrorsInterleaveInOrder() throws {
        let sandbox = try Sandbox()
        let big = String(repeating: "b", count: 30_000)  // 5 replies of 30 kB outgrow kvsh's 64 kB reply buffer
        var script = "SET big \(big)\n"
        var expected = ["OK"]
        for round in 1...4 {
            for i in 0..<5 {
                script += "GET big\nSET k\(round)-\(i) \(i)\n"
                expected += [big, "OK"]
            }
            let line = script.split(separator: "\n", omittingEmptySubsequences: false).count
            script += "FROB\(round)\n"
            expected.append("kvsh: line \(line): ERR unknown command 'FROB\(round)' (type :help for the list)")
        }
        let result = try sandbox.run(["--data-dir", sandbox.dataDir], input: Array(script.utf8), mergeStderr: true)
        #expect(result.termination == .exited(1))
        let lines = result.stdoutLines
        #expect(lines.count == expected.count, "\(lines.count) lines, want \(expected.count)")
        if let first = zip(lines, expected).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset {
            Issue.record("line \(first + 1) is \"\(lines[first].prefix(80))\", want \"\(expected[first].prefix(80))\"")
        }
    }

    @Test("--bail stops the script at the first failed command")
    func bail() throws {
        let sandbox = try Sandbox()
        let script = "SET a 1\nFROB\nSET b 2\n"
        let bailed = try sandbox.kvsh(["--bail"], script: script)
        #expect(bailed.termination == .exited(1), "\(bailed.summary)")
        #expect(bailed.stdoutLines == ["OK"], "\(bailed.summary)")
        #expect(bailed.stderrLines.count == 1 && bailed.stderrText.hasPrefix("kvsh: line 2: "), "\(bailed.summary)")
        #expect(try sandbox.kvsh(script: "EXISTS a\nEXISTS b\n").stdoutLines == ["1", "0"], "SET b ran after the failure")

        // Without --bail the same script runs to the end (so the check above can tell the difference).
        let other = try Sandbox()
        let full = try other.kvsh(script: script)
        #expect(full.termination == .exited(1))
        #expect(try other.kvsh(script: "EXISTS b\n").stdoutLines == ["1"])
    }

    // MARK: Refusing to start (exit 2, one line, no trap)

    @Test("a data directory that is a regular file is refused")
    func dataDirectoryIsAFile() throws {
        let sandbox = try Sandbox()
        let file = try sandbox.write("not-a-dir", "precious\n")
        let result = try sandbox.run(["--data-dir", file, "GET", "a"])
        expectRefusal(result, mentioning: ["not a directory"])
        #expect((try? String(contentsOfFile: file, encoding: .utf8)) == "precious\n", "the file was changed")
    }

    @Test("a second process on a locked data directory is refused while the first holds it")
    func lockedByAnotherProcess() throws {
        let sandbox = try Sandbox()
        let first = try sandbox.start()
        first.send("SET a 1\n")
        #expect(first.waitForLines(1), "the first kvsh did not answer while its stdin stays open: \"\(escaped(first.stdout))\"")
        #expect(first.stdout == Array("OK\n".utf8))

        let second = try sandbox.kvsh(["GET", "a"])
        expectRefusal(second, mentioning: ["in use", "pid \(first.pid)"])

        first.closeInput()
        #expect(try first.finish() == .exited(0))
        let third = try sandbox.kvsh(["GET", "a"])
        #expect(third.termination == .exited(0) && third.stdout == Array("1\n".utf8), "lock not released: \(third.summary)")
    }

    @Test("a log damaged in the middle is refused, named, and left untouched")
    func corruptionInTheMiddle() throws {
        let sandbox = try Sandbox()
        let replies = try loadThenKill(sandbox, (0..<500).map { "SET c\($0) \(String(repeating: "y", count: 80))" })
        #expect(replies == 500)
        let log = try largestLog(sandbox)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: log))
        bytes[bytes.count / 2] ^= 0x5A
        try bytes.write(to: URL(fileURLWithPath: log))

        let result = try sandbox.kvsh(["GET", "c0"])
        expectRefusal(result, mentioning: [(log as NSString).lastPathComponent, "corrupt"])
        #expect(try Data(contentsOf: URL(fileURLWithPath: log)) == bytes, "opening the damaged log changed it")
    }

    @Test("usage errors exit 2 with one line on stderr", arguments: [
        ["--no-such-flag"],
        ["--no-such-flag", "GET", "a"],
        ["--format", "xml"],
        ["--format"],
        ["--sync", "sometimes"],
        ["--data-dir="],
        ["--file", "script.kv", "GET", "a"],
    ])
    func usageErrors(arguments: [String]) throws {
        let sandbox = try Sandbox()
        try sandbox.write("script.kv", "GET a\n")
        let dataDir = sandbox.path("kvsh-data")
        let result = try sandbox.run(arguments)  // in the sandbox, so the default ./kvsh-data would land here
        expectRefusal(result)
        let line = result.stderrLines.first ?? ""
        #expect(line.hasSuffix("(see kvsh --help)") && !line.contains("kvsh kvsh"), "the line should point to kvsh --help: \(line)")
        #expect(!exists(dataDir), "a usage error created the data directory ./kvsh-data")
    }

    @Test("--version and --help print and exit 0 without opening a store", arguments: ["--version", "--help", "-?"])
    func versionAndHelp(flag: String) throws {
        let sandbox = try Sandbox()
        let result = try sandbox.run([flag])
        #expect(result.termination == .exited(0), "kvsh \(flag): \(result.summary)")
        #expect(result.stderr.isEmpty, "kvsh \(flag): \(result.summary)")
        if flag == "--version" {
            #expect(result.stdoutLines == ["1.0.0"], "kvsh --version: \(result.summary)")
        } else {
            #expect(result.stdout.text.contains("--data-dir") && result.stdout.text.contains("--format")
                        && result.stdout.text.contains("--connect"),
                    "kvsh \(flag): \(result.summary)")
        }
        #expect(!exists(sandbox.path("kvsh-data")), "kvsh \(flag) created ./kvsh-data")
    }

    // MARK: Durability and recovery

    @Test("a torn tail is cut with a warning naming the file; every record before it is kept")
    func tornTail() throws {
        let sandbox = try Sandbox()
        let value = String(repeating: "x", count: 50)
        let replies = try loadThenKill(sandbox, (0..<100).map { "SET t\($0) \(value)\($0)" })
        #expect(replies == 100)
        let log = try #require(try sandbox.logFiles().last, "no non-empty *.log in \(sandbox.dataDir)")
        #expect(truncate(log, off_t(fileSize(log) - 3)) == 0)

        let result = try sandbox.kvsh(script: (0..<100).map { "GET t\($0)\n" }.joined())
        #expect(result.termination == .exited(0), "\(result.summary)")
        #expect(result.stderrLines.count == 1, "\(result.summary)")
        #expect(result.stderrText.hasPrefix("kvsh:") && result.stderrText.contains("warning")
                    && result.stderrText.contains((log as NSString).lastPathComponent), "\(result.summary)")
        #expect(result.stdoutLines == (0..<99).map { "\(value)\($0)" } + [""], "the prefix was not kept exactly")

        // The cut is permanent: no warning the next time, and writes after the cut survive.
        let after = try sandbox.kvsh(["SET", "later", "1"])
        #expect(after.termination == .exited(0) && after.stderr.isEmpty, "\(after.summary)")
        let reopened = try sandbox.kvsh(script: "GET later\nGET t98\n")
        #expect(reopened.stdoutLines == ["1", "\(value)98"] && reopened.stderr.isEmpty, "\(reopened.summary)")
    }

    @Test("data survives a restart, including overwrites and deletes")
    func dataSurvivesRestart() throws {
        let sandbox = try Sandbox()
        let load = try sandbox.kvsh(script: (0..<2000).map { "SET key:\($0) value-\($0)\n" }.joined()
                                    + "DELETE key:7\nSET key:8 changed\n")
        #expect(load.termination == .exited(0), "\(load.summary)")
        let result = try sandbox.kvsh(script: "GET key:0\nGET key:1999\nEXISTS key:7\nGET key:8\nEXISTS key:0 key:1 key:7\n")
        #expect(result.termination == .exited(0), "\(result.summary)")
        #expect(result.stdoutLines == ["value-0", "value-1999", "0", "changed", "2"])
    }

    @Test("writes acknowledged before kill -9 survive it (plain and encrypted)", arguments: [false, true])
    func acknowledgedWritesSurviveKill9(encrypted: Bool) throws {
        let sandbox = try Sandbox()
        let keyOptions = encrypted ? ["--encryption-key-file", try makeKeyFile(sandbox)] : []
        let writer = try sandbox.start(["--sync", "always"] + keyOptions)
        var next = 0
        var acknowledged = 0
        let deadline = ContinuousClock.now + .seconds(15)
        // Feed SETs in chunks as kvsh takes them, and kill it as soon as enough replies came back:
        // some SETs are then still in flight.
        // The kill follows the 2000th reply at once, so a reply sent before its write reached the log is caught.
        func replies(_ process: PipedProcess) -> Int { process.stdout.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) } }
        while acknowledged < 2000 && ContinuousClock.now < deadline {
            writer.send((next..<(next + 200)).map { "SET k\($0) v\($0)\n" }.joined())
            next += 200
            writer.wait(timeout: .milliseconds(50)) { replies($0) >= 2000 }
            acknowledged = replies(writer)
        }
        writer.signal(SIGKILL)
        #expect(try writer.finish() == .signaled(SIGKILL))
        let replies = writer.stdout.lines.prefix { $0 == "OK" }  // a torn last line is no acknowledgement
        #expect(replies.count >= 2000, "only \(replies.count) replies within 15 s")

        let check = try sandbox.kvsh(keyOptions, script: (0..<replies.count).map { "GET k\($0)\n" }.joined())
        #expect(check.termination == .exited(0), "restart after kill -9: \(check.summary)")
        let lost = (0..<replies.count).filter { $0 >= check.stdoutLines.count || check.stdoutLines[$0] != "v\($0)" }
        #expect(lost.count == 0, "\(lost.count) of \(replies.count) acknowledged writes lost (first: k\(lost.first ?? -1)); \(next) were sent")
        let verify = try sandbox.run(["check", "--data-dir", sandbox.dataDir] + keyOptions)
        #expect(verify.termination == .exited(0), "kvsh check after the restart: \(verify.summary)")
    }

    @Test("replies are flushed while stdin stays open")
    func repliesFlushedWhileInputStaysOpen() throws {
        let sandbox = try Sandbox()
        let process = try sandbox.start()
        process.send((0..<100).map { "SET w\($0) \($0)\n" }.joined())
        #expect(process.waitForLines(100, timeout: .seconds(10)),
                "\(process.stdout.lines.count) of 100 replies arrived while stdin stayed open")
        #expect(process.stdout.lines == Array(repeating: "OK", count: 100))
        #expect(process.isRunning, "kvsh ended although its stdin is still open")

        process.send("GET w42\n")  // and it keeps answering, line by line
        #expect(process.waitForLines(101), "no reply to GET after the batch")
        #expect(process.stdout.lines.last == "42")
        process.closeInput()
        #expect(try process.finish() == .exited(0))
        #expect(process.stderr.isEmpty, "\(escaped(process.stderr))")
    }

    // MARK: Meta-commands

    @Test(":rebuild replays the store's own log and prints a summary")
    func rebuild() throws {
        let sandbox = try Sandbox()
        let result = try sandbox.kvsh(script: "SET a 1\nSET b 2\nSET a 3\nDELETE b\n:rebuild\nGET a\nEXISTS b\n")
        #expect(result.termination == .exited(0), "\(result.summary)")
        let lines = result.stdoutLines
        #expect(lines.count == 7, "\(result.summary)")
        let summary = lines.first { $0.hasPrefix("rebuilt") } ?? ""
        #expect(summary.contains("1 key from 4 records") && summary.contains("1 file"),
                "summary should count 1 key and 4 records in 1 file: \(result.summary)")
        #expect(lines.suffix(2) == ["3", "0"], "\(result.summary)")
    }

    @Test(":rebuild PATH imports a Go StorageEngine JSON-lines log as durable writes")
    func rebuildFromGoLog() throws {
        let sandbox = try Sandbox()
        let goLog = try sandbox.write("go-store.log", """
            {"operation":"SET","key":"g1","value":"v1"}
            {"operation":"GET","key":"g1"}
            {"operation":"SET","key":"g2","value":"v2"}
            {"operation":"DELETE","key":"g2"}

            {"operation":"SET","key":"city","value":"Z\\u00fcrich \\"old\\""}

            """)
        let result = try sandbox.kvsh(script: "SET before 0\n:rebuild \(goLog)\nGET g1\nEXISTS g2\n")
        #expect(result.termination == .exited(0), "\(result.summary)")
        let summary = result.stdoutLines.first { $0.hasPrefix("rebuilt") } ?? ""
        #expect(summary.contains("3 sets") && summary.contains("1 delete,") && summary.contains("1 read skipped")
                    && summary.contains("holds 3 keys"), "\(result.summary)")
        #expect(result.stdoutLines.suffix(2) == ["v1", "0"], "\(result.summary)")

        let reopened = try sandbox.kvsh(script: "GET g1\nGET city\nEXISTS g2 before\n")
        #expect(reopened.stdoutLines == ["v1", "Zürich \"old\"", "1"], "imported writes did not survive: \(reopened.summary)")

        // A malformed source imports nothing and fails with its line number.
        let bad = try sandbox.write("bad.log", "{\"operation\":\"SET\",\"key\":\"n1\",\"value\":\"x\"}\nnot json\n")
        let refused = try sandbox.kvsh(script: ":rebuild \(bad)\nEXISTS n1\n")
        #expect(refused.termination == .exited(1), "\(refused.summary)")
        #expect(refused.stderrText.contains("line 2"), "\(refused.summary)")
        #expect(refused.stdoutLines == ["0"], "a damaged source imported some entries: \(refused.summary)")
    }

    // MARK: Where the data lives

    @Test("KVSH_DATA_DIR is used when there is no --data-dir, and --data-dir wins over it")
    func dataDirectoryFromEnvironment() throws {
        let sandbox = try Sandbox()
        let fromEnvironment = sandbox.path("env-store")
        let set = try sandbox.run(["SET", "e", "1"], env: ["KVSH_DATA_DIR": fromEnvironment])
        #expect(set.termination == .exited(0), "\(set.summary)")
        let files = (try? FileManager.default.contentsOfDirectory(atPath: fromEnvironment)) ?? []
        #expect(files.contains { $0.hasSuffix(".log") }, "no log in $KVSH_DATA_DIR: \(files)")
        #expect(!exists(sandbox.path("kvsh-data")), "./kvsh-data was used despite KVSH_DATA_DIR")
        let get = try sandbox.run(["GET", "e"], env: ["KVSH_DATA_DIR": fromEnvironment])
        #expect(get.stdout == Array("1\n".utf8), "\(get.summary)")

        let flagWins = try sandbox.run(["--data-dir", sandbox.dataDir, "EXISTS", "e"], env: ["KVSH_DATA_DIR": fromEnvironment])
        #expect(flagWins.stdout == Array("0\n".utf8) && exists(sandbox.dataDir), "\(flagWins.summary)")
    }

    @Test("without --data-dir or KVSH_DATA_DIR the store is ./kvsh-data in the working directory")
    func defaultDataDirectory() throws {
        let sandbox = try Sandbox()
        let work = sandbox.path("work")
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: false)
        let set = try sandbox.run(["SET", "d", "1"], directory: work)
        #expect(set.termination == .exited(0), "\(set.summary)")
        #expect(exists(work + "/kvsh-data"), "no kvsh-data in the working directory")
        let get = try sandbox.run(["GET", "d"], directory: work)
        #expect(get.stdout == Array("1\n".utf8), "\(get.summary)")
        let elsewhere = try sandbox.run(["EXISTS", "d"], directory: sandbox.root)
        #expect(elsewhere.stdout == Array("0\n".utf8), "another working directory must mean another store")
    }
}
