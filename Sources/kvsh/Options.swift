import ArgumentParser
import KVShell
import KVStore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// kvsh's command line. Validation lives here; `main.swift` only acts on the result.
struct Options: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kvsh",
        abstract: "A durable key-value store and its shell.",
        discussion: """
            With COMMAND, runs that one command. With --file, runs a script. With a terminal on stdin and \
            stdout, starts the interactive shell; otherwise runs standard input as a script.
            Exit status: 0 if every command succeeded, 1 if any failed, 2 for usage errors and for a store \
            that cannot be opened.
            """,
        version: "1.0.0"
    )

    @Option(name: .customLong("data-dir"), help: ArgumentHelp(
        "Directory of the store; created if missing. Default: $KVSH_DATA_DIR, else ./kvsh-data.", valueName: "dir"))
    var dataDirectory: String?

    @Option(help: ArgumentHelp(
        "When writes reach the disk: always (fsync before each reply, shared by writes that arrive together), "
            + "everysec (fsync in the background every second) or none (the OS decides).", valueName: "policy"))
    var sync: KVStore.SyncPolicy = .always

    @Option(help: ArgumentHelp(
        "How replies print: human (default on a terminal), raw (default otherwise) or json.", valueName: "format"))
    var format: OutputFormat?

    @Flag(help: "Stop a script at the first failed command.")
    var bail = false

    @Option(help: ArgumentHelp("Run the commands in this file as a script.", valueName: "file"))
    var file: String?

    @Option(name: .customLong("compact-min-size"), help: ArgumentHelp(
        "Compact in the background only once the log is larger than this (e.g. 64M).", valueName: "size"))
    var compactMinimumSize = ByteSize(argument: "64M")!

    @Option(name: .customLong("compact-ratio"), help: ArgumentHelp(
        "Compact once the log is also this many times larger than the last image; 0 turns automatic compaction off.",
        valueName: "ratio"))
    var compactRatio: Double = 2

    @Option(name: .customLong("backup-dir"), help: ArgumentHelp(
        "Take periodic backups into this directory (with --backup-every).", valueName: "dir"))
    var backupDirectory: String?

    @Option(name: .customLong("backup-every"), help: ArgumentHelp(
        "How often to take a backup: 30s, 15m, 1h, 1d.", valueName: "interval"))
    var backupInterval: Interval?

    @Option(name: .customLong("backup-keep"), help: ArgumentHelp(
        "How many periodic backups to keep (the newest).", valueName: "n"))
    var backupKeep = 24

    @Argument(parsing: .captureForPassthrough, help: ArgumentHelp(
        "One command to run, such as: SET greeting \"hello world\"", valueName: "command"))
    var command: [String] = []

    func validate() throws {
        // The command captures everything from its first word on (so `SET k -5` works); a first word that looks
        // like an option is one the parser did not know.
        if let first = command.first, first.hasPrefix("-") {
            switch first {
            case "-h", "--help", "-help": throw CleanExit.helpRequest(self)
            case "--version": throw CleanExit.message(Self.configuration.version)
            default: throw ValidationError("unknown option '\(first)'")
            }
        }
        if file != nil && !command.isEmpty {
            throw ValidationError("give either --file or a command, not both")
        }
        if let directory = dataDirectory, directory.isEmpty {
            throw ValidationError("--data-dir needs a directory path")
        }
        if (backupDirectory == nil) != (backupInterval == nil) {
            throw ValidationError("--backup-dir and --backup-every go together")
        }
        if backupKeep < 1 { throw ValidationError("--backup-keep must be at least 1") }
        if compactRatio < 0 { throw ValidationError("--compact-ratio must be 0 (off) or more") }
    }

    var resolvedDataDirectory: String { resolveDataDirectory(dataDirectory) }

    var storeOptions: KVStore.Options {
        KVStore.Options(syncPolicy: sync, compactionMinimumLogBytes: compactMinimumSize.bytes, compactionRatio: compactRatio,
                        warningHandler: { printError("warning: \($0)") })
    }
}

/// `--data-dir` if given, else `$KVSH_DATA_DIR`, else `./kvsh-data`.
func resolveDataDirectory(_ option: String?) -> String {
    if let option { return option }
    if let fromEnvironment = getenv("KVSH_DATA_DIR"), fromEnvironment.pointee != 0 { return String(cString: fromEnvironment) }
    return "kvsh-data"
}

extension KVStore.SyncPolicy: ExpressibleByArgument {}
extension OutputFormat: ExpressibleByArgument {}
