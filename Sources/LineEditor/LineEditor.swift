import CLibEdit
import Synchronization

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
/// (so UTF-8 input works); replaces the SIGINT handler with one that does nothing, so that a SIGINT
/// interrupts ``readLine(prompt:)`` instead of ending the process (Ctrl-C itself is a key while a line is edited);
/// and handles SIGWINCH and SIGCONT, to redraw the line at once after a resize or a resume. The previous handlers
/// are put back when the editor is deinitialized. Use one editor at a time, from one thread.
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
    private var previousSIGWINCH = sigaction()
    private var previousSIGCONT = sigaction()
    private var installedWakeHandlers = false
    /// Messages from background work, shown above the prompt; also wakes the reader on window resizes.
    public let announcer: LineEditorAnnouncer
    /// Set by the Ctrl-C key's function: the line el_gets returns next is the dropped one.
    private var interruptedByKey = false
    private let hints: ((String) -> String?)?
    /// Show hints (see `init`); the caller turns them off (`:hints off`, or a dumb terminal).
    public var hintsEnabled = true
    /// Columns of hint drawn after the end of the line, to erase before the next key is handled.
    private var hintShown = 0
    /// Ctrl-R's search owns the row while it runs: no hints.
    private var searching = false

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
    ///     space (none after a directory's trailing slash); with several it also lists them; with none it beeps.
    /// - Throws: ``LineEditorError`` if libedit cannot be initialized or configured.
    ///   - hints: Given the whole line, returns the text to show in grey after it while the cursor is at its end
    ///     and no key is waiting (`SET k` → ` value [NX|XX] ...`), or nil; cut to the row's width.
    ///   - announcer: Where background work posts messages (``LineEditorAnnouncer/announce(_:)``); they are shown
    ///     above the prompt, with the line being typed redrawn after them.
    public init(programName: String, historyFile: String?, historyLimit: Int = 1000,
                announcer: LineEditorAnnouncer = LineEditorAnnouncer(),
                hints: ((String) -> String?)? = nil,
                completions: @escaping (String) -> [String]) throws {
        self.announcer = announcer
        self.hints = hints
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

        // Ctrl-C is a key while a line is edited (the terminal's isig off), bound to dropping the line: a SIGINT
        // would put the terminal in cooked mode until el_gets returns, and keys typed in that instant would be echoed
        // onto the dropped line. Ctrl-Z, no longer a signal either, suspends through a key of its own.
        guard clibedit_edit_without_signal_keys(el) == 0,
              clibedit_add_function(el, "line-editor-interrupt", "Drop the line being typed (Ctrl-C)",
                                    { el, _ in lineEditor(for: el)?.interruptKey() ?? UInt8(CC_ERROR) }) == 0,
              clibedit_bind(el, "^C", "line-editor-interrupt") == 0,
              clibedit_add_function(el, "line-editor-suspend", "Suspend kvsh (Ctrl-Z)",
                                    { _, _ in kill(getpid(), SIGTSTP) == 0 ? UInt8(CC_NORM) : UInt8(CC_ERROR) }) == 0,
              clibedit_bind(el, "^Z", "line-editor-suspend") == 0 else {
            throw LineEditorError.configurationFailed("Ctrl-C and Ctrl-Z keys")
        }
        // Ctrl-R searches the history as bash and redis-cli do, prompting "(reverse-i-search)" (libedit's own says "bck:").
        guard clibedit_add_function(el, "line-editor-reverse-search", "Search the history backwards (Ctrl-R)",
                                    { el, _ in lineEditor(for: el)?.reverseSearch() ?? UInt8(CC_ERROR) }) == 0,
              clibedit_bind(el, "^R", "line-editor-reverse-search") == 0 else {
            throw LineEditorError.configurationFailed("Ctrl-R")
        }
        // Keys are read here, so that the reader also wakes for resizes and background messages (see readCharacter).
        guard clibedit_set_getcfn(el, { el, character in
            guard let character else { return -1 }
            return lineEditor(for: el)?.readCharacter(into: character) ?? -1
        }) == 0 else {
            throw LineEditorError.configurationFailed("character reader")
        }

        // No SA_RESTART: a SIGINT sent to kvsh (kill -INT) must make el_gets return (count -1, EINTR) rather than
        // resume reading.
        guard clibedit_install_sigint_handler(&previousSIGINT) == 0 else {
            throw LineEditorError.signalHandlerFailed(errno: errno)
        }
        installedSIGINT = true
        // A resize, and a resume after Ctrl-Z, wake the reader to redraw (libedit's own handlers only record them).
        wakeDescriptor.store(announcer.wakeWriteFD, ordering: .relaxed)
        var wake = sigaction()
        wake.__sigaction_handler.sa_handler = { signal in
            // Literals, not WakeReason's constants: nothing a handler touches may need initializing.
            var byte: UInt8 = signal == SIGWINCH ? 0x57 : 0x43
            let fd = wakeDescriptor.load(ordering: .relaxed)
            if fd >= 0 { _ = write(fd, &byte, 1) }  // async-signal-safe; the pipe is non-blocking
        }
        sigemptyset(&wake.sa_mask)
        wake.sa_flags = SA_RESTART
        guard sigaction(SIGWINCH, &wake, &previousSIGWINCH) == 0, sigaction(SIGCONT, &wake, &previousSIGCONT) == 0 else {
            throw LineEditorError.signalHandlerFailed(errno: errno)
        }
        installedWakeHandlers = true
    }

    deinit {
        // el_end restores the terminal settings.
        el_end(editLine)
        history_end(history)
        if installedSIGINT {
            _ = clibedit_restore_sigint_handler(&previousSIGINT)
        }
        if installedWakeHandlers {
            _ = sigaction(SIGWINCH, &previousSIGWINCH, nil)
            _ = sigaction(SIGCONT, &previousSIGCONT, nil)
            wakeDescriptor.store(-1, ordering: .relaxed)
        }
        free(promptCString)
    }

    /// Shows `prompt` and reads one line with editing, history (Up/Down) and Tab completion.
    ///
    /// The line is not added to history; call ``addToHistory(_:)`` for that. After
    /// ``LineEditorEvent/interrupted`` and after Ctrl-D the editor has already moved the terminal to a
    /// fresh line, and the next call starts with an empty line.
    ///
    /// Ctrl-C is a key here: it shows `^C`, ends the row and drops the line, and keys typed after it start the next
    /// line. One pressed while the caller is busy between calls reaches the process as SIGINT (the terminal is then
    /// in its normal mode); the handler installed at the time decides what it does.
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
        interruptedByKey = false
        announcer.setEditing(true)
        defer { announcer.setEditing(false) }
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
        if interruptedByKey {
            // Ctrl-C: the line came back with "^C" shown at its end and the cursor already on the next row.
            interruptedByKey = false
            return .interrupted
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
        // A directory (a path ending in "/") goes on with the name of what is in it: no blank after it.
        let replacement = single && !common.hasSuffix("/") ? common + " " : common

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

    /// Ctrl-C: shows `^C` at the end of the line and ends it, so that el_gets returns it and ``readLine(prompt:)``
    /// drops it. Keys typed after Ctrl-C wait in the terminal and start the next line, as in bash.
    fileprivate func interruptKey() -> UInt8 {
        interruptedByKey = true
        if let line = el_wline(editLine), let cursor = line.pointee.cursor, let end = line.pointee.lastchar {
            _ = el_cursor(editLine, Int32(clamping: cursor.distance(to: end)))
        }
        _ = el_insertstr(editLine, "^C")
        el_push(editLine, "\n")  // read before any key typed ahead: ends the line (the cursor goes to the next row)
        return UInt8(CC_REFRESH)
    }

    /// Ctrl-R: an incremental search back through the history, shown as bash shows it,
    /// `(reverse-i-search)'pattern': matching line`. Typing narrows the search, Backspace widens it, Ctrl-R again
    /// finds an older match; Enter runs the match, Ctrl-G or Ctrl-C gives the search up (the line as before), and any
    /// other key leaves the match on the line to edit.
    fileprivate func reverseSearch() -> UInt8 {
        searching = true
        defer { searching = false }
        let original = currentLine()
        var pattern = ""
        var match: String? = original
        var skip = 0  // matches passed over with Ctrl-R
        let out = clibedit_stdout()
        func show() {
            let failing = match == nil ? "failing " : ""
            _ = fputs("\r\u{1B}[K(\(failing)reverse-i-search)'\(pattern)': \(match ?? "")", out)
            _ = fflush(out)
        }
        func find() {
            var seen = 0
            var entry = clibedit_history_step(history, 1)
            match = nil
            while let line = entry.map({ String(cString: $0) }) {
                if line.contains(pattern) {
                    if seen == skip { match = line; return }
                    seen += 1
                }
                entry = clibedit_history_step(history, 0)
            }
        }
        show()
        var accept = false
        var key: wchar_t = 0
        while el_wgetc(editLine, &key) == 1 {
            switch key {
            case 0x12:  // Ctrl-R: an older match
                skip += 1
                find()
                if match == nil { skip -= 1; find() }
            case 0x7F, 0x08:  // Backspace
                if !pattern.isEmpty { pattern.removeLast() }
                skip = 0
                find()
            case 0x07, 0x03:  // Ctrl-G, Ctrl-C: give up, the line as it was
                replaceLine(with: original)
                return finishSearch()
            case 0x0D, 0x0A:  // Enter: run the match
                accept = true
            default:
                if key >= 0x20, let scalar = Unicode.Scalar(UInt32(key)) {
                    pattern.append(Character(scalar))
                    find()
                } else {
                    accept = true  // any other key ends the search with the match on the line to edit
                }
            }
            if accept { break }
            show()
        }
        replaceLine(with: match ?? original)
        if key == 0x0D || key == 0x0A { el_push(editLine, "\n") }
        return finishSearch()
    }

    /// After the search line: back to the start of the row, cleared, for libedit to redraw the prompt and line.
    private func finishSearch() -> UInt8 {
        let out = clibedit_stdout()
        _ = fputs("\r\u{1B}[K", out)
        _ = fflush(out)
        return UInt8(CC_REDISPLAY)
    }

    /// The whole line being edited.
    private func currentLine() -> String {
        guard let line = el_line(editLine), let start = line.pointee.buffer, let end = line.pointee.lastchar else { return "" }
        return String(decoding: UnsafeRawBufferPointer(start: start, count: max(start.distance(to: end), 0)), as: UTF8.self)
    }

    /// Replaces the line being edited with `text`, the cursor at its end.
    private func replaceLine(with text: String) {
        if let line = el_wline(editLine), let start = line.pointee.buffer, let cursor = line.pointee.cursor,
           let end = line.pointee.lastchar {
            _ = el_cursor(editLine, Int32(clamping: cursor.distance(to: end)))
            el_deletestr(editLine, Int32(clamping: start.distance(to: end)))
        }
        _ = el_insertstr(editLine, text)
    }

    /// Reads one character from the terminal for libedit (EL_GETCFN), waiting also on the announcer's pipe: a
    /// background message is shown above the prompt and a resize redraws, at once, without a key being pressed.
    /// - Returns: 1 with the character stored, 0 at end of input, -1 with errno set (EINTR: a SIGINT).
    fileprivate func readCharacter(into character: UnsafeMutablePointer<wchar_t>) -> Int32 {
        var decoding = mbstate_t()
        let input = fileno(clibedit_stdin())
        drawHint(unlessKeyWaitingOn: input)
        defer { eraseHint() }  // before libedit handles the key (or the end of input) and draws
        while true {
            var waiting = [pollfd(fd: input, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: announcer.wakeReadFD, events: Int16(POLLIN), revents: 0)]
            if poll(&waiting, announcer.wakeReadFD >= 0 ? 2 : 1, -1) < 0 {
                guard errno == EINTR else { return -1 }
                // A resize or a resume leaves a byte in the pipe; any other signal (SIGINT) drops the line.
                if announcer.wakeReadFD >= 0 {
                    var pipe = pollfd(fd: announcer.wakeReadFD, events: Int16(POLLIN), revents: 0)
                    if poll(&pipe, 1, 0) > 0 { continue }
                }
                errno = EINTR
                return -1
            }
            if waiting[1].revents & Int16(POLLIN) != 0 {
                wake()
                continue
            }
            guard waiting[0].revents != 0 else { continue }
            var byte: CChar = 0
            let count = read(input, &byte, 1)
            if count == 0 { return 0 }
            if count < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                return -1
            }
            var wide: wchar_t = 0
            switch mbrtowc(&wide, &byte, 1, &decoding) {
            case -2:  // (size_t)-2: the character goes on in the next byte
                continue
            case -1:  // (size_t)-1: not a character in this locale; drop the byte, as libedit does
                decoding = mbstate_t()
                continue
            default:
                character.pointee = wide
                return 1
            }
        }
    }

    /// Handles what woke the reader: shows the messages posted meanwhile above the prompt, takes a new window size,
    /// then redraws the prompt and the line being typed below.
    private func wake() {
        eraseHint()
        defer { drawHint(unlessKeyWaitingOn: fileno(clibedit_stdin())) }
        let reasons = announcer.drainWakeBytes()
        let messages = announcer.takeMessages()
        let resized = reasons.contains(WakeReason.resized) || reasons.contains(WakeReason.resumed)
        guard resized || !messages.isEmpty else { return }
        if resized { el_resize(editLine) }
        _ = fflush(clibedit_stdout())
        // To the start of the row and clear it; the messages; the editor then redraws on the row after them.
        announcer.writeToTerminal("\r\u{1B}[K" + messages.map { $0.hasSuffix("\n") ? $0 : $0 + "\n" }.joined())
        _ = clibedit_refresh(editLine)
    }

    /// Draws the hint for the line in grey after its end, the cursor staying where it is, when the cursor is at the
    /// end of a line of plain characters that fits one row with the hint, and no key is already waiting (typing
    /// fast or pasting draws nothing in between).
    private func drawHint(unlessKeyWaitingOn input: Int32) {
        guard hintsEnabled, !searching, hintShown == 0, let hints,
              let line = el_wline(editLine), let start = line.pointee.buffer, let cursor = line.pointee.cursor,
              let end = line.pointee.lastchar, cursor == end, start != end else { return }
        var waiting = pollfd(fd: input, events: Int16(POLLIN), revents: 0)
        guard poll(&waiting, 1, 0) == 0 else { return }
        let characters = UnsafeBufferPointer(start: start, count: start.distance(to: end))
        // Only where one character is one column: then the row's length is known.
        guard characters.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else { return }
        let text = String(decoding: characters.map { UInt8(truncatingIfNeeded: $0) }, as: UTF8.self)
        guard let hint = hints(text), !hint.isEmpty else { return }
        let used = strlen(promptCString ?? emptyPrompt()) + characters.count
        let room = Int(clibedit_get_columns(editLine)) - 1 - used
        guard room > 0 else { return }
        let shown = String(hint.prefix(room))
        let out = clibedit_stdout()
        _ = fputs("\u{1B}[90m" + shown + "\u{1B}[0m\u{1B}[\(shown.count)D", out)
        _ = fflush(out)
        hintShown = shown.count
    }

    /// Erases the hint drawn after the line (the cursor is at the line's end, so up to the end of the row).
    private func eraseHint() {
        guard hintShown > 0 else { return }
        hintShown = 0
        let out = clibedit_stdout()
        _ = fputs("\u{1B}[K", out)
        _ = fflush(out)
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

/// What a byte in the wake-up pipe means (the signal handlers write the same values as literals).
private enum WakeReason {
    static let message: UInt8 = 0x4D  // M
    static let resized: UInt8 = 0x57  // W
    static let resumed: UInt8 = 0x43  // C
}

/// The write end of the current editor's wake-up pipe, for the SIGWINCH and SIGCONT handlers; -1 when none.
private let wakeDescriptor = Atomic<Int32>(-1)

/// Where background work (periodic backups) posts messages for the person at the terminal. While a
/// ``LineEditor`` reads a line, a message is shown above the prompt and the line being typed is redrawn intact
/// below it; at any other time it is written to standard error at once. Safe from any thread.
public final class LineEditorAnnouncer: Sendable {
    private struct State {
        var editing = false
        var queued: [String] = []
    }

    private let state = Mutex(State())
    /// A non-blocking pipe whose bytes wake the reader; -1 if it could not be made (messages then print at once).
    let wakeReadFD: Int32
    let wakeWriteFD: Int32

    public init() {
        var ends: [Int32] = [-1, -1]
        if pipe(&ends) == 0 {
            for fd in ends {
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            }
            (wakeReadFD, wakeWriteFD) = (ends[0], ends[1])
        } else {
            (wakeReadFD, wakeWriteFD) = (-1, -1)
        }
    }

    deinit {
        if wakeReadFD >= 0 { close(wakeReadFD) }
        if wakeWriteFD >= 0 { close(wakeWriteFD) }
    }

    /// Shows `message` (a line, or several) to the person at the terminal: above the prompt while a line is being
    /// edited, else on standard error now.
    public func announce(_ message: String) {
        state.withLock { state in
            guard state.editing, wakeWriteFD >= 0 else {
                writeToTerminal(message.hasSuffix("\n") ? message : message + "\n")
                return
            }
            state.queued.append(message)
            var byte = WakeReason.message
            _ = write(wakeWriteFD, &byte, 1)
        }
    }

    /// Called by the editor around el_gets; messages still queued when editing ends print at once.
    func setEditing(_ editing: Bool) {
        state.withLock { state in
            state.editing = editing
            if !editing && !state.queued.isEmpty {
                writeToTerminal(state.queued.map { $0.hasSuffix("\n") ? $0 : $0 + "\n" }.joined())
                state.queued.removeAll()
            }
        }
    }

    func takeMessages() -> [String] {
        state.withLock { state in
            defer { state.queued.removeAll() }
            return state.queued
        }
    }

    /// Reads every byte waiting in the pipe.
    func drainWakeBytes() -> [UInt8] {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64)
        while wakeReadFD >= 0 {
            let count = chunk.withUnsafeMutableBytes { read(wakeReadFD, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            bytes += chunk[..<count]
        }
        return bytes
    }

    /// Writes `text` to standard error, whole (a terminal that went away loses it: nothing to report it to).
    func writeToTerminal(_ text: String) {
        let bytes = Array(text.utf8)
        var done = 0
        while done < bytes.count {
            let count = bytes.withUnsafeBytes { raw -> Int in
                guard let base = raw.baseAddress else { return 0 }
                return write(STDERR_FILENO, base + done, raw.count - done)
            }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { return }
            done += count
        }
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
