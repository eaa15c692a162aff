#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVTestSupport
import Testing
@testable import KVStore

func makeDirectory(_ path: String) throws {
    try #require(mkdir(path, 0o755) == 0, "mkdir \(path) failed: errno \(errno)")
}

func readFile(_ path: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY)
    try #require(fd >= 0, "open \(path) failed: errno \(errno)")
    defer { close(fd) }
    var result: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        try #require(n >= 0, "read \(path) failed")
        if n == 0 { break }
        result.append(contentsOf: chunk[..<n])
    }
    return result
}

func writeFile(_ path: String, _ bytes: [UInt8]) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    try #require(fd >= 0, "open \(path) failed: errno \(errno)")
    defer { close(fd) }
    var done = 0
    while done < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + done, $0.count - done) }
        try #require(n > 0, "write \(path) failed")
        done += n
    }
}

func appendFile(_ path: String, _ bytes: [UInt8]) throws {
    try writeFile(path, try readFile(path) + bytes)
}

func fileSize(_ path: String) -> Int {
    var info = stat()
    return stat(path, &info) == 0 ? Int(info.st_size) : -1
}

func fileExists(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0
}

func isDirectoryPath(_ path: String) -> Bool {
    var info = stat()
    return stat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
}

/// Copies every regular file of `source` byte for byte into a new directory `destination`.
func copyDirectory(_ source: String, to destination: String) throws {
    try makeDirectory(destination)
    for name in listDirectory(source) {
        try writeFile(destination + "/" + name, try readFile(source + "/" + name))
    }
}

// MARK: Store helpers

func logPath(_ directory: String) -> String { directory + "/000001.log" }


/// The whole store, as (key, value) pairs in order.
func contents(_ store: KVStore) -> [[UInt8]: [UInt8]] {
    Dictionary(uniqueKeysWithValues: store.range(from: nil, to: nil).map { ($0.key, $0.value) })
}

/// Checks that a range over the whole store equals `model`, in bytewise order.
func expectContents(_ store: KVStore, equal model: [[UInt8]: [UInt8]], _ comment: Comment? = nil,
                    sourceLocation: SourceLocation = #_sourceLocation) {
    let actual = store.range(from: nil, to: nil)
    let expected = model.sorted { $0.key.lexicographicallyPrecedes($1.key) }
    #expect(actual.map(\.key) == expected.map(\.key), comment, sourceLocation: sourceLocation)
    #expect(actual.map(\.value) == expected.map(\.value), comment, sourceLocation: sourceLocation)
    #expect(store.count == model.count, comment, sourceLocation: sourceLocation)
}

/// Encoded size of a SET record.
func setRecordSize(_ key: [UInt8], _ value: [UInt8]) -> Int {
    LogFormat.recordHeaderSize + 4 + key.count + value.count
}

/// Encoded size of a DELETE record for exactly these keys.
func deleteRecordSize(_ keys: [[UInt8]]) -> Int {
    LogFormat.recordHeaderSize + 4 + keys.reduce(0) { $0 + 4 + $1.count }
}

/// Encoded size of a MULTI-SET record holding exactly these pairs.
func multiSetRecordSize(_ pairs: [([UInt8], [UInt8])]) -> Int {
    LogFormat.recordHeaderSize + 4 + pairs.reduce(0) { $0 + 8 + $1.0.count + $1.1.count }
}

/// An operation as the tests' own log decoder sees it.
enum ParsedOperation: Equatable {
    case set(key: [UInt8], value: [UInt8])
    case delete(keys: [[UInt8]])
    /// A MULTI-SET record: the keys and their values, in record order.
    case multiSet(keys: [[UInt8]], values: [[UInt8]])
}

/// An independent decoder of the documented log format (header, then CRC | length | type | sequence | payload
/// records), so the tests check the bytes on disk without going through the engine's own reader.
struct ParsedLog {
    var firstSequence: UInt64
    var records: [(sequence: UInt64, operation: ParsedOperation)] = []
    /// Where the well-formed records end.
    var validLength: Int
}

func littleEndian<T: FixedWidthInteger>(_ bytes: [UInt8], at offset: Int, as: T.Type) -> T {
    var value: T = 0
    for i in 0..<MemoryLayout<T>.size { value |= T(bytes[offset + i]) << (8 * i) }
    return value
}

func parseLog(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> ParsedLog? {
    guard bytes.count >= 28, Array(bytes[0..<8]) == Array("KVSH-LOG".utf8),
          littleEndian(bytes, at: 24, as: UInt32.self) == CRC32C.checksum(Array(bytes[0..<24])) else {
        Issue.record("bad log header", sourceLocation: sourceLocation)
        return nil
    }
    var log = ParsedLog(firstSequence: littleEndian(bytes, at: 16, as: UInt64.self), validLength: 28)
    var offset = 28
    while offset + 17 <= bytes.count {
        let crc = littleEndian(bytes, at: offset, as: UInt32.self)
        let length = Int(littleEndian(bytes, at: offset + 4, as: UInt32.self))
        guard offset + 17 + length <= bytes.count,
              CRC32C.checksum(Array(bytes[(offset + 4)..<(offset + 17 + length)])) == crc else { break }
        let type = bytes[offset + 8]
        let sequence = littleEndian(bytes, at: offset + 9, as: UInt64.self)
        let payload = Array(bytes[(offset + 17)..<(offset + 17 + length)])
        switch type {
        case 1:
            let keyLength = Int(littleEndian(payload, at: 0, as: UInt32.self))
            log.records.append((sequence, .set(key: Array(payload[4..<(4 + keyLength)]), value: Array(payload[(4 + keyLength)...]))))
        case 2:
            let count = Int(littleEndian(payload, at: 0, as: UInt32.self))
            var keys: [[UInt8]] = []
            var cursor = 4
            for _ in 0..<count {
                let keyLength = Int(littleEndian(payload, at: cursor, as: UInt32.self))
                keys.append(Array(payload[(cursor + 4)..<(cursor + 4 + keyLength)]))
                cursor += 4 + keyLength
            }
            #expect(cursor == payload.count, "delete payload length", sourceLocation: sourceLocation)
            log.records.append((sequence, .delete(keys: keys)))
        case 5:
            let count = Int(littleEndian(payload, at: 0, as: UInt32.self))
            var keys: [[UInt8]] = [], values: [[UInt8]] = []
            var cursor = 4
            for _ in 0..<count {
                let keyLength = Int(littleEndian(payload, at: cursor, as: UInt32.self))
                let valueLength = Int(littleEndian(payload, at: cursor + 4, as: UInt32.self))
                cursor += 8
                keys.append(Array(payload[cursor..<(cursor + keyLength)]))
                cursor += keyLength
                values.append(Array(payload[cursor..<(cursor + valueLength)]))
                cursor += valueLength
            }
            #expect(cursor == payload.count, "multi-set payload length", sourceLocation: sourceLocation)
            log.records.append((sequence, .multiSet(keys: keys, values: values)))
        default:
            Issue.record("unknown record type \(type)", sourceLocation: sourceLocation)
            return log
        }
        offset += 17 + length
        log.validLength = offset
    }
    return log
}

/// Every record of a log file, in order, decoded by `parseLog`.
func parseLogFile(_ path: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> ParsedLog {
    try #require(parseLog(try readFile(path), sourceLocation: sourceLocation), sourceLocation: sourceLocation)
}

/// Runs `body`, expecting it to throw a StoreError, and returns that error.
func storeError(sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) -> StoreError? {
    do {
        try body()
        Issue.record("expected a StoreError, but nothing was thrown", sourceLocation: sourceLocation)
        return nil
    } catch let error as StoreError {
        return error
    } catch {
        Issue.record("expected a StoreError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}
