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

    @OptionGroup var encryption: EncryptionKeyOption

    @Argument(help: ArgumentHelp("Where to write the backup file.", valueName: "path"))
    var path: String

    @Flag(help: "Replace a file already at PATH (without it, an existing file is never replaced).")
    var force = false

    func execute() -> Int32 {
        Subcommands.reportingErrors {
            var options = KVStore.Options(compactionRatio: 0)
            options.keyring = try encryption.keyring()
            let store = try KVStore(directory: dataDirectory.resolved, options: options)
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

    @OptionGroup var encryption: EncryptionKeyOption

    @Flag(help: "Replace the store files in a data directory that is not empty.")
    var force = false

    func execute() -> Int32 {
        Subcommands.reportingErrors {
            let directory = dataDirectory.resolved
            let keyring = try encryption.keyring()
            let summary = try Subcommands.watched("kvsh restore") {
                try KVStore.restore(backup: backup, into: directory, force: force, keyring: keyring)
            }
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

    @OptionGroup var encryption: EncryptionKeyOption

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
            let keyring = try encryption.keyring()
            let lock = try DirectoryLock(directory: directory, allowReadOnly: !repair)
            defer { lock.release() }
            if let reason = lock.readOnlyReason { printError("note: checking read-only (\(reason))") }
            // A repair changes files as it goes: it is not stopped half way.
            let report = repair ? try StoreChecker.repair(directory: directory, salvage: salvage, keyring: keyring)
                                : try Subcommands.watched("kvsh check") { try StoreChecker.check(directory: directory, keyring: keyring) }
            print(ShellText.describe(check: report))
            return report.isClean ? ExitStatus.success : ExitStatus.commandFailed
        }
    }
}

struct KeygenCommand: KVSHSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Make an encryption key file for --encryption-key-file.",
        discussion: "Writes 32 random bytes to FILE with mode 0600; never replaces an existing file. Keep a copy of the key "
            + "somewhere safe and apart from the store and its backups: without it an encrypted store cannot be read.",
        version: KVSHCommand.version,
        helpNames: [.short, .long])

    @Argument(help: ArgumentHelp("Where to write the key.", valueName: "file"))
    var file: String

    func execute() -> Int32 {
        Subcommands.reportingErrors {
            let key = try EncryptionKey.generate(at: file)
            print("wrote a new key to \(file) (key id \(key.idHex)); back it up apart from the store")
            return ExitStatus.success
        }
    }
}

struct RekeyCommand: KVSHSubcommand {
    static let configuration = CommandConfiguration(
        commandName: "rekey",
        abstract: "Re-encrypt a store under a new key (or encrypt a plain store).",
        discussion: "Checkpoints the store into the new key and deletes every file sealed with the old one, the replication "
            + "backlog included. The store must not be open in another process: a running server rekeys itself online with "
            + "kvsh --connect HOST:PORT KVSH.REKEY NEW-KEY-FILE (a path on its machine), the shell with :rekey NEW-KEY-FILE. "
            + "Backups made before stay sealed with the old key: keep the old key as long "
            + "as you keep them. If it is interrupted, run it again with the same options.",
        version: KVSHCommand.version,
        helpNames: [.short, .long])

    @OptionGroup var dataDirectory: DataDirectoryOption

    @OptionGroup var encryption: EncryptionKeyOption

    @Option(name: .customLong("new-key-file"), help: ArgumentHelp("The key to seal the store with from now on (kvsh keygen FILE).",
                                                                  valueName: "file"))
    var newKeyFile: String

    func execute() -> Int32 {
        Subcommands.reportingErrors {
            let newKey = try EncryptionKey.load(from: newKeyFile)
            var options = KVStore.Options(compactionRatio: 0)
            // The new key opens the files an interrupted rekey already wrote.
            options.keyring = Keyring(current: try encryption.load(), others: [newKey])
            let store = try KVStore(directory: dataDirectory.resolved, options: options)
            defer { try? store.close() }
            if let reason = store.readOnlyReason { throw StoreError.readOnly(directory: store.directory, reason: reason) }
            let report = try store.rekey(to: newKey)
            try store.close()
            print(ShellText.describe(rekey: report, keyFile: newKeyFile, keyID: newKey.idHex), terminator: "")
            return ExitStatus.success
        }
    }
}
