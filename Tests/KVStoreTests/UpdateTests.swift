#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch
import Synchronization
import KVTestSupport
import Testing
@testable import KVStore

private struct Refused: Error, Equatable {}

/// A thread-safe call counter for transforms.
private final class Calls: Sendable {
    let count = Atomic<Int>(0)
    func record() { count.add(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}

@Suite("Atomic updates")
struct UpdateTests {
    @Test("update: keep writes nothing, set writes a SET record, delete a DELETE record; each reports the previous value")
    func decisions() throws {
        try withTempDir { root in
            do {
                let store = try KVStore(directory: root)
                // Missing key, keep: nothing written, no sequence number used.
                var seen: [[UInt8]?] = []
                var result = try store.update(bytes("k")) { current in
                    seen.append(current)
                    return .keep
                }
                #expect(result.previous == nil && result.sequence == nil)
                #expect(store.get(bytes("k")) == nil)
                // Missing key, set.
                result = try store.update(bytes("k")) { current in
                    seen.append(current)
                    return .set(bytes("one"))
                }
                #expect(result.previous == nil && result.sequence == 1)
                #expect(store.get(bytes("k")) == bytes("one"))
                // Present key, keep.
                result = try store.update(bytes("k")) { current in
                    seen.append(current)
                    return .keep
                }
                #expect(result.previous == bytes("one") && result.sequence == nil)
                // Present key, set from the current value.
                result = try store.update(bytes("k")) { current in .set((current ?? []) + bytes("+two")) }
                #expect(result.previous == bytes("one") && result.sequence == 2)
                #expect(store.get(bytes("k")) == bytes("one+two"))
                // Present key, delete.
                result = try store.update(bytes("k")) { _ in .delete }
                #expect(result.previous == bytes("one+two") && result.sequence == 3)
                #expect(store.get(bytes("k")) == nil)
                // Missing key, delete: nothing written.
                result = try store.update(bytes("k")) { _ in .delete }
                #expect(result.previous == nil && result.sequence == nil)
                // The empty value is a value, not a missing key.
                result = try store.update([]) { _ in .set([]) }
                #expect(result.sequence == 4)
                result = try store.update([]) { current in
                    seen.append(current)
                    return .keep
                }
                #expect(result.previous == [] && result.sequence == nil)
                #expect(seen == [nil, nil, bytes("one"), []])
                #expect(try store.set(bytes("z"), []) == 5, "no sequence number was used by the updates that wrote nothing")
                try store.commit()
                try store.close()
            }
            let log = try parseLogFile(logPath(root))
            #expect(log.records.map(\.sequence) == [1, 2, 3, 4, 5])
            #expect(log.records.map(\.operation) == [
                .set(key: bytes("k"), value: bytes("one")),
                .set(key: bytes("k"), value: bytes("one+two")),
                .delete(keys: [bytes("k")]),
                .set(key: [], value: []),
                .set(key: bytes("z"), value: []),
            ])
            let store = try KVStore(directory: root)
            defer { try? store.close() }
            expectContents(store, equal: [[]: [], bytes("z"): []])
        }
    }

    @Test("a transform that throws writes nothing and its error comes out unchanged")
    func throwingTransform() throws {
        try withTempDir { root in
            let store = try KVStore(directory: root)
            defer { try? store.close() }
            try store.set(bytes("k"), bytes("v"))
            #expect(throws: Refused()) {
                try store.update(bytes("k")) { _ in throw Refused() }
            }
            #expect(store.get(bytes("k")) == bytes("v"))
            #expect(store.statistics.lastSequence == 1)
            // The lock was released: the store still works.
            #expect(try store.update(bytes("k")) { _ in .set(bytes("w")) }.sequence == 2)
        }
    }

    @Test("update refuses a key or new value above the limits before writing, and a closed store before transforming")
    func limitsAndClosed() throws {
        try withTempDir { root in
            let store = try KVStore(directory: root)
            let hugeKey = [UInt8](repeating: 0x61, count: LogFormat.maxKeySize + 1)
            let calls = Calls()
            let keyError = storeError {
                try store.update(hugeKey) { _ in
                    calls.record()
                    return .set([])
                }
            }
            #expect(keyError == .tooLarge(what: "key", size: LogFormat.maxKeySize + 1, limit: LogFormat.maxKeySize))
            #expect(calls.value == 0)
            let valueError = storeError {
                try store.update(bytes("k")) { _ in .set([UInt8](repeating: 0, count: LogFormat.maxValueSize + 1)) }
            }
            #expect(valueError == .tooLarge(what: "value", size: LogFormat.maxValueSize + 1, limit: LogFormat.maxValueSize))
            #expect(store.get(bytes("k")) == nil)
            #expect(store.statistics.lastSequence == 0)
            try store.close()
            let closedError = storeError {
                try store.update(bytes("k")) { _ in
                    calls.record()
                    return .keep
                }
            }
            #expect(closedError == .closed)
            #expect(calls.value == 0)
        }
    }

    @Test("threads incrementing one counter through update: the final value is exact, every write logged in order")
    func concurrentIncrements() throws {
        try withTempDir { root in
            let threads = 4, perThread = 250
            do {
                let store = try KVStore(directory: root, syncPolicy: .none)
                let failures = Atomic<Int>(0)
                DispatchQueue.concurrentPerform(iterations: threads) { _ in
                    for i in 0..<perThread {
                        do {
                            try store.update(bytes("counter")) { current in
                                let value = current.flatMap { Int(String(decoding: $0, as: UTF8.self)) } ?? 0
                                return .set(Array(String(value + 1).utf8))
                            }
                            if i % 50 == 49 { try store.commit() }
                        } catch {
                            failures.add(1, ordering: .relaxed)
                        }
                    }
                }
                #expect(failures.load(ordering: .relaxed) == 0)
                #expect(store.get(bytes("counter")) == bytes(String(threads * perThread)))
                try store.commit()
                try store.close()
            }
            let log = try parseLogFile(logPath(root))
            #expect(log.records.map(\.operation) == (1...(threads * perThread)).map { .set(key: bytes("counter"), value: bytes(String($0))) })
            let store = try KVStore(directory: root)
            defer { try? store.close() }
            #expect(store.get(bytes("counter")) == bytes(String(threads * perThread)))
        }
    }

    @Test("values(for:) reads several keys at once; valueLength(_:) gives a value's length without copying it")
    func multiGetAndLength() throws {
        try withTempDir { root in
            let store = try KVStore(directory: root)
            defer { try? store.close() }
            try store.set(bytes("a"), bytes("1"))
            try store.set(bytes("e"), [])
            #expect(store.values(for: [bytes("a"), bytes("b"), bytes("e"), bytes("a")]) == [bytes("1"), nil, [], bytes("1")])
            #expect(store.values(for: []) == [])
            #expect(store.valueLength(bytes("a")) == 1)
            #expect(store.valueLength(bytes("e")) == 0)
            #expect(store.valueLength(bytes("b")) == nil)
            try store.set(bytes("a"), [UInt8](repeating: 7, count: 70_000))
            #expect(store.valueLength(bytes("a")) == 70_000)
        }
    }
}

@Suite("Multi-key set")
struct MultiSetTests {
    @Test("multiSet writes one MULTI-SET record, applied in order; it survives a reopen")
    func oneRecord() throws {
        try withTempDir { root in
            let pairs: [(key: [UInt8], value: [UInt8])] = [
                (bytes("b"), bytes("2")), (bytes("a"), []), ([], bytes("empty key")), (bytes("b"), bytes("two")),
                ([0x00, 0xFF], [0x0A, 0x00]),
            ]
            let model: [[UInt8]: [UInt8]] = [
                bytes("a"): [], bytes("b"): bytes("two"), []: bytes("empty key"), [0x00, 0xFF]: [0x0A, 0x00], bytes("old"): bytes("x"),
            ]
            do {
                let store = try KVStore(directory: root)
                try store.set(bytes("old"), bytes("x"))
                try store.set(bytes("a"), bytes("overwritten"))
                #expect(try store.multiSet(pairs) == 3)
                expectContents(store, equal: model)
                #expect(try store.multiSet([]) == nil, "no pairs: nothing written")
                #expect(try store.set(bytes("next"), []) == 4)
                try store.commit()
                #expect(store.statistics.logBytes == LogFormat.fileHeaderSize + setRecordSize(bytes("old"), bytes("x"))
                    + setRecordSize(bytes("a"), bytes("overwritten")) + multiSetRecordSize(pairs.map { ($0.key, $0.value) })
                    + setRecordSize(bytes("next"), []))
                try store.close()
            }
            let log = try parseLogFile(logPath(root))
            #expect(log.records.map(\.sequence) == [1, 2, 3, 4])
            #expect(log.records[2].operation == .multiSet(keys: pairs.map(\.key), values: pairs.map(\.value)))
            #expect(log.validLength == fileSize(logPath(root)))
            var expected = model
            expected[bytes("next")] = []
            let store = try KVStore(directory: root)
            defer { try? store.close() }
            #expect(store.openReport.records == 4)
            expectContents(store, equal: expected)
            // And again after a rebuild, which replays the same log.
            let report = try store.rebuild()
            #expect(report.records == 4)
            expectContents(store, equal: expected)
        }
    }

    @Test("one pair is written as a plain SET record")
    func onePair() throws {
        try withTempDir { root in
            do {
                let store = try KVStore(directory: root)
                #expect(try store.multiSet([(bytes("k"), bytes("v"))]) == 1)
                try store.close()
            }
            #expect(try parseLogFile(logPath(root)).records.map(\.operation) == [.set(key: bytes("k"), value: bytes("v"))])
        }
    }

    @Test("multiSet refuses an oversized key before writing anything")
    func limits() throws {
        try withTempDir { root in
            let store = try KVStore(directory: root)
            defer { try? store.close() }
            let bigKey = [UInt8](repeating: 1, count: LogFormat.maxKeySize + 1)
            #expect(storeError { try store.multiSet([(bytes("a"), []), (bigKey, [])]) }
                == .tooLarge(what: "key", size: bigKey.count, limit: LogFormat.maxKeySize))
            #expect(store.count == 0)
            #expect(store.statistics.lastSequence == 0)
        }
    }

    @Test("record encoding: pair count, then key length, value length, key, value per pair")
    func encoding() {
        var buffer: [UInt8] = []
        LogFormat.appendMultiSet(pairs: [(bytes("a"), bytes("1")), (bytes("bc"), [])], sequence: 9, to: &buffer)
        #expect(buffer.count == multiSetRecordSize([(bytes("a"), bytes("1")), (bytes("bc"), [])]))
        #expect(Array(buffer[4..<8]) == [24, 0, 0, 0])  // 4 + (8 + 1 + 1) + (8 + 2 + 0)
        #expect(buffer[8] == LogFormat.RecordType.multiSet.rawValue)
        #expect(buffer[8] == 5)
        #expect(Array(buffer[9..<17]) == [9, 0, 0, 0, 0, 0, 0, 0])
        #expect(Array(buffer[17...]) == [2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0x61, 0x31, 2, 0, 0, 0, 0, 0, 0, 0, 0x62, 0x63])
        #expect(littleEndian(buffer, at: 0, as: UInt32.self) == CRC32C.checksum(Array(buffer[4...])))
    }

    @Test("payloads whose lengths do not add up do not decode", arguments: [
        [0, 0, 0, 0, 0] as [UInt8],                  // a byte after zero pairs
        [1, 0, 0, 0],                                // one pair announced, none there
        [1, 0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 0, 0x61],  // value runs past the end
        [2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],        // second pair missing
        [0xFF, 0xFF, 0xFF, 0xFF],                    // absurd count
        [1, 0, 0],                                   // count cut short
    ])
    func badPayloads(payload: [UInt8]) {
        let decoded = payload.withUnsafeBytes { LogRecordView.decode(type: .multiSet, payload: $0) }
        #expect(decoded == nil)
        let good: [UInt8] = [1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0x61, 0x62]
        let pairs = good.withUnsafeBytes { raw -> [[UInt8]]? in
            guard case .multiSet(let pairs)? = LogRecordView.decode(type: .multiSet, payload: raw) else { return nil }
            return pairs.flatMap { [Array($0.key), Array($0.value)] }
        }
        #expect(pairs == [bytes("a"), bytes("b")])
    }

    @Test("a MULTI-SET record with a bad payload but a good checksum is corruption at its offset")
    func badPayloadIsCorruption() throws {
        try withTempDir { root in
            do {
                let store = try KVStore(directory: root)
                try store.set(bytes("a"), bytes("1"))
                try store.close()
            }
            var record: [UInt8] = []
            LogFormat.appendRecord(type: .multiSet, sequence: 2, payloadLength: 4, to: &record) {
                LogFormat.appendLittleEndian(UInt32(1), to: &$0)
            }
            let offset = fileSize(logPath(root))
            try appendFile(logPath(root), record)
            #expect(storeError { _ = try KVStore(directory: root) }
                == .corruption(file: logPath(root), offset: offset, reason: "record payload lengths do not add up"))
        }
    }

    @Test("a MULTI-SET record in an image is corruption")
    func notInImages() throws {
        try withTempDir { root in
            do {
                let store = try KVStore(directory: root)
                try store.multiSet([(bytes("a"), bytes("1")), (bytes("b"), bytes("2"))])
                _ = try store.checkpoint()
                try store.close()
            }
            let image = root + "/000002.image"
            var contents = try readFile(image)
            // Replace the first block by a multi-set record numbered 1.
            let blockLength = Int(littleEndian(contents, at: LogFormat.fileHeaderSize + 4, as: UInt32.self))
            var record: [UInt8] = []
            LogFormat.appendMultiSet(pairs: [(bytes("a"), bytes("1")), (bytes("b"), bytes("2"))], sequence: 1, to: &record)
            contents.replaceSubrange(LogFormat.fileHeaderSize..<(LogFormat.fileHeaderSize + LogFormat.recordHeaderSize + blockLength), with: record)
            try writeFile(image, contents)
            #expect(storeError { _ = try KVStore(directory: root) }
                == .corruption(file: image, offset: LogFormat.fileHeaderSize, reason: "log record (type 5) in an image"))
        }
    }

    @Test("multiSet from many threads: each record is applied whole, never interleaved with another")
    func concurrentMultiSets() throws {
        try withTempDir { root in
            let threads = 4, rounds = 200
            do {
                let store = try KVStore(directory: root, syncPolicy: .none)
                DispatchQueue.concurrentPerform(iterations: threads) { thread in
                    for round in 0..<rounds {
                        let value = bytes("t\(thread)r\(round)")
                        _ = try? store.multiSet([(bytes("x"), value), (bytes("y"), value), (bytes("z"), value)])
                        let seen = store.values(for: [bytes("x"), bytes("y"), bytes("z")])
                        #expect(seen[0] == seen[1] && seen[1] == seen[2], "a reader saw half of a multi-set")
                    }
                }
                try store.close()
            }
            let store = try KVStore(directory: root)
            defer { try? store.close() }
            #expect(store.openReport.records == threads * rounds)
            let seen = store.values(for: [bytes("x"), bytes("y"), bytes("z")])
            #expect(seen[0] != nil && seen[0] == seen[1] && seen[1] == seen[2])
        }
    }
}

@Suite("Multi-key set: checker and import")
struct MultiSetCheckerTests {
    /// A closed store whose log is SET a, MSET (b, c, d), SET e, MSET (a, f), SET g: records 1...5.
    static func make(_ directory: String) throws -> (offsets: [Int], sizes: [Int], model: [[UInt8]: [UInt8]]) {
        let store = try KVStore(directory: directory, syncPolicy: .none)
        var offsets: [Int] = [], sizes: [Int] = []
        var offset = LogFormat.fileHeaderSize
        func note(_ size: Int) {
            offsets.append(offset)
            sizes.append(size)
            offset += size
        }
        try store.set(bytes("a"), bytes("1"))
        note(setRecordSize(bytes("a"), bytes("1")))
        let first: [([UInt8], [UInt8])] = [(bytes("b"), bytes("2")), (bytes("c"), bytes("3")), (bytes("d"), bytes("4"))]
        try store.multiSet(first.map { (key: $0.0, value: $0.1) })
        note(multiSetRecordSize(first))
        try store.set(bytes("e"), bytes("5"))
        note(setRecordSize(bytes("e"), bytes("5")))
        let second: [([UInt8], [UInt8])] = [(bytes("a"), bytes("one")), (bytes("f"), bytes("6"))]
        try store.multiSet(second.map { (key: $0.0, value: $0.1) })
        note(multiSetRecordSize(second))
        try store.set(bytes("g"), bytes("7"))
        note(setRecordSize(bytes("g"), bytes("7")))
        try store.close()
        let model: [[UInt8]: [UInt8]] = [
            bytes("a"): bytes("one"), bytes("b"): bytes("2"), bytes("c"): bytes("3"), bytes("d"): bytes("4"),
            bytes("e"): bytes("5"), bytes("f"): bytes("6"), bytes("g"): bytes("7"),
        ]
        return (offsets, sizes, model)
    }

    @Test("check counts MULTI-SET records and their keys")
    func clean() throws {
        try withTempDir { root in
            let (_, _, model) = try Self.make(root)
            let report = try StoreChecker.check(directory: root)
            #expect(report.isClean, "\(report)")
            #expect(report.records == 5)
            #expect(report.keys == model.count)
            #expect(report.lastSequence == 5)
        }
    }

    @Test("salvage keeps MULTI-SET records around a damaged one, and loses the damaged one whole")
    func salvage() throws {
        try withTempDir { root in
            let (offsets, sizes, _) = try Self.make(root)
            var damaged = try readFile(logPath(root))
            damaged[offsets[2] + LogFormat.recordHeaderSize] ^= 0x01  // the SET of e, between the two multi-sets
            damaged[offsets[1] + sizes[1] - 1] ^= 0x01  // the last byte of the first multi-set (d's value)
            try writeFile(logPath(root), damaged)
            let report = try StoreChecker.check(directory: root)
            #expect(report.status == .corrupt)
            #expect(report.problem?.offset == offsets[1])
            let salvaged = try StoreChecker.repair(directory: root, salvage: true)
            #expect(salvaged.repair?.outcome == .salvaged)
            #expect(salvaged.repair?.lost == StoreChecker.Loss(records: 2, bytes: sizes[1] + sizes[2], imageEntries: 0))
            #expect(salvaged.isClean, "\(salvaged)")
            let store = try KVStore(directory: root)
            defer { try? store.close() }
            // The second multi-set (a, f) and the last SET are kept; nothing of the first multi-set is.
            expectContents(store, equal: [bytes("a"): bytes("one"), bytes("f"): bytes("6"), bytes("g"): bytes("7")])
        }
    }

    @Test("a torn MULTI-SET at the end: check reports the torn tail open cuts; repair cuts it")
    func tornTail() throws {
        try withTempDir { root in
            let (offsets, sizes, _) = try Self.make(root)
            let full = try readFile(logPath(root))
            // Drop the last SET, then cut the second multi-set in the middle of a's new value.
            let cut = offsets[3] + sizes[3] - 3
            try writeFile(logPath(root), Array(full[..<cut]))
            let report = try StoreChecker.check(directory: root)
            #expect(report.status == .tornTail)
            #expect(report.problem?.offset == offsets[3])
            #expect(report.problem?.bytes == cut - offsets[3])
            let repaired = try StoreChecker.repair(directory: root, salvage: false)
            #expect(repaired.repair?.outcome == .cutTornTail)
            #expect(fileSize(logPath(root)) == offsets[3])
            let store = try KVStore(directory: root)
            defer { try? store.close() }
            expectContents(store, equal: [
                bytes("a"): bytes("1"), bytes("b"): bytes("2"), bytes("c"): bytes("3"), bytes("d"): bytes("4"), bytes("e"): bytes("5"),
            ])
        }
    }

    @Test("importing a kvsh log applies each MULTI-SET whole and counts one set per pair")
    func importing() throws {
        try withTempDir { root in
            let (_, _, model) = try Self.make(root + "/source")
            let store = try KVStore(directory: root + "/target")
            defer { try? store.close() }
            let summary = try LogImporter.importLog(at: logPath(root + "/source"), into: store)
            #expect(summary.sets == 8)
            #expect(summary.deletes == 0)
            expectContents(store, equal: model)
            try store.commit()
            let log = try parseLogFile(logPath(root + "/target"))
            #expect(log.records.map(\.operation) == [
                .set(key: bytes("a"), value: bytes("1")),
                .multiSet(keys: [bytes("b"), bytes("c"), bytes("d")], values: [bytes("2"), bytes("3"), bytes("4")]),
                .set(key: bytes("e"), value: bytes("5")),
                .multiSet(keys: [bytes("a"), bytes("f")], values: [bytes("one"), bytes("6")]),
                .set(key: bytes("g"), value: bytes("7")),
            ])
        }
    }
}
