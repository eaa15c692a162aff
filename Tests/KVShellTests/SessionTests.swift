#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVTestSupport
import Testing
import KVStore
@testable import KVShell
@testable import KVCommands
@testable import RESP

@Suite("Session")
struct SessionTests {
    @Test("SET, GET, DELETE, EXISTS replies in each format", arguments: [
        (OutputFormat.human, ["OK", "\"v 1\"", "(nil)", "(integer) 2", "(integer) 1", "(nil)", "(integer) 0", "OK", "\"\""]),
        (OutputFormat.raw, ["OK", "v 1", "", "2", "1", "", "0", "OK", ""]),
        (OutputFormat.json, ["\"OK\"", "\"v 1\"", "null", "2", "1", "null", "0", "\"OK\"", "\"\""]),
    ])
    func dataCommands(format: OutputFormat, expected: [String]) throws {
        try withSession(format: format) { h in
            #expect(h.run(#"SET k "v 1""#))
            #expect(h.run("GET k"))
            #expect(h.run("GET missing"))
            #expect(h.run("EXISTS k k missing"))
            #expect(h.run("DELETE k missing k"))
            #expect(h.run("get k"))
            #expect(h.run("del k"))
            #expect(h.run("set empty ''"))
            #expect(h.run("GET empty"))
            #expect(h.output() == expected.map { $0 + "\n" }.joined())
            #expect(h.errors() == "")
            #expect(h.session.failedCommands == 0)
        }
    }

    @Test("binary values in human and json formats")
    func binaryValues() throws {
        try withSession(format: .human) { h in
            h.run(#"SET bin "\x00\xff\n\"é""#)
            h.run("GET bin")
            #expect(h.output() == "OK\n" + #""\x00\xff\n\"é""# + "\n")
            #expect(h.store.get(bytes("bin")) == [0x00, 0xFF, 0x0A, 0x22, 0xC3, 0xA9])
            h.run(":format json")
            h.run("GET bin")
            #expect(h.output() == #"{"base64":"AP8KIsOp"}"# + "\n")
        }
    }

    @Test("errors are reported in the form of their origin")
    func errorForms() throws {
        try withSession { h in
            #expect(!h.run("GET", .interactive))
            #expect(h.errors() == "(error) ERR wrong number of arguments for 'GET' (usage: GET key)\n")
            #expect(!h.run("GET", .oneShot))
            #expect(h.errors() == "kvsh: ERR wrong number of arguments for 'GET' (usage: GET key)\n")
            #expect(!h.run("GET", .script(name: nil, line: 7)))
            #expect(h.errors() == "kvsh: line 7: ERR wrong number of arguments for 'GET' (usage: GET key)\n")
            #expect(!h.run("GET a b", .script(name: "fixtures.kv", line: 3)))
            #expect(h.errors() == "kvsh: fixtures.kv: line 3: ERR wrong number of arguments for 'GET' (usage: GET key)\n")
            #expect(h.output() == "", "errors never go to standard output")
            #expect(h.session.failedCommands == 4)
        }
    }

    @Test("wrong arity for every command", arguments: [
        ("SET k", "ERR wrong number of arguments for 'SET' (usage: SET key value [NX|XX] [GET])"),
        ("SET k v extra", "ERR syntax error (usage: SET key value [NX|XX] [GET])"),
        ("MSET a", "ERR wrong number of arguments for 'MSET' (usage: MSET key value [key value ...])"),
        ("mset a 1 b", "ERR wrong number of arguments for 'MSET' (usage: MSET key value [key value ...])"),
        ("MGET", "ERR wrong number of arguments for 'MGET' (usage: MGET key [key ...])"),
        ("SETNX k", "ERR wrong number of arguments for 'SETNX' (usage: SETNX key value)"),
        ("GETDEL a b", "ERR wrong number of arguments for 'GETDEL' (usage: GETDEL key)"),
        ("INCR", "ERR wrong number of arguments for 'INCR' (usage: INCR key)"),
        ("DECR a b", "ERR wrong number of arguments for 'DECR' (usage: DECR key)"),
        ("INCRBY k", "ERR wrong number of arguments for 'INCRBY' (usage: INCRBY key increment)"),
        ("DECRBY k 1 2", "ERR wrong number of arguments for 'DECRBY' (usage: DECRBY key decrement)"),
        ("APPEND k", "ERR wrong number of arguments for 'APPEND' (usage: APPEND key value)"),
        ("STRLEN", "ERR wrong number of arguments for 'STRLEN' (usage: STRLEN key)"),
        ("GET", "ERR wrong number of arguments for 'GET' (usage: GET key)"),
        ("DELETE", "ERR wrong number of arguments for 'DELETE' (usage: DELETE key [key ...])"),
        ("del", "ERR wrong number of arguments for 'DELETE' (usage: DELETE key [key ...])"),
        ("EXISTS", "ERR wrong number of arguments for 'EXISTS' (usage: EXISTS key [key ...])"),
        (":stats now", "ERR wrong number of arguments for ':stats' (usage: :stats)"),
        (":timing", "ERR wrong number of arguments for ':timing' (usage: :timing on|off)"),
        (":format", "ERR wrong number of arguments for ':format' (usage: :format human|raw|json)"),
        (":source", "ERR wrong number of arguments for ':source' (usage: :source file)"),
        (":help a b", "ERR wrong number of arguments for ':help' (usage: :help [command|@group])"),
        (":quit now", "ERR wrong number of arguments for ':quit' (usage: :quit)"),
        ("KEYS", "ERR wrong number of arguments for 'KEYS' (usage: KEYS pattern)"),
        ("keys a b", "ERR wrong number of arguments for 'KEYS' (usage: KEYS pattern)"),
        ("SCAN", "ERR wrong number of arguments for 'SCAN' (usage: SCAN cursor [MATCH pattern] [COUNT n])"),
        ("RANGE a", "ERR wrong number of arguments for 'RANGE' (usage: RANGE start end [LIMIT n])"),
        ("RANGE a b LIMIT 1 2", "ERR wrong number of arguments for 'RANGE' (usage: RANGE start end [LIMIT n])"),
        ("COUNT a", "ERR wrong number of arguments for 'COUNT' (usage: COUNT start end)"),
        ("DBSIZE now", "ERR wrong number of arguments for 'DBSIZE' (usage: DBSIZE)"),
    ])
    func wrongArity(line: String, message: String) throws {
        try withSession { h in
            #expect(!h.run(line, .script(name: nil, line: 1)))
            #expect(h.errors() == "kvsh: line 1: \(message)\n")
            #expect(!h.session.quitRequested)
        }
    }

    @Test("unknown commands, with and without a suggestion; unbalanced quotes")
    func unknownCommands() throws {
        try withSession { h in
            #expect(!h.run("SETT k v"))
            #expect(h.errors() == "(error) ERR unknown command 'SETT' (did you mean 'SET'? type :help for the list)\n")
            #expect(!h.run(":hlep"))
            #expect(h.errors() == "(error) ERR unknown meta-command ':hlep' (did you mean ':help'? type :help for the list)\n")
            #expect(!h.run("FROBNICATE x"))
            #expect(h.errors() == "(error) ERR unknown command 'FROBNICATE' (type :help for the list)\n")
            #expect(!h.run(#"SET k "unterminated"#))
            #expect(h.errors() == "(error) \(CommandError.unbalancedQuotes.message)\n")
            #expect(!h.run(#"SET k "a"b"#))
            #expect(h.errors().contains("unbalanced quotes"))
            #expect(h.store.count == 0, "nothing was written")
            #expect(h.session.failedCommands == 5)
        }
    }

    @Test("blank lines and comments do nothing")
    func commentsAndBlanks() throws {
        try withSession { h in
            for line in ["", "   ", "\t\r", "# SET a b", "   # GET a", "\t#", "#"] {
                #expect(h.run(line), "line \(line.debugDescription)")
            }
            #expect(h.output() == "")
            #expect(h.errors() == "")
            #expect(h.store.count == 0)
            #expect(h.session.failedCommands == 0)
            // A # inside a command is an ordinary byte.
            h.run("SET a#b #c")
            #expect(h.store.get(bytes("a#b")) == bytes("#c"))
        }
    }

    @Test("execute(arguments:) runs one command with arguments taken as they are")
    func executeArguments() throws {
        try withSession(format: .raw) { h in
            #expect(h.session.execute(arguments: [bytes("SET"), bytes("a b"), bytes("\"q\"")], origin: .oneShot))
            #expect(h.session.execute(arguments: [bytes("GET"), bytes("a b")], origin: .oneShot))
            #expect(h.session.execute(arguments: [], origin: .oneShot))
            #expect(h.output() == "OK\n\"q\"\n")
        }
    }

    @Test("replies before an error print before it")
    func ordering() throws {
        try withSession(sharedOutput: true) { h in
            h.run("SET a 1", .script(name: nil, line: 1))
            h.run("GET a", .script(name: nil, line: 2))
            h.run("BOGUS", .script(name: nil, line: 3))
            h.run("EXISTS a", .script(name: nil, line: 4))
            #expect(h.output() == "OK\n\"1\"\nkvsh: line 3: ERR unknown command 'BOGUS' (type :help for the list)\n(integer) 1\n")
        }
    }

    @Test("a flushed reply's write is durable: the log holds it and syncedSequence covers it")
    func flushCommits() throws {
        try withSession { h in
            h.run("SET a 1")
            h.run("SET b 2")
            h.run("DELETE a")
            #expect(h.output() == "OK\nOK\n(integer) 1\n")
            let stats = h.store.statistics
            #expect(stats.lastSequence == 3)
            #expect(stats.syncedSequence == 3)
            // A copy of the files, opened as after a crash, holds the acknowledged writes.
            let copy = h.directory + "/copy"
            #expect(mkdir(copy, 0o755) == 0)
            let log = try readWholeFile(h.directory + "/data/000001.log")
            try writeFile(copy + "/000001.log", log)
            let reopened = try KVStore(directory: copy)
            defer { try? reopened.close() }
            #expect(reopened.get(bytes("a")) == nil)
            #expect(reopened.get(bytes("b")) == bytes("2"))
        }
    }

    @Test("meta-commands: :help, :help SET, :help with an unknown name, :stats")
    func helpAndStats() throws {
        try withSession(format: .json) { h in
            h.run(":help")
            #expect(h.output() == CommandTable.help(for: nil))
            h.run(":help SET")
            #expect(h.output() == CommandTable.help(for: "SET"))
            h.run(":HELP :rebuild")
            #expect(h.output().hasPrefix(":rebuild [path]"))
            #expect(!h.run(":help nosuch"))
            #expect(h.errors() == "(error) ERR no command named 'nosuch' (type :help for the list)\n")
            h.run("SET k value")
            #expect(h.output() == "\"OK\"\n")  // flushing commits the write
            h.run(":stats")
            let stats = h.output()
            #expect(stats.hasPrefix("keys:            1\n"))
            #expect(stats.contains("key+value bytes: 6\n"))
            #expect(stats.contains("last sequence:   1 (durable through 1)"))
            #expect(stats.contains("sync policy:     always"))
            #expect(stats.contains(h.directory + "/data/000001.log"))
        }
    }

    @Test(":timing on prints each command's duration on stderr; off stops; a bad argument is an error")
    func timing() throws {
        try withSession { h in
            #expect(h.run(":timing on"))
            #expect(h.session.timing)
            h.run("SET k v")
            h.run("GET k")
            #expect(h.output() == "OK\n\"v\"\n", "timings never go to standard output")
            let lines = h.errors().split(separator: "\n", omittingEmptySubsequences: false)
            #expect(lines.count == 3 && lines.last == "")
            for line in lines.dropLast() {
                #expect(Self.isTimingLine(line), "\(line)")
            }
            #expect(h.run(":TIMING OFF"))
            #expect(!h.session.timing)
            _ = h.errors()  // the :timing off command itself may be timed
            h.run("GET k")
            #expect(h.output() == "\"v\"\n")
            #expect(h.errors() == "")
            #expect(!h.run(":timing maybe"))
            #expect(h.errors() == "(error) ERR invalid argument 'maybe' for ':timing' (usage: :timing on|off)\n")
            #expect(!h.session.timing)
        }
    }

    /// `(12.345 ms)`
    static func isTimingLine(_ line: Substring) -> Bool {
        guard line.hasPrefix("("), line.hasSuffix(" ms)") else { return false }
        let number = line.dropFirst().dropLast(4)
        let parts = number.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 2 && !parts[0].isEmpty && parts[0].allSatisfy(\.isNumber)
            && parts[1].count == 3 && parts[1].allSatisfy(\.isNumber)
    }

    @Test(":format switches formats (case-insensitive); a bad format is an error")
    func format() throws {
        try withSession { h in
            h.run("SET k v")
            h.run(":format json")
            #expect(h.session.format == .json)
            h.run("GET k")
            h.run("GET nope")
            h.run(":format RAW")
            h.run("GET k")
            h.run(":format Human")
            h.run("GET k")
            #expect(h.output() == "OK\n\"v\"\nnull\nv\n\"v\"\n")
            #expect(!h.run(":format xml"))
            #expect(h.errors() == "(error) ERR invalid argument 'xml' for ':format' (usage: :format human|raw|json)\n")
            #expect(h.session.format == .human)
        }
    }

    @Test(":quit and :exit set quitRequested")
    func quit() throws {
        for command in [":quit", ":exit", ":QUIT"] {
            try withSession { h in
                #expect(!h.session.quitRequested)
                #expect(h.run(command))
                #expect(h.session.quitRequested)
                #expect(h.output() == "")
            }
        }
    }

    @Test(":rebuild without a path replays the store's own log")
    func rebuild() throws {
        try withSession { h in
            h.run("SET a 1")
            h.run("SET b 2")
            h.run("DEL a")
            h.run(":rebuild")
            let text = h.output()
            #expect(text.hasPrefix("OK\nOK\n(integer) 1\nrebuilt from the log: 1 key from 3 records ("))
            #expect(text.contains("bytes in 1 file) in "))
            #expect(h.store.get(bytes("b")) == bytes("2"))
        }
    }

    @Test(":compact, :backup and :check report what they did, and the data stays")
    func lifecycleMetaCommands() throws {
        try withSession { h in
            for index in 0..<50 { h.run("SET key\(index % 10) value\(index)") }
            _ = h.output()
            #expect(h.run(":compact"))
            let compacted = h.output()
            #expect(compacted.hasPrefix("compacted through sequence 50: log "))
            #expect(compacted.contains("(10 keys) + a new empty log"))
            #expect(h.run(":backup \(h.directory)/copy.kvbak"))
            #expect(h.output().hasPrefix("backup written to \(h.directory)/copy.kvbak: 10 keys through sequence 50, "))
            #expect(h.run(":check"))
            let report = h.output()
            #expect(report.contains("000002.image"))
            #expect(report.contains("status: clean"))
            h.run("GET key3")
            #expect(h.output() == "\"value43\"\n")
            #expect(!h.run(":backup /nonexistent-dir/x/y.kvbak"))
            #expect(h.errors().contains("ERR "))
        }
    }

    @Test(":rebuild PATH imports a Go JSON-lines log as durable writes; a bad one imports nothing")
    func rebuildFromPath() throws {
        try withSession { h in
            let good = h.directory + "/go.log"
            try writeFile(good, bytes("""
                {"operation":"SET","key":"a","value":"1"}
                {"operation":"GET","key":"a"}
                {"operation":"SET","key":"b","value":"2"}
                {"operation":"DELETE","key":"a"}
                """))
            #expect(h.run(":rebuild \(good)"))
            let text = h.output()
            #expect(text.hasPrefix("rebuilt from \(good) (Go StorageEngine JSON lines): 2 sets, 1 delete, 1 read skipped in "))
            #expect(text.hasSuffix("; the store holds 1 key\n"))
            #expect(h.store.get(bytes("b")) == bytes("2"))
            #expect(h.store.statistics.syncedSequence == h.store.statistics.lastSequence, "the import was committed")

            let bad = h.directory + "/bad.log"
            try writeFile(bad, bytes("{\"operation\":\"SET\",\"key\":\"c\",\"value\":\"3\"}\n{oops\n"))
            #expect(!h.run(":rebuild \(bad)"))
            #expect(h.errors() == "(error) ERR \(bad): line 2: not a kvsh log, and not a JSON object with \"operation\" and \"key\"; nothing was imported\n")
            #expect(h.store.get(bytes("c")) == nil)
        }
    }
}

func readWholeFile(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY)
    try #require(fd >= 0, "open \(path)")
    defer { close(fd) }
    return readAvailable(fd)
}
