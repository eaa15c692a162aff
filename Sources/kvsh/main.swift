// kvsh: parse flags, open the store (or connect to a server), pick a mode (one-shot, script, interactive), run, exit.
// Everything else lives in the KVShell and KVStore modules.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import ArgumentParser
import KVCommands
import KVShell
import RESP
import KVStore
import LineEditor

/// Exit statuses: 0 every command succeeded, 1 some command failed (or the connection to the server was lost),
/// 2 usage error, the store could not open or the server could not be reached.
enum ExitStatus {
    static let success: Int32 = 0
    static let commandFailed: Int32 = 1
    static let unusable: Int32 = 2
    /// Work stopped by Ctrl-C, as a shell reports a command SIGINT ended.
    static let interrupted: Int32 = 130
}

func printError(_ message: String) {
    let line = Array("kvsh: \(message)\n".utf8)
    line.withUnsafeBytes { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
}

/// Parses the command line as `Command` (kvsh itself, or a subcommand's arguments after its name); on --help/--version
/// prints and exits 0, on a usage error exits 2 with one line: `kvsh: <message> (see kvsh [subcommand] --help)`.
func parseCommandLine<Command: ParsableCommand>(_ type: Command.Type, _ arguments: [String]) -> Command {
    do {
        return try type.parse(arguments)
    } catch {
        let isRoot = ObjectIdentifier(type) == ObjectIdentifier(KVSHCommand.self)
        if type.exitCode(for: error) == .success {  // --help, --version
            let message = type.fullMessage(for: error)
            // A subcommand's help is printed as a subcommand of kvsh's ("kvsh serve" in its usage line).
            print(isRoot || message == KVSHCommand.version ? message : KVSHCommand.helpMessage(for: type))
            exit(ExitStatus.success)
        }
        let name = isRoot ? "kvsh" : "kvsh \(type.configuration.commandName ?? "")"
        printError("\(type.message(for: error)) (see \(name) --help)")
        exit(ExitStatus.unusable)
    }
}

/// `kvsh help [SUBCOMMAND|COMMAND|@GROUP]`: kvsh's help, a subcommand's, or the shell's help for a command or group
/// (as `:help` prints it), on stdout. Opens no store.
func printHelp(_ arguments: [String]) -> Int32 {
    guard arguments.count <= 1 else {
        printError("help takes at most one subcommand or command name (see kvsh --help)")
        return ExitStatus.unusable
    }
    guard let name = arguments.first else {
        print(KVSHCommand.helpMessage())
        return ExitStatus.success
    }
    guard let subcommand = KVSHCommand.subcommand(named: name) else {
        if let text = CommandTable.help(for: name, width: terminalWidth(STDOUT_FILENO)) {
            print(text, terminator: "")
            return ExitStatus.success
        }
        let suggestion = CommandTable.suggestion(for: name).map { "; did you mean '\($0)'?" } ?? ""
        printError("no subcommand or command named '\(name)'\(suggestion) (see kvsh --help)")
        return ExitStatus.unusable
    }
    print(KVSHCommand.helpMessage(for: subcommand))
    return ExitStatus.success
}

// A closed standard descriptor would be reused by the next open(2) (the log, say), and replies meant for it
// would land there. Occupy 0 and 2 with /dev/null; a closed standard output is an error.
for fd in [STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO] where fcntl(fd, F_GETFD) == -1 && errno == EBADF {
    let placeholder = open("/dev/null", fd == STDIN_FILENO ? O_RDONLY : O_WRONLY)
    if fd == STDOUT_FILENO {
        printError("standard output is closed; give kvsh somewhere to write its replies (> /dev/null to discard them)")
        exit(ExitStatus.unusable)
    }
    _ = placeholder  // opened on the lowest free descriptor: `fd`
}

// Subcommands come first on the command line (`kvsh serve`, `kvsh backup PATH`, `kvsh restore`, `kvsh check`,
// `kvsh help serve`); anything else is the shell's command line, whose one-shot command captures everything from its
// first word (so no one-shot command can be named like a subcommand; after an option, `check` is a one-shot command).
let arguments = Array(CommandLine.arguments.dropFirst())
if let first = arguments.first {
    if let subcommand = KVSHCommand.subcommand(named: first) {
        exit(subcommand.parseAndExecute(Array(arguments.dropFirst())))
    }
    if first == "help" {
        exit(printHelp(Array(arguments.dropFirst())))
    }
    if arguments == ["-h"] {
        // -h is the host, as in redis-cli; alone, it was meant as help.
        print(KVSHCommand.helpMessage())
        print("Note: -h HOST connects to the kvsh server on HOST (as redis-cli -h); --help or -? prints this help.")
        exit(ExitStatus.success)
    }
}

let options = parseCommandLine(KVSHCommand.self, arguments)

// A script named by --file that cannot be opened is a usage error, found before any store is opened (or created).
if let file = options.file {
    do {
        close(try POSIX.openRegularFile(file))
    } catch StoreError.io(_, _, let code) {
        printError("cannot open '\(file)': \(String(cString: strerror(code))) (give --file a script that exists)")
        exit(ExitStatus.unusable)
    } catch {
        printError("\(error)")
        exit(ExitStatus.unusable)
    }
}

/// A one-shot command that needs no store (`kvsh :help`, `kvsh PING`) or that no store knows (it fails either way)
/// runs without opening one, so no data directory is created for it.
let needsStore = options.commandArguments.first.map { CommandTable.lookup($0)?.needsStore ?? false } ?? true

let interactive = options.commandArguments.isEmpty && options.file == nil && isatty(STDIN_FILENO) == 1 && isatty(STDOUT_FILENO) == 1
let format = options.format ?? (isatty(STDOUT_FILENO) == 1 ? .human : .raw)
let store: KVStore?
let session: Session
let banner: String

if let server = options.server {
    // Client mode: the same shell, its commands sent to a kvsh server.
    store = nil
    let client: RESPClient
    let credentials = options.credentials()
    let locator: PrimaryLocator?
    do {
        let tls = try options.clientTLS()  // read once, for every connection the session makes
        locator = options.locator.map { PrimaryLocator($0.source, tls: tls, credentials: credentials) }
        client = try locator?.connect() ?? RESPClient(host: server.host, port: server.port, tls: tls, credentials: credentials)
    } catch {
        printError("\(error)")  // cannot connect to HOST:PORT: reason
        exit(ExitStatus.unusable)
    }
    session = Session(client: client, format: format, locator: locator)
    banner = "connected to \(client.endpoint)"
} else if !needsStore {
    store = nil
    session = Session(format: format)
    banner = ""
} else {
    let opened: KVStore
    do {
        opened = try KVStore(directory: options.resolvedDataDirectory, options: try options.storeOptions())
    } catch {
        printError("\(error)")
        exit(ExitStatus.unusable)
    }
    if let tail = opened.openReport.tornTail {
        printError("warning: \(tail)")
    }
    if let reason = opened.readOnlyReason {
        printError("note: opened read-only (\(reason)); reads work, writes are refused")
    }
    store = opened
    session = Session(store: opened, format: format)
    banner = "\(opened.count) keys in \(opened.directory)"
}

/// Messages from background work: above the prompt in the interactive shell, else on stderr at once.
let announcer = LineEditorAnnouncer()
let backups = store.flatMap { store in
    options.store.backups.flatMap { directory in
        options.store.backupInterval.map { interval in
            BackupScheduler(store: store, directory: directory, interval: interval.duration) { event in
                // A backup taken is no news (`:stats` counts them); a failed one is.
                if event.failed { announcer.announce("kvsh: \(event.message)") }
            }
        }
    }
}
if let backups {
    session.statisticsAddendum = {
        let status = backups.status
        var text = "periodic backups: \(status.taken) taken, \(status.failed) failed, into \(backups.directory.path)\n"
        if let newest = status.newest { text += "newest backup:   \(newest)\n" }
        if let failure = status.lastFailure { text += "last failure:    \(failure)\n" }
        return text
    }
}

session.bail = options.bail
var status = ExitStatus.success

if !options.commandArguments.isEmpty {
    session.execute(arguments: options.commandArguments.map { Array($0.utf8) }, origin: .oneShot)
    session.flush()
} else if interactive {
    runInteractive(session: session, banner: banner, announcer: announcer)
} else {
    do {
        if let file = options.file {
            try session.source(file)
        } else {
            // A bulk load watched from a terminal (`kvsh < big.kv`, `gen | kvsh`): a bar on standard error, and
            // Ctrl-C undoes the load instead of leaving half of it.
            if isatty(STDERR_FILENO) == 1 && InterruptSignal.install() { session.interruptible = true }
            try session.runStandardInput()
        }
    } catch let interrupted as CommandError where session.interruptible {
        printError("\(interrupted)")
        status = ExitStatus.interrupted
    } catch {
        printError("\(error)")
        status = ExitStatus.commandFailed
    }
}

backups?.stop()
do {
    try store?.close()
} catch {
    // The final write or fsync failed (or an earlier one did): writes acknowledged since may not be on disk.
    printError("closing the store failed: \(error)")
    status = ExitStatus.commandFailed
}
session.close()
if !interactive && session.failedCommands > 0 { status = ExitStatus.commandFailed }
if session.connectionLost { status = ExitStatus.commandFailed }
exit(status)
