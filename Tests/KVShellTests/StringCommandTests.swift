import Dispatch
import Synchronization
import KVTestSupport
import Testing
import KVStore
@testable import KVShell
@testable import KVCommands
@testable import RESP

/// A store in a temporary directory and an executor on it, as the shell and the server use them.
private func withExecutor<R>(_ body: (CommandExecutor) throws -> R) throws -> R {
    try withTempDir { directory in
        let store = try KVStore(directory: directory, syncPolicy: .none)
        defer { try? store.close() }
        return try body(CommandExecutor(store: store))
    }
}

/// Runs one command given as words; fails the test if it is not a data command.
@discardableResult
private func run(_ executor: CommandExecutor, _ words: [[UInt8]], sourceLocation: SourceLocation = #_sourceLocation) throws -> CommandExecutor.Outcome {
    try executor.execute(try #require(CommandTable.lookup(words[0]), "not a command", sourceLocation: sourceLocation), words)
}

@discardableResult
private func run(_ executor: CommandExecutor, _ words: String..., sourceLocation: SourceLocation = #_sourceLocation) throws -> CommandExecutor.Outcome {
    try run(executor, words.map(bytes), sourceLocation: sourceLocation)
}

/// The reply and whether the command wrote.
private func result(_ executor: CommandExecutor, _ words: String..., sourceLocation: SourceLocation = #_sourceLocation) throws -> (Reply, Bool) {
    let outcome = try run(executor, words.map(bytes), sourceLocation: sourceLocation)
    return (shellReply(outcome.reply), outcome.wrote)
}

/// The executor's reply as the shell's, to compare with the shell's reply values.
private func shellReply(_ value: RESPValue) -> Reply {
    switch value {
    case .simpleString("OK"): return .ok
    case .bulkString(let bytes): return .value(bytes)
    case .null: return .null
    case .integer(let number): return .integer(number)
    case .array(let items): return .array(items.map(shellReply))
    default: return .text("unexpected \(value)")
    }
}

/// The error `words` fail with (nil, and an issue, if they succeed or fail with something else).
private func failure(_ executor: CommandExecutor, _ words: [[UInt8]], sourceLocation: SourceLocation = #_sourceLocation) -> CommandError? {
    do {
        guard let spec = CommandTable.lookup(words[0]) else {
            Issue.record("not a command: \(words[0])", sourceLocation: sourceLocation)
            return nil
        }
        let outcome = try executor.execute(spec, words)
        Issue.record("expected an error, got \(outcome.reply)", sourceLocation: sourceLocation)
        return nil
    } catch let error as CommandError {
        return error
    } catch {
        Issue.record("expected a CommandError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

private func failure(_ executor: CommandExecutor, _ words: String..., sourceLocation: SourceLocation = #_sourceLocation) -> CommandError? {
    failure(executor, words.map(bytes), sourceLocation: sourceLocation)
}

/// Checks both wordings of an error.
private func expectError(_ error: CommandError?, _ message: String, redis: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(error?.message == message, sourceLocation: sourceLocation)
    #expect(error?.redisMessage == redis, sourceLocation: sourceLocation)
}

private func value(_ text: String) -> Reply { .value(bytes(text)) }

private let setUsage = "SET key value [NX|XX] [GET]"
private let notAnInteger = "ERR value is not an integer or out of range"
private let storedNotAnInteger = notAnInteger + " (the value stored at the key is not a decimal integer within 64 bits)"
private let overflow = "ERR increment or decrement would overflow"
private let overflowMessage = overflow + " (the result would be outside -9223372036854775808...9223372036854775807)"

@Suite("String commands: SET options")
struct SetOptionTests {
    @Test("plain SET replies OK and writes")
    func plain() throws {
        try withExecutor { (e) throws in
            let (reply, wrote) = try result(e, "SET", "k", "v")
            #expect(reply == .ok && wrote)
            #expect(e.store.get(bytes("k")) == bytes("v"))
        }
    }

    @Test("NX sets only a missing key; when it does not set, the reply is nil and nothing is written")
    func nx() throws {
        try withExecutor { (e) throws in
            var (reply, wrote) = try result(e, "SET", "k", "v1", "NX")
            #expect(reply == .ok && wrote)
            (reply, wrote) = try result(e, "SET", "k", "v2", "nx")
            #expect(reply == .null && !wrote)
            #expect(e.store.get(bytes("k")) == bytes("v1"))
            #expect(e.store.statistics.lastSequence == 1)
        }
    }

    @Test("XX sets only an existing key; when it does not set, the reply is nil and nothing is written")
    func xx() throws {
        try withExecutor { (e) throws in
            var (reply, wrote) = try result(e, "SET", "k", "v1", "XX")
            #expect(reply == .null && !wrote)
            #expect(e.store.get(bytes("k")) == nil)
            #expect(e.store.statistics.lastSequence == 0)
            try run(e, "SET", "k", "v1")
            (reply, wrote) = try result(e, "SET", "k", "v2", "Xx")
            #expect(reply == .ok && wrote)
            #expect(e.store.get(bytes("k")) == bytes("v2"))
        }
    }

    @Test("GET replies with the old value, or nil, and always sets")
    func get() throws {
        try withExecutor { (e) throws in
            var (reply, wrote) = try result(e, "SET", "k", "v1", "GET")
            #expect(reply == .null && wrote)
            (reply, wrote) = try result(e, "set", "k", "v2", "get")
            #expect(reply == value("v1") && wrote)
            #expect(e.store.get(bytes("k")) == bytes("v2"))
            try run(e, "SET", "empty", "")
            (reply, wrote) = try result(e, "SET", "empty", "x", "GET")
            #expect(reply == value("") && wrote, "an empty value is a value, not nil")
        }
    }

    @Test("NX with GET: the old value when it does not set, nil when it sets")
    func nxGet() throws {
        try withExecutor { (e) throws in
            var (reply, wrote) = try result(e, "SET", "k", "v1", "NX", "GET")
            #expect(reply == .null && wrote)
            (reply, wrote) = try result(e, "SET", "k", "v2", "GET", "NX")
            #expect(reply == value("v1") && !wrote)
            #expect(e.store.get(bytes("k")) == bytes("v1"))
        }
    }

    @Test("XX with GET: nil when it does not set, the old value when it sets")
    func xxGet() throws {
        try withExecutor { (e) throws in
            var (reply, wrote) = try result(e, "SET", "k", "v1", "XX", "GET")
            #expect(reply == .null && !wrote)
            #expect(e.store.get(bytes("k")) == nil)
            try run(e, "SET", "k", "v1")
            (reply, wrote) = try result(e, "SET", "k", "v2", "gEt", "xx")
            #expect(reply == value("v1") && wrote)
            #expect(e.store.get(bytes("k")) == bytes("v2"))
        }
    }

    @Test("an option named twice is accepted, as in Redis")
    func repeatedOptions() throws {
        try withExecutor { (e) throws in
            #expect(try result(e, "SET", "k", "v1", "NX", "NX").0 == .ok)
            #expect(try result(e, "SET", "k", "v2", "XX", "xx", "GET", "GET").0 == value("v1"))
            #expect(e.store.get(bytes("k")) == bytes("v2"))
        }
    }

    @Test("NX with XX, and unknown options, are syntax errors; nothing is written",
          arguments: [["NX", "XX"], ["xx", "nx"], ["NX", "GET", "XX"], ["FOO"], ["GET", "NXX"], ["N"], [""], ["NX", "1"]])
    func syntaxErrors(options: [String]) throws {
        try withExecutor { (e) throws in
            try run(e, "SET", "k", "old")
            let error = failure(e, (["SET", "k", "new"] + options).map(bytes))
            expectError(error, "ERR syntax error (usage: \(setUsage))", redis: "ERR syntax error")
            #expect(e.store.get(bytes("k")) == bytes("old"))
            #expect(e.store.statistics.lastSequence == 1)
        }
    }

    @Test("expiry options are refused: keys do not expire", arguments: [
        (["EX", "10"], "EX"), (["px", "100"], "PX"), (["ExAt", "1700000000"], "EXAT"), (["PXAT", "1700000000000"], "PXAT"),
        (["KEEPTTL"], "KEEPTTL"), (["EX"], "EX"), (["NX", "EX", "10"], "EX"), (["GET", "keepttl"], "KEEPTTL"),
    ])
    func expiry(options: [String], named: String) throws {
        try withExecutor { (e) throws in
            let error = failure(e, (["SET", "k", "v"] + options).map(bytes))
            expectError(error, "ERR the \(named) option is not supported: keys do not expire in kvsh (drop the option; DEL removes a key)",
                        redis: "ERR the \(named) option is not supported: keys do not expire in kvsh")
            #expect(e.store.get(bytes("k")) == nil)
        }
    }

    @Test("options are read left to right: the first bad one decides the error")
    func optionOrder() throws {
        try withExecutor { (e) throws in
            #expect(failure(e, "SET", "k", "v", "NX", "XX", "EX", "10")?.redisMessage == "ERR syntax error")
            #expect(failure(e, "SET", "k", "v", "EX", "10", "NX", "XX")?.redisMessage
                == "ERR the EX option is not supported: keys do not expire in kvsh")
            #expect(failure(e, "SET", "k", "v", "FOO", "EX", "10")?.redisMessage == "ERR syntax error")
        }
    }

    @Test("SET with too few arguments")
    func arity() throws {
        try withExecutor { (e) throws in
            expectError(failure(e, "SET", "k"), "ERR wrong number of arguments for 'SET' (usage: \(setUsage))",
                        redis: "ERR wrong number of arguments for 'set' command")
            expectError(failure(e, "set"), "ERR wrong number of arguments for 'SET' (usage: \(setUsage))",
                        redis: "ERR wrong number of arguments for 'set' command")
        }
    }
}

@Suite("String commands: MSET, MGET, SETNX, GETDEL")
struct MultiKeyCommandTests {
    @Test("MSET sets every pair in one record; a key named twice gets its last value")
    func mset() throws {
        try withExecutor { (e) throws in
            try run(e, "SET", "b", "old")
            let (reply, wrote) = try result(e, "MSET", "a", "1", "b", "2", "a", "3", "", "empty key")
            #expect(reply == .ok && wrote)
            #expect(e.store.values(for: [bytes("a"), bytes("b"), []]) == [bytes("3"), bytes("2"), bytes("empty key")])
            #expect(e.store.statistics.lastSequence == 2, "one record for the whole MSET")
            #expect(try result(e, "mset", "c", "4").0 == .ok)
            #expect(e.store.get(bytes("c")) == bytes("4"))
        }
    }

    @Test("MSET with an odd number of arguments, or none, is the wrong number of arguments; nothing is written",
          arguments: [[], ["a"], ["a", "1", "b"], ["a", "1", "b", "2", "c"]])
    func msetArity(arguments: [String]) throws {
        try withExecutor { (e) throws in
            let error = failure(e, (["MSET"] + arguments).map(bytes))
            expectError(error, "ERR wrong number of arguments for 'MSET' (usage: MSET key value [key value ...])",
                        redis: "ERR wrong number of arguments for 'mset' command")
            #expect(e.store.count == 0)
        }
    }

    @Test("MGET replies with an array of values and nils, in order, and writes nothing")
    func mget() throws {
        try withExecutor { (e) throws in
            try run(e, "MSET", "a", "1", "e", "")
            let (reply, wrote) = try result(e, "MGET", "a", "missing", "e", "a")
            #expect(reply == .array([value("1"), .null, value(""), value("1")]))
            #expect(!wrote)
            #expect(try result(e, "mget", "nothing").0 == .array([.null]))
            expectError(failure(e, "MGET"), "ERR wrong number of arguments for 'MGET' (usage: MGET key [key ...])",
                        redis: "ERR wrong number of arguments for 'mget' command")
        }
    }

    @Test("SETNX: 1 and a write when the key is missing, 0 and nothing written when it exists")
    func setnx() throws {
        try withExecutor { (e) throws in
            var (reply, wrote) = try result(e, "SETNX", "k", "v1")
            #expect(reply == .integer(1) && wrote)
            (reply, wrote) = try result(e, "setnx", "k", "v2")
            #expect(reply == .integer(0) && !wrote)
            #expect(e.store.get(bytes("k")) == bytes("v1"))
            expectError(failure(e, "SETNX", "k"), "ERR wrong number of arguments for 'SETNX' (usage: SETNX key value)",
                        redis: "ERR wrong number of arguments for 'setnx' command")
            expectError(failure(e, "SETNX", "k", "v", "NX"), "ERR wrong number of arguments for 'SETNX' (usage: SETNX key value)",
                        redis: "ERR wrong number of arguments for 'setnx' command")
        }
    }

    @Test("GETDEL: the value, and the key deleted; nil and nothing written for a missing key")
    func getdel() throws {
        try withExecutor { (e) throws in
            try run(e, "SET", "k", "v")
            var (reply, wrote) = try result(e, "GETDEL", "k")
            #expect(reply == value("v") && wrote)
            #expect(e.store.get(bytes("k")) == nil)
            (reply, wrote) = try result(e, "getdel", "k")
            #expect(reply == .null && !wrote)
            try run(e, "SET", "empty", "")
            #expect(try result(e, "GETDEL", "empty").0 == value(""))
            #expect(e.store.count == 0)
            expectError(failure(e, "GETDEL"), "ERR wrong number of arguments for 'GETDEL' (usage: GETDEL key)",
                        redis: "ERR wrong number of arguments for 'getdel' command")
            expectError(failure(e, "GETDEL", "a", "b"), "ERR wrong number of arguments for 'GETDEL' (usage: GETDEL key)",
                        redis: "ERR wrong number of arguments for 'getdel' command")
        }
    }
}

@Suite("String commands: INCR, DECR, INCRBY, DECRBY")
struct IncrementCommandTests {
    @Test("a missing key counts as 0; the new value is the reply and is stored as decimal text")
    func counting() throws {
        try withExecutor { (e) throws in
            let steps: [([String], Int)] = [
                (["INCR", "n"], 1), (["incr", "n"], 2), (["DECR", "n"], 1), (["INCRBY", "n", "10"], 11),
                (["DECRBY", "n", "20"], -9), (["IncrBy", "n", "-1"], -10), (["decrby", "n", "-15"], 5), (["INCRBY", "n", "0"], 5),
                (["DECR", "m"], -1), (["INCRBY", "o", "-7"], -7), (["DECRBY", "p", "7"], -7),
            ]
            for (words, expected) in steps {
                let outcome = try run(e, words.map(bytes))
                #expect(outcome.reply == .integer(expected), "\(words)")
                #expect(outcome.wrote, "\(words)")
                #expect(e.store.get(bytes(words[1])) == bytes(String(expected)), "\(words)")
            }
        }
    }

    @Test("stored values Redis reads as integers", arguments: [
        ("0", 1), ("-1", 0), ("41", 42), ("9223372036854775806", 9223372036854775807), ("-9223372036854775808", -9223372036854775807),
    ])
    func storedIntegers(stored: String, afterIncrement: Int) throws {
        try withExecutor { (e) throws in
            try run(e, "SET", "n", stored)
            #expect(try result(e, "INCR", "n").0 == .integer(afterIncrement))
            #expect(e.store.get(bytes("n")) == bytes(String(afterIncrement)))
        }
    }

    @Test("a stored value that is not a decimal integer within 64 bits is refused and left alone", arguments: [
        "", "abc", " 1", "1 ", "+1", "01", "-0", "00", "1.5", "1e3", "0x10", "-", "9223372036854775808",
        "-9223372036854775809", "99999999999999999999", "1\n", "\u{0}1", "١",
    ])
    func storedNotIntegers(stored: String) throws {
        try withExecutor { (e) throws in
            for command in [["INCR", "n"], ["DECR", "n"], ["INCRBY", "n", "5"], ["DECRBY", "n", "5"]] {
                try run(e, "SET", "n", stored)
                let before = e.store.statistics.lastSequence
                expectError(failure(e, command.map(bytes)), storedNotAnInteger, redis: notAnInteger)
                #expect(e.store.get(bytes("n")) == bytes(stored), "\(command)")
                #expect(e.store.statistics.lastSequence == before, "\(command): nothing written")
            }
        }
    }

    @Test("an increment or decrement that is not an integer is refused before the key is looked at", arguments: [
        "x", "", "+1", "1.0", " 1", "01", "-0", "9223372036854775808", "-9223372036854775809",
    ])
    func badAmount(amount: String) throws {
        try withExecutor { (e) throws in
            try run(e, "SET", "text", "abc")
            for key in ["missing", "text"] {
                expectError(failure(e, "INCRBY", key, amount),
                            notAnInteger + " (usage: INCRBY key increment; the increment must be an integer from -9223372036854775808 to 9223372036854775807)",
                            redis: notAnInteger)
                expectError(failure(e, "DECRBY", key, amount),
                            notAnInteger + " (usage: DECRBY key decrement; the decrement must be an integer from -9223372036854775808 to 9223372036854775807)",
                            redis: notAnInteger)
            }
            #expect(e.store.get(bytes("missing")) == nil)
        }
    }

    @Test("overflow in either direction is refused and the value left alone", arguments: [
        ("9223372036854775807", ["INCR", "n"]),
        ("-9223372036854775808", ["DECR", "n"]),
        ("1", ["INCRBY", "n", "9223372036854775807"]),
        ("-2", ["INCRBY", "n", "-9223372036854775807"]),
        ("-2", ["DECRBY", "n", "9223372036854775807"]),
        ("1", ["DECRBY", "n", "-9223372036854775807"]),
    ])
    func overflows(stored: String, command: [String]) throws {
        try withExecutor { (e) throws in
            try run(e, "SET", "n", stored)
            expectError(failure(e, command.map(bytes)), overflowMessage, redis: overflow)
            #expect(e.store.get(bytes("n")) == bytes(stored))
        }
    }

    @Test("the extremes are reachable without overflow")
    func extremes() throws {
        try withExecutor { (e) throws in
            #expect(try result(e, "INCRBY", "a", "9223372036854775807").0 == .integer(Int.max))
            #expect(try result(e, "INCRBY", "b", "-9223372036854775808").0 == .integer(Int.min))
            #expect(e.store.get(bytes("b")) == bytes("-9223372036854775808"))
            #expect(try result(e, "DECRBY", "c", "9223372036854775807").0 == .integer(-Int.max))
            #expect(try result(e, "DECR", "c").0 == .integer(Int.min))
            #expect(try result(e, "INCRBY", "a", "-9223372036854775808").0 == .integer(-1))
        }
    }

    @Test("DECRBY of -9223372036854775808 is Redis's 'decrement would overflow', whatever the key holds")
    func decrementOfMinimum() throws {
        try withExecutor { (e) throws in
            for key in ["missing", "text"] {
                try run(e, "SET", "text", "abc")
                expectError(failure(e, "DECRBY", key, "-9223372036854775808"),
                            "ERR decrement would overflow (DECRBY cannot take -9223372036854775808: its negation does not fit in 64 bits)",
                            redis: "ERR decrement would overflow")
            }
            #expect(e.store.get(bytes("missing")) == nil)
        }
    }

    @Test("wrong numbers of arguments", arguments: [
        (["INCR"], "INCR", "INCR key"), (["INCR", "a", "b"], "INCR", "INCR key"),
        (["DECR"], "DECR", "DECR key"), (["INCRBY", "a"], "INCRBY", "INCRBY key increment"),
        (["incrby", "a", "1", "2"], "INCRBY", "INCRBY key increment"), (["DECRBY", "a"], "DECRBY", "DECRBY key decrement"),
    ])
    func arity(words: [String], name: String, usage: String) throws {
        try withExecutor { (e) throws in
            expectError(failure(e, words.map(bytes)), "ERR wrong number of arguments for '\(name)' (usage: \(usage))",
                        redis: "ERR wrong number of arguments for '\(name.lowercased())' command")
        }
    }

    @Test("threads running INCR and INCRBY on one key through the executor: the final value is exact")
    func concurrentIncrements() throws {
        try withExecutor { (e) throws in
            let threads = 4, perThread = 500
            let failures = Atomic<Int>(0)
            DispatchQueue.concurrentPerform(iterations: threads) { thread in
                for i in 0..<perThread {
                    // Even threads add 1 with INCR; odd ones add 3 with INCRBY, then take 1 with DECR.
                    do {
                        if thread % 2 == 0 {
                            _ = try e.execute(CommandTable.lookup("INCR")!, [bytes("INCR"), bytes("counter")])
                        } else {
                            _ = try e.execute(CommandTable.lookup("INCRBY")!, [bytes("INCRBY"), bytes("counter"), bytes("3")])
                            _ = try e.execute(CommandTable.lookup("DECR")!, [bytes("DECR"), bytes("counter")])
                        }
                        if i % 100 == 99 { try e.store.commit() }
                    } catch {
                        failures.add(1, ordering: .relaxed)
                    }
                }
            }
            let expected = (threads + 1) / 2 * perThread + threads / 2 * perThread * 2
            #expect(failures.load(ordering: .relaxed) == 0)
            #expect(try result(e, "GET", "counter").0 == value(String(expected)))
            #expect(e.store.statistics.lastSequence == UInt64((threads + 1) / 2 * perThread + threads / 2 * perThread * 2),
                    "one record per command")
        }
    }

    @Test("threads appending to one key: every append is kept")
    func concurrentAppends() throws {
        try withExecutor { (e) throws in
            let threads = 4, perThread = 300
            DispatchQueue.concurrentPerform(iterations: threads) { thread in
                for _ in 0..<perThread { _ = try? e.execute(CommandTable.lookup("APPEND")!, [bytes("APPEND"), bytes("log"), bytes("\(thread)")]) }
            }
            let final = try #require(e.store.get(bytes("log")))
            #expect(final.count == threads * perThread)
            for thread in 0..<threads {
                #expect(final.filter { $0 == UInt8(ascii: "0") + UInt8(thread) }.count == perThread)
            }
        }
    }
}

@Suite("String commands: APPEND, STRLEN")
struct AppendStrlenTests {
    @Test("APPEND creates a missing key and replies with the new length")
    func append() throws {
        try withExecutor { (e) throws in
            var (reply, wrote) = try result(e, "APPEND", "k", "Hello")
            #expect(reply == .integer(5) && wrote)
            (reply, wrote) = try result(e, "append", "k", " World")
            #expect(reply == .integer(11) && wrote)
            #expect(e.store.get(bytes("k")) == bytes("Hello World"))
            try run(e, [bytes("APPEND"), bytes("k"), [0x00, 0xFF]])
            #expect(e.store.get(bytes("k")) == bytes("Hello World") + [0x00, 0xFF])
        }
    }

    @Test("APPEND of nothing: to an existing key writes nothing; to a missing key creates it empty, as Redis does")
    func appendNothing() throws {
        try withExecutor { (e) throws in
            try run(e, "SET", "k", "abc")
            var (reply, wrote) = try result(e, "APPEND", "k", "")
            #expect(reply == .integer(3) && !wrote)
            #expect(e.store.statistics.lastSequence == 1)
            (reply, wrote) = try result(e, "APPEND", "new", "")
            #expect(reply == .integer(0) && wrote)
            #expect(e.store.get(bytes("new")) == [])
        }
    }

    @Test("STRLEN: the length in bytes, 0 for a missing key; writes nothing")
    func strlen() throws {
        try withExecutor { (e) throws in
            try run(e, "SET", "k", "héllo")
            try run(e, "SET", "empty", "")
            var (reply, wrote) = try result(e, "STRLEN", "k")
            #expect(reply == .integer(6) && !wrote)
            (reply, wrote) = try result(e, "strlen", "missing")
            #expect(reply == .integer(0) && !wrote)
            #expect(try result(e, "STRLEN", "empty").0 == .integer(0))
            expectError(failure(e, "STRLEN"), "ERR wrong number of arguments for 'STRLEN' (usage: STRLEN key)",
                        redis: "ERR wrong number of arguments for 'strlen' command")
        }
    }

    @Test("APPEND with too few or too many arguments")
    func appendArity() throws {
        try withExecutor { (e) throws in
            expectError(failure(e, "APPEND", "k"), "ERR wrong number of arguments for 'APPEND' (usage: APPEND key value)",
                        redis: "ERR wrong number of arguments for 'append' command")
            expectError(failure(e, "APPEND", "k", "a", "b"), "ERR wrong number of arguments for 'APPEND' (usage: APPEND key value)",
                        redis: "ERR wrong number of arguments for 'append' command")
        }
    }

    @Test("the error for a value that would grow too large keeps Redis's wording")
    func tooLargeWording() {
        expectError(CommandError.valueTooLarge,
                    "ERR string exceeds maximum allowed size (proto-max-bulk-len) (a value holds at most 536870912 bytes)",
                    redis: "ERR string exceeds maximum allowed size (proto-max-bulk-len)")
    }
}

@Suite("String commands in a session")
struct StringSessionTests {
    static let script = [
        #"MSET a 1 b "two words""#, "MGET a missing b", "SET a 2 NX", "SET a 2 NX GET", "SET a 3 XX GET", "SETNX a x",
        "SETNX c x", "INCR n", "INCRBY n 41", "DECR n", "DECRBY n 2", "APPEND b !", "STRLEN b", "GETDEL b", "GETDEL b",
        "MGET b", "STRLEN b",
    ]

    @Test("human, raw and json output of the string commands' replies", arguments: [
        (OutputFormat.human, [
            "OK", "1) \"1\"\n2) (nil)\n3) \"two words\"", "(nil)", "\"1\"", "\"1\"", "(integer) 0", "(integer) 1", "(integer) 1",
            "(integer) 42", "(integer) 41", "(integer) 39", "(integer) 10", "(integer) 10", "\"two words!\"", "(nil)",
            "1) (nil)", "(integer) 0",
        ]),
        (OutputFormat.raw, [
            "OK", "1\n\ntwo words", "", "1", "1", "0", "1", "1", "42", "41", "39", "10", "10", "two words!", "", "", "0",
        ]),
        (OutputFormat.json, [
            "\"OK\"", "[\"1\",null,\"two words\"]", "null", "\"1\"", "\"1\"", "0", "1", "1", "42", "41", "39", "10", "10",
            "\"two words!\"", "null", "[null]", "0",
        ]),
    ])
    func formats(format: OutputFormat, expected: [String]) throws {
        try withSession(format: format) { h in
            for line in Self.script { #expect(h.run(line), "\(line)") }
            #expect(h.output() == expected.map { $0 + "\n" }.joined())
            #expect(h.errors() == "")
            #expect(h.session.failedCommands == 0)
            #expect(h.store.get(bytes("a")) == bytes("3"))
            #expect(h.store.get(bytes("n")) == bytes("39"))
        }
    }

    @Test("errors print the shell's wording, in the form of their origin")
    func errors() throws {
        try withSession { h in
            #expect(!h.run("SET k v NX XX"))
            #expect(h.errors() == "(error) ERR syntax error (usage: SET key value [NX|XX] [GET])\n")
            #expect(!h.run("SET k v EX 10", .oneShot))
            #expect(h.errors() == "kvsh: ERR the EX option is not supported: keys do not expire in kvsh (drop the option; DEL removes a key)\n")
            #expect(!h.run("MSET a 1 b", .script(name: nil, line: 4)))
            #expect(h.errors() == "kvsh: line 4: ERR wrong number of arguments for 'MSET' (usage: MSET key value [key value ...])\n")
            h.run("SET t abc")
            #expect(!h.run("INCR t"))
            #expect(h.errors() == "(error) \(storedNotAnInteger)\n")
            #expect(h.output() == "OK\n")
            #expect(h.session.failedCommands == 4)
        }
    }

    @Test("writes made by the string commands are durable once their replies are out")
    func durable() throws {
        try withTempDir { directory in
            do {
                let harness = try Harness(directory: directory, format: .raw, sync: .always, files: false, sharedOutput: false)
                for line in ["MSET a 1 b 2", "INCR n", "APPEND a x", "GETDEL b", "SETNX c 3", "SET d 4 GET"] { harness.run(line) }
                #expect(harness.output() == "OK\n1\n2\n2\n1\n\n")
                #expect(harness.store.statistics.syncedSequence == harness.store.statistics.lastSequence)
                harness.finish()
            }
            let store = try KVStore(directory: directory + "/data")
            defer { try? store.close() }
            #expect(store.values(for: [bytes("a"), bytes("b"), bytes("c"), bytes("d"), bytes("n")])
                == [bytes("1x"), nil, bytes("3"), bytes("4"), bytes("1")])
        }
    }
}
