import KVAccess
import Dispatch
import Synchronization
import KVTestSupport
import Testing
import KVStore
@testable import KVShell
@testable import KVCommands
@testable import RESP

/// Shared between a test and its writer thread.
final class WriterFlags: Sendable {
    let stop = Atomic<Bool>(false)
    let writes = Atomic<Int>(0)
}

@Suite("Ordered and range commands")
struct OrderedCommandTests {
    // MARK: Helpers

    /// Runs one command given as byte arguments and returns its reply (or throws its error).
    static func reply(_ h: Harness, _ arguments: [[UInt8]]) throws -> Reply {
        try h.session.dispatch(arguments)
    }

    static func reply(_ h: Harness, _ words: String...) throws -> Reply {
        try h.session.dispatch(words.map(bytes))
    }

    /// The message of the error `arguments` fail with, or nil if they succeed.
    static func error(_ h: Harness, _ arguments: [[UInt8]]) -> String? {
        do {
            _ = try h.session.dispatch(arguments)
            return nil
        } catch {
            return (error as? CommandError)?.message ?? "\(error)"
        }
    }

    static func keyList(_ reply: Reply) -> [[UInt8]]? {
        guard case .array(let items) = reply else { return nil }
        var keys: [[UInt8]] = []
        for item in items {
            guard case .value(let key) = item else { return nil }
            keys.append(key)
        }
        return keys
    }

    /// One SCAN call: the next cursor and the keys.
    static func scan(_ h: Harness, _ cursor: [UInt8], _ options: [String] = []) throws -> (cursor: [UInt8], keys: [[UInt8]]) {
        let reply = try h.session.dispatch([bytes("SCAN"), cursor] + options.map(bytes))
        guard case .array(let parts) = reply, parts.count == 2, case .value(let next) = parts[0],
              let keys = keyList(parts[1]) else {
            Issue.record("SCAN replied \(reply)")
            return (ScanCursor.start, [])
        }
        return (next, keys)
    }

    /// Runs SCAN from 0 until it returns 0, calling `between` before every call after the first.
    static func scanAll(_ h: Harness, _ options: [String] = [], maxCalls: Int = 100_000,
                        between: () throws -> Void = {}) throws -> (keys: [[UInt8]], calls: Int) {
        var cursor = ScanCursor.start
        var all: [[UInt8]] = []
        var calls = 0
        repeat {
            if calls > 0 { try between() }
            let step = try scan(h, cursor, options)
            if step.cursor != ScanCursor.start {
                #expect(step.cursor.first == UInt8(ascii: "k"))
                #expect(step.cursor.dropFirst().allSatisfy { Array("0123456789abcdef".utf8).contains($0) })
            }
            cursor = step.cursor
            all += step.keys
            calls += 1
        } while cursor != ScanCursor.start && calls < maxCalls
        #expect(cursor == ScanCursor.start, "SCAN did not finish in \(maxCalls) calls")
        return (all, calls)
    }

    static func sortedBytewise(_ keys: some Sequence<[UInt8]>) -> [[UInt8]] {
        keys.sorted { $0.lexicographicallyPrecedes($1) }
    }

    static func isStrictlyIncreasing(_ keys: [[UInt8]]) -> Bool {
        zip(keys, keys.dropFirst()).allSatisfy { $0.lexicographicallyPrecedes($1) }
    }

    /// Keys over a small alphabet that has glob metacharacters, NUL and 0xFF in it, so prefixes, escapes and
    /// successors all get exercised.
    static let keyAlphabet: [[UInt8]] = ["a", "b", "c", ":", "*", "?", "[", "]", "\\", "-", "+"].map(bytes) + [[0x00], [0xFF], [0xFE]]

    static func randomKey(_ rng: inout SplitMix64, maxLength: Int = 5) -> [UInt8] {
        Array((0..<Int.random(in: 0...maxLength, using: &rng)).map { _ in keyAlphabet.randomElement(using: &rng)! }.joined())
    }

    /// Fills the store (and a model of it) with `count` random keys.
    static func fill(_ h: Harness, _ count: Int, _ rng: inout SplitMix64, maxLength: Int = 5) throws -> [[UInt8]: [UInt8]] {
        var model: [[UInt8]: [UInt8]] = [:]
        for _ in 0..<count {
            let key = randomKey(&rng, maxLength: maxLength)
            let value = rng.bytes(Int.random(in: 0...4, using: &rng))
            try h.store.set(key, value)
            model[key] = value
        }
        return model
    }

    // MARK: KEYS

    @Test("KEYS: matching keys in bytewise order, with and without a literal prefix")
    func keysBasics() throws {
        try withSession(sync: .none) { h throws in
            for key in ["user:2", "user:10", "user:1", "users", "user", "admin:1", "", "a*b", "axb"] {
                try h.store.set(bytes(key), bytes("v"))
            }
            #expect(try Self.reply(h, "KEYS", "user:*") == .array(["user:1", "user:10", "user:2"].map { .value(bytes($0)) }))
            #expect(try Self.reply(h, "KEYS", "user*") == .array(["user", "user:1", "user:10", "user:2", "users"].map { .value(bytes($0)) }))
            #expect(try Self.reply(h, "KEYS", "*:1*") == .array(["admin:1", "user:1", "user:10"].map { .value(bytes($0)) }))
            #expect(try Self.reply(h, "KEYS", "user:?") == .array(["user:1", "user:2"].map { .value(bytes($0)) }))
            #expect(try Self.reply(h, "KEYS", "a\\*b") == .array([.value(bytes("a*b"))]))
            #expect(try Self.reply(h, "KEYS", "a*b") == .array([.value(bytes("a*b")), .value(bytes("axb"))]))
            #expect(try Self.reply(h, "KEYS", "user") == .array([.value(bytes("user"))]))
            #expect(try Self.reply(h, "KEYS", "nosuch*") == .array([]))
            let all = try #require(Self.keyList(try Self.reply(h, "KEYS", "*")))
            #expect(all.count == 9 && all.first == [], "* matches every key, the empty one too")
            #expect(try #require(Self.keyList(try Self.reply(h, "KEYS", "**"))).count == 8, "** does not match the empty key")
            #expect(try Self.reply(h, "keys", "ADMIN*") == .array([]), "names are case-insensitive, patterns are not")
        }
    }

    @Test("KEYS with keys near 0xFF: the prefix's successor drops trailing 0xFF bytes")
    func keysAtTheTop() throws {
        try withSession(sync: .none) { h throws in
            let keys: [[UInt8]] = [[0x61], [0x61, 0xFF], [0x61, 0xFF, 0x00], [0x61, 0xFF, 0xFF, 0x01], [0x62], [0xFF], [0xFF, 0xFF], [0xFF, 0x00]]
            for key in keys { try h.store.set(key, []) }
            #expect(try Self.reply(h, [bytes("KEYS"), [0x61, 0xFF, 0x2A]])
                    == .array([[0x61, 0xFF], [0x61, 0xFF, 0x00], [0x61, 0xFF, 0xFF, 0x01]].map(Reply.value)))
            #expect(try Self.reply(h, [bytes("KEYS"), [0xFF, 0x2A]]) == .array([[0xFF], [0xFF, 0x00], [0xFF, 0xFF]].map(Reply.value)))
            #expect(try Self.reply(h, [bytes("KEYS"), [0xFF, 0xFF, 0x2A]]) == .array([.value([0xFF, 0xFF])]))
        }
    }

    @Test("KEYS gives what a full scan filtered by the matcher gives, for random keys and patterns", arguments: [1, 2, 3] as [UInt64])
    func keysProperty(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        try withSession(sync: .none) { h throws in
            let model = try Self.fill(h, 400, &rng)
            let sorted = Self.sortedBytewise(model.keys)
            let everything = h.store.keys(from: nil, to: nil).keys
            #expect(everything == sorted)
            let wildcards: [[UInt8]] = ["*", "?", "[a-c]", "[^a]", "*a", "\\*", "[", "\\", "]"].map(bytes)
            for round in 0..<1500 {
                // Mostly a literal prefix (sometimes one of the keys' own) followed by wildcards; sometimes anything.
                var pattern: [UInt8]
                switch round % 3 {
                case 0: pattern = sorted.randomElement(using: &rng).map { Array($0.prefix(Int.random(in: 0...3, using: &rng))) } ?? []
                case 1: pattern = Self.randomKey(&rng, maxLength: 2)
                default: pattern = []
                }
                for _ in 0..<Int.random(in: 0...3, using: &rng) {
                    pattern += Bool.random(using: &rng) ? wildcards.randomElement(using: &rng)! : Self.keyAlphabet.randomElement(using: &rng)!
                }
                let glob = GlobPattern(pattern)
                let expected = everything.filter { glob.matches($0) }
                let found = Self.keyList(try Self.reply(h, [bytes("KEYS"), pattern]))
                #expect(found == expected, "KEYS \(pattern)")
                // And the matcher agrees with the independent reference on every key.
                let reference = everything.filter { pattern == bytes("*") || GlobTests.referenceMatch(pattern, $0) }
                #expect(reference == expected, "reference for \(pattern)")
                if found != expected || reference != expected { return }
            }
        }
    }

    // MARK: SCAN

    @Test("SCAN to completion returns every key exactly once, in order, at most COUNT per call",
          arguments: [nil, 1, 2, 3, 7, 1000] as [Int?])
    func scanComplete(count: Int?) throws {
        var rng = SplitMix64(seed: 21)
        try withSession(sync: .none) { h throws in
            let model = try Self.fill(h, 300, &rng, maxLength: 6)
            try h.store.set([], bytes("the empty key"))
            let expected = Self.sortedBytewise(Array(model.keys) + ([[]] as [[UInt8]]))
            let options = count.map { ["COUNT", String($0)] } ?? []
            let (keys, calls) = try Self.scanAll(h, options)
            #expect(keys == Self.sortedBytewise(Set(expected)))
            // The last call looks at the last key and finds nothing after it: ⌈n / COUNT⌉ calls.
            let perCall = count ?? OrderedCommands.defaultScanCount
            #expect(calls == max(1, (Set(expected).count + perCall - 1) / perCall))
        }
    }

    @Test("SCAN of an empty store is one call: 0 and no keys")
    func scanEmpty() throws {
        try withSession { h throws in
            #expect(try Self.reply(h, "SCAN", "0") == .array([.value(bytes("0")), .array([])]))
            #expect(try Self.reply(h, "SCAN", "k6162") == .array([.value(bytes("0")), .array([])]))
        }
    }

    @Test("SCAN with inserts and deletes between calls: keys present throughout come back exactly once",
          arguments: [1, 2, 3, 4, 5] as [UInt64])
    func scanWithWrites(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        try withSession(sync: .none) { h throws in
            let initial = Set(try Self.fill(h, 250, &rng, maxLength: 4).keys)
            var present = initial
            var everPresent = initial
            var touched = Set<[UInt8]>()  // deleted at some point: not present throughout
            let count = Int.random(in: 1...6, using: &rng)
            let (keys, _) = try Self.scanAll(h, ["COUNT", String(count)]) {
                for _ in 0..<Int.random(in: 0...6, using: &rng) {
                    if Bool.random(using: &rng), let victim = present.randomElement(using: &rng) {
                        _ = try h.store.delete([victim])
                        present.remove(victim)
                        touched.insert(victim)
                    } else {
                        let key = Self.randomKey(&rng, maxLength: 4)
                        try h.store.set(key, bytes("new"))
                        present.insert(key)
                        everPresent.insert(key)
                    }
                }
            }
            #expect(Self.isStrictlyIncreasing(keys), "no key twice, and in order")
            let throughout = initial.subtracting(touched)
            let returned = Set(keys)
            #expect(throughout.isSubset(of: returned), "missing: \(throughout.subtracting(returned).sorted { $0.lexicographicallyPrecedes($1) })")
            #expect(returned.isSubset(of: everPresent), "SCAN returned keys that never existed")
        }
    }

    @Test("SCAN while another thread inserts and deletes: stable keys exactly once, in order")
    func scanConcurrent() throws {
        try withSession(sync: .none) { h throws in
            var stable: [[UInt8]] = []
            for i in 0..<2000 {
                let key = bytes("k\(i * 7919 % 10007)")
                stable.append(key)
                try h.store.set(key, bytes("stable"))
            }
            let store = h.store
            let flags = WriterFlags()
            let group = DispatchGroup()
            DispatchQueue.global().async(group: group) {
                var rng = SplitMix64(seed: 99)
                while !flags.stop.load(ordering: .relaxed) {
                    // Keys that sort between and around the stable ones ("k1", "k1x", "j", "l").
                    let key = bytes(["k\(Int.random(in: 0..<10007, using: &rng))x", "j\(Int.random(in: 0..<100, using: &rng))",
                                     "l", "k"].randomElement(using: &rng)!)
                    if Bool.random(using: &rng) {
                        _ = try? store.set(key, bytes("churn"))
                    } else {
                        _ = try? store.delete([key])
                    }
                    flags.writes.add(1, ordering: .relaxed)
                }
            }
            // Let the writer get going, then scan in small steps.
            while flags.writes.load(ordering: .relaxed) < 100 {}
            let (keys, calls) = try Self.scanAll(h, ["COUNT", "5"])
            flags.stop.store(true, ordering: .relaxed)
            group.wait()
            #expect(flags.writes.load(ordering: .relaxed) > 100)
            #expect(Self.isStrictlyIncreasing(keys))
            let stableSet = Set(stable)
            let returnedStable = keys.filter { stableSet.contains($0) }
            #expect(returnedStable == Self.sortedBytewise(stable))
            // Anything else returned is a key the writer writes.
            func writtenByWriter(_ key: [UInt8]) -> Bool {
                key == bytes("k") || key == bytes("l") || key.first == UInt8(ascii: "j")
                    || (key.first == UInt8(ascii: "k") && key.last == UInt8(ascii: "x"))
            }
            #expect(keys.allSatisfy { stableSet.contains($0) || writtenByWriter($0) })
            #expect(calls > 100)
        }
    }

    @Test("SCAN MATCH filters; with a literal prefix it starts at the prefix and ends after it")
    func scanMatch() throws {
        try withSession(sync: .none) { h throws in
            for i in 0..<500 { try h.store.set(bytes("a:\(i)"), []) }
            for i in 0..<5 { try h.store.set(bytes("b:\(i)"), []) }
            for i in 0..<500 { try h.store.set(bytes("c:\(i)"), []) }
            // The 5 b: keys are the only ones looked at: one call with COUNT 5 finds them and finishes.
            #expect(try Self.reply(h, "SCAN", "0", "MATCH", "b:*", "COUNT", "5")
                    == .array([.value(bytes("0")), .array((0..<5).map { .value(bytes("b:\($0)")) })]))
            #expect(try Self.reply(h, "SCAN", "0", "MATCH", "b:*", "COUNT", "3")
                    == .array([.value(ScanCursor.encode(bytes("b:3"))), .array((0..<3).map { .value(bytes("b:\($0)")) })]))
            // A cursor past the prefix's keys ends the scan; one before them jumps to the prefix.
            #expect(try Self.reply(h, [bytes("SCAN"), ScanCursor.encode(bytes("c:0")), bytes("MATCH"), bytes("b:*")])
                    == .array([.value(bytes("0")), .array([])]))
            #expect(try Self.reply(h, [bytes("SCAN"), ScanCursor.encode(bytes("a:1")), bytes("MATCH"), bytes("b:*"), bytes("COUNT"), bytes("1")])
                    == .array([.value(ScanCursor.encode(bytes("b:1"))), .array([.value(bytes("b:0"))])]))
            // Without a literal prefix every key is looked at: COUNT bounds the keys examined, not returned.
            let first = try Self.scan(h, ScanCursor.start, ["MATCH", "*:4", "COUNT", "10"])
            #expect(first.keys.isEmpty && first.cursor == ScanCursor.encode(bytes("a:107")))
            let all = try Self.scanAll(h, ["match", "*:4?", "count", "50"])
            #expect(all.keys == (40..<50).map { bytes("a:\($0)") } + (40..<50).map { bytes("c:\($0)") })
            // Options in any order, the last one winning.
            let swapped = try Self.scanAll(h, ["COUNT", "1", "MATCH", "zzz", "MATCH", "b:?", "COUNT", "2"])
            #expect(swapped.keys == (0..<5).map { bytes("b:\($0)") })
            #expect(swapped.calls == 3)
        }
    }

    @Test("SCAN cursors: encode and decode round-trip; anything else is an invalid cursor")
    func cursors() {
        var rng = SplitMix64(seed: 3)
        for _ in 0..<500 {
            let key = rng.bytes(Int.random(in: 0...20, using: &rng))
            let cursor = ScanCursor.encode(key)
            #expect(cursor != ScanCursor.start)
            #expect(ScanCursor.decode(cursor) == .some(key))
        }
        #expect(ScanCursor.encode(nil) == bytes("0"))
        #expect(ScanCursor.encode(bytes("abc")) == bytes("k616263"))
        #expect(ScanCursor.encode([0x00, 0xFF]) == bytes("k00ff"))
        #expect(ScanCursor.decode(bytes("0")) == .some(nil))
        #expect(ScanCursor.decode(bytes("k")) == .some([]))
        #expect(ScanCursor.decode(bytes("k00FF")) == .some([0x00, 0xFF]))
        for invalid in ["", "00", "1", "-1", "k1", "k123", "kzz", "K61", "x61", "0 ", " 0", "k61 "] {
            #expect(ScanCursor.decode(bytes(invalid)) == nil, "\(invalid.debugDescription)")
        }
    }

    @Test("SCAN errors: cursor, COUNT, unknown options, arity", arguments: [
        (["SCAN"], "ERR wrong number of arguments for 'SCAN' (usage: SCAN cursor [MATCH pattern] [COUNT n])"),
        (["SCAN", "1"], "ERR invalid cursor (start with 0, then pass the cursor the previous SCAN returned)"),
        (["SCAN", "kxyz"], "ERR invalid cursor (start with 0, then pass the cursor the previous SCAN returned)"),
        (["SCAN", "", "COUNT", "5"], "ERR invalid cursor (start with 0, then pass the cursor the previous SCAN returned)"),
        (["SCAN", "bad", "COUNT", "0"], "ERR invalid cursor (start with 0, then pass the cursor the previous SCAN returned)"),
        (["SCAN", "0", "COUNT", "0"], "ERR value is not an integer or out of range (COUNT n takes an integer >= 1)"),
        (["SCAN", "0", "COUNT", "-3"], "ERR value is not an integer or out of range (COUNT n takes an integer >= 1)"),
        (["SCAN", "0", "COUNT", "ten"], "ERR value is not an integer or out of range (COUNT n takes an integer >= 1)"),
        (["SCAN", "0", "COUNT", "+5"], "ERR value is not an integer or out of range (COUNT n takes an integer >= 1)"),
        (["SCAN", "0", "COUNT", "05"], "ERR value is not an integer or out of range (COUNT n takes an integer >= 1)"),
        (["SCAN", "0", "COUNT", "1.5"], "ERR value is not an integer or out of range (COUNT n takes an integer >= 1)"),
        (["SCAN", "0", "COUNT", "99999999999999999999"], "ERR value is not an integer or out of range (COUNT n takes an integer >= 1)"),
        (["SCAN", "0", "COUNT"], "ERR syntax error (usage: SCAN cursor [MATCH pattern] [COUNT n])"),
        (["SCAN", "0", "MATCH"], "ERR syntax error (usage: SCAN cursor [MATCH pattern] [COUNT n])"),
        (["SCAN", "0", "TYPE", "string"], "ERR syntax error (usage: SCAN cursor [MATCH pattern] [COUNT n])"),
        (["SCAN", "0", "MATCH", "a*", "LIMIT"], "ERR syntax error (usage: SCAN cursor [MATCH pattern] [COUNT n])"),
    ])
    func scanErrors(arguments: [String], message: String) throws {
        try withSession { h throws in
            #expect(Self.error(h, arguments.map(bytes)) == message)
        }
    }

    // MARK: RANGE, COUNT, DBSIZE

    @Test("RANGE and COUNT agree with a sorted model for random bounds and limits", arguments: [1, 2, 3] as [UInt64])
    func rangeAndCountProperty(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        try withSession(sync: .none) { h throws in
            let model = try Self.fill(h, 300, &rng)
            let sorted = Self.sortedBytewise(model.keys)
            for _ in 0..<1000 {
                func bound(_ open: String) -> [UInt8] {
                    switch Int.random(in: 0..<4, using: &rng) {
                    case 0: return bytes(open)
                    case 1: return sorted.randomElement(using: &rng) ?? []
                    default: return Self.randomKey(&rng)
                    }
                }
                let start = bound("-"), end = bound("+")
                let lower = start == bytes("-") ? nil : start
                let upper = end == bytes("+") ? nil : end
                let inRange = sorted.filter { key in
                    (lower.map { !key.lexicographicallyPrecedes($0) } ?? true) && (upper.map { key.lexicographicallyPrecedes($0) } ?? true)
                }
                let limit: Int? = [nil, 0, 1, Int.random(in: 0...20, using: &rng)].randomElement(using: &rng)!
                let expected = Reply.array(inRange.prefix(limit ?? .max).map { .array([.value($0), .value(model[$0]!)]) })
                let arguments = [bytes("RANGE"), start, end] + (limit.map { [bytes("LIMIT"), bytes(String($0))] } ?? [])
                #expect(try Self.reply(h, arguments) == expected, "RANGE \(start) \(end) LIMIT \(String(describing: limit))")
                #expect(try Self.reply(h, [bytes("COUNT"), start, end]) == .integer(inRange.count), "COUNT \(start) \(end)")
            }
        }
    }

    @Test("RANGE and COUNT: - opens the start only, + the end only; reversed bounds are empty")
    func rangeBounds() throws {
        try withSession(sync: .none) { h throws in
            for key in ["+", ",", "-", "a", "b", "c"] { try h.store.set(bytes(key), bytes(key.uppercased())) }
            func pairs(_ keys: String...) -> Reply { .array(keys.map { .array([.value(bytes($0)), .value(bytes($0.uppercased()))]) }) }
            #expect(try Self.reply(h, "RANGE", "-", "+") == pairs("+", ",", "-", "a", "b", "c"))
            #expect(try Self.reply(h, "RANGE", "a", "c") == pairs("a", "b"))
            #expect(try Self.reply(h, "RANGE", "a", "+") == pairs("a", "b", "c"))
            #expect(try Self.reply(h, "RANGE", "-", "b") == pairs("+", ",", "-", "a"))
            #expect(try Self.reply(h, "RANGE", "+", "-") == pairs("+", ","), "+ as the start and - as the end are keys")
            #expect(try Self.reply(h, "RANGE", "c", "a") == .array([]))
            #expect(try Self.reply(h, "RANGE", "b", "b") == .array([]))
            #expect(try Self.reply(h, "RANGE", "-", "+", "LIMIT", "2") == pairs("+", ","))
            #expect(try Self.reply(h, "range", "a", "+", "limit", "0") == .array([]))
            #expect(try Self.reply(h, "COUNT", "-", "+") == .integer(6))
            #expect(try Self.reply(h, "COUNT", "a", "c") == .integer(2))
            #expect(try Self.reply(h, "COUNT", "+", "-") == .integer(2))
            #expect(try Self.reply(h, "count", "c", "a") == .integer(0))
            #expect(try Self.reply(h, "COUNT", "b", "+") == .integer(2))
        }
    }

    @Test("RANGE and COUNT errors", arguments: [
        (["RANGE"], "ERR wrong number of arguments for 'RANGE' (usage: RANGE start end [LIMIT n])"),
        (["RANGE", "a"], "ERR wrong number of arguments for 'RANGE' (usage: RANGE start end [LIMIT n])"),
        (["RANGE", "a", "b", "LIMIT", "1", "x"], "ERR wrong number of arguments for 'RANGE' (usage: RANGE start end [LIMIT n])"),
        (["RANGE", "a", "b", "LIMIT"], "ERR syntax error (usage: RANGE start end [LIMIT n])"),
        (["RANGE", "a", "b", "COUNT", "1"], "ERR syntax error (usage: RANGE start end [LIMIT n])"),
        (["RANGE", "a", "b", "LIMIT", "-1"], "ERR value is not an integer or out of range (LIMIT n takes an integer >= 0)"),
        (["RANGE", "a", "b", "LIMIT", "many"], "ERR value is not an integer or out of range (LIMIT n takes an integer >= 0)"),
        (["RANGE", "a", "b", "LIMIT", ""], "ERR value is not an integer or out of range (LIMIT n takes an integer >= 0)"),
        (["COUNT"], "ERR wrong number of arguments for 'COUNT' (usage: COUNT start end)"),
        (["COUNT", "a"], "ERR wrong number of arguments for 'COUNT' (usage: COUNT start end)"),
        (["COUNT", "a", "b", "c"], "ERR wrong number of arguments for 'COUNT' (usage: COUNT start end)"),
        (["DBSIZE", "x"], "ERR wrong number of arguments for 'DBSIZE' (usage: DBSIZE)"),
        (["KEYS"], "ERR wrong number of arguments for 'KEYS' (usage: KEYS pattern)"),
        (["KEYS", "a", "b"], "ERR wrong number of arguments for 'KEYS' (usage: KEYS pattern)"),
    ])
    func rangeErrors(arguments: [String], message: String) throws {
        try withSession { h throws in
            #expect(Self.error(h, arguments.map(bytes)) == message)
        }
    }

    @Test("DBSIZE follows sets and deletes")
    func dbsize() throws {
        try withSession { h throws in
            #expect(try Self.reply(h, "DBSIZE") == .integer(0))
            h.run("SET a 1")
            h.run("SET b 2")
            h.run("SET a 3")
            #expect(try Self.reply(h, "dbsize") == .integer(2))
            h.run("DEL a")
            #expect(try Self.reply(h, "DBSIZE") == .integer(1))
        }
    }

    @Test("RedisInteger.parse reads integers as Redis's string2ll does")
    func integers() {
        let valid: [(String, Int)] = [("0", 0), ("1", 1), ("99", 99), ("-1", -1), ("-99", -99),
                                      ("9223372036854775807", .max), ("-9223372036854775808", .min)]
        for (text, value) in valid { #expect(RedisInteger.parse(bytes(text)) == value, "\(text)") }
        for text in ["", "-", "+1", " 1", "1 ", "01", "-0", "00", "1.0", "1e3", "9223372036854775808", "-9223372036854775809", "0x10"] {
            #expect(RedisInteger.parse(bytes(text)) == nil, "\(text)")
        }
    }

    // MARK: Through the session, in each format

    @Test("KEYS, SCAN, RANGE, COUNT, DBSIZE printed in each format", arguments: [
        (OutputFormat.human, """
            1) "a"
            2) "b"
            3) "c d"
            1) "k62"
            2) 1) "a"
            1) 1) "a"
               2) "1"
            2) 1) "b"
               2) "\\x00"
            (empty array)
            1) "0"
            2) (empty array)
            (integer) 2
            (integer) 3

            """),
        (OutputFormat.raw, "a\nb\nc d\nk62\na\na\n1\nb\n\u{0}\n0\n2\n3\n"),
        (OutputFormat.json, """
            ["a","b","c d"]
            ["k62",["a"]]
            [["a","1"],["b","\\u0000"]]
            []
            ["0",[]]
            2
            3

            """),
    ])
    func formats(format: OutputFormat, expected: String) throws {
        try withSession(format: format, sync: .none) { h throws in
            try h.store.set(bytes("a"), bytes("1"))
            try h.store.set(bytes("b"), [0])
            try h.store.set(bytes("c d"), bytes("3"))
            #expect(h.run("KEYS *"))
            #expect(h.run("SCAN 0 COUNT 1"))
            #expect(h.run("RANGE - c LIMIT 5"))
            #expect(h.run("RANGE x y"))
            #expect(h.run("SCAN 0 MATCH nothing*"))
            #expect(h.run("COUNT a c"))
            #expect(h.run("DBSIZE"))
            #expect(h.output() == expected)
            #expect(h.errors() == "")
        }
    }

    @Test("errors from the new commands are reported like any other, and nothing is written")
    func errorReporting() throws {
        try withSession { h throws in
            #expect(!h.run("SCAN nope", .script(name: nil, line: 4)))
            #expect(h.errors() == "kvsh: line 4: ERR invalid cursor (start with 0, then pass the cursor the previous SCAN returned)\n")
            #expect(!h.run("RANGE a b LIMIT x", .oneShot))
            #expect(h.errors() == "kvsh: ERR value is not an integer or out of range (LIMIT n takes an integer >= 0)\n")
            #expect(h.output() == "")
            #expect(h.session.failedCommands == 2)
        }
    }
}
