// Long work in the shell (issue 15, item 1): a progress bar on a terminal after half a second, nothing in pipes, and
// Ctrl-C stopping the work with the store as it was before the command.

import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

private let prompt = "kvsh> "
private let ctrlC = "\u{03}"

/// A Go StorageEngine log of `lines` SETs, big enough that importing it outlasts the bar's half second.
private func writeBigImport(_ sandbox: Sandbox, lines: Int = 150_000) throws -> String {
    var text = ""
    text.reserveCapacity(lines * 60)
    for number in 0..<lines { text += "{\"operation\":\"SET\",\"key\":\"import:\(number)\",\"value\":\"value \(number)\"}\n" }
    return try sandbox.write("big.json", text)
}

@Suite("Long work: progress and Ctrl-C", .timeLimit(.minutes(10)))
struct LongWorkTests {
    private func startShell(_ sandbox: Sandbox) throws -> TerminalSession {
        let shell = try sandbox.terminal()
        try shell.expect("kvsh 1.0", "no banner")
        try shell.expect(prompt, "no first prompt")
        try shell.waitUntilEditing()
        return shell
    }

    private func enter(_ shell: TerminalSession, _ line: String, expecting reply: String) throws {
        try shell.send(line + "\r")
        try shell.expect(reply, "after typing \(line)")
        try shell.expect(prompt, "no prompt after \(line)")
        try shell.waitUntilEditing()
    }

    @Test(":rebuild PATH shows a bar while it applies; Ctrl-C stops it, undoes what it applied, and the shell goes on")
    func rebuildShowsProgressAndCtrlCUndoesIt() throws {
        let sandbox = try Sandbox()
        _ = try writeBigImport(sandbox)
        let shell = try startShell(sandbox)
        try enter(shell, "SET import:7 mine", expecting: "OK")
        try shell.send(":rebuild big.json\r")
        try shell.expect(":rebuild  checking big.json  [", timeout: .seconds(120), "no progress bar while the import checks")
        try shell.expect("Ctrl-C cancels", "the bar does not say how to stop")
        try shell.expect(":rebuild  applying big.json  [", timeout: .seconds(240), "no progress bar while the import applies")
        try shell.expect("Ctrl-C cancels")
        try shell.send(ctrlC)
        try shell.expect("(error) ERR :rebuild was interrupted; the ", timeout: .seconds(60), "Ctrl-C did not stop the import")
        try shell.expect("operations it had applied were undone", "the message does not say what was undone")
        try shell.expect("the store is as it was before")
        try shell.expect(prompt, "no prompt after the interrupted :rebuild")
        try shell.waitUntilEditing()
        #expect(shell.isRunning)
        try enter(shell, "DBSIZE", expecting: "(integer) 1")
        try enter(shell, "GET import:7", expecting: "\"mine\"")
        try shell.send(":quit\r")
        #expect(shell.waitForExit() == .exited(0))
        // The undoing is durable: the store reopens as it was.
        let after = try sandbox.kvsh(["DBSIZE"])
        #expect(after.stdout == Array("1\n".utf8), "\(after.summary)")
    }

    @Test(":source stops at Ctrl-C between two lines and undoes the lines that ran")
    func sourceIsInterruptedAndUndone() throws {
        let sandbox = try Sandbox()
        var script = "SET first 1\nDEL keep\n"
        for number in 0..<400_000 { script += "SET script:\(number) \(number)\n" }
        _ = try sandbox.write("load.kvsh", script)
        let shell = try startShell(sandbox)
        try enter(shell, "SET keep 1", expecting: "OK")
        try shell.send(":format raw\r:source load.kvsh\r")
        try shell.expect(":source  running load.kvsh  [", timeout: .seconds(120), "no progress bar while the script runs")
        try shell.send(ctrlC)
        try shell.expect("(error) ERR :source was interrupted after line ", timeout: .seconds(60), "Ctrl-C did not stop the script")
        try shell.expect("were undone", "the message does not say what was undone")
        try shell.expect(prompt)
        try shell.waitUntilEditing()
        try enter(shell, "DBSIZE", expecting: "\r\n1\r\n")
        try enter(shell, "EXISTS first keep", expecting: "\r\n1\r\n")
    }

    @Test("kvsh check on a terminal shows the bar; Ctrl-C stops it, exit status 130")
    func checkSubcommandIsInterrupted() throws {
        let sandbox = try Sandbox()
        var script = ""
        for number in 0..<300_000 { script += "SET key:\(number) value-\(number)\n" }
        let load = try sandbox.run(["--data-dir", sandbox.dataDir, "--format", "raw"], input: Array(script.utf8), timeout: .seconds(240))
        #expect(load.termination == .exited(0), "\(load.summary)")
        let check = try TerminalSession(arguments: ["check", "--data-dir", sandbox.dataDir],
                                        environment: sandbox.environment(term: "xterm"), directory: sandbox.root)
        try check.expect("kvsh check  reading ", timeout: .seconds(120), "no progress bar while kvsh check reads")
        try check.expect("Ctrl-C cancels")
        try check.send(ctrlC)
        try check.expect("kvsh: check was interrupted; it changed nothing", timeout: .seconds(60))
        #expect(check.waitForExit(timeout: .seconds(30)) == .exited(130))
    }

    @Test("a bulk load piped in, watched from a terminal: a bar on standard error; Ctrl-C (which ends the writer too) undoes the load, exit 130")
    func pipedLoadIsInterrupted() throws {
        let sandbox = try Sandbox()
        #expect(try sandbox.kvsh(["SET", "kept", "before"]).termination == .exited(0))
        let kvsh = try KVSHBinary.path()
        // An endless writer that Ctrl-C ends too; the shell around them ignores it, to report kvsh's exit status.
        let pipeline = "trap '' INT; (trap - INT; exec awk 'BEGIN { for (i = 0; ; i++) print \"SET load:\" i \" v\" i }') | "
            + "\"$0\" --data-dir \"$1\" --format raw >/dev/null; echo \"kvsh exited $?\""
        let load = try TerminalSession(executable: "/bin/sh", arguments: ["-c", pipeline, kvsh, sandbox.dataDir],
                                       environment: sandbox.environment(term: "xterm"), directory: sandbox.root)
        try load.expect("loading  running standard input", timeout: .seconds(60), "no progress bar for a piped load")
        try load.expect("Ctrl-C cancels")
        try load.send(ctrlC)
        try load.expect("its writes were undone", timeout: .seconds(120))
        try load.expect("kvsh exited 130", timeout: .seconds(60))
        #expect(load.waitForExit(timeout: .seconds(60)) == .exited(0))
        let after = try sandbox.kvsh(["DBSIZE"])
        #expect(after.stdout == Array("1\n".utf8), "the load was not undone: \(after.summary)")
        #expect(try sandbox.kvsh(["GET", "kept"]).stdout == Array("before\n".utf8))
    }

    @Test("in a pipe, long work draws no bar on standard error")
    func noBarInPipes() throws {
        let sandbox = try Sandbox()
        _ = try writeBigImport(sandbox, lines: 60_000)
        let result = try sandbox.kvsh([], script: ":rebuild big.json\nDBSIZE\n")
        #expect(result.termination == .exited(0), "\(result.summary)")
        #expect(result.stderr.isEmpty, "stderr: \(escaped(result.stderr))")
        #expect(String(decoding: result.stdout, as: UTF8.self).hasSuffix("60000\n"), "\(result.summary)")
    }
}
