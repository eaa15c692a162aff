#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVStore

/// Runs commands against a store and prints their replies: the part of the shell shared by the interactive
/// loop, scripts and one-shot commands.
///
/// Replies are buffered. ``flush()`` first commits the store, so no reply that acknowledges a write leaves
/// the process before that write is as durable as the sync policy promises, and writes whose replies are
/// flushed together share one fsync. A session belongs to one thread.
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

    public let store: KVStore
    private let executor: CommandExecutor
    public var format: OutputFormat
    /// Print each command's duration (on standard error, so piped output stays clean).
    public var timing = false
    /// Stop scripts at the first failed command.
    public var bail = false
    public private(set) var quitRequested = false

    /// Commands that failed so far, including commits that failed (the exit status is 1 if any did).
    public var failedCommands: Int { failedToRun + writer.failures }
    private var failedToRun = 0

    private var output: [UInt8] = []
    /// Whether writes were made since replies were last handed to the writer.
    private var uncommitted = false
    private let writer: ReplyWriter
    private let errorFD: Int32
    private var sourceDepth = 0

    /// Buffered replies beyond this are sent without waiting for the input to pause. Small enough that the
    /// log is written in the background while commands go on, large enough that fsyncs stay few.
    static let outputFlushThreshold = 64 << 10
    static let maxSourceDepth = 16

    public init(store: KVStore, format: OutputFormat, outputFD: Int32 = STDOUT_FILENO, errorFD: Int32 = STDERR_FILENO) {
        self.store = store
        executor = CommandExecutor(store: store)
        self.format = format
        self.errorFD = errorFD
        writer = ReplyWriter(store: store, outputFD: outputFD, errorFD: errorFD)
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
    @discardableResult
    public func execute(arguments: [[UInt8]], origin: Origin) -> Bool {
        guard !arguments.isEmpty else { return true }
        let started = timing ? ContinuousClock.now : nil
        let reply: Reply
        do {
            reply = try dispatch(arguments)
        } catch {
            return fail(error, origin: origin)
        }
        format.append(reply, to: &output)
        if let started {
            let elapsed = ContinuousClock.now - started
            flush()
            writeError("(\(formatMilliseconds(elapsed)))\n")
        } else if output.count >= Self.outputFlushThreshold {
            startFlush()
        }
        return true
    }

    /// Commits the store and writes the buffered replies, returning once they are written. If the commit
    /// fails, the replies are withheld (they would acknowledge writes that are not durable) and the failure
    /// is reported.
    public func flush() {
        startFlush()
        writer.drain()
    }

    /// Like ``flush()``, but returns at once: a background queue commits and writes. Scripts use it before
    /// waiting for more input, so replies go out while the next lines are read and run.
    public func startFlush() {
        guard uncommitted || !output.isEmpty else { return }
        writer.send(output, commit: uncommitted)
        uncommitted = false
        output = []
        output.reserveCapacity(Self.outputFlushThreshold + 4096)
    }

    private func fail(_ error: Error, origin: Origin) -> Bool {
        failedToRun += 1
        let message = (error as? CommandError)?.message ?? "ERR \(error)"
        flush()  // replies before the error print before it
        switch origin {
        case .interactive: writeError("(error) \(message)\n")
        case .oneShot: writeError("kvsh: \(message)\n")
        case .script(nil, let line): writeError("kvsh: line \(line): \(message)\n")
        case .script(let name?, let line): writeError("kvsh: \(name): line \(line): \(message)\n")
        }
        return false
    }

    // MARK: Commands

    /// Runs one command and returns its reply, unformatted. Internal so tests can look at replies directly.
    func dispatch(_ arguments: [[UInt8]]) throws -> Reply {
        let name = arguments[0]
        guard let spec = CommandTable.lookup(name) else {
            throw CommandError.unknownCommand(String(decoding: name, as: UTF8.self), arguments: arguments.dropFirst())
        }
        guard spec.isMeta else {
            let outcome = try executor.execute(spec, arguments)
            uncommitted = uncommitted || outcome.wrote
            return outcome.reply
        }
        guard spec.arity.contains(arguments.count - 1) else { throw CommandError.wrongArity(spec) }
        return try runMeta(spec, arguments.dropFirst().map { String(decoding: $0, as: UTF8.self) })
    }

    private func runMeta(_ spec: CommandSpec, _ arguments: [String]) throws -> Reply {
        switch spec.id {
        case .help:
            guard let text = CommandTable.help(for: arguments.first) else {
                throw CommandError.other("no command named '\(arguments[0])' (type :help for the list)")
            }
            return .text(text)
        case .rebuild:
            guard let path = arguments.first else { return .text(Self.describe(rebuild: try store.rebuild())) }
            uncommitted = true
            let summary = try LogImporter.importLog(at: path, into: store)
            return .text(Self.describe(import: summary, keys: store.count))
        case .compact:
            flush()
            return .text(Self.describe(try store.checkpoint()))
        case .backup:
            let summary = try store.backup(to: arguments[0])
            return .text("backup written to \(arguments[0]): \(summary.entries) keys through sequence \(summary.sequence), "
                + "\(summary.bytes) bytes\n")
        case .check:
            flush()
            let report = try store.check()
            if !report.isClean { failedToRun += 1 }
            return .text(report.description)
        case .stats:
            return .text(Self.describe(store.statistics))
        case .source:
            try source(arguments[0])
            return .none
        case .timing:
            switch arguments[0].lowercased() {
            case "on": timing = true
            case "off": timing = false
            default: throw CommandError.badArgument(spec, arguments[0])
            }
            return .none
        case .format:
            guard let format = OutputFormat(rawValue: arguments[0].lowercased()) else {
                throw CommandError.badArgument(spec, arguments[0])
            }
            self.format = format
            return .none
        case .quit:
            quitRequested = true
            return .none
        case .set, .get, .delete, .exists, .keys, .scan, .range, .count, .dbsize:
            throw CommandError.other("\(spec.name) is not a meta-command")
        }
    }

    /// Runs a script file within this session (`:source`).
    public func source(_ path: String) throws {
        guard sourceDepth < Self.maxSourceDepth else {
            throw CommandError.other(":source nested more than \(Self.maxSourceDepth) deep (does a script source itself?)")
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw CommandError.other("cannot open '\(path)': \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        sourceDepth += 1
        defer { sourceDepth -= 1 }
        try ScriptRunner.run(fd: fd, name: path, session: self)
    }

    // MARK: Text for meta-commands

    static func describe(rebuild report: KVStore.ReplayReport) -> String {
        var text = "rebuilt from the log: \(report.keys) keys from \(report.records) records "
            + "(\(report.logBytes) bytes in \(report.logFiles) file\(report.logFiles == 1 ? "" : "s")) in \(formatMilliseconds(report.duration))\n"
        if let tail = report.tornTail { text += "warning: \(tail)\n" }
        return text
    }

    static func describe(import summary: LogImporter.Summary, keys: Int) -> String {
        var text = "rebuilt from \(summary.source) (\(summary.format)): \(summary.sets) sets, \(summary.deletes) deletes"
        if summary.skipped > 0 { text += ", \(summary.skipped) reads skipped" }
        text += " in \(formatMilliseconds(summary.duration)); the store holds \(keys) keys\n"
        if let tail = summary.tornTail { text += "warning: \(tail)\n" }
        return text
    }

    static func describe(_ report: KVStore.CheckpointReport) -> String {
        "compacted through sequence \(report.sequence): log \(report.logBytesBefore) bytes + image \(report.imageBytesBefore) bytes"
            + " -> image \(report.imageBytesAfter) bytes (\(report.keys) keys) + a new empty log, in \(formatMilliseconds(report.duration))"
            + " (commits waited \(formatMilliseconds(report.stall)))\n"
    }

    static func describe(_ stats: KVStore.Statistics) -> String {
        """
        keys:            \(stats.keys)
        key+value bytes: \(stats.payloadBytes)
        log file:        \(stats.logFile) (\(stats.logBytes) bytes)
        image:           \(stats.imageBytes) bytes (checkpoints by this process: \(stats.checkpoints))
        last sequence:   \(stats.lastSequence) (durable through \(stats.syncedSequence))
        sync policy:     \(stats.syncPolicy.rawValue) (\(stats.fsyncs) fsyncs)
        crc32c:          \(stats.hardwareCRC ? "hardware" : "software")

        """
    }

    // MARK: Output

    private func writeError(_ text: String) {
        writeAll(errorFD, Array(text.utf8))
    }
}

/// "1.234 ms"
func formatMilliseconds(_ duration: Duration) -> String {
    let (seconds, attoseconds) = duration.components
    let microseconds = seconds * 1_000_000 + attoseconds / 1_000_000_000_000
    let whole = microseconds / 1000
    let fraction = String(microseconds % 1000)
    return "\(whole).\(String(repeating: "0", count: 3 - fraction.count))\(fraction) ms"
}
