import ArgumentParser

/// A byte count on the command line: `67108864`, `64K`, `64M`, `1G` (powers of 1024; `KiB`/`MB` spellings too).
struct ByteSize: ExpressibleByArgument, Sendable {
    let bytes: Int

    init(bytes: Int) {
        self.bytes = bytes
    }

    /// The size as one would type it (`64M`), for `--help`'s defaults.
    var defaultValueDescription: String {
        for (suffix, shift) in [("G", 30), ("M", 20), ("K", 10)] where bytes != 0 && bytes % (1 << shift) == 0 {
            return "\(bytes >> shift)\(suffix)"
        }
        return String(bytes)
    }

    init?(argument: String) {
        let text = argument.uppercased()
        let digits = text.prefix { $0.isNumber }
        guard let number = Int(digits), !digits.isEmpty else { return nil }
        let shift: Int
        switch text.dropFirst(digits.count) {
        case "", "B": shift = 0
        case "K", "KB", "KIB": shift = 10
        case "M", "MB", "MIB": shift = 20
        case "G", "GB", "GIB": shift = 30
        default: return nil
        }
        guard number <= Int.max >> shift else { return nil }
        bytes = number << shift
    }
}

/// A time interval on the command line: `500ms`, `30s`, `15m`, `1h`, `1d`.
struct Interval: ExpressibleByArgument, Sendable {
    let duration: Duration

    init?(argument: String) {
        let digits = argument.prefix { $0.isNumber }
        guard let number = Int64(digits), number > 0 else { return nil }
        switch argument.dropFirst(digits.count).lowercased() {
        case "ms": duration = .milliseconds(number)
        case "s": duration = .seconds(number)
        case "m": duration = .seconds(number * 60)
        case "h": duration = .seconds(number * 3600)
        case "d": duration = .seconds(number * 86400)
        default: return nil
        }
    }
}
