import FoundationEssentials
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Replays a foreign log into a store as new writes: another kvsh log (or data directory), or the JSON-lines
/// log of kvsh's ancestor, the Go StorageEngine (`{"operation":"SET","key":"k","value":"v"}` per line).
///
/// The whole source is read and checked before the first write, so a damaged source imports nothing.
public enum LogImporter {
    public struct Summary: Sendable {
        public var source: String
        public var format: String
        /// Keys set: one per SET record, one per pair of a MULTI-SET record.
        public var sets = 0
        /// DELETE records (each deletes one key or more).
        public var deletes = 0
        /// Entries that change nothing (`GET`/`EXISTS` in a Go log).
        public var skipped = 0
        public var tornTail: TornTail?
        public var duration: Duration = .zero
    }

    public static func importLog(at path: String, into store: KVStore) throws -> Summary {
        try Paths.validate(path)
        let clock = ContinuousClock()
        let start = clock.now
        var (operations, summary) = try read(path)
        for operation in operations {
            switch operation {
            case .set(let key, let value): try store.set(key, value)
            case .delete(let keys): try store.delete(keys)
            case .multiSet(let pairs): try store.multiSet(pairs)
            }
        }
        operations.removeAll()
        summary.duration = clock.now - start
        return summary
    }

    /// Every operation in `path`, in order, without applying any.
    static func read(_ path: String) throws -> ([LogOperation], Summary) {
        var operations: [LogOperation] = []
        let files: [String]
        if isDirectory(path) {
            files = try DataDirectory.logFiles(in: path).map(\.path)
            guard !files.isEmpty else { throw StoreError.badImport(file: path, line: nil, reason: "no *.log files in this directory") }
        } else {
            files = [path]
        }
        guard try startsWithKVSHMagic(files[0]) else {
            var summary = Summary(source: path, format: "Go StorageEngine JSON lines")
            operations = try readJSONLines(path, summary: &summary)
            return (operations, summary)
        }
        var summary = Summary(source: path, format: "kvsh log")
        for (position, file) in files.enumerated() {
            let scan = try LogReader.scan(path: file, tornTailAllowed: position == files.count - 1, followSymlinks: true) { _, record in
                operations.append(LogOperation(record))
                switch record {
                case .set: summary.sets += 1
                case .multiSet(let pairs): summary.sets += pairs.count
                case .delete: summary.deletes += 1
                }
            }
            summary.tornTail = summary.tornTail ?? scan.tornTail
        }
        return (operations, summary)
    }

    private static func isDirectory(_ path: String) -> Bool {
        var info = stat()
        return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
    }

    private static func startsWithKVSHMagic(_ path: String) throws -> Bool {
        let fd = try POSIX.open(path, O_RDONLY)
        defer { close(fd) }
        var head = [UInt8](repeating: 0, count: LogFormat.magic.count)
        let count = try head.withUnsafeMutableBytes { try POSIX.read(fd, into: $0, at: 0, path: path) }
        return count == head.count && head == LogFormat.magic
    }

    private struct GoEntry: Decodable {
        var operation: String
        var key: String
        var value: String?
    }

    private static func readJSONLines(_ path: String, summary: inout Summary) throws -> [LogOperation] {
        let fd = try POSIX.open(path, O_RDONLY)
        defer { close(fd) }
        var contents = [UInt8](repeating: 0, count: try POSIX.size(fd, path: path))
        _ = try contents.withUnsafeMutableBytes { try POSIX.read(fd, into: $0, at: 0, path: path) }
        let decoder = JSONDecoder()
        var operations: [LogOperation] = []
        for (number, line) in contents.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            guard line.contains(where: { $0 != 0x20 && $0 != 0x09 && $0 != 0x0D }) else { continue }  // blank line
            let entry: GoEntry
            do {
                entry = try decoder.decode(GoEntry.self, from: Data(line))
            } catch {
                throw StoreError.badImport(file: path, line: number + 1,
                                           reason: "not a kvsh log, and not a JSON object with \"operation\" and \"key\"")
            }
            switch entry.operation.uppercased() {
            case "SET":
                guard let value = entry.value else {
                    throw StoreError.badImport(file: path, line: number + 1, reason: "SET entry without a \"value\"")
                }
                operations.append(.set(key: Array(entry.key.utf8), value: Array(value.utf8)))
                summary.sets += 1
            case "DELETE", "DEL":
                operations.append(.delete(keys: [Array(entry.key.utf8)]))
                summary.deletes += 1
            case "GET", "EXISTS":
                summary.skipped += 1
            default:
                throw StoreError.badImport(file: path, line: number + 1, reason: "unknown operation '\(entry.operation)'")
            }
        }
        return operations
    }
}
