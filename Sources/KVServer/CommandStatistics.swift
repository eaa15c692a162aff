#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import KVCommands
import NIOCore
import Synchronization

/// The monotonic clock in nanoseconds (CLOCK_MONOTONIC through the vDSO: a few nanoseconds, no system call).
@inline(__always)
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
}

/// A log-linear histogram's bucket layout over whole microseconds, as HdrHistogram with 3 significant bits: exact
/// below 8 µs, then 8 buckets per power of two (each at most 12.5% wide), up to 2^40 µs. Every power of two is a
/// bucket boundary, so the Prometheus buckets (powers of two) are exact sums of these.
enum LatencyBuckets {
    static let count = 8 + 37 * 8

    @inline(__always)
    static func index(microseconds value: UInt64) -> Int {
        if value < 8 { return Int(value) }
        let exponent = 63 - value.leadingZeroBitCount  // 3 or more
        if exponent > 39 { return count - 1 }
        return 8 + (exponent - 3) * 8 + Int((value >> UInt64(exponent - 3)) & 7)
    }

    /// The smallest value in bucket `index` (`count` gives the end of the last bucket).
    static func lowerBound(_ index: Int) -> UInt64 {
        if index < 8 { return UInt64(index) }
        let exponent = (index - 8) / 8 + 3
        return UInt64(8 + (index - 8) % 8) << UInt64(exponent - 3)
    }

    /// The index of the first bucket at or above `2^power` µs.
    static func firstIndex(atPowerOfTwo power: Int) -> Int {
        power < 3 ? 1 << power : 8 + (power - 3) * 8
    }

    /// The value at `percentile` (0 to 100) of `counts`, as HdrHistogram reports it: the highest value equivalent to
    /// the bucket where the cumulative count reaches it (µs). 0 for an empty histogram.
    static func value(atPercentile percentile: Double, of counts: [UInt64]) -> UInt64 {
        let total = counts.reduce(0, +)
        guard total > 0 else { return 0 }
        let wanted = max(1, UInt64((percentile / 100 * Double(total)).rounded(.up)))
        var seen: UInt64 = 0
        for (index, count) in counts.enumerated() {
            seen += count
            if seen >= wanted { return lowerBound(index + 1) - 1 }
        }
        return lowerBound(count) - 1
    }
}

/// The names commands are counted under, each with a small integer ID. IDs are shared by every event loop;
/// GET and SET, which the in-place path runs, have fixed ones.
final class CommandNames: Sendable {
    static let shared = CommandNames()
    /// IDs at or above this are all counted as `other`.
    static let capacity = 128
    static let get = 0
    static let set = 1
    static let other = 2

    private let table = Mutex<(ids: [String: Int], names: [String])>((["get": 0, "set": 1, "other": 2], ["get", "set", "other"]))

    /// The ID of `name` (lowercase), registering it if new.
    func id(_ name: String) -> Int {
        table.withLock { table in
            if let id = table.ids[name] { return id }
            guard table.names.count < Self.capacity else { return Self.other }
            let id = table.names.count
            table.ids[name] = id
            table.names.append(name)
            return id
        }
    }

    func names() -> [String] { table.withLock { $0.names } }
}

/// One command's figures.
struct CommandFigures: Sendable, Equatable {
    var calls: UInt64 = 0
    var microseconds: UInt64 = 0
    var failed: UInt64 = 0
    var rejected: UInt64 = 0
    /// Calls by ``LatencyBuckets`` bucket.
    var histogram = [UInt64](repeating: 0, count: LatencyBuckets.count)

    mutating func add(_ other: CommandFigures, sign: Int = 1) {
        func combine(_ a: UInt64, _ b: UInt64) -> UInt64 { sign > 0 ? a &+ b : (a >= b ? a - b : 0) }
        calls = combine(calls, other.calls)
        microseconds = combine(microseconds, other.microseconds)
        failed = combine(failed, other.failed)
        rejected = combine(rejected, other.rejected)
        for index in histogram.indices { histogram[index] = combine(histogram[index], other.histogram[index]) }
    }
}

/// Every event loop's figures added up (or a difference of two such sums: since CONFIG RESETSTAT).
struct CommandStatisticsSnapshot: Sendable {
    var commands: [String: CommandFigures] = [:]
    var errors: [String: UInt64] = [:]
    var netInputBytes: UInt64 = 0
    var netOutputBytes: UInt64 = 0

    mutating func add(_ other: CommandStatisticsSnapshot, sign: Int = 1) {
        func combine(_ a: UInt64, _ b: UInt64) -> UInt64 { sign > 0 ? a &+ b : (a >= b ? a - b : 0) }
        for (name, figures) in other.commands {
            commands[name, default: CommandFigures()].add(figures, sign: sign)
        }
        for (code, count) in other.errors { errors[code] = combine(errors[code] ?? 0, count) }
        netInputBytes = combine(netInputBytes, other.netInputBytes)
        netOutputBytes = combine(netOutputBytes, other.netOutputBytes)
        if sign < 0 {
            commands = commands.filter { $0.value.calls > 0 || $0.value.failed > 0 || $0.value.rejected > 0 }
            errors = errors.filter { $0.value > 0 }
        }
    }

    var totalErrorReplies: UInt64 { errors.values.reduce(0, +) }
}

/// The command figures of one event loop's connections. Written only on that loop, with no lock or atomic (a
/// command costs a clock read and a few additions); read by hopping onto the loop (``snapshot()`` through
/// `eventLoop.submit`), so a scrape or INFO never contends with the commands.
///
/// `@unchecked Sendable`: every property is touched only on `eventLoop` (the handlers of its connections, and
/// the closures ``ServerMetrics`` submits to it).
final class LoopStatistics: @unchecked Sendable {
    let eventLoop: any EventLoop
    @exclusivity(unchecked) private var calls = [UInt64](repeating: 0, count: CommandNames.capacity)
    @exclusivity(unchecked) private var microseconds = [UInt64](repeating: 0, count: CommandNames.capacity)
    @exclusivity(unchecked) private var failed = [UInt64](repeating: 0, count: CommandNames.capacity)
    @exclusivity(unchecked) private var rejected = [UInt64](repeating: 0, count: CommandNames.capacity)
    /// `CommandNames.capacity` histograms of `LatencyBuckets.count` buckets, one after the other.
    @exclusivity(unchecked) private var histograms = [UInt64](repeating: 0, count: CommandNames.capacity * LatencyBuckets.count)
    @exclusivity(unchecked) private var errors: [String: UInt64] = [:]
    @exclusivity(unchecked) var netInputBytes: UInt64 = 0
    @exclusivity(unchecked) var netOutputBytes: UInt64 = 0
    /// IDs already looked up on this loop, so the shared table's lock is taken once per name and loop.
    @exclusivity(unchecked) private var ids: [String: Int] = [:]

    init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    /// Counts one call of command `id` that took `nanoseconds`.
    @inline(__always)
    func record(_ id: Int, nanoseconds: UInt64) {
        let micros = nanoseconds / 1000
        calls[id] &+= 1
        microseconds[id] &+= micros
        histograms[id &* LatencyBuckets.count &+ LatencyBuckets.index(microseconds: micros)] &+= 1
    }

    /// Counts an error reply: by its code (the first word: `ERR`, `WRONGTYPE`, ...), and against command `id`
    /// (nil for an unknown command) as rejected (refused before it ran: arity, syntax) or failed.
    func recordError(_ message: some Collection<UInt8>, command id: Int?) {
        let code = message.prefix { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\r") }.prefix(64)
        errors[String(decoding: code, as: UTF8.self), default: 0] &+= 1
        guard let id else { return }
        if Self.isRejection(message) { rejected[id] &+= 1 } else { failed[id] &+= 1 }
    }

    /// Whether an error says the command was refused before it ran (Redis's `rejected_calls`): a wrong number of
    /// arguments or a syntax error; any other error happened while it ran (`failed_calls`).
    static func isRejection(_ message: some Collection<UInt8>) -> Bool {
        let text = String(decoding: message.prefix(48), as: UTF8.self)
        return text.hasPrefix("ERR wrong number of arguments") || text.hasPrefix("ERR syntax error")
            || text.hasPrefix("ERR Syntax error")
    }

    /// The ID commands named `name` (any case) are counted under.
    func id(for name: String) -> Int {
        if let id = ids[name] { return id }
        let id = CommandNames.shared.id(name.lowercased())
        ids[name] = id
        return id
    }

    /// The figures so far (call on `eventLoop`).
    func snapshot() -> CommandStatisticsSnapshot {
        eventLoop.preconditionInEventLoop()
        let names = CommandNames.shared.names()
        var result = CommandStatisticsSnapshot(errors: errors, netInputBytes: netInputBytes, netOutputBytes: netOutputBytes)
        for (id, name) in names.enumerated() where calls[id] > 0 || failed[id] > 0 || rejected[id] > 0 {
            let start = id * LatencyBuckets.count
            result.commands[name] = CommandFigures(calls: calls[id], microseconds: microseconds[id], failed: failed[id],
                                                   rejected: rejected[id],
                                                   histogram: Array(histograms[start..<(start + LatencyBuckets.count)]))
        }
        return result
    }
}
