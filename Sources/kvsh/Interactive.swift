#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVCommands
import KVShell
import RESP
import LineEditor

/// The interactive shell: libedit line editing, persistent history and Tab completion over a session, on a store
/// or connected to a server. `banner` says which: "3 keys in DIR" or "connected to HOST:PORT".
/// A lost connection ends it (the session reports it and requests the exit; the exit status is then 1).
/// Messages posted to `announcer` show above the prompt.
func runInteractive(session: Session, banner: String, announcer: LineEditorAnnouncer) {
    // Ctrl-\ would otherwise reach the Swift runtime's crash handler, which waits on the terminal; like
    // other interactive shells, ignore it (Ctrl-D and :quit leave).
    signal(SIGQUIT, SIG_IGN)
    let editor: LineEditor
    do {
        editor = try LineEditor(programName: "kvsh", historyFile: historyFilePath(), historyLimit: 1000,
                                announcer: announcer, hints: CommandTable.hint(forLine:),
                                completions: { session.completions(forLine: $0) })
    } catch {
        printError("\(error); reading commands without line editing")
        try? ScriptRunner.run(fd: STDIN_FILENO, name: nil, session: session)
        return
    }
    // Ctrl-C stops long work (counted; in place of the editor's own handler, likewise without SA_RESTART).
    InterruptSignal.install()
    session.interruptible = true
    print("kvsh 1.0: \(banner). Type :help for help, Ctrl-D or :quit to leave.")
    // Hints need a terminal that moves the cursor and shows colour.
    let hintsPossible = getenv("TERM").map { String(cString: $0) }.map { !$0.isEmpty && $0 != "dumb" } ?? false
    while !session.quitRequested {
        editor.hintsEnabled = hintsPossible && session.hints
        switch editor.readLine(prompt: "kvsh> ") {
        case .line(let line):
            // As redis-cli: a line with a password (AUTH, HELLO ... AUTH, ...) runs but is kept out of the history,
            // in memory and in the file.
            if !CommandTable.isSensitive(line: line) { editor.addToHistory(line) }
            Array(line.utf8).withUnsafeBytes { _ = session.execute(line: $0, origin: .interactive) }
            session.flush()
        case .interrupted:
            continue
        case .endOfInput:
            return
        }
    }
}

/// `$KVSH_HISTFILE`, else `~/.kvsh_history`; nil (no history) without a home directory.
func historyFilePath() -> String? {
    if let path = getenv("KVSH_HISTFILE"), path.pointee != 0 { return String(cString: path) }
    guard let home = getenv("HOME"), home.pointee != 0 else { return nil }
    return String(cString: home) + "/.kvsh_history"
}
