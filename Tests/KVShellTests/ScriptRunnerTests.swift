#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch
import KVTestSupport
import Testing
import KVStore
@testable import KVShell
@testable import KVCommands
@testable import RESP

@Suite("Scripts")
struct ScriptRunnerTests {
    @Test("a script from a pipe: replies in order, errors with line numbers, comments skipped, last line without newline")
    func scriptFromPipe() throws {
        try withSession(format: .raw) { h in
            let script = """
                # fixtures
                SET a 1

                SET b "two words"
                GET a
                GETT a
                   # indented comment
                GET b
                DELETE a b c
                GET a
                EXISTS a b
                """  // no newline after the last line
            try runScriptFromPipe(bytes(script), session: h.session)
            #expect(h.output() == "OK\nOK\n1\ntwo words\n2\n\n0\n")
            #expect(h.errors() == "kvsh: line 6: ERR unknown command 'GETT' (did you mean 'GET'? type :help for the list)\n")
            #expect(h.session.failedCommands == 1)
        }
    }

    @Test("a named script reports the name; CRLF line endings work")
    func namedScriptAndCRLF() throws {
        try withSession(format: .raw) { h in
            try runScriptFromPipe(bytes("SET a 1\r\nGET a\r\nGET\r\n\r\nGET a"), name: "fixtures.kv", session: h.session)
            #expect(h.output() == "OK\n1\n1\n")
            #expect(h.errors() == "kvsh: fixtures.kv: line 3: ERR wrong number of arguments for 'GET' (usage: GET key)\n")
        }
    }

    @Test("an empty script, and one of only a newline, do nothing")
    func emptyScripts() throws {
        for script in ["", "\n", "\n\n\n", "   "] {
            try withSession { h in
                try runScriptFromPipe(bytes(script), session: h.session)
                #expect(h.output() == "")
                #expect(h.errors() == "")
            }
        }
    }

    @Test("bail stops at the first failure; without bail the script goes on", arguments: [true, false])
    func bail(bail: Bool) throws {
        try withSession(format: .raw) { h in
            h.session.bail = bail
            try runScriptFromPipe(bytes("SET a 1\nBOGUS\nSET b 2\nGET b\n"), session: h.session)
            #expect(h.errors() == "kvsh: line 2: ERR unknown command 'BOGUS' (type :help for the list)\n")
            if bail {
                #expect(h.output() == "OK\n")
                #expect(h.store.get(bytes("b")) == nil)
            } else {
                #expect(h.output() == "OK\nOK\n2\n")
            }
        }
    }

    @Test("bail counts only failures of this script, not earlier ones")
    func bailCountsFromScriptStart() throws {
        try withSession(format: .raw) { h in
            h.session.bail = true
            h.run("BOGUS")
            _ = h.errors()
            try runScriptFromPipe(bytes("SET a 1\nGET a\n"), session: h.session)
            #expect(h.output() == "OK\n1\n")
        }
    }

    @Test(":quit stops the script; lines after it are not run", arguments: [":quit", ":exit"])
    func quitStops(command: String) throws {
        try withSession(format: .raw) { h in
            try runScriptFromPipe(bytes("SET a 1\n\(command)\nSET b 2\n"), session: h.session)
            #expect(h.output() == "OK\n")
            #expect(h.session.quitRequested)
            #expect(h.store.get(bytes("b")) == nil)
        }
    }

    @Test("a script from a file, with a 3 MB value on one line and a last line without newline")
    func longLines() throws {
        try withSession(format: .raw, files: true) { h in
            var rng = SplitMix64(seed: 8)
            let big = (0..<(3 << 20)).map { _ in UInt8(ascii: "a") + UInt8.random(in: 0..<26, using: &rng) }
            let path = h.directory + "/big.kv"
            try writeFile(path, bytes("SET before 1\nSET big \"") + big + bytes("\"\nGET before\nGET big\nSET after 2\nEXISTS big after"))
            let fd = open(path, O_RDONLY)
            try #require(fd >= 0)
            defer { close(fd) }
            try ScriptRunner.run(fd: fd, name: path, session: h.session)
            #expect(h.errors() == "")
            let output = h.outputBytes()
            #expect(output == bytes("OK\nOK\n1\n") + big + bytes("\nOK\n2\n"))
            #expect(h.store.get(bytes("big")) == big)
        }
    }

    @Test("a long line arriving through a pipe in pieces")
    func longLineThroughPipe() throws {
        try withSession(format: .raw, files: true) { h in
            let big = [UInt8](repeating: UInt8(ascii: "z"), count: (1 << 20) + 12345)
            let script = bytes("SET big ") + big + bytes("\nEXISTS big\n")
            var fds: [Int32] = [-1, -1]
            try #require(pipe(&fds) == 0)
            // A writer thread feeds the pipe while the runner reads it.
            let writeFD = fds[1]
            let written = DispatchSemaphore(value: 0)
            DispatchQueue.global().async {
                try? writeAll(fd: writeFD, script)
                close(writeFD)
                written.signal()
            }
            try ScriptRunner.run(fd: fds[0], name: nil, session: h.session)
            written.wait()
            close(fds[0])
            #expect(h.output() == "OK\n1\n")
            #expect(h.store.get(bytes("big")) == big)
        }
    }

    @Test(":source runs a file in this session; its errors name the file")
    func source() throws {
        try withSession(format: .raw, sharedOutput: true) { h in
            let path = h.directory + "/fixtures.kv"
            try writeFile(path, bytes("SET a 1\nGET\n:format human\nGET a\n"))
            #expect(h.run(":source \(path)", .script(name: nil, line: 4)))
            #expect(h.output() == "OK\nkvsh: \(path): line 2: ERR wrong number of arguments for 'GET' (usage: GET key)\n\"1\"\n")
            #expect(h.session.format == .human, "the script ran in this session")
            #expect(h.session.failedCommands == 1)
        }
    }

    @Test(":source of a missing file is an error")
    func sourceMissing() throws {
        try withSession { h in
            let path = h.directory + "/missing.kv"
            #expect(!h.run(":source \(path)", .script(name: nil, line: 2)))
            #expect(h.errors() == "kvsh: line 2: ERR cannot open '\(path)': No such file or directory\n")
        }
    }

    @Test(":source of a directory is an error, not a hang or a crash")
    func sourceDirectory() throws {
        try withSession { h in
            #expect(!h.run(":source \(h.directory)"))
            let error = h.errors()
            #expect(error.hasPrefix("(error) ERR "))
            #expect(error.contains(h.directory))
        }
    }

    @Test("Session.source throws for a missing file")
    func sourceAPI() throws {
        try withSession { h in
            _ = #expect(throws: CommandError.self) { try h.session.source(h.directory + "/missing.kv") }
        }
    }

    @Test(":quit inside a sourced file ends the outer script too")
    func quitInSource() throws {
        try withSession(format: .raw) { h in
            let path = h.directory + "/inner.kv"
            try writeFile(path, bytes("SET inner 1\n:quit\nSET never 1\n"))
            try runScriptFromPipe(bytes("SET outer 1\n:source \(path)\nSET after 1\n"), session: h.session)
            #expect(h.output() == "OK\nOK\n")
            #expect(h.store.get(bytes("never")) == nil)
            #expect(h.store.get(bytes("after")) == nil)
        }
    }

    @Test("a script that sources itself stops at the nesting limit with one error")
    func sourceRecursion() throws {
        try withSession(format: .raw) { h in
            let path = h.directory + "/loop.kv"
            try writeFile(path, bytes("SET x 1\n:source \(path)\n"))
            #expect(h.run(":source \(path)"))
            #expect(h.errors() == "kvsh: \(path): line 2: ERR :source nested more than 16 deep (does a script source itself?)\n")
            #expect(h.output() == String(repeating: "OK\n", count: 16))
        }
    }

    @Test("a script's writes share one fsync instead of paying one per line (group commit)")
    func groupCommit() throws {
        try withSession(format: .raw, sync: .always) { h in
            let fsyncsBefore = h.store.statistics.fsyncs
            let script = (0..<200).map { "SET k\($0) v\($0)\n" }.joined()
            try runScriptFromPipe(bytes(script), session: h.session)
            #expect(h.output() == String(repeating: "OK\n", count: 200))
            let stats = h.store.statistics
            #expect(stats.syncedSequence == 200, "every acknowledged write is durable")
            #expect(stats.fsyncs - fsyncsBefore <= 2, "\(stats.fsyncs - fsyncsBefore) fsyncs for 200 lines read at once")
        }
    }

    @Test("many lines: every reply arrives, in order")
    func manyLines() throws {
        try withSession(format: .raw, sync: .none, files: true) { h in
            var script: [UInt8] = []
            var expected: [UInt8] = []
            for i in 0..<3000 {
                script += bytes("SET k\(i % 100) v\(i)\nGET k\(i % 100)\n")
                expected += bytes("OK\nv\(i)\n")
            }
            let path = h.directory + "/many.kv"
            try writeFile(path, script)
            let fd = open(path, O_RDONLY)
            try #require(fd >= 0)
            defer { close(fd) }
            try ScriptRunner.run(fd: fd, name: nil, session: h.session)
            #expect(h.outputBytes() == expected)
            #expect(h.store.count == 100)
        }
    }
}
