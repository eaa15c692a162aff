import KVCommands
import KVStore
import RESP

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Where a session's commands run: a store opened in this process (``EmbeddedBackend``) or a kvsh server
/// (``RemoteBackend``). The session formats, orders and reports; the backend runs.
protocol SessionBackend: AnyObject {
    /// The store to commit before replies that acknowledge writes leave the process; nil where the other side
    /// replies only once writes are durable (a server).
    var storeToCommit: KVStore? { get }
    /// Whether data commands are sent now and their replies read later (``receive()``), so that a script's commands
    /// can be pipelined.
    var isRemote: Bool { get }
    /// Runs a data command now and returns its reply and whether it wrote (embedded), or sends it and returns nil
    /// (remote: its reply comes from ``receive()``, in order).
    func submit(_ arguments: [[UInt8]]) throws -> CommandExecutor.Outcome?
    /// The reply to the oldest command sent and not yet received. Errors are replies; only a broken connection
    /// throws (``RESPClientError``).
    func receive() throws -> RESPValue
    /// Runs a maintenance command (`:stats`, `:rebuild`, `:compact`, `:backup`, `:check`).
    func run(_ command: MaintenanceCommand) throws -> MaintenanceCommand.Outcome
    /// At most `limit` keys that start with `prefix` (some, not necessarily the first), for Tab completion.
    func keys(withPrefix prefix: [UInt8], limit: Int) throws -> [[UInt8]]
    func close()
}

/// A store opened in this process: commands run here, and replies wait for their writes' commit.
final class EmbeddedBackend: SessionBackend {
    let store: KVStore
    private let executor: CommandExecutor

    init(store: KVStore) {
        self.store = store
        executor = CommandExecutor(store: store)
    }

    var storeToCommit: KVStore? { store }
    var isRemote: Bool { false }

    func submit(_ arguments: [[UInt8]]) throws -> CommandExecutor.Outcome? {
        guard let spec = CommandTable.lookup(arguments[0]), !spec.isMeta else {
            throw CommandError.internalError("only data commands are submitted")
        }
        return try executor.execute(spec, arguments)
    }

    func receive() throws -> RESPValue {
        throw CommandError.internalError("an embedded store has no replies in flight")
    }

    /// A backup without a path has nowhere to go here: the shell has no backup directory of its own for one-off
    /// backups (periodic ones are `--backup-dir`'s).
    func run(_ command: MaintenanceCommand) throws -> MaintenanceCommand.Outcome {
        if case .backup(nil, _) = command {
            throw CommandError.other(":backup needs a path here (without one, a server started with --backup-dir writes into it)")
        }
        return try command.run(on: store, backups: nil)
    }

    /// A prefix scan of the ordered index: from `prefix` up to the first key past every key that starts with it.
    func keys(withPrefix prefix: [UInt8], limit: Int) throws -> [[UInt8]] {
        store.keys(from: prefix.isEmpty ? nil : prefix, to: Self.successor(of: prefix), limit: limit).keys
    }

    /// The least byte string above every string that starts with `prefix`; nil when there is none (all 0xFF, or empty).
    static func successor(of prefix: [UInt8]) -> [UInt8]? {
        var bound = prefix
        while let last = bound.last {
            if last < 0xFF {
                bound[bound.count - 1] = last + 1
                return bound
            }
            bound.removeLast()
        }
        return nil
    }

    func close() {}
}

/// A kvsh server (`kvsh --connect`): data commands go out as they come and their replies are read in order;
/// maintenance commands go as `KVSH.*` commands.
final class RemoteBackend: SessionBackend {
    /// Where new commands go.
    private(set) var client: RESPClient
    /// How to find the primary again (`--connect` with several addresses, `--sentinel`); nil: one server.
    private let locator: PrimaryLocator?
    /// Commands sent and not yet answered, each with the connection it went out on (a switch to a new primary
    /// leaves the replies to commands sent before it on the old one).
    private var outstanding: [(arguments: [[UInt8]], client: RESPClient)] = []
    private var outstandingHead = 0

    init(client: RESPClient, locator: PrimaryLocator? = nil) {
        self.client = client
        self.locator = locator
    }

    var storeToCommit: KVStore? { nil }
    var isRemote: Bool { true }

    func submit(_ arguments: [[UInt8]]) throws -> CommandExecutor.Outcome? {
        try client.send(arguments)
        if locator != nil { outstanding.append((arguments, client)) }
        return nil
    }

    func receive() throws -> RESPValue {
        guard locator != nil, outstandingHead < outstanding.count else { return try client.readReply() }
        let (arguments, sentOn) = outstanding[outstandingHead]
        outstandingHead += 1
        if outstandingHead == outstanding.count {
            outstanding.removeAll(keepingCapacity: true)
            outstandingHead = 0
        }
        let reply: RESPValue
        do {
            reply = try sentOn.readReply()
        } catch let lost as RESPClientError {
            // The node went away: find the primary for what comes next. This command may or may not have run there.
            guard follow(from: sentOn) else { throw lost }
            return .error("ERR \(lost.message); now connected to the primary \(client.endpoint): this command may or may not have run")
        }
        if let locator, Self.isReadOnlyRefusal(reply) {
            return try runOnPrimary(arguments, refusal: reply, locator: locator)
        }
        return reply
    }

    /// How long a write refused with `-READONLY` keeps looking for a primary: past an unplanned failover (the
    /// cluster's TTL, 5 s by default, and an election), as redis-py's Sentinel clients retry.
    static let followTimeout: Duration = .seconds(15)

    private static func isReadOnlyRefusal(_ reply: RESPValue) -> Bool {
        if case .error(let text) = reply { return text.hasPrefix("READONLY") }
        return false
    }

    /// Runs a write that a node refused with `-READONLY` (so it did not run) on the primary, looking for it again
    /// with back-off while no node takes writes (during a failover the old primary refuses them before the new
    /// one accepts them). Each attempt goes on a new connection: the node refusing may still owe replies to
    /// commands pipelined after this one on the old one.
    private func runOnPrimary(_ arguments: [[UInt8]], refusal: RESPValue, locator: PrimaryLocator) throws -> RESPValue {
        let deadline = ContinuousClock.now + Self.followTimeout
        var delay = Duration.milliseconds(20)
        var reply = refusal
        while Self.isReadOnlyRefusal(reply) {
            if let found = try? locator.connect() {
                client = found
                reply = try found.call(arguments)
                guard Self.isReadOnlyRefusal(reply) else { return reply }
            }
            guard ContinuousClock.now + delay < deadline else { break }
            var pause = timespec(tv_sec: Int(delay.components.seconds), tv_nsec: Int(delay.components.attoseconds / 1_000_000_000))
            _ = nanosleep(&pause, nil)
            delay = min(delay * 2, .milliseconds(500))
        }
        return reply
    }

    /// Connects to the primary if `stale` is still where commands go; true when commands now go to another node.
    private func follow(from stale: RESPClient) -> Bool {
        guard let locator else { return false }
        if stale === client {
            guard let found = try? locator.connect(), found.endpoint != client.endpoint else { return false }
            client = found
        }
        return true
    }

    func run(_ command: MaintenanceCommand) throws -> MaintenanceCommand.Outcome {
        try command.outcome(fromReply: try client.call(command.serverArguments))
    }

    /// One `SCAN 0 MATCH prefix* COUNT limit` (the prefix's glob characters escaped): bounded, as a completion must be.
    func keys(withPrefix prefix: [UInt8], limit: Int) throws -> [[UInt8]] {
        var pattern: [UInt8] = []
        for byte in prefix {
            if byte == UInt8(ascii: "*") || byte == UInt8(ascii: "?") || byte == UInt8(ascii: "[") || byte == UInt8(ascii: "]")
                || byte == UInt8(ascii: "\\") {
                pattern.append(UInt8(ascii: "\\"))
            }
            pattern.append(byte)
        }
        pattern.append(UInt8(ascii: "*"))
        let reply = try client.call([Array("SCAN".utf8), Array("0".utf8), Array("MATCH".utf8), pattern,
                                     Array("COUNT".utf8), Array(String(limit).utf8)])
        guard case .array(let parts) = reply, parts.count == 2, case .array(let items) = parts[1] else { return [] }
        return items.prefix(limit).compactMap { item in
            if case .bulkString(let key) = item { return key }
            return nil
        }
    }

    func close() {
        client.close()
    }
}

/// No store and no server: a one-shot command that needs neither (`kvsh PING`, `kvsh :help`) runs here, so that
/// kvsh does not open, and create, a data directory for it.
final class StorelessBackend: SessionBackend {
    var storeToCommit: KVStore? { nil }
    var isRemote: Bool { false }

    func submit(_ arguments: [[UInt8]]) throws -> CommandExecutor.Outcome? {
        guard let spec = CommandTable.lookup(arguments[0]), let outcome = CommandExecutor.executeWithoutStore(spec, arguments) else {
            throw CommandError.internalError("this session has no store (only commands that need none run in it)")
        }
        return outcome
    }

    func receive() throws -> RESPValue {
        throw CommandError.internalError("a session without a store has no replies in flight")
    }

    func run(_ command: MaintenanceCommand) throws -> MaintenanceCommand.Outcome {
        throw CommandError.internalError("this session has no store (only commands that need none run in it)")
    }

    func keys(withPrefix prefix: [UInt8], limit: Int) throws -> [[UInt8]] { [] }

    func close() {}
}
