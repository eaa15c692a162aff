#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import KVCommands
import RESP
import Synchronization

/// Redis's slow log: the last `maxLength` commands that took at least `threshold` microseconds, newest first.
///
/// Only a command that is slow takes the lock (the threshold is checked first, without it), so the log costs the
/// other commands one comparison.
final class SlowLog: Sendable {
    /// Redis's `slowlog-log-slower-than` (µs): negative turns the log off, 0 logs every command.
    let threshold: Int
    /// Redis's `slowlog-max-len`.
    let maxLength: Int

    /// Redis's limits on what an entry keeps of the command: 32 arguments, 128 bytes of each.
    static let maxArguments = 32
    static let maxArgumentBytes = 128

    struct Entry: Sendable {
        let id: Int
        let time: Int
        let microseconds: Int
        let arguments: [[UInt8]]
        let clientAddress: String
        let clientName: [UInt8]
    }

    private let state = Mutex<(entries: [Entry], nextID: Int)>(([], 0))

    init(threshold: Int, maxLength: Int) {
        self.threshold = threshold
        self.maxLength = max(0, maxLength)
    }

    /// Whether a command that took `microseconds` belongs in the log.
    @inline(__always)
    func isSlow(microseconds: UInt64) -> Bool {
        threshold >= 0 && microseconds >= UInt64(threshold)
    }

    func add(_ arguments: [[UInt8]], microseconds: UInt64, client: ClientState) {
        let kept = Self.truncated(CommandTable.isSensitive(arguments) ? Self.redacted(arguments) : arguments)
        let now = Int(time(nil))
        state.withLock { state in
            let entry = Entry(id: state.nextID, time: now, microseconds: Int(microseconds), arguments: kept,
                              clientAddress: client.address, clientName: client.name ?? [])
            state.nextID += 1
            state.entries.insert(entry, at: 0)
            if state.entries.count > maxLength { state.entries.removeLast(state.entries.count - maxLength) }
        }
    }

    /// A command that carries a secret (AUTH, HELLO ... AUTH, ACL SETUSER), as Redis keeps it out of the slow log:
    /// its name (and subcommand) kept, every other argument `(redacted)`.
    static func redacted(_ arguments: [[UInt8]]) -> [[UInt8]] {
        let name = String(decoding: arguments.first ?? [], as: UTF8.self).uppercased()
        let kept = ["ACL", "CONFIG", "SENTINEL"].contains(name) ? 2 : 1
        return arguments.enumerated().map { $0.offset < kept ? $0.element : Array("(redacted)".utf8) }
    }

    /// As Redis's `slowlogCreateEntry`: past 31 arguments the 32nd says how many more there were; an argument longer
    /// than 128 bytes keeps those and says how many more it had.
    static func truncated(_ arguments: [[UInt8]]) -> [[UInt8]] {
        var kept: [[UInt8]] = []
        let count = min(arguments.count, maxArguments)
        for index in 0..<count {
            if index == maxArguments - 1 && arguments.count > maxArguments {
                kept.append(Array("... (\(arguments.count - maxArguments + 1) more arguments)".utf8))
                break
            }
            let argument = arguments[index]
            if argument.count > maxArgumentBytes {
                kept.append(Array(argument.prefix(maxArgumentBytes)) + Array("... (\(argument.count - maxArgumentBytes) more bytes)".utf8))
            } else {
                kept.append(argument)
            }
        }
        return kept
    }

    /// The newest `count` entries (all of them for a negative count), as SLOWLOG GET replies.
    func reply(count: Int) -> RESPValue {
        let entries = state.withLock { count < 0 ? $0.entries : Array($0.entries.prefix(count)) }
        return .array(entries.map { entry in
            .array([.integer(entry.id), .integer(entry.time), .integer(entry.microseconds),
                    .array(entry.arguments.map { RESPValue.bulkString($0) }),
                    .bulk(entry.clientAddress), .bulkString(entry.clientName)])
        })
    }

    var count: Int { state.withLock { $0.entries.count } }

    func reset() { state.withLock { $0.entries.removeAll() } }
}

/// Redis's latency monitor, for the events kvsh has: `fsync` (of the log) and `checkpoint`. Each event keeps its
/// latest sample, its all-time maximum and a history of 160 samples, one per second (the largest of that second),
/// in milliseconds, as Redis's `latency.c`.
final class LatencyMonitor: Sendable {
    /// Redis's `latency-monitor-threshold` (ms): events shorter than this are not recorded. kvsh defaults to 0, which
    /// here records every event (Redis takes 0 to mean off): fsyncs and checkpoints are few.
    let threshold: Int
    static let historyLength = 160

    struct Series: Sendable {
        var samples: [(time: Int, milliseconds: Int)] = []
        var maximum = 0
    }

    private let events = Mutex<[String: Series]>([:])

    init(threshold: Int) {
        self.threshold = max(0, threshold)
    }

    func record(_ event: String, duration: Duration) {
        let milliseconds = Int(duration.components.seconds) * 1000 + Int(duration.components.attoseconds / 1_000_000_000_000_000)
        guard milliseconds >= threshold else { return }
        let now = Int(time(nil))
        events.withLock { events in
            var series = events[event] ?? Series()
            if let last = series.samples.last, last.time == now {
                series.samples[series.samples.count - 1].milliseconds = max(last.milliseconds, milliseconds)
            } else {
                series.samples.append((now, milliseconds))
                if series.samples.count > Self.historyLength { series.samples.removeFirst() }
            }
            series.maximum = max(series.maximum, milliseconds)
            events[event] = series
        }
    }

    /// LATENCY LATEST: per event, its name, the time and latency of its latest sample, and its maximum.
    func latest() -> RESPValue {
        let events = self.events.withLock { $0 }
        return .array(events.keys.sorted().compactMap { name in
            guard let series = events[name], let last = series.samples.last else { return nil }
            return .array([.bulk(name), .integer(last.time), .integer(last.milliseconds), .integer(series.maximum)])
        })
    }

    /// LATENCY HISTORY event: its samples, oldest first, as `[time, latency]` pairs.
    func history(_ event: String) -> RESPValue {
        let series = events.withLock { $0[event] }
        return .array((series?.samples ?? []).map { .array([.integer($0.time), .integer($0.milliseconds)]) })
    }

    /// LATENCY RESET [event ...]: forgets those events (all of them without names); replies how many it forgot.
    func reset(_ names: [String]) -> Int {
        events.withLock { events in
            if names.isEmpty {
                defer { events.removeAll() }
                return events.count
            }
            return names.reduce(0) { count, name in count + (events.removeValue(forKey: name) == nil ? 0 : 1) }
        }
    }
}
