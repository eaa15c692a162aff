#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The server process's memory, for INFO.
enum ProcessMemory {
    /// Resident set size in bytes, from `/proc/self/statm` (0 where that cannot be read).
    static func residentBytes() -> Int {
        let descriptor = open("/proc/self/statm", O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return 0 }
        defer { close(descriptor) }
        var buffer = [UInt8](repeating: 0, count: 128)
        let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        guard count > 0 else { return 0 }
        // "size resident shared text lib data dt", in pages.
        let fields = buffer[..<count].split(separator: UInt8(ascii: " "))
        guard fields.count > 1, let pages = Int(String(decoding: fields[1], as: UTF8.self)) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// A byte count as Redis prints its `_human` fields: `917.94K`, `6.77M`.
    static func human(_ bytes: Int) -> String {
        var value = Double(bytes)
        for unit in ["B", "K", "M", "G", "T"] {
            if value < 1024 || unit == "T" {
                return unit == "B" ? "\(bytes)B" : formatted(value) + unit
            }
            value /= 1024
        }
        return "\(bytes)B"
    }

    private static func formatted(_ value: Double) -> String {
        let hundredths = Int((value * 100).rounded())
        let fraction = hundredths % 100
        return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }
}
