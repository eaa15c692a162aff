// kvsh: parse flags, open the store, pick a mode (one-shot, script, interactive), run, exit.
// Everything else lives in the KVShell and KVStore modules.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVShell
import KVStore

/// Exit statuses: 0 every command succeeded, 1 some command failed, 2 usage error or the store could not open.
enum ExitStatus {
    static let success: Int32 = 0
    static let commandFailed: Int32 = 1
    static let unusable: Int32 = 2
}

func printError(_ message: String) {
    let line = Array("kvsh: \(message)\n".utf8)
    line.withUnsafeBytes { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
}

let options: Options
do {
    options = try Options.parse()
} catch {
    if Options.exitCode(for: error) == .success {  // --help, --version
        print(Options.fullMessage(for: error))
        exit(ExitStatus.success)
    }
    printError("\(Options.message(for: error)) (see kvsh --help)")
    exit(ExitStatus.unusable)
}

let interactive = options.command.isEmpty && options.file == nil && isatty(STDIN_FILENO) == 1 && isatty(STDOUT_FILENO) == 1
let store: KVStore
do {
    store = try KVStore(directory: options.resolvedDataDirectory, syncPolicy: options.sync)
} catch {
    printError("\(error)")
    exit(ExitStatus.unusable)
}
if let tail = store.openReport.tornTail {
    printError("warning: \(tail)")
}

let session = Session(store: store, format: options.format ?? (isatty(STDOUT_FILENO) == 1 ? .human : .raw))
session.bail = options.bail
var status = ExitStatus.success

if !options.command.isEmpty {
    session.execute(arguments: options.command.map { Array($0.utf8) }, origin: .oneShot)
    session.flush()
} else if interactive {
    runInteractive(session: session, store: store)
} else {
    do {
        if let file = options.file {
            try session.source(file)
        } else {
            try ScriptRunner.run(fd: STDIN_FILENO, name: nil, session: session)
        }
    } catch {
        printError("\(error)")
        status = ExitStatus.commandFailed
    }
}

store.close()
if !interactive && session.failedCommands > 0 { status = ExitStatus.commandFailed }
exit(status)
