import KVStore
import RESP

/// Redis's string commands beyond GET/SET/DEL: SET's options, MSET, MGET, SETNX, GETDEL, INCR, DECR, INCRBY,
/// DECRBY, APPEND, STRLEN. Every read-modify-write runs through ``KVStore/update(_:_:)``, so it is atomic with
/// respect to other callers (the server runs commands from several threads). See `Docs/Commands.md`.
enum StringCommands {
    typealias Outcome = CommandExecutor.Outcome

    private static let nx = Array("NX".utf8), xx = Array("XX".utf8), get = Array("GET".utf8)
    private static let expiryOptions: Set<[UInt8]> = Set(["EX", "PX", "EXAT", "PXAT", "KEEPTTL"].map { Array($0.utf8) })

    /// `SET key value [NX|XX] [GET]`. Options are read left to right, as Redis does: NX with XX is a syntax error,
    /// a repeated option is accepted, and an expiry option is refused (keys never expire in kvsh).
    static func set(_ store: KVStore, spec: CommandSpec, arguments: [[UInt8]]) throws -> Outcome {
        let key = arguments[1], value = arguments[2]
        guard arguments.count > 3 else {
            try store.set(key, value)
            return Outcome(reply: .ok, wrote: true)
        }
        enum Condition { case ifAbsent, ifPresent }
        var condition: Condition?
        var replyWithOld = false
        for option in arguments[3...] {
            let upper = OrderedCommands.asciiUppercased(option)
            switch upper {
            case nx where condition != .ifPresent: condition = .ifAbsent
            case xx where condition != .ifAbsent: condition = .ifPresent
            case get: replyWithOld = true
            case _ where expiryOptions.contains(upper): throw CommandError.expiryNotSupported(String(decoding: upper, as: UTF8.self))
            default: throw CommandError.syntax(spec)
            }
        }
        let (previous, sequence) = try store.update(key) { current in
            switch condition {
            case .ifAbsent where current != nil, .ifPresent where current == nil: return .keep
            default: return .set(value)
            }
        }
        let reply: RESPValue = replyWithOld ? previous.map(RESPValue.bulkString) ?? .null : (sequence == nil ? .null : .ok)
        return Outcome(reply: reply, wrote: sequence != nil)
    }

    /// `MSET key value [key value ...]`: one MULTI-SET record.
    static func mset(_ store: KVStore, spec: CommandSpec, arguments: [[UInt8]]) throws -> Outcome {
        guard arguments.count % 2 == 1 else { throw CommandError.wrongArity(spec, typed: arguments.first) }
        let pairs = stride(from: 1, to: arguments.count, by: 2).map { (key: arguments[$0], value: arguments[$0 + 1]) }
        try store.multiSet(pairs)
        return Outcome(reply: .ok, wrote: true)
    }

    /// `MGET key [key ...]`: the values (nil for missing keys), read at one instant.
    static func mget(_ store: KVStore, arguments: [[UInt8]]) -> Outcome {
        let values = store.values(for: Array(arguments.dropFirst()))
        return Outcome(reply: .array(values.map { $0.map(RESPValue.bulkString) ?? .null }), wrote: false)
    }

    /// `SETNX key value`: 1 if set, 0 if the key existed.
    static func setnx(_ store: KVStore, arguments: [[UInt8]]) throws -> Outcome {
        let value = arguments[2]
        let (_, sequence) = try store.update(arguments[1]) { $0 == nil ? .set(value) : .keep }
        return Outcome(reply: .integer(sequence == nil ? 0 : 1), wrote: sequence != nil)
    }

    /// `GETDEL key`: the value, deleted, or nil.
    static func getdel(_ store: KVStore, arguments: [[UInt8]]) throws -> Outcome {
        let (previous, sequence) = try store.update(arguments[1]) { _ in .delete }
        return Outcome(reply: previous.map(RESPValue.bulkString) ?? .null, wrote: sequence != nil)
    }

    /// `INCR`, `DECR`, `INCRBY`, `DECRBY`. The amount is parsed before the key is looked at, as in Redis.
    static func increment(_ store: KVStore, spec: CommandSpec, arguments: [[UInt8]]) throws -> Outcome {
        let delta: Int
        switch spec.id {
        case .incr: delta = 1
        case .decr: delta = -1
        case .incrby, .decrby:
            guard let amount = RedisInteger.parse(arguments[2]) else { throw CommandError.amountNotAnInteger(spec) }
            if spec.id == .incrby {
                delta = amount
            } else {
                guard amount != Int.min else { throw CommandError.decrementOverflow }
                delta = -amount
            }
        default:
            throw CommandError.internalError("\(spec.name) is not an increment")
        }
        var result = 0
        try store.update(arguments[1]) { current in
            var value = 0
            if let current {
                guard let stored = RedisInteger.parse(current) else { throw CommandError.valueNotAnInteger }
                value = stored
            }
            let (sum, overflow) = value.addingReportingOverflow(delta)
            guard !overflow else { throw CommandError.incrementOverflow }
            result = sum
            return .set(Array(String(sum).utf8))
        }
        return Outcome(reply: .integer(result), wrote: true)
    }

    /// `APPEND key value`: the new length. Appending nothing to an existing key writes nothing; to a missing key
    /// it creates the key with an empty value, as in Redis.
    static func append(_ store: KVStore, arguments: [[UInt8]]) throws -> Outcome {
        let suffix = arguments[2]
        var length = 0
        let (_, sequence) = try store.update(arguments[1]) { current in
            if let current, suffix.isEmpty {
                length = current.count
                return .keep
            }
            length = (current?.count ?? 0) + suffix.count
            guard length <= LogFormat.maxValueSize else { throw CommandError.valueTooLarge }
            return .set((current ?? []) + suffix)
        }
        return Outcome(reply: .integer(length), wrote: sequence != nil)
    }

    /// `STRLEN key`: 0 for a missing key.
    static func strlen(_ store: KVStore, arguments: [[UInt8]]) -> Outcome {
        Outcome(reply: .integer(store.valueLength(arguments[1]) ?? 0), wrote: false)
    }
}
