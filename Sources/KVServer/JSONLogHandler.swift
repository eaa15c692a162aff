#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Logging

/// A swift-log handler that writes one JSON object per line to standard error (`kvsh serve --log-format json`):
/// `time` (UTC, RFC 3339 with milliseconds), `level`, `logger` (the label), `message`, then every metadata field
/// at the top level as a string (a field named like one of those four gets a `meta_` prefix).
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String

    public init(label: String) {
        self.label = label
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    static let reserved: Set<String> = ["time", "level", "logger", "message"]

    public func log(event: LogEvent) {
        let level = event.level, message = event.message
        var fields = self.metadata
        if let provided = metadataProvider?.get() { fields.merge(provided) { _, new in new } }
        if let explicit = event.metadata { fields.merge(explicit) { _, new in new } }
        if let error = event.error { fields["error"] = "\(error)" }
        var out = "{\"time\":\"\(Self.timestamp())\",\"level\":\"\(level.rawValue)\",\"logger\":"
            + MetricsHTTPHandler.jsonString(label) + ",\"message\":" + MetricsHTTPHandler.jsonString(message.description)
        for key in fields.keys.sorted() {
            guard let value = fields[key] else { continue }
            let name = Self.reserved.contains(key) ? "meta_" + key : key
            out += "," + MetricsHTTPHandler.jsonString(name) + ":" + MetricsHTTPHandler.jsonString(Self.text(value))
        }
        out += "}\n"
        // One write(2) per line, so lines from several threads do not interleave.
        var bytes = Array(out.utf8)[...]
        while !bytes.isEmpty {
            let written = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
            if written > 0 { bytes = bytes.dropFirst(written) } else if written < 0 && errno == EINTR { continue } else { break }
        }
    }

    private static func text(_ value: Logger.MetadataValue) -> String {
        switch value {
        case .string(let text): return text
        case .stringConvertible(let convertible): return convertible.description
        default: return value.description
        }
    }

    /// Now, as `2026-12-03T13:45:01.123Z`.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        let millis = Int(now.tv_nsec / 1_000_000)
        let fraction = millis < 10 ? "00\(millis)" : millis < 100 ? "0\(millis)" : "\(millis)"
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)).\(fraction)Z"
    }
}
