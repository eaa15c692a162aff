#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVTestSupport
import Testing
@testable import KVStore

/// A store written with a known sequence of records, so that each record's offset and size are known.
struct WrittenLog {
    enum Op { case set([UInt8], [UInt8]), delete([[UInt8]]), multiSet([([UInt8], [UInt8])]) }

    var ops: [Op]
    /// Offset of each record in the log file.
    var offsets: [Int] = []
    var sizes: [Int] = []
    var bytes: [UInt8] = []

    /// The model after the first `count` operations.
    func model(after count: Int) -> [[UInt8]: [UInt8]] {
        var model: [[UInt8]: [UInt8]] = [:]
        for op in ops.prefix(count) {
            switch op {
            case .set(let key, let value): model[key] = value
            case .delete(let keys): for key in keys { model[key] = nil }
            case .multiSet(let pairs): for (key, value) in pairs { model[key] = value }
            }
        }
        return model
    }

    /// Writes `ops` into a new store in `directory` (each delete must remove all its keys), commits and closes.
    init(_ ops: [Op], in directory: String) throws {
        self.ops = ops
        let store = try KVStore(directory: directory, syncPolicy: .none)
        var offset = LogFormat.fileHeaderSize
        for (i, op) in ops.enumerated() {
            let size: Int
            switch op {
            case .set(let key, let value):
                #expect(try store.set(key, value) == UInt64(i + 1))
                size = setRecordSize(key, value)
            case .delete(let keys):
                #expect(try store.delete(keys) == keys.count)
                size = deleteRecordSize(keys)
            case .multiSet(let pairs):
                #expect(try store.multiSet(pairs.map { (key: $0.0, value: $0.1) }) == UInt64(i + 1))
                size = pairs.count == 1 ? setRecordSize(pairs[0].0, pairs[0].1) : multiSetRecordSize(pairs)
            }
            offsets.append(offset)
            sizes.append(size)
            offset += size
        }
        try store.commit()
        try store.close()
        bytes = try readFile(logPath(directory))
        #expect(bytes.count == offset, "the log is the header plus the records, back to back")
    }
}

@Suite("Recovery")
struct RecoveryTests {
    static func sampleOps(last: WrittenLog.Op) -> [WrittenLog.Op] {
        [
            .set(bytes("alpha"), bytes("one")),
            .set(bytes("beta"), [0, 1, 2, 3]),
            .set([], bytes("empty key")),
            .delete([bytes("alpha")]),
            .set(bytes("gamma"), bytes("ü🙂")),
            .set(bytes("delta"), [UInt8](repeating: 0x5A, count: 40)),
            last,
        ]
    }

    @Test("a log cut at every byte of its last record opens with exactly the earlier records",
          arguments: ["set", "delete", "multi-set", "only record", "only record: multi-set"])
    func cutAtEveryByteOfLastRecord(kind: String) throws {
        try withTempDir { root in
            let last: WrittenLog.Op
            switch kind {
            case "delete":
                last = .delete([bytes("beta"), [], bytes("gamma")])
            case "multi-set", "only record: multi-set":
                // Overwrites a key, adds two: a torn copy must apply none of the three.
                last = .multiSet([(bytes("beta"), bytes("new beta")), (bytes("m1"), []),
                                  (bytes("m2"), Array("the final value, forty bytes long......".utf8))])
            default:
                last = .set(bytes("last"), Array("the final value, forty bytes long......".utf8))
            }
            let written = try WrittenLog(kind.hasPrefix("only record") ? [last] : Self.sampleOps(last: last), in: root + "/source")
            let n = written.ops.count
            let prefix = written.offsets[n - 1]
            let expected = written.model(after: n - 1)
            #expect(written.model(after: n) != expected, "the last record must change something")

            for cut in prefix..<written.bytes.count {
                let directory = root + "/cut\(cut)"
                try makeDirectory(directory)
                let path = logPath(directory)
                try writeFile(path, Array(written.bytes[..<cut]))
                do {
                    let store = try KVStore(directory: directory, syncPolicy: .none)
                    if cut == prefix {
                        #expect(store.openReport.tornTail == nil, "cut \(cut): the log ends on a record boundary")
                    } else {
                        let tail = try #require(store.openReport.tornTail, "cut \(cut): torn tail not reported")
                        #expect(tail.file == path)
                        #expect(tail.offset == prefix, "cut \(cut)")
                        #expect(tail.droppedBytes == cut - prefix, "cut \(cut)")
                    }
                    #expect(store.openReport.records == n - 1, "cut \(cut)")
                    #expect(store.openReport.logBytes == prefix, "cut \(cut)")
                    expectContents(store, equal: expected, "cut \(cut)")
                    #expect(fileSize(path) == prefix, "cut \(cut): the torn tail must be cut off the file")
                    // Sequence continuity: the lost record's sequence number is the next one handed out.
                    #expect(try store.set(bytes("after"), bytes("cut \(cut)")) == UInt64(n), "cut \(cut)")
                    try store.close()
                }
                do {
                    let store = try KVStore(directory: directory, syncPolicy: .none)
                    #expect(store.openReport.tornTail == nil, "cut \(cut): reopen after a write")
                    #expect(store.openReport.records == n, "cut \(cut)")
                    var model = expected
                    model[bytes("after")] = bytes("cut \(cut)")
                    expectContents(store, equal: model, "cut \(cut) reopened")
                    #expect(try store.set(bytes("again"), []) == UInt64(n + 1))
                    try store.close()
                }
                removeTree(directory)
            }
        }
    }

    @Test("garbage after the last record is reported as a torn tail and cut",
          arguments: ["random", "zeros", "short", "one byte", "record-like"])
    func garbageAfterRecords(kind: String) throws {
        try withTempDir { root in
            let written = try WrittenLog(Self.sampleOps(last: .set(bytes("z"), bytes("zz"))), in: root + "/s")
            var rng = SplitMix64(seed: 5)
            let garbage: [UInt8]
            switch kind {
            case "random": garbage = rng.bytes(1000)
            case "zeros": garbage = [UInt8](repeating: 0, count: 4096)
            case "short": garbage = rng.bytes(LogFormat.recordHeaderSize - 1)
            case "one byte": garbage = [0]
            default:
                // A plausible header (length 3, type set, next sequence) whose checksum is wrong.
                var header: [UInt8] = [0xDE, 0xAD, 0xBE, 0xEF, 3, 0, 0, 0, 1]
                LogFormat.appendLittleEndian(UInt64(written.ops.count + 1), to: &header)
                garbage = header + [0, 0, 0]
            }
            let path = logPath(root + "/s")
            try appendFile(path, garbage)
            let store = try KVStore(directory: root + "/s")
            defer { try? store.close() }
            let tail = try #require(store.openReport.tornTail)
            #expect(tail.file == path)
            #expect(tail.offset == written.bytes.count)
            #expect(tail.droppedBytes == garbage.count)
            #expect(fileSize(path) == written.bytes.count)
            #expect(try readFile(path) == written.bytes, "the valid prefix must be untouched")
            expectContents(store, equal: written.model(after: written.ops.count))
            #expect(try store.set(bytes("next"), []) == UInt64(written.ops.count + 1))
        }
    }

    /// Where in a record a single bit is flipped.
    enum FlipPlace: String, CaseIterable, CustomTestStringConvertible {
        case crc, lengthLowBit, lengthHighBit, type, sequence, payloadMiddle, payloadLast
        var testDescription: String { rawValue }
        /// (byte offset within the record, bit)
        func position(recordSize: Int) -> (Int, UInt8) {
            switch self {
            case .crc: return (2, 0x10)
            case .lengthLowBit: return (4, 0x01)
            case .lengthHighBit: return (7, 0x40)
            case .type: return (8, 0x01)
            case .sequence: return (9, 0x01)
            case .payloadMiddle: return (LogFormat.recordHeaderSize + (recordSize - LogFormat.recordHeaderSize) / 2, 0x04)
            case .payloadLast: return (recordSize - 1, 0x80)
            }
        }
    }

    @Test("a bit flipped in a record that valid records follow is corruption at that record's offset",
          arguments: FlipPlace.allCases, [1, 3, 5])
    func bitFlipInTheMiddle(place: FlipPlace, record: Int) throws {
        try withTempDir { root in
            let directory = root + "/s"
            let written = try WrittenLog(Self.sampleOps(last: .set(bytes("last"), bytes("value"))), in: directory)
            let (within, bit) = place.position(recordSize: written.sizes[record])
            var damaged = written.bytes
            damaged[written.offsets[record] + within] ^= bit
            let path = logPath(directory)
            try writeFile(path, damaged)

            let error = storeError { _ = try KVStore(directory: directory) }
            guard case .corruption(let file, let offset, let reason)? = error else {
                Issue.record("expected corruption, got \(String(describing: error))")
                return
            }
            #expect(file == path)
            #expect(offset == written.offsets[record], "reason: \(reason)")
            #expect(try readFile(path) == damaged, "a corrupt log must not be modified")
            // The failed open released the lock: a second attempt fails the same way, not with `locked`.
            let again = storeError { _ = try KVStore(directory: directory) }
            #expect(again == error)
            // The error names the file and offset in its message.
            #expect(error!.description.contains(path))
            #expect(error!.description.contains("offset \(written.offsets[record])"))
        }
    }

    @Test("a bit flipped in the last record is a torn tail: that record alone is dropped")
    func bitFlipInLastRecord() throws {
        try withTempDir { root in
            let directory = root + "/s"
            let written = try WrittenLog(Self.sampleOps(last: .set(bytes("last"), bytes("value"))), in: directory)
            let n = written.ops.count
            var damaged = written.bytes
            damaged[written.offsets[n - 1] + LogFormat.recordHeaderSize + 2] ^= 0x01
            try writeFile(logPath(directory), damaged)
            let store = try KVStore(directory: directory)
            defer { try? store.close() }
            let tail = try #require(store.openReport.tornTail)
            #expect(tail.offset == written.offsets[n - 1])
            #expect(tail.droppedBytes == written.sizes[n - 1])
            expectContents(store, equal: written.model(after: n - 1))
        }
    }

    @Test("a record with a good checksum but the wrong sequence number is corruption")
    func sequenceGap() throws {
        try withTempDir { root in
            let directory = root + "/s"
            let written = try WrittenLog(Self.sampleOps(last: .set(bytes("last"), bytes("value"))), in: directory)
            // Re-encode record 3 (a set) with sequence 99 and a correct checksum.
            var damaged = Array(written.bytes[..<written.offsets[2]])
            LogFormat.appendSet(key: [], value: bytes("empty key"), sequence: 99, to: &damaged)
            damaged += written.bytes[written.offsets[3]...]
            #expect(damaged.count == written.bytes.count)
            try writeFile(logPath(directory), damaged)
            let error = storeError { _ = try KVStore(directory: directory) }
            guard case .corruption(_, let offset, _)? = error else {
                Issue.record("expected corruption, got \(String(describing: error))")
                return
            }
            #expect(offset == written.offsets[2])
        }
    }

    // MARK: File header

    @Test("a damaged file header on a non-empty log is corruption at offset 0",
          arguments: [("bad magic", 0, UInt8(0x01)), ("bad magic, last byte", 7, 0x20), ("bad checksum", 25, 0x01),
                      ("first sequence changed", 16, 0x02), ("flags changed", 12, 0x01)])
    func damagedHeader(name: String, byte: Int, bit: UInt8) throws {
        try withTempDir { root in
            let directory = root + "/s"
            let written = try WrittenLog(Self.sampleOps(last: .set(bytes("last"), bytes("value"))), in: directory)
            var damaged = written.bytes
            damaged[byte] ^= bit
            try writeFile(logPath(directory), damaged)
            let error = storeError { _ = try KVStore(directory: directory) }
            guard case .corruption(let file, let offset, _)? = error else {
                Issue.record("\(name): expected corruption, got \(String(describing: error))")
                return
            }
            #expect(file == logPath(directory))
            #expect(offset == 0)
            #expect(try readFile(logPath(directory)) == damaged)
        }
    }

    static func headerWithVersion(_ version: UInt32, firstSequence: UInt64 = 1) -> [UInt8] {
        var header = LogFormat.magic
        LogFormat.appendLittleEndian(version, to: &header)
        LogFormat.appendLittleEndian(UInt32(0), to: &header)
        LogFormat.appendLittleEndian(firstSequence, to: &header)
        LogFormat.appendLittleEndian(CRC32C.checksum(header), to: &header)
        return header
    }

    @Test("a header written by a newer version is refused with unsupportedVersion", arguments: [false, true])
    func newerVersion(withRecords: Bool) throws {
        try withTempDir { root in
            let directory = root + "/s"
            let written = try WrittenLog(Self.sampleOps(last: .set(bytes("last"), bytes("value"))), in: directory)
            // Version 2 is an encrypted file's: the first version this kvsh does not know is 3.
            let header = Self.headerWithVersion(LogFormat.encryptedVersion + 1)
            #expect(header.count == LogFormat.fileHeaderSize)
            #expect(Self.headerWithVersion(LogFormat.version) == LogFormat.fileHeader(firstSequence: 1))
            let file = withRecords ? header + written.bytes[LogFormat.fileHeaderSize...] : header
            try writeFile(logPath(directory), file)
            #expect(throws: StoreError.unsupportedVersion(file: logPath(directory), version: LogFormat.encryptedVersion + 1)) {
                _ = try KVStore(directory: directory)
            }
            #expect(try readFile(logPath(directory)) == file, "the newer log must be left alone")
        }
    }

    @Test("an empty log file or a torn header is rewritten; the store opens empty")
    func emptyAndTornHeader() throws {
        try withTempDir { root in
            for length in [0, 1, 10, LogFormat.fileHeaderSize - 1] {
                let directory = root + "/s\(length)"
                try makeDirectory(directory)
                try writeFile(logPath(directory), Array(LogFormat.fileHeader(firstSequence: 1).prefix(length)))
                let store = try KVStore(directory: directory)
                if length == 0 {
                    #expect(store.openReport.tornTail == nil)
                } else {
                    let tail = try #require(store.openReport.tornTail, "header cut at \(length)")
                    #expect(tail.offset == 0)
                    #expect(tail.droppedBytes == length)
                }
                #expect(store.count == 0)
                #expect(fileSize(logPath(directory)) == LogFormat.fileHeaderSize)
                #expect(try store.set(bytes("k"), bytes("v")) == 1)
                try store.close()
                let reopened = try KVStore(directory: directory)
                #expect(reopened.get(bytes("k")) == bytes("v"))
                #expect(reopened.openReport.tornTail == nil)
                try reopened.close()
            }
        }
    }

    @Test("a new store's log is exactly a header announcing sequence 1")
    func freshLogFile() throws {
        try withTempDir { root in
            let store = try KVStore(directory: root)
            try store.close()
            #expect(listDirectory(root) == ["000001.log", "LOCK"])
            let log = try readFile(logPath(root))
            #expect(log == LogFormat.fileHeader(firstSequence: 1))
            #expect(Array(log.prefix(8)) == bytes("KVSH-LOG"))
            #expect(log[8..<12] == [1, 0, 0, 0])
            #expect(log[16..<24] == [1, 0, 0, 0, 0, 0, 0, 0])
            #expect(Array(log[24..<28]) == withUnsafeBytes(of: CRC32C.checksum(Array(log[0..<24])).littleEndian, Array.init))
        }
    }

    @Test("record encoding: CRC over everything after the CRC field, little-endian fields")
    func recordEncoding() {
        var buffer: [UInt8] = []
        LogFormat.appendSet(key: bytes("ab"), value: bytes("xyz"), sequence: 0x0102_0304_0506_0708, to: &buffer)
        #expect(buffer.count == setRecordSize(bytes("ab"), bytes("xyz")))
        #expect(Array(buffer[4..<8]) == [9, 0, 0, 0])  // payload length: 4 + 2 + 3
        #expect(buffer[8] == LogFormat.RecordType.set.rawValue)
        #expect(Array(buffer[9..<17]) == [8, 7, 6, 5, 4, 3, 2, 1])
        #expect(Array(buffer[17...]) == [2, 0, 0, 0] + bytes("abxyz"))
        let crc = UInt32(buffer[0]) | UInt32(buffer[1]) << 8 | UInt32(buffer[2]) << 16 | UInt32(buffer[3]) << 24
        #expect(crc == CRC32C.checksum(Array(buffer[4...])))

        var delete: [UInt8] = []
        LogFormat.appendDelete(keys: [bytes("a"), []], sequence: 3, to: &delete)
        #expect(delete.count == deleteRecordSize([bytes("a"), []]))
        #expect(delete[8] == LogFormat.RecordType.delete.rawValue)
        #expect(Array(delete[17...]) == [2, 0, 0, 0, 1, 0, 0, 0, 0x61, 0, 0, 0, 0])
    }
}

@Suite("Several log files")
struct MultipleLogFileTests {
    /// A store with records 1...3 in 000001.log, closed, plus a hand-made 000002.log starting at `secondStart`
    /// holding SET records for `secondKeys` with sequence numbers from `secondStart` on.
    static func make(_ directory: String, secondStart: UInt64, secondKeys: [String]) throws -> [[UInt8]: [UInt8]] {
        let store = try KVStore(directory: directory)
        try store.set(bytes("a"), bytes("1"))
        try store.set(bytes("b"), bytes("2"))
        try store.delete([bytes("a")])
        try store.close()
        var second = LogFormat.fileHeader(firstSequence: secondStart)
        var model: [[UInt8]: [UInt8]] = [bytes("b"): bytes("2")]
        for (i, key) in secondKeys.enumerated() {
            LogFormat.appendSet(key: bytes(key), value: bytes("second"), sequence: secondStart + UInt64(i), to: &second)
            model[bytes(key)] = bytes("second")
        }
        try writeFile(directory + "/000002.log", second)
        return model
    }

    @Test("files are replayed in order, and new writes go to the last one")
    func replayInOrder() throws {
        try withTempDir { root in
            let model = try Self.make(root, secondStart: 4, secondKeys: ["b", "c"])
            let firstSize = fileSize(logPath(root))
            do {
                let store = try KVStore(directory: root)
                #expect(store.openReport.logFiles == 2)
                #expect(store.openReport.records == 5)
                expectContents(store, equal: model)
                #expect(try store.set(bytes("d"), bytes("new")) == 6)
                #expect(store.statistics.logFile == root + "/000002.log")
                try store.close()
            }
            #expect(fileSize(logPath(root)) == firstSize, "the older file is not appended to")
            let log = try parseLogFile(root + "/000002.log")
            #expect(log.records.map(\.sequence) == [4, 5, 6])
            // A directory of several files imports as a whole.
            let target = try KVStore(directory: root + "/target")
            defer { try? target.close() }
            let summary = try LogImporter.importLog(at: root, into: target)
            #expect(summary.sets == 5)
            #expect(summary.deletes == 1)
            var expected = model
            expected[bytes("d")] = bytes("new")
            expectContents(target, equal: expected)
        }
    }

    @Test("a gap in sequence numbers between files is corruption at offset 0 of the later file")
    func sequenceGapBetweenFiles() throws {
        try withTempDir { root in
            _ = try Self.make(root, secondStart: 7, secondKeys: ["c"])
            let error = storeError { _ = try KVStore(directory: root) }
            #expect(error.map { if case .corruption(root + "/000002.log", 0, _) = $0 { true } else { false } } == true,
                    "\(String(describing: error))")
        }
    }

    @Test("a torn tail is allowed only in the last file")
    func tornTailInOlderFile() throws {
        try withTempDir { root in
            _ = try Self.make(root, secondStart: 4, secondKeys: ["c"])
            let first = try readFile(logPath(root))
            try writeFile(logPath(root), Array(first.dropLast(2)))
            let error = storeError { _ = try KVStore(directory: root) }
            guard case .corruption(let file, let offset, _)? = error else {
                Issue.record("expected corruption, got \(String(describing: error))")
                return
            }
            #expect(file == logPath(root))
            #expect(offset == first.count - deleteRecordSize([bytes("a")]))
            #expect(fileSize(logPath(root)) == first.count - 2, "an older file is never cut")
        }
    }

    @Test("an empty last file gets a header continuing the sequence")
    func emptyLastFile() throws {
        try withTempDir { root in
            _ = try Self.make(root, secondStart: 4, secondKeys: [])
            try writeFile(root + "/000002.log", [])
            let store = try KVStore(directory: root)
            defer { try? store.close() }
            #expect(try readFile(root + "/000002.log") == LogFormat.fileHeader(firstSequence: 4))
            #expect(try store.set(bytes("x"), []) == 4)
        }
    }
}

@Suite("Documented format")
struct DocumentedFormatTests {
    /// The `xxd` dump in Docs/LogFormat.md of a new store after `SET a b` and `SET k v`.
    static let documentedDump = """
        4b56 5348 2d4c 4f47 0100 0000 0000 0000
        0100 0000 0000 0000 0b7a aee0 a6c3 46e2
        0600 0000 0101 0000 0000 0000 0001 0000
        0061 624a 9fda 7306 0000 0001 0200 0000
        0000 0000 0100 0000 6b76
        """

    @Test("the log of SET a b, SET k v is byte for byte the example in Docs/LogFormat.md")
    func documentedExample() throws {
        let hex = Array(Self.documentedDump.filter { $0.isHexDigit })
        let expected = stride(from: 0, to: hex.count, by: 2).map { UInt8(String(hex[$0..<($0 + 2)]), radix: 16)! }
        #expect(expected.count == 28 + 23 + 23)
        try withTempDir { root in
            let store = try KVStore(directory: root)
            try store.set(bytes("a"), bytes("b"))
            try store.set(bytes("k"), bytes("v"))
            try store.close()
            #expect(try readFile(logPath(root)) == expected)
            let log = try parseLogFile(logPath(root))
            #expect(log.records.map(\.operation) == [.set(key: bytes("a"), value: bytes("b")), .set(key: bytes("k"), value: bytes("v"))])
        }
    }

    /// The `xxd` dump in Docs/LogFormat.md of a new store after `MSET a 1 b 2`.
    static let documentedMultiSetDump = """
        4b56 5348 2d4c 4f47 0100 0000 0000 0000
        0100 0000 0000 0000 0b7a aee0 a6e4 f9b8
        1800 0000 0501 0000 0000 0000 0002 0000
        0001 0000 0001 0000 0061 3101 0000 0001
        0000 0062 32
        """

    @Test("the log of MSET a 1 b 2 is byte for byte the example in Docs/LogFormat.md")
    func documentedMultiSetExample() throws {
        let hex = Array(Self.documentedMultiSetDump.filter { $0.isHexDigit })
        let expected = stride(from: 0, to: hex.count, by: 2).map { UInt8(String(hex[$0..<($0 + 2)]), radix: 16)! }
        #expect(expected.count == 28 + 41)
        try withTempDir { root in
            let store = try KVStore(directory: root)
            try store.multiSet([(bytes("a"), bytes("1")), (bytes("b"), bytes("2"))])
            try store.close()
            #expect(try readFile(logPath(root)) == expected)
            let log = try parseLogFile(logPath(root))
            #expect(log.records.map(\.operation) == [.multiSet(keys: [bytes("a"), bytes("b")], values: [bytes("1"), bytes("2")])])
        }
    }
}
