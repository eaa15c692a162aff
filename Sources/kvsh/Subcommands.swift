import ArgumentParser
import KVCommands
import KVShell
import RESP
import KVStore

/// A subcommand of kvsh (registered in `KVSHCommand.configuration.subcommands`): the first argument names it,
/// `execute` returns the exit status.
protocol KVSHSubcommand: ParsableCommand {
    /// Runs the command; returns kvsh's exit status (0, 1 or 2, as its help says).
    func execute() -> Int32
}

extension KVSHSubcommand {
    /// Parses `arguments` (those after the subcommand's name) and runs the command; exits 0 after --help, 2 after a
    /// usage error.
    static func parseAndExecute(_ arguments: [String]) -> Int32 {
        parseCommandLine(Self.self, arguments).execute()
    }
}

enum Subcommands {

    /// Runs `body`, turning a thrown error into one line on stderr and exit status 2 (130 after Ctrl-C).
    static func reportingErrors(_ body: () throws -> Int32) -> Int32 {
        do {
            return try body()
        } catch let error as StoreError {
            printError("\(error)")
            if case .interrupted = error { return ExitStatus.interrupted }
            return ExitStatus.unusable
        } catch {
            printError("\(error)")
            return ExitStatus.unusable
        }
    }
}

extension Subcommands {
    /// Runs long work with a progress bar on a terminal, Ctrl-C stopping it (the store left as it was).
    static func watched<T>(_ title: String, _ body: () throws -> T) throws -> T {
        InterruptSignal.install()
        do {
            return try LongOperation.run(title, body)
        } catch StoreError.interrupted(_, let undone) {
            // "kvsh: check was interrupted; it changed nothing"
            throw StoreError.interrupted(operation: title.split(separator: " ").last.map(String.init) ?? title, undone: undone)
        }
    }
}

struct BackupCommand: KVSHSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Write a consistent backup of a store to one checksummed file.",
        discussion: "The store must not be open in another process; inside a running shell use :backup PATH.",
        version: KVSHCommand.version,
        helpNames: [.short, .long])

    @OptionGroup var dataDirectory: DataDirectoryOption

    @Argument(help: ArgumentHelp("Where to write the backup file.", valueName: "path"))
    var path: String

    @Flag(help: "Replace a file already at PATH (without it, an existing file is never replaced).")
    var force = false

    func execute() -> Int32 {
        Subcommands.reportingErrors {
            let store = try KVStore(directory: dataDirectory.resolved, options: KVStore.Options(compactionRatio: 0))
            defer { try? store.close() }
            if let reason = store.readOnlyReason { printError("note: opened read-only (\(reason))") }
            let summary = try Subcommands.watched("kvsh backup") { try store.backup(to: path, replace: force) }
            print(ShellText.describe(backup: summary, path: path), terminator: "")
            return ExitStatus.success
        }
    }
}

struct RestoreCommand: KVSHSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Create a store from a backup file.",
        discussion: "Checks the whole backup first. Refuses a data directory that is not empty unless --force is given.",
        version: KVSHCommand.version,
        helpNames: [.short, .long])

    @Argument(help: ArgumentHelp("The backup file.", valueName: "backup"))
    var backup: String

    @OptionGroup var dataDirectory: DataDirectoryOption

    @Flag(help: "Replace the store files in a data directory that is not empty.")
    var force = false

    func execute() -> Int32 {
        Subcommands.reportingErrors {
            let directory = dataDirectory.resolved
            let summary = try Subcommands.watched("kvsh restore") { try KVStore.restore(backup: backup, into: directory, force: force) }
            print("restored \(summary.entries) keys (through sequence \(summary.sequence)) from \(backup) into \(directory)")
            return ExitStatus.success
        }
    }
}

struct CheckCommand: KVSHSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Verify every file of a store; optionally repair it.",
        discussion: "Exit status 0 when the store is clean, 1 when it is damaged, 2 when it cannot be checked, 130 when Ctrl-C stopped it.",
        version: KVSHCommand.version,
        helpNames: [.short, .long])

    @OptionGroup var dataDirectory: DataDirectoryOption

    @Flag(help: "Cut a torn log tail, keeping a copy of every changed file as *.broken.")
    var repair = false

    @Flag(help: "With --repair: also skip damaged records in the middle of the log, reporting what was lost.")
    var salvage = false

    func validate() throws {
        if salvage && !repair { throw ValidationError("--salvage goes with --repair") }
    }

    func execute() -> Int32 {
        Subcommands.reportingErrors {
            let directory = dataDirectory.resolved
            let lock = try DirectoryLock(directory: directory, allowReadOnly: !repair)
            defer { lock.release() }
            if let reason = lock.readOnlyReason { printError("note: checking read-only (\(reason))") }
            // A repair changes files as it goes: it is not stopped half way.
            let report = repair ? try StoreChecker.repair(directory: directory, salvage: salvage)
                                : try Subcommands.watched("kvsh check") { try StoreChecker.check(directory: directory) }
            print(ShellText.describe(check: report))
            return report.isClean ? ExitStatus.success : ExitStatus.commandFailed
        }
    }
}
