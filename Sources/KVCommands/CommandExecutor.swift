import KVStore
import RESP

/// Runs the data commands of the command table against a store: the part the shell and the server share.
/// Meta-commands (`:help`, ...) belong to the shell and protocol commands (`HELLO`, `CLIENT`, ...) to the server.
public struct CommandExecutor: Sendable {
    public let store: KVStore

    public init(store: KVStore) {
        self.store = store
    }

    /// What running a command produced.
    public struct Outcome: Sendable {
        public var reply: RESPValue
        /// Whether the command wrote to the store: its reply must wait for a commit.
        public var wrote: Bool
    }

    /// Runs a data command that needs no store (`PING`, `ECHO`), arity checked by the caller; nil for any other.
    public static func executeWithoutStore(_ spec: CommandSpec, _ arguments: [[UInt8]]) -> Outcome? {
        switch spec.id {
        case .ping: return Outcome(reply: arguments.count > 1 ? .bulkString(arguments[1]) : .simpleString("PONG"), wrote: false)
        case .echo: return Outcome(reply: .bulkString(arguments[1]), wrote: false)
        default: return nil
        }
    }

    /// Runs a data command whose spec the caller has looked up.
    public func execute(_ spec: CommandSpec, _ arguments: [[UInt8]]) throws -> Outcome {
        guard spec.arity.contains(arguments.count - 1) else { throw CommandError.wrongArity(spec, typed: arguments[0]) }
        switch spec.id {
        case .set:
            return try StringCommands.set(store, spec: spec, arguments: arguments)
        case .get:
            return Outcome(reply: store.get(arguments[1]).map(RESPValue.bulkString) ?? .null, wrote: false)
        case .mset:
            return try StringCommands.mset(store, spec: spec, arguments: arguments)
        case .mget:
            return StringCommands.mget(store, arguments: arguments)
        case .setnx:
            return try StringCommands.setnx(store, arguments: arguments)
        case .getdel:
            return try StringCommands.getdel(store, arguments: arguments)
        case .incr, .decr, .incrby, .decrby:
            return try StringCommands.increment(store, spec: spec, arguments: arguments)
        case .append:
            return try StringCommands.append(store, arguments: arguments)
        case .strlen:
            return StringCommands.strlen(store, arguments: arguments)
        case .delete:
            let removed = try store.delete(Array(arguments.dropFirst()))
            return Outcome(reply: .integer(removed), wrote: removed > 0)
        case .exists:
            return Outcome(reply: .integer(store.countExisting(Array(arguments.dropFirst()))), wrote: false)
        case .keys:
            return Outcome(reply: OrderedCommands.keys(store, pattern: arguments[1]), wrote: false)
        case .scan:
            return Outcome(reply: try OrderedCommands.scan(store, spec: spec, arguments: arguments.dropFirst()), wrote: false)
        case .range:
            return Outcome(reply: try OrderedCommands.range(store, spec: spec, arguments: arguments.dropFirst()), wrote: false)
        case .count:
            return Outcome(reply: OrderedCommands.count(store, arguments: arguments.dropFirst()), wrote: false)
        case .dbsize:
            return Outcome(reply: .integer(store.count), wrote: false)
        case .ping, .echo:
            guard let reply = Self.executeWithoutStore(spec, arguments) else {
                throw CommandError.internalError("\(spec.name) needs no store")
            }
            return reply
        case .help, .rebuild, .compact, .backup, .rekey, .check, .stats, .source, .timing, .hints, .format, .clear, .quit:
            throw CommandError.other("\(spec.name) is a meta-command of the shell")
        }
    }
}
