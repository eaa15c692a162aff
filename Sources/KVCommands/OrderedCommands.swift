import KVAccess
import KVStore
import RESP

/// The ordered and range queries: KEYS, SCAN, RANGE, COUNT, DBSIZE. See `Docs/Commands.md`.
public enum OrderedCommands {
    /// `KEYS pattern`: every matching key, in bytewise order. Only the part of the key space that can hold
    /// matches is looked at: [prefix, successor of prefix) when the pattern starts with literal bytes.
    static func keys(_ store: KVStore, pattern: [UInt8]) -> RESPValue {
        let glob = GlobPattern(pattern)
        let (lower, upper) = glob.keyRange
        let found = glob.matchesEveryKeyWithPrefix
            ? store.keys(from: lower, to: upper).keys
            : store.keys(from: lower, to: upper, where: { glob.matches($0) }).keys
        return .array(found.map(RESPValue.bulkString))
    }

    static let defaultScanCount = 10

    /// `SCAN cursor [MATCH pattern] [COUNT n]`: up to `n` keys looked at from the cursor on, those that match,
    /// and the cursor to continue from (`0` when done).
    static func scan(_ store: KVStore, spec: CommandSpec, arguments: ArraySlice<[UInt8]>) throws -> RESPValue {
        guard let first = arguments.first else { throw CommandError.wrongArity(spec) }
        guard let start = ScanCursor.decode(first) else { throw CommandError.invalidCursor }
        var pattern: GlobPattern?
        var count = defaultScanCount
        var index = arguments.index(after: arguments.startIndex)
        while index < arguments.endIndex {
            // Options in any order, the last of each kind winning, as in Redis.
            guard index + 1 < arguments.endIndex else { throw CommandError.syntax(spec) }
            let value = arguments[index + 1]
            switch asciiUppercased(arguments[index]) {
            case Array("MATCH".utf8):
                pattern = GlobPattern(value)
            case Array("COUNT".utf8):
                guard let number = RedisInteger.parse(value), number >= 1 else {
                    throw CommandError.scanCountNotAnInteger
                }
                count = number
            default:
                throw CommandError.syntax(spec)
            }
            index += 2
        }

        // With a pattern that has a literal prefix, only [prefix, successor) can hold matches: start there (or at
        // the cursor if it is further on) and stop at its end.
        var lower = start
        var upper: [UInt8]?
        if let pattern {
            let range = pattern.keyRange
            upper = range.upper
            if let prefix = range.lower, lower.map({ $0.lexicographicallyPrecedes(prefix) }) ?? true { lower = prefix }
        }
        let found: (keys: [[UInt8]], next: [UInt8]?)
        if let pattern, !pattern.matchesEveryKeyWithPrefix {
            found = store.keys(from: lower, to: upper, examine: count, where: { pattern.matches($0) })
        } else {
            found = store.keys(from: lower, to: upper, examine: count)
        }
        return .array([.bulkString(ScanCursor.encode(found.next)), .array(found.keys.map(RESPValue.bulkString))])
    }

    /// `RANGE start end [LIMIT n]`: the pairs with start ≤ key < end as two-element arrays.
    static func range(_ store: KVStore, spec: CommandSpec, arguments: ArraySlice<[UInt8]>) throws -> RESPValue {
        let (lower, upper) = bounds(arguments)
        var limit = Int.max
        let options = arguments.dropFirst(2)
        if !options.isEmpty {
            guard options.count == 2, asciiUppercased(options[options.startIndex]) == Array("LIMIT".utf8) else {
                throw CommandError.syntax(spec)
            }
            guard let number = RedisInteger.parse(options[options.startIndex + 1]), number >= 0 else {
                throw CommandError.rangeLimitNotAnInteger
            }
            limit = number
        }
        guard limit > 0 else { return .array([]) }
        return .array(store.range(from: lower, to: upper, limit: limit).map { .array([.bulkString($0.key), .bulkString($0.value)]) })
    }

    /// `COUNT start end`.
    static func count(_ store: KVStore, arguments: ArraySlice<[UInt8]>) -> RESPValue {
        let (lower, upper) = bounds(arguments)
        return .integer(store.count(from: lower, to: upper))
    }

    /// The first two arguments as bounds: `-` as the start and `+` as the end are open (nil).
    static func bounds(_ arguments: ArraySlice<[UInt8]>) -> (lower: [UInt8]?, upper: [UInt8]?) {
        let start = arguments[arguments.startIndex], end = arguments[arguments.startIndex + 1]
        return (start == [UInt8(ascii: "-")] ? nil : start, end == [UInt8(ascii: "+")] ? nil : end)
    }

    // MARK: Parsing

    public static func asciiUppercased(_ bytes: [UInt8]) -> [UInt8] {
        bytes.map(CommandTable.asciiUppercased)
    }
}

/// SCAN's cursor: `0` to start and when done; otherwise `k` followed by the lowercase hex digits of the next key
/// to look at (`k616263` continues at the key `abc`). Encoding the key itself, not a position, is what makes the
/// iteration stable under writes: the next call starts at the first key ≥ that key, whatever was inserted or
/// deleted meanwhile. The `k` keeps a cursor from ever being `0`, even for an empty key.
enum ScanCursor {
    static let start = Array("0".utf8)
    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// The cursor for continuing at `next`, or `0` if there is nothing left.
    static func encode(_ next: [UInt8]?) -> [UInt8] {
        guard let next else { return start }
        var cursor: [UInt8] = [UInt8(ascii: "k")]
        cursor.reserveCapacity(1 + 2 * next.count)
        for byte in next {
            cursor.append(hexDigits[Int(byte >> 4)])
            cursor.append(hexDigits[Int(byte & 0xF)])
        }
        return cursor
    }

    /// The key to continue at: nil for `0` (from the first key); `.none` (invalid) for anything but `0` or a
    /// `k` followed by an even number of hex digits (either case).
    static func decode(_ cursor: [UInt8]) -> [UInt8]?? {
        if cursor == start { return .some(nil) }
        guard cursor.first == UInt8(ascii: "k"), cursor.count % 2 == 1 else { return nil }
        var key: [UInt8] = []
        key.reserveCapacity(cursor.count / 2)
        var index = 1
        while index < cursor.count {
            guard let high = Tokenizer.hexValue(cursor[index]), let low = Tokenizer.hexValue(cursor[index + 1]) else { return nil }
            key.append(high << 4 | low)
            index += 2
        }
        return .some(key)
    }
}
