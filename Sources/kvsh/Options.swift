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
    }

    var resolvedDataDirectory: String {
        if let dataDirectory { return dataDirectory }
        if let fromEnvironment = getenv("KVSH_DATA_DIR"), fromEnvironment.pointee != 0 { return String(cString: fromEnvironment) }
        return "kvsh-data"
    }
}

extension KVStore.SyncPolicy: ExpressibleByArgument {}
extension OutputFormat: ExpressibleByArgument {}
