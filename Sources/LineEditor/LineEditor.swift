import CLibEdit

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What one call to ``LineEditor/readLine(prompt:)`` produced.
public enum LineEditorEvent: Equatable, Sendable {
    /// A line the user entered, without its trailing newline.
    case line(String)
    /// Ctrl-C: the line being typed was dropped; the caller should prompt again.
    case interrupted
    /// Ctrl-D on an empty line, or the terminal hung up: no more input will come.
    case endOfInput
}

/// Why a ``LineEditor`` could not be created.
public enum LineEditorError: Error, CustomStringConvertible, Equatable, Sendable {
    /// `el_init` returned NULL.
    case editLineInitFailed
    /// `history_init` returned NULL.
    case historyInitFailed
    /// Configuring libedit failed; the associated value names the step.
    case configurationFailed(String)
    /// Installing the SIGINT handler failed with the given errno.
    case signalHandlerFailed(errno: Int32)

    public var description: String {
        switch self {
        case .editLineInitFailed:
            return "line editor: el_init failed"
        case .historyInitFailed:
            return "line editor: history_init failed"
        case .configurationFailed(let step):
            return "line editor: could not configure libedit (\(step))"
        case .signalHandlerFailed(let code):
            return "line editor: could not install the SIGINT handler: \(String(cString: strerror(code)))"
        }
    }
}

/// An interactive line editor on the process's terminal, backed by libedit: emacs key bindings,
/// history (optionally persisted to a file), Tab completion and Ctrl-C handling.
///
/// Use it only when standard input and output are terminals; on pipes libedit turns editing off and
/// reads one byte per system call.
///
/// Creating an editor changes process-wide state: it sets the `LC_CTYPE` locale from the environment
/// (so UTF-8 input works) and replaces the SIGINT handler with one that does nothing, so that Ctrl-C
/// interrupts ``readLine(prompt:)`` instead of ending the process. The previous SIGINT handler is put
/// back when the editor is deinitialized. Use one editor at a time, from one thread.
public final class LineEditor {
    private let editLine: OpaquePointer
    private let history: OpaquePointer
    /// Where history is persisted; nil when persistence is off.
    private let historyPath: String?
    private let completions: (String) -> [String]
    /// The current prompt, owned by the editor: libedit's prompt callback returns this pointer, so it
    /// must stay valid while `el_gets` runs.
    private var promptCString: UnsafeMutablePointer<CChar>? = strdup("")
    private var previousSIGINT = sigaction()
    private var installedSIGINT = false

    /// Creates an editor on the process's standard input, output and error.
    ///
    /// - Parameters:
    ///   - programName: The program name given to libedit (`el_init`). `~/.editrc` is not read.
    ///   - historyFile: The file history is loaded from now and saved to on every
    ///     ``addToHistory(_:)``. `nil` or `"/dev/null"` disables persistent history. A missing file is
    ///     not an error.
    ///   - historyLimit: The most history entries kept in memory and in the file (at least 1); the
    ///     oldest entries are dropped first.
    ///   - completions: Given the text before the cursor, returns the candidate words that could replace
    ///     the word being typed (the last blank-separated word; the whole text if it has no blank). On
    ///     Tab the editor inserts their longest common prefix; with one candidate it inserts it plus a
    ///     space; with several it also lists them; with none it beeps.
    /// - Throws: ``LineEditorError`` if libedit cannot be initialized or configured.
    public init(programName: String, historyFile: String?, historyLimit: Int = 1000,
                completions: @escaping (String) -> [String]) throws {
        // Without a locale libedit drops non-ASCII input silently; must happen before el_init.
        _ = clibedit_setlocale_ctype()

        guard let el = el_init(programName, clibedit_stdin(), clibedit_stdout(), clibedit_stderr()) else {
            throw LineEditorError.editLineInitFailed
        }
        guard let hist = history_init() else {
            el_end(el)
            throw LineEditorError.historyInitFailed
        }
        self.editLine = el
        self.history = hist
        if let historyFile, historyFile != "/dev/null", !historyFile.isEmpty {
            self.historyPath = historyFile
        } else {
            self.historyPath = nil
        }
        self.completions = completions

        // From here on deinit cleans up (el_end, history_end) if a step below throws.
        let limit = Int32(clamping: max(historyLimit, 1))
        guard clibedit_history_setsize(hist, limit) == 0 else {
            throw LineEditorError.configurationFailed("history size")
        }
        guard clibedit_history_setunique(hist, 1) == 0 else {
            throw LineEditorError.configurationFailed("history unique")
        }
        if let historyPath {
            // -1 means the file is missing or unreadable: start with an empty history.
            _ = clibedit_history_load(hist, historyPath)
        }

        guard clibedit_set_clientdata(el, Unmanaged.passUnretained(self).toOpaque()) == 0 else {
            throw LineEditorError.configurationFailed("client data")
        }
        guard clibedit_set_prompt(el, { el in lineEditor(for: el)?.promptPointer ?? emptyPrompt() }) == 0 else {
            throw LineEditorError.configurationFailed("prompt")
        }
        guard clibedit_set_editor(el, "emacs") == 0 else {
            throw LineEditorError.configurationFailed("emacs mode")
        }
        // EL_SIGNAL: libedit restores the terminal on fatal signals and redraws on window resizes.
        guard clibedit_set_signal(el, 1) == 0 else {
            throw LineEditorError.configurationFailed("signal handling")
        }
        guard clibedit_set_hist(el, hist) == 0 else {
            throw LineEditorError.configurationFailed("history")
        }
        guard clibedit_add_function(el, "line-editor-complete", "Complete the word before the cursor",
                                    { el, _ in lineEditor(for: el)?.complete() ?? UInt8(CC_ERROR) }) == 0,
              clibedit_bind(el, "^I", "line-editor-complete") == 0 else {
            throw LineEditorError.configurationFailed("Tab completion")
        }

        // No SA_RESTART: Ctrl-C must make el_gets return (count -1, EINTR) rather than resume reading.
        guard clibedit_install_sigint_handler(&previousSIGINT) == 0 else {
            throw LineEditorError.signalHandlerFailed(errno: errno)
        }
        installedSIGINT = true
    }

    deinit {
        // el_end restores the terminal settings.
        el_end(editLine)
        history_end(history)
        if installedSIGINT {
            _ = clibedit_restore_sigint_handler(&previousSIGINT)
        }
        free(promptCString)
    }

    /// Shows `prompt` and reads one line with editing, history (Up/Down) and Tab completion.
    ///
    /// The line is not added to history; call ``addToHistory(_:)`` for that. After
    /// ``LineEditorEvent/interrupted`` and after Ctrl-D the editor has already moved the terminal to a
    /// fresh line, and the next call starts with an empty line.
    ///
    /// Ctrl-C is only seen while this call waits for a key: one pressed while the caller is busy between
    /// calls is ignored (the process is not interrupted), and, rarely, one arriving in the same instant as
    /// other keys can be lost, in which case pressing it again works.
    ///
    /// - Returns: ``LineEditorEvent/line(_:)`` with the text (trailing newline removed),
    ///   ``LineEditorEvent/interrupted`` after Ctrl-C, or ``LineEditorEvent/endOfInput`` after Ctrl-D on
    ///   an empty line or a hang-up.
    public func readLine(prompt: String) -> LineEditorEvent {
        // libedit only calls the prompt callback inside el_gets, so swapping the pointer here is safe.
        // If the copy fails (out of memory) the previous prompt stays.
        if let newPrompt = strdup(prompt) {
            free(promptCString)
            promptCString = newPrompt
        }

        var count: Int32 = 0
        // libedit reports some failures (read(2) returning 0, a failed switch to raw mode) as count -1
        // without setting errno; clear it so a stale EINTR cannot turn them into an endless .interrupted.
        errno = 0
        let result = el_gets(editLine, &count)
        // errno is stale at EOF, so decide by count first.
        if count < 0 {
            if errno == EINTR {
                // Drop the half-typed line and any editing state with it (el_gets also clears its buffer
                // when it starts, but that is an implementation detail), and move the terminal to a
                // fresh line: with echo off nothing showed the ^C.
                el_reset(editLine)
                _ = fputs("\n", clibedit_stdout())
                _ = fflush(clibedit_stdout())
                return .interrupted
            }
            return .endOfInput
        }
        guard let result, count > 0 else {
            // Ctrl-D: libedit echoes "^D" and leaves the cursor after it; end the line so whatever the
            // caller prints next starts on a fresh line.
            _ = fputs("\n", clibedit_stdout())
            _ = fflush(clibedit_stdout())
            return .endOfInput
        }
        // The buffer belongs to libedit and is reused by the next call: copy it now.
        var bytes = Array(UnsafeBufferPointer(start: UnsafeRawPointer(result).assumingMemoryBound(to: UInt8.self),
                                              count: Int(count)))
        if bytes.last == UInt8(ascii: "\n") {
            bytes.removeLast()
        }
        return .line(String(decoding: bytes, as: UTF8.self))
    }

    /// Adds `line` to the history and, if a history file is set, saves the file at once with mode 0600.
    ///
    /// Empty and blank lines are ignored, and a line equal to the previous entry is not added again.
    /// Saving failures are ignored: history is a convenience and must not break the shell.
    public func addToHistory(_ line: String) {
        guard line.contains(where: { !$0.isWhitespace }) else { return }
        _ = clibedit_history_enter(history, line)
        guard let historyPath else { return }
        // Create the file 0600 ourselves so it is never readable by others, even briefly.
        let fd = open(historyPath, O_WRONLY | O_CREAT | O_CLOEXEC, mode_t(0o600))
        if fd >= 0 {
            _ = close(fd)
        }
        _ = clibedit_history_save(history, historyPath)
        // An existing file may have had looser permissions.
        _ = chmod(historyPath, mode_t(0o600))
    }

    // MARK: - Callbacks

    fileprivate var promptPointer: UnsafeMutablePointer<CChar>? {
        promptCString
    }

    /// Tab: replaces the word before the cursor with the candidates' longest common prefix.
    fileprivate func complete() -> UInt8 {
        guard let info = el_line(editLine) else { return UInt8(CC_ERROR) }
        let start = info.pointee.buffer
        let cursor = info.pointee.cursor
        guard let start, let cursor else { return UInt8(CC_ERROR) }
        let length = start.distance(to: cursor)
        let before = String(decoding: UnsafeRawBufferPointer(start: start, count: max(length, 0)),
                            as: UTF8.self)

        let candidates = completions(before)
        guard !candidates.isEmpty else { return UInt8(CC_ERROR) }

        let word = before.lastIndex(of: " ").map { String(before[before.index(after: $0)...]) } ?? before
        let common = longestCommonPrefix(candidates)
        let single = Set(candidates).count == 1
        let replacement = single ? common + " " : common

        if replacement.hasPrefix(word) {
            let rest = String(replacement.dropFirst(word.count))
            if !rest.isEmpty, el_insertstr(editLine, rest) != 0 {
                return UInt8(CC_ERROR)
            }
        } else if common.count >= word.count {
            // The completer matched differently (e.g. ignoring case): replace the word as a whole.
            el_deletestr(editLine, Int32(clamping: word.unicodeScalars.count))
            if el_insertstr(editLine, replacement) != 0 {
                return UInt8(CC_ERROR)
            }
        }

        if single {
            return UInt8(CC_REFRESH)
        }
        listCandidates(Array(Set(candidates)).sorted())
        return UInt8(CC_REDISPLAY)
    }

    /// Prints the candidates in columns below the line; CC_REDISPLAY then redraws prompt and line.
    private func listCandidates(_ candidates: [String]) {
        let out = clibedit_stdout()
        let terminalWidth = Int(clibedit_get_columns(editLine))
        let width = terminalWidth > 0 ? terminalWidth : 80
        let cell = (candidates.map(\.count).max() ?? 0) + 2
        let perRow = max(1, width / max(cell, 1))
        var text = "\n"
        for (index, candidate) in candidates.enumerated() {
            let last = index == candidates.count - 1 || (index + 1) % perRow == 0
            text += last ? candidate + "\n" : candidate + String(repeating: " ", count: cell - candidate.count)
        }
        _ = fputs(text, out)
        _ = fflush(out)
    }
}

private func longestCommonPrefix(_ words: [String]) -> String {
    guard var prefix = words.first.map(Array.init) else { return "" }
    for word in words.dropFirst() {
        var matched = 0
        for (a, b) in zip(prefix, word) {
            guard a == b else { break }
            matched += 1
        }
        prefix.removeLast(prefix.count - matched)
    }
    return String(prefix)
}

/// Finds the editor an EditLine belongs to, through EL_CLIENTDATA (no globals).
private func lineEditor(for el: OpaquePointer?) -> LineEditor? {
    guard let el, let data = clibedit_get_clientdata(el) else { return nil }
    return Unmanaged<LineEditor>.fromOpaque(data).takeUnretainedValue()
}

/// A prompt for the case that should not happen (no editor or no prompt): libedit must never get NULL.
private func emptyPrompt() -> UnsafeMutablePointer<CChar> {
    // libedit only reads the prompt string; the literal is static and NUL-terminated.
    UnsafeMutableRawPointer(mutating: ("" as StaticString).utf8Start).assumingMemoryBound(to: CChar.self)
}
