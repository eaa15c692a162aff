#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVStore
import KVCommands
import RESP

/// Runs commands against a store, or sends them to a kvsh server, and prints their replies: the part of the
/// shell shared by the interactive loop, scripts and one-shot commands.
///
/// Replies are buffered. With an embedded store, ``flush()`` first commits the store, so no reply that
/// acknowledges a write leaves the process before that write is as durable as the sync policy promises, and
/// writes whose replies are flushed together share one fsync. Connected to a server (``init(client:format:outputFD:errorFD:)``)
/// there is nothing to commit: the server replies to a write only once it is durable. Script lines are then
/// pipelined: their commands are sent without waiting, and the replies are read (and printed, errors with their
/// line numbers) when the session flushes, before a meta-command, or once enough are outstanding.
/// A session belongs to one thread.
public final class Session {
    /// Where a command came from, which decides how its errors are reported.
    public enum Origin: Sendable {
        /// Typed at the prompt: `(error) ERR ...`.
        case interactive
        /// From the command line: `kvsh: ERR ...`.
        case oneShot
        /// Line `line` of a script; `name` is nil for standard input: `kvsh: line 3: ERR ...`.
        case script(name: String?, line: Int)
    }

    /// Where commands run: a store opened in this process, or a server.
    let backend: any SessionBackend
    /// The store commands run against; nil when the session is connected to a server.
    public var store: KVStore? { (backend as? EmbeddedBackend)?.store }
    public var format: OutputFormat
    /// Print each command's duration (on standard error, so piped output stays clean).
    public var timing = false
    /// Stop scripts at the first failed command.
    public var bail = false
    /// Long work (`:rebuild`, `:source`, `:compact`, `:backup`, `:check`) runs under ``LongOperation``: a progress
    /// bar on a terminal, and Ctrl-C (once ``InterruptSignal`` is installed) stops it, leaving the store as it was.
    /// The interactive shell sets it.
    public var interruptible = false
    /// Whether the interactive shell shows the grey hint of a command's arguments while it is typed (`:hints`).
    public var hints = true
    /// Lines `:stats` adds after the store's (the periodic backups' record); nil adds none.
    public var statisticsAddendum: (() -> String)?
    public private(set) var quitRequested = false
    /// The connection to the server broke (the error has been reported). The session then stops, as after
    /// `:quit`: scripts end and the interactive loop leaves.
    public private(set) var connectionLost = false

    /// Commands that failed so far, including commits that failed (the exit status is 1 if any did).
    public var failedCommands: Int { failedToRun + writer.failures }
    private var failedToRun = 0

    private var output: [UInt8] = []
    /// Whether writes were made since replies were last handed to the writer.
    private var uncommitted = false
    private let writer: ReplyWriter
    private let errorFD: Int32
    private let outputFD: Int32
    private var sourceDepth = 0

    /// Commands sent to the server whose replies have not been read yet, in order from `pendingHead`, and the
    /// bytes they hold.
    private var pending: [PendingCommand] = []
    private var pendingHead = 0
    private var pendingBytes = 0

    /// Buffered replies beyond this are sent without waiting for the input to pause. Small enough that the
    /// log is written in the background while commands go on, large enough that fsyncs stay few.
    static let outputFlushThreshold = 64 << 10
    static let maxSourceDepth = 16
    /// Script commands sent to a server before their replies are read: bounds the replies held in memory.
    /// Once either is reached, replies are read until half as many are outstanding, so the server always has the
    /// next commands at hand while the client prints.
    static let maxPipelinedCommands = 1024
    static let maxPipelinedBytes = 1 << 20

    /// A session on a store opened in this process.
    public init(store: KVStore, format: OutputFormat, outputFD: Int32 = STDOUT_FILENO, errorFD: Int32 = STDERR_FILENO) {
        backend = EmbeddedBackend(store: store)
        self.format = format
        self.errorFD = errorFD
        self.outputFD = outputFD
        writer = ReplyWriter(store: store, outputFD: outputFD, errorFD: errorFD)
    }

    /// A session whose commands go to a server (`kvsh serve`) over `client`. Meta-commands that need the store
    /// (`:stats`, `:rebuild`, `:compact`, `:backup`, `:check`) run on the server as `KVSH.*` commands; the others
    /// (`:help`, `:timing`, `:format`, `:source`, `:clear`, `:quit`) run here; `QUIT` goes to the server.
    /// With a `locator`, the session follows the primary: a write refused with `-READONLY` runs again on the primary
    /// found, and a lost connection is replaced by one to the primary.
    public init(client: RESPClient, format: OutputFormat, locator: PrimaryLocator? = nil,
                outputFD: Int32 = STDOUT_FILENO, errorFD: Int32 = STDERR_FILENO) {
        backend = RemoteBackend(client: client, locator: locator)
        self.format = format
        self.errorFD = errorFD
        self.outputFD = outputFD
        writer = ReplyWriter(store: nil, outputFD: outputFD, errorFD: errorFD)
    }

    /// A session without a store, for a one-shot command that needs none (`kvsh :help`, `kvsh PING`): it runs the
    /// commands whose ``CommandSpec/needsStore`` is false and refuses the others, so that no data directory is
    /// created for them.
    public init(format: OutputFormat, outputFD: Int32 = STDOUT_FILENO, errorFD: Int32 = STDERR_FILENO) {
        backend = StorelessBackend()
        self.format = format
        self.errorFD = errorFD
        self.outputFD = outputFD
        writer = ReplyWriter(store: nil, outputFD: outputFD, errorFD: errorFD)
    }

    /// Closes the connection to the server, if any (the store is its opener's to close).
    public func close() {
        backend.close()
    }

    // MARK: Running commands

    /// Runs one line of input. Blank lines and lines starting with `#` do nothing.
    /// - Returns: false if the command failed (the error has been reported).
    @discardableResult
    public func execute(line: UnsafeRawBufferPointer, origin: Origin) -> Bool {
        guard let first = line.firstIndex(where: { !Tokenizer.isBlank($0) }), line[first] != UInt8(ascii: "#") else {
            return true
        }
        do {
            return execute(arguments: try Tokenizer.split(line), origin: origin)
        } catch {
            return fail(CommandError.unbalancedQuotes, origin: origin)
        }
    }

    /// Runs one command given as arguments (the name first).
    /// Connected to a server, a script's data commands are only sent: their replies (or errors) are printed when
    /// the session next flushes, and the result is true.
    @discardableResult
    public func execute(arguments: [[UInt8]], origin: Origin) -> Bool {
        guard !arguments.isEmpty else { return true }
        if backend.isRemote, let result = sendToServer(arguments, origin: origin) { return result }
        let started = timing ? ContinuousClock.now : nil
        let reply: Reply
        do {
            reply = try dispatch(arguments)
        } catch {
            return fail(error, origin: origin)
        }
        format.append(reply, to: &output)
        if let started, timing {  // `:timing off` itself reports no timing
            let elapsed = ContinuousClock.now - started
            flush()
            writeError("(\(formatMilliseconds(elapsed)))\n")
        } else if output.count >= Self.outputFlushThreshold {
            startWriting()
        }
        return true
    }

    /// Commits the store and writes the buffered replies, returning once they are written. If the commit
    /// fails, the replies are withheld (they would acknowledge writes that are not durable) and the failure
    /// is reported. Connected to a server, first reads and prints the replies to the commands sent.
    public func flush() {
        receivePending()
        startWriting()
        writer.drain()
    }

    /// Like ``flush()``, but returns at once: a background queue commits and writes. Scripts use it before
    /// waiting for more input, so replies go out while the next lines are read and run. (Connected to a server,
    /// it waits for the replies to the commands sent.)
    public func startFlush() {
        receivePending()
        startWriting()
    }

    /// Hands the buffered replies to the writer (which commits first if they acknowledge writes).
    private func startWriting() {
        guard uncommitted || !output.isEmpty else { return }
        writer.send(output, commit: uncommitted)
        uncommitted = false
        output = []
        output.reserveCapacity(Self.outputFlushThreshold + 4096)
    }

    private func fail(_ error: Error, origin: Origin) -> Bool {
        // Replies to commands sent before this one print first; with --bail, an error among them ends the script.
        guard catchUp(origin: origin) else { return false }
        report(error, origin: origin)
        return false
    }

    /// Counts a failed command and prints its error after the replies before it.
    private func report(_ error: Error, origin: Origin) {
        failedToRun += 1
        startWriting()  // replies before the error print before it
        writer.drain()
        if let lost = error as? RESPClientError {
            // Not a command's error: the session cannot go on. No `ERR` and no `(error)`: kvsh stops here.
            connectionLost = true
            quitRequested = true
            switch origin {
            case .interactive, .oneShot: writeError("kvsh: \(lost.message)\n")
            case .script(nil, let line): writeError("kvsh: line \(line): \(lost.message)\n")
            case .script(let name?, let line): writeError("kvsh: \(name): line \(line): \(lost.message)\n")
            }
            return
        }
        let message = (error as? CommandError)?.message ?? "ERR \(error)"
        switch origin {
        case .interactive: writeError("(error) \(message)\n")
        case .oneShot: writeError("kvsh: \(message)\n")
        case .script(nil, let line): writeError("kvsh: line \(line): \(message)\n")
        case .script(let name?, let line): writeError("kvsh: \(name): line \(line): \(message)\n")
        }
    }

    // MARK: Commands

    /// Runs one command and returns its reply, unformatted. Internal so tests can look at replies directly.
    func dispatch(_ arguments: [[UInt8]]) throws -> Reply {
        let name = arguments[0]
        guard let spec = CommandTable.lookup(name) else {
            throw CommandError.unknownCommand(String(decoding: name, as: UTF8.self), arguments: arguments.dropFirst())
        }
        guard spec.arity.contains(arguments.count - 1) else { throw CommandError.wrongArity(spec) }
        guard spec.isMeta else {
            guard let outcome = try backend.submit(arguments) else {
                throw CommandError.internalError("data commands of a connected session are sent, not dispatched")
            }
            uncommitted = uncommitted || outcome.wrote
            return reply(from: outcome.reply, topLevel: true)
        }
        return try runMeta(spec, arguments.dropFirst().map { String(decoding: $0, as: UTF8.self) })
    }

    private func runMeta(_ spec: CommandSpec, _ arguments: [String]) throws -> Reply {
        switch spec.id {
        case .help:
            guard let text = CommandTable.help(for: arguments.first, width: terminalWidth(outputFD)) else {
                let name = arguments[0]
                if name.hasPrefix("@") {
                    let groups = CommandTable.groups.map { "@" + $0 }.joined(separator: ", ")
                    throw CommandError.other("no command group named '\(name)' (the groups are \(groups))")
                }
                let hint = (CommandTable.suggestion(for: name) ?? CommandTable.suggestion(for: ":" + name)).map { "did you mean '\($0)'? " } ?? ""
                throw CommandError.other("no command named '\(name)' (\(hint)type :help for the list)")
            }
            return .text(text)
        case .rebuild, .compact, .backup, .rekey, .check, .stats:
            let command = try Self.maintenanceCommand(spec, arguments)
            if command == .compact || command == .check { flush() }  // what they report includes every write before them
            var outcome = try command == .stats ? backend.run(command) : runLong(spec) { try backend.run(command) }
            if !outcome.succeeded { failedToRun += 1 }
            if command == .stats, let addendum = statisticsAddendum?() { outcome.text += addendum }
            return .text(outcome.text)
        case .source:
            try sourceInterruptibly(arguments[0])
            return .none
        case .timing:
            switch arguments[0].lowercased() {
            case "on": timing = true
            case "off": timing = false
            default: throw CommandError.badArgument(spec, arguments[0])
            }
            return .none
        case .hints:
            switch arguments[0].lowercased() {
            case "on": hints = true
            case "off": hints = false
            default: throw CommandError.badArgument(spec, arguments[0])
            }
            return .none
        case .format:
            guard let format = OutputFormat(rawValue: arguments[0].lowercased()) else {
                throw CommandError.badArgument(spec, arguments[0])
            }
            self.format = format
            return .none
        case .clear:
            // As redis-cli's `clear`: home the cursor and erase the screen, on a terminal only (a script's output
            // keeps no escape codes).
            if isatty(outputFD) == 1 { output.append(contentsOf: Array("\u{1B}[H\u{1B}[2J".utf8)) }
            return .none
        case .quit:
            quitRequested = true
            return .none
        case .set, .get, .delete, .exists, .keys, .scan, .range, .count, .dbsize, .ping, .echo,
             .mset, .mget, .setnx, .getdel, .incr, .decr, .incrby, .decrby, .append, .strlen:
            throw CommandError.other("\(spec.name) is not a meta-command")
        }
    }

    /// The maintenance command a meta-command line names.
    static func maintenanceCommand(_ spec: CommandSpec, _ arguments: [String]) throws -> MaintenanceCommand {
        switch spec.id {
        case .stats: return .stats
        case .rebuild: return .rebuild(path: arguments.first)
        case .compact: return .compact
        case .check: return .check
        case .rekey: return .rekey(keyFile: arguments[0])
        case .backup:
            let (path, replace) = try backupArguments(spec, arguments)
            return .backup(path: path, replace: replace)
        default: throw CommandError.internalError("\(spec.name) is not a maintenance meta-command")
        }
    }

    /// `:backup [path] [--force]`: the path (nil if none) and whether to replace an existing file.
    static func backupArguments(_ spec: CommandSpec, _ arguments: [String]) throws -> (path: String?, replace: Bool) {
        let replace = arguments.contains("--force")
        let paths = arguments.filter { $0 != "--force" }
        guard paths.count <= 1, arguments.count - paths.count <= 1 else { throw CommandError.syntax(spec) }
        return (paths.first, replace)
    }

    /// Runs long work under ``LongOperation`` when ``interruptible`` (and the work runs here, not on a server), and
    /// words an interruption for the user.
    private func runLong<T>(_ spec: CommandSpec, _ body: () throws -> T) throws -> T {
        guard interruptible, !backend.isRemote else { return try body() }
        do {
            return try LongOperation.run(spec.name, errorFD: errorFD, body)
        } catch StoreError.interrupted(_, let undone) {
            uncommitted = true  // an undone import wrote its undoing
            throw CommandError.other("\(spec.name) was interrupted; "
                                     + (undone.map { "\($0); the store is as it was before" } ?? "it changed nothing"))
        }
    }

    /// `:source PATH`; when ``interruptible``, Ctrl-C stops the script between two lines and (on a store opened here)
    /// undoes the writes of the lines that ran, so the store is as it was before the command.
    private func sourceInterruptibly(_ path: String) throws {
        guard interruptible, sourceDepth == 0 else { return try source(path) }
        let before = store?.snapshot()
        do {
            try LongOperation.run(":source", errorFD: errorFD) { try source(path) }
        } catch let stop as ScriptInterrupted {
            guard let store, let before else {
                throw CommandError.other(":source was interrupted after line \(stop.lines) of \(path); "
                                         + "the commands of those lines ran on the server and stay applied")
            }
            let reverted = try store.revert(to: before)
            uncommitted = true
            throw CommandError.other(":source was interrupted after line \(stop.lines) of \(path); the writes of those lines "
                                     + "were undone (\(reverted.keys) keys put back); the store is as it was before")
        }
    }

    /// Runs the script on standard input (a pipe or a redirected file: a bulk load). When ``interruptible`` (kvsh
    /// sets it when standard error is a terminal), it runs as `:source` does at the prompt: a bar after half a
    /// second, and Ctrl-C — even one that ends the program feeding the pipe first — undoes what the script wrote.
    public func runStandardInput() throws {
        guard interruptible else { return try ScriptRunner.run(fd: STDIN_FILENO, name: nil, session: self) }
        let before = store?.snapshot()
        let interruptsBefore = InterruptSignal.count
        var stoppedAfter: Int?
        do {
            try LongOperation.run("loading", errorFD: errorFD) {
                try ScriptRunner.run(fd: STDIN_FILENO, name: nil, session: self)
            }
        } catch let stop as ScriptInterrupted {
            stoppedAfter = stop.lines
        }
        // Ctrl-C reaches every process of the pipeline: the writer may die first, and the end of input it causes
        // arrive before the interrupt is seen. The load was still cut short.
        guard stoppedAfter != nil || InterruptSignal.count != interruptsBefore else { return }
        let which = stoppedAfter.map { "after line \($0) " } ?? ""
        guard let store, let before else {
            throw CommandError.other("the script on standard input was interrupted \(which)(Ctrl-C); "
                                     + "the commands that ran on the server stay applied")
        }
        let reverted = try store.revert(to: before)
        uncommitted = true
        flush()
        throw CommandError.other("the script on standard input was interrupted \(which)(Ctrl-C); its writes were undone "
                                 + "(\(reverted.keys) keys put back); the store is as it was before")
    }

    /// Runs a script file within this session (`:source`).
    public func source(_ path: String) throws {
        guard sourceDepth < Self.maxSourceDepth else {
            throw CommandError.other(":source nested more than \(Self.maxSourceDepth) deep (does a script source itself?)")
        }
        // Regular files only: a FIFO or a device could block the session forever (a script on standard input,
        // a pipe, is read by the caller through `ScriptRunner` directly, not by name).
        let fd: Int32
        do {
            fd = try POSIX.openRegularFile(path)
        } catch StoreError.io(_, _, let code) {
            throw CommandError.other("cannot open '\(path)': \(String(cString: strerror(code)))")
        } catch {
            throw CommandError.other("\(error)")
        }
        defer { Glibc.close(fd) }
        sourceDepth += 1
        defer { sourceDepth -= 1 }
        try ScriptRunner.run(fd: fd, name: path, session: self)
    }

    // MARK: Output

    private func writeError(_ text: String) {
        writeAll(errorFD, Array(text.utf8))
    }
}

// MARK: - Connected to a server

extension Session {
    /// A command sent to the server whose reply has not been read yet.
    struct PendingCommand {
        let origin: Origin
        /// Its entry in the command table; nil for names the server may know and the shell does not (`PING`).
        let spec: CommandSpec?
        /// Kept to word a server error as the shell does (see ``shellError(_:spec:arguments:)``).
        let arguments: [[UInt8]]
        /// Roughly what the command takes on the wire.
        let bytes: Int
        /// When it was sent, with `:timing on`.
        let started: ContinuousClock.Instant?
    }

    /// Sends a data command to the server, or returns nil if `arguments` is for this process: a meta-command, a
    /// command the table knows given the wrong number of arguments, or an unknown `:name`. Those run (after the
    /// replies before them are printed) the way they do with a store, so their output and errors are the same.
    fileprivate func sendToServer(_ arguments: [[UInt8]], origin: Origin) -> Bool? {
        guard backend.isRemote else { return nil }
        guard !connectionLost else { return false }
        var spec = CommandTable.lookup(arguments[0])
        // `QUIT` (in any letter case; not `exit` or `:quit`) is the server's, as before: it replies OK and closes the connection.
        if spec?.id == .quit, arguments.count == 1, OrderedCommands.asciiUppercased(arguments[0]) == Array("QUIT".utf8) {
            spec = nil
        }
        let runsHere = spec.map { $0.isMeta || !$0.arity.contains(arguments.count - 1) } ?? (arguments[0].first == UInt8(ascii: ":"))
        if runsHere {
            guard catchUp(origin: origin) else { return false }
            return connectionLost ? false : nil
        }
        let started = timing ? ContinuousClock.now : nil
        do {
            _ = try backend.submit(arguments)
        } catch {
            _ = catchUp(origin: origin)
            if !connectionLost { report(error, origin: origin) }
            return false
        }
        let bytes = arguments.reduce(16) { $0 + $1.count + 16 }
        pending.append(PendingCommand(origin: origin, spec: spec, arguments: arguments, bytes: bytes, started: started))
        pendingBytes += bytes
        // QUIT waits for its reply: the server closes the connection after it, so nothing may be sent behind it.
        // With --bail nothing is pipelined either, so that no command after the first failure reaches the server.
        guard case .script = origin, !timing, !bail, !isQuit(spec, arguments) else { return receivePending() }
        if pending.count - pendingHead >= Self.maxPipelinedCommands || pendingBytes >= Self.maxPipelinedBytes {
            receivePending(untilAtMost: Self.maxPipelinedCommands / 2, bytes: Self.maxPipelinedBytes / 2)
        }
        return true
    }

    /// Reads and prints the replies to the commands sent so far (nothing for an embedded store), or only the oldest
    /// ones, until at most `count` commands holding at most `bytes` are outstanding.
    /// - Returns: whether none of them failed.
    @discardableResult
    fileprivate func receivePending(untilAtMost count: Int = 0, bytes: Int = 0) -> Bool {
        guard backend.isRemote else { return true }
        defer {
            if pendingHead == pending.count {
                pending.removeAll(keepingCapacity: true)
                pendingHead = 0
                pendingBytes = 0
            } else if pendingHead > 0 {  // at most maxPipelinedCommands remain: cheap, and frees the arguments
                pending.removeFirst(pendingHead)
                pendingHead = 0
            }
        }
        var succeeded = true
        while pendingHead < pending.count && (pending.count - pendingHead > count || pendingBytes > bytes) {
            let command = pending[pendingHead]
            pendingHead += 1
            pendingBytes -= command.bytes
            let received: RESPValue
            do {
                received = try backend.receive()
            } catch {
                report(error, origin: command.origin)
                connectionLost = true
                quitRequested = true
                pendingHead = pending.count  // no reply to any of them will come
                return false
            }
            if case .error(let text) = received {
                succeeded = false
                // With --bail nothing is pipelined (see send), so no command after this one has been sent.
                report(CommandError(serverReply: text, spec: command.spec, arguments: command.arguments), origin: command.origin)
                continue
            }
            if format == .human, case .bulkString(let bytes) = received, Self.printsAsLines(command.arguments),
               let text = Self.lines(bytes) {
                format.append(.text(text), to: &output)
            } else {
                format.append(reply(from: received, topLevel: true), to: &output)
            }
            if isQuit(command.spec, command.arguments) {
                quitRequested = true  // the server closes the connection after its OK
            }
            if let started = command.started {
                let elapsed = ContinuousClock.now - started
                startWriting()
                writer.drain()
                writeError("(\(formatMilliseconds(elapsed)))\n")
            } else if output.count >= Self.outputFlushThreshold {
                startWriting()
            }
        }
        return succeeded
    }

    /// Whether redis-cli prints this command's bulk reply as it is, in lines, rather than quoted (`cliSendCommand`'s
    /// list in redis-cli.c: reports such as `INFO` and `CLIENT LIST` are text, not values to paste back).
    static func printsAsLines(_ arguments: [[UInt8]]) -> Bool {
        let words = arguments.prefix(2).map { String(decoding: OrderedCommands.asciiUppercased($0), as: UTF8.self) }
        let second = words.count > 1 ? words[1] : ""
        switch words[0] {
        case "INFO", "LOLWUT": return true
        case "CLIENT": return second == "LIST" || second == "INFO"
        case "MEMORY": return second == "DOCTOR" || second == "MALLOC-STATS"
        case "LATENCY": return second == "DOCTOR" || second == "GRAPH"
        case "CLUSTER": return arguments.count == 2 && (second == "NODES" || second == "INFO")
        case "DEBUG": return second.hasPrefix("HTSTATS") || second == "CLIENT-EVICTION"
        default: return false
        }
    }

    /// A text reply's lines, CRLF or LF separated, ending in a newline; nil if the reply is not UTF-8 text (it then
    /// prints quoted, as any value).
    static func lines(_ bytes: [UInt8]) -> String? {
        guard let text = String(validating: bytes, as: UTF8.self) else { return nil }
        var lines = text.replacing("\r\n", with: "\n")
        if !lines.hasSuffix("\n") { lines += "\n" }
        return lines
    }

    /// Whether this is the server's QUIT (the shell's own is `:quit`).
    private func isQuit(_ spec: CommandSpec?, _ arguments: [[UInt8]]) -> Bool {
        spec == nil && arguments[0].count == 4 && OrderedCommands.asciiUppercased(arguments[0]) == Array("QUIT".utf8)
    }

    /// Prints the replies to the commands sent before a command that is about to run or fail here.
    /// - Returns: false if, with --bail, one of them failed: the script stops there, and the command after it
    ///   must neither run nor report anything.
    fileprivate func catchUp(origin: Origin) -> Bool {
        guard backend.isRemote else { return true }
        let failuresBefore = failedCommands
        receivePending()
        if bail, case .script = origin, failedCommands > failuresBefore { return false }
        return true
    }

    /// A server reply as the shell's reply. `+OK` is OK; other status replies (`PONG`) print as they are, as
    /// redis-cli prints them (as a string in JSON).
    fileprivate func reply(from received: RESPValue, topLevel: Bool) -> Reply {
        switch received {
        case .simpleString("OK"): return .ok
        case .simpleString(let text): return topLevel && format == .json ? .value(Array(text.utf8)) : .text(text)
        case .error(let text): return .text("(error) " + text)  // inside an array
        case .integer(let number): return .integer(number)
        case .bulkString(let bytes): return .value(bytes)
        case .null: return .null
        case .array(let items): return .array(items.map { reply(from: $0, topLevel: false) })
        case .map(let pairs): return .array(pairs.flatMap { [reply(from: $0.0, topLevel: false), reply(from: $0.1, topLevel: false)] })
        case .boolean(let value): return .integer(value ? 1 : 0)
        case .number(let text): return .text(text)
        }
    }
}

/// The width of the terminal `fd` is, or 80 columns when it is none (a pipe, a file).
public func terminalWidth(_ fd: Int32) -> Int {
    var size = winsize()
    guard isatty(fd) == 1, ioctl(fd, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 else { return 80 }
    return Int(size.ws_col)
}
