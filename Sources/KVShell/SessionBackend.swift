import KVCommands
import KVStore
import RESP

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

    func close() {}
}

/// A kvsh server (`kvsh --connect`): data commands go out as they come and their replies are read in order;
/// maintenance commands go as `KVSH.*` commands.
final class RemoteBackend: SessionBackend {
    let client: RESPClient

    init(client: RESPClient) {
        self.client = client
    }

    var storeToCommit: KVStore? { nil }
    var isRemote: Bool { true }

    func submit(_ arguments: [[UInt8]]) throws -> CommandExecutor.Outcome? {
        try client.send(arguments)
        return nil
    }

    func receive() throws -> RESPValue {
        try client.readReply()
    }

    func run(_ command: MaintenanceCommand) throws -> MaintenanceCommand.Outcome {
        try command.outcome(fromReply: try client.call(command.serverArguments))
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

    func close() {}
}
