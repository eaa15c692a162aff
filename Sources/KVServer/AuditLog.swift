#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import KVCommands
import RESP
import Synchronization

/// `kvsh serve --audit-log FILE`: one JSON line per command, with time, connection id, client address, user,
/// command name, key names and result (`ok` or the error code) — never values or passwords.
///
/// Off the hot path: the event loop formats the line and appends it to a buffer (one lock); a serial queue writes
/// the buffer out in batches. At most ``maxPendingLines`` wait: past that, lines are counted as dropped and the
/// count is written as a line of its own, so a slow disk never makes the server's memory grow.
public final class AuditLog: Sendable {
    private let descriptor: Int32
    private let pending = Mutex<(lines: [String], dropped: Int, scheduled: Bool)>(([], 0, false))
    private let queue = DispatchQueue(label: "kvsh.audit-log")
    static let maxPendingLines = 100_000

    /// Opens (creates, mode 0600) `path` for appending.
    public init(path: String) throws(AuditLogError) {
        descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else { throw AuditLogError(message: "cannot open the audit log \(path): \(String(cString: strerror(errno)))") }
    }

    deinit { close(descriptor) }

    /// Records `arguments` as run by `client`, with its reply.
    func record(_ arguments: [[UInt8]], reply: RESPValue, client: ClientState) {
        guard let first = arguments.first else { return }
        var keys: [[UInt8]] = []
        if let spec = CommandTable.lookup(first), !spec.isMeta {
            for index in spec.access.keyIndices(arguments.count) { keys.append(arguments[index]) }
        } else if arguments.count == 2, ["type", "ttl", "pttl"].contains(String(decoding: first, as: UTF8.self).lowercased()) {
            keys.append(arguments[1])
        }
        var result = "ok"
        if case .error(let text) = reply { result = String(text.prefix { $0 != " " }) }
        let json = { (bytes: [UInt8]) in MetricsHTTPHandler.jsonString(String(decoding: bytes, as: UTF8.self)) }
        let line = "{\"time\":\"\(JSONLogHandler.timestamp())\",\"id\":\(client.id),\"addr\":\(MetricsHTTPHandler.jsonString(client.address)),"
            + "\"user\":\(MetricsHTTPHandler.jsonString(client.user.name)),\"cmd\":\(json(first.prefix(64).map { $0 >= 65 && $0 <= 90 ? $0 + 32 : $0 })),"
            + "\"keys\":[\(keys.prefix(32).map(json).joined(separator: ","))],\"result\":\(MetricsHTTPHandler.jsonString(result))}\n"
        let schedule: Bool = pending.withLock { state in
            if state.lines.count >= Self.maxPendingLines {
                state.dropped += 1
            } else {
                state.lines.append(line)
            }
            if state.scheduled { return false }
            state.scheduled = true
            return true
        }
        if schedule { queue.async { self.flush() } }
    }

    /// Writes what is pending. Runs on the queue.
    private func flush() {
        let (lines, dropped): ([String], Int) = pending.withLock { state in
            defer { state = ([], 0, false) }
            return (state.lines, state.dropped)
        }
        var text = lines.joined()
        if dropped > 0 { text += "{\"time\":\"\(JSONLogHandler.timestamp())\",\"dropped\":\(dropped)}\n" }
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
            if written > 0 { bytes = bytes.dropFirst(written) } else if written < 0 && errno == EINTR { continue } else { break }
        }
    }

    /// Waits until everything recorded so far is written (server shutdown).
    public func drain() {
        queue.sync { flush() }
    }
}

public struct AuditLogError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}
