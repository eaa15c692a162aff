#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVTestSupport
import Testing
@testable import KVStore

@Suite("Directory and lock")
struct DirectoryTests {
    @Test("opening a directory twice in one process fails with locked and our pid; after close it opens again")
    func lock() throws {
        try withTempDir { root in
            let first = try KVStore(directory: root)
            try first.set(bytes("k"), bytes("v"))
            #expect(throws: StoreError.locked(directory: root, holderPID: getpid())) {
                _ = try KVStore(directory: root)
            }
            // The failed attempt did not disturb the holder.
            #expect(first.get(bytes("k")) == bytes("v"))
            try first.set(bytes("k2"), bytes("v2"))
            try first.commit()
            #expect(try readFile(root + "/LOCK") == bytes("\(getpid())\n"))
            try first.close()
            let second = try KVStore(directory: root)
            defer { try? second.close() }
            #expect(second.get(bytes("k")) == bytes("v"))
            #expect(second.get(bytes("k2")) == bytes("v2"))
            let message = StoreError.locked(directory: root, holderPID: 42).description
            #expect(message.contains(root) && message.contains("pid 42"))
        }
    }

    @Test("dropping the last reference closes the store and releases the lock")
    func deinitReleasesLock() throws {
        try withTempDir { root in
            do {
                let store = try KVStore(directory: root)
                try store.set(bytes("k"), bytes("v"))
            }
            let store = try KVStore(directory: root)
            defer { try? store.close() }
            #expect(store.get(bytes("k")) == bytes("v"))
        }
    }

    @Test("a data directory path that is a regular file is notADirectory")
    func regularFile() throws {
        try withTempDir { root in
            let path = root + "/file"
            try writeFile(path, bytes("not a directory"))
            #expect(throws: StoreError.notADirectory(path: path)) { _ = try KVStore(directory: path) }
            #expect(try readFile(path) == bytes("not a directory"))
        }
    }

    @Test("a path below a regular file fails with an I/O error")
    func belowRegularFile() throws {
        try withTempDir { root in
            try writeFile(root + "/file", [])
            let error = storeError { _ = try KVStore(directory: root + "/file/store") }
            guard case .io(_, _, let code)? = error else {
                Issue.record("expected an I/O error, got \(String(describing: error))")
                return
            }
            #expect(code == ENOTDIR)
        }
    }

    @Test("missing parent directories are created", arguments: ["/a/b/c", "/a/b/c/", "/x"])
    func missingParents(suffix: String) throws {
        try withTempDir { root in
            let path = root + suffix
            do {
                let store = try KVStore(directory: path)
                try store.set(bytes("k"), bytes("v"))
                try store.close()
            }
            #expect(isDirectoryPath(path))
            #expect(fileExists(root + suffix.split(separator: "/").map { "/" + $0 }.joined() + "/000001.log"))
            let store = try KVStore(directory: path)
            defer { try? store.close() }
            #expect(store.get(bytes("k")) == bytes("v"))
        }
    }

    @Test("parentDirectory and logFileName")
    func pathHelpers() {
        #expect(DataDirectory.parentDirectory(of: "/a/b/c") == "/a/b")
        #expect(DataDirectory.parentDirectory(of: "/a/b/c/") == "/a/b")
        #expect(DataDirectory.parentDirectory(of: "/a") == "/")
        #expect(DataDirectory.parentDirectory(of: "a") == ".")
        #expect(DataDirectory.parentDirectory(of: "a/b") == "a")
        #expect(DataDirectory.logFileName(1) == "000001.log")
        #expect(DataDirectory.logFileName(123456) == "123456.log")
        #expect(DataDirectory.logFileName(1234567) == "1234567.log")
        #expect(DataDirectory.join("/a", "b") == "/a/b")
        #expect(DataDirectory.join("/a/", "b") == "/a/b")
    }
}

@Suite("Deletes and sequence numbers")
struct DeleteAndSequenceTests {
    @Test("DELETE a b c with a and c present is one record and returns 2; a key named twice counts once")
    func multiKeyDelete() throws {
        try withTempDir { root in
            do {
                let store = try KVStore(directory: root)
                #expect(try store.set(bytes("a"), bytes("1")) == 1)
                #expect(try store.set(bytes("c"), bytes("3")) == 2)
                #expect(try store.set(bytes("d"), bytes("4")) == 3)
                #expect(try store.delete([bytes("a"), bytes("b"), bytes("c")]) == 2)
                #expect(store.get(bytes("a")) == nil)
                #expect(store.get(bytes("c")) == nil)
                #expect(try store.delete([bytes("d"), bytes("d"), bytes("d")]) == 1)
                // Nothing to delete: no record, no sequence number used.
                #expect(try store.delete([bytes("a"), bytes("zz")]) == 0)
                #expect(try store.delete([]) == 0)
                #expect(try store.set(bytes("e"), bytes("5")) == 6)
                try store.commit()
                #expect(store.statistics.lastSequence == 6)
                try store.close()
            }
            let log = try parseLogFile(logPath(root))
            #expect(log.records.map(\.sequence) == [1, 2, 3, 4, 5, 6])
            #expect(log.records.map(\.operation) == [
                .set(key: bytes("a"), value: bytes("1")),
                .set(key: bytes("c"), value: bytes("3")),
                .set(key: bytes("d"), value: bytes("4")),
                .delete(keys: [bytes("a"), bytes("c")]),
                .delete(keys: [bytes("d")]),
                .set(key: bytes("e"), value: bytes("5")),
            ])
            #expect(log.firstSequence == 1)
            #expect(log.validLength == fileSize(logPath(root)))
            let store = try KVStore(directory: root)
            defer { try? store.close() }
            #expect(store.openReport.records == 6)
            #expect(store.openReport.keys == 1)
            expectContents(store, equal: [bytes("e"): bytes("5")])
        }
    }

    @Test("EXISTS counts a key named twice twice")
    func countExisting() throws {
        try withTempDir { root in
            let store = try KVStore(directory: root)
            defer { try? store.close() }
            try store.set(bytes("a"), [])
            #expect(store.countExisting([bytes("a"), bytes("a"), bytes("b")]) == 2)
            #expect(store.countExisting([]) == 0)
        }
    }

    @Test("set returns increasing sequence numbers that continue across reopens")
    func sequenceContinuity() throws {
        try withTempDir { root in
            var expected: UInt64 = 1
            for round in 0..<4 {
                let store = try KVStore(directory: root, syncPolicy: round % 2 == 0 ? .always : .none)
                #expect(store.statistics.lastSequence == expected - 1, "round \(round)")
                for i in 0..<5 {
                    #expect(try store.set(bytes("k\(i)"), bytes("r\(round)")) == expected)
                    expected += 1
                }
                #expect(try store.delete([bytes("k0")]) == 1)
                expected += 1  // the delete took one
                if round % 2 == 0 { try store.commit() }
                try store.close()
            }
            let log = try parseLogFile(logPath(root))
            #expect(log.records.map(\.sequence) == Array(1..<expected))
        }
    }
}

@Suite("Borrowed bytes and background fsync")
struct BorrowedBytesTests {
    @Test("set from borrowed bytes and withValue read the same store as the array API, and survive a reopen")
    func borrowed() throws {
        try withTempDir { root in
            do {
                let store = try KVStore(directory: root)
                let request = bytes("SETkey\r\nvalue")  // key and value lie inside a larger buffer, as in a read
                try request.withUnsafeBytes { raw in
                    _ = try store.set(UnsafeRawBufferPointer(rebasing: raw[3..<8]), UnsafeRawBufferPointer(rebasing: raw[8...]))
                }
                #expect(store.get(bytes("key\r\n")) == bytes("value"))
                try store.set(bytes("empty"), [])
                bytes("key\r\n").withUnsafeBytes { key in
                    #expect(store.withValue(for: key) { $0.map(Array.init) } == bytes("value"))
                }
                bytes("empty").withUnsafeBytes { key in
                    #expect(store.withValue(for: key) { $0.map(Array.init) } == [])
                }
                bytes("missing").withUnsafeBytes { key in
                    #expect(store.withValue(for: key) { $0 == nil })
                }
                try store.commit()
                try store.close()
            }
            let reopened = try KVStore(directory: root)
            defer { try? reopened.close() }
            #expect(reopened.get(bytes("key\r\n")) == bytes("value"))
            #expect(reopened.get(bytes("empty")) == [])
        }
    }

    @Test("the everysec tick writes and fsyncs what is pending, and counts the fsync")
    func backgroundSync() throws {
        try withTempDir { root in
            // `.none` runs no timer of its own, so nothing but the calls below fsyncs; the tick is the same code.
            let store = try KVStore(directory: root, syncPolicy: .none)
            defer { try? store.close() }
            for index in 0..<100 { try store.set(bytes("k\(index)"), bytes("v\(index)")) }
            let before = store.statistics
            #expect(before.syncedSequence < before.lastSequence)
            try store.syncInBackground()
            let after = store.statistics
            #expect(after.syncedSequence == after.lastSequence)
            #expect(after.fsyncs > before.fsyncs)
            #expect(after.logBytes == fileSize(after.logFile))
            // Nothing new: no second fsync.
            try store.syncInBackground()
            #expect(store.statistics.fsyncs == after.fsyncs)
        }
    }
}

@Suite("Rebuild and import")
struct RebuildAndImportTests {
    @Test("rebuild() keeps the contents and reports the log's keys, records and bytes")
    func rebuild() throws {
        try withTempDir { root in
            let store = try KVStore(directory: root)
            defer { try? store.close() }
            var model: [[UInt8]: [UInt8]] = [:]
            for i in 0..<300 {
                let key = bytes("key\(i % 120)")
                try store.set(key, bytes("value\(i)"))
                model[key] = bytes("value\(i)")
            }
            #expect(try store.delete((0..<10).map { bytes("key\($0)") }) == 10)
            for i in 0..<10 { model[bytes("key\(i)")] = nil }
            try store.commit()
            try store.set(bytes("uncommitted"), bytes("x"))  // rebuild writes pending records first
            model[bytes("uncommitted")] = bytes("x")
            let report = try store.rebuild()
            #expect(report.keys == model.count)
            #expect(report.records == 302)
            #expect(report.logFiles == 1)
            #expect(report.logBytes == fileSize(logPath(root)))
            #expect(report.tornTail == nil)
            expectContents(store, equal: model)
            #expect(try store.set(bytes("after"), []) == 303)
            model[bytes("after")] = []
            expectContents(store, equal: model)
            #expect(store.statistics.logBytes == report.logBytes + setRecordSize(bytes("after"), []))
        }
    }

    /// A closed store holding a known model, with sets and deletes in its log.
    static func makeSourceStore(_ directory: String) throws -> (model: [[UInt8]: [UInt8]], sets: Int, deletes: Int) {
        let store = try KVStore(directory: directory)
        var model: [[UInt8]: [UInt8]] = [:]
        var rng = SplitMix64(seed: 11)
        var sets = 0, deletes = 0
        for i in 0..<200 {
            let key = bytes("k\(Int.random(in: 0..<40, using: &rng))")
            if i % 5 == 4 {
                let other = bytes("k\(Int.random(in: 0..<40, using: &rng))")
                if try store.delete([key, other]) > 0 { deletes += 1 }
                model[key] = nil
                model[other] = nil
            } else if i % 7 == 6 {
                // A MULTI-SET record: imported atomically, counted as one set per pair.
                var pairs: [(key: [UInt8], value: [UInt8])] = []
                for _ in 0..<3 {
                    pairs.append((bytes("k\(Int.random(in: 0..<40, using: &rng))"), rng.bytes(Int.random(in: 0...20, using: &rng))))
                }
                try store.multiSet(pairs)
                for (key, value) in pairs { model[key] = value }
                sets += pairs.count
            } else {
                let value = rng.bytes(Int.random(in: 0...20, using: &rng))
                try store.set(key, value)
                model[key] = value
                sets += 1
            }
        }
        try store.close()
        return (model, sets, deletes)
    }

    @Test("importing another store's log, as a file and as a directory", arguments: [false, true])
    func importKVSHLog(asDirectory: Bool) throws {
        try withTempDir { root in
            let (model, sets, deletes) = try Self.makeSourceStore(root + "/source")
            let store = try KVStore(directory: root + "/target")
            defer { try? store.close() }
            // Existing data: overwritten by the import, deleted by it, or left alone.
            try store.set(bytes("k1"), bytes("old"))
            try store.set(bytes("mine"), bytes("kept"))
            let summary = try LogImporter.importLog(at: asDirectory ? root + "/source" : logPath(root + "/source"), into: store)
            #expect(summary.format == "kvsh log")
            #expect(summary.sets == sets)
            #expect(summary.deletes == deletes)
            #expect(summary.skipped == 0)
            #expect(summary.tornTail == nil)
            // What the target must hold: its own data with every record of the source replayed on top.
            var expected: [[UInt8]: [UInt8]] = [bytes("k1"): bytes("old"), bytes("mine"): bytes("kept")]
            for (_, operation) in try parseLogFile(logPath(root + "/source")).records {
                switch operation {
                case .set(let key, let value): expected[key] = value
                case .delete(let keys): for key in keys { expected[key] = nil }
                case .multiSet(let keys, let values): for (key, value) in zip(keys, values) { expected[key] = value }
                }
            }
            #expect(expected[bytes("mine")] == bytes("kept"))
            for (key, value) in model { #expect(expected[key] == value) }
            expectContents(store, equal: expected)
            try store.commit()
            try store.close()
            let reopened = try KVStore(directory: root + "/target")
            defer { try? reopened.close() }
            expectContents(reopened, equal: expected)
        }
    }

    @Test("a directory without log files is a bad import")
    func importEmptyDirectory() throws {
        try withTempDir { root in
            try makeDirectory(root + "/empty")
            let store = try KVStore(directory: root + "/target")
            defer { try? store.close() }
            let error = storeError { _ = try LogImporter.importLog(at: root + "/empty", into: store) }
            guard case .badImport(let file, let line, _)? = error else {
                Issue.record("expected badImport, got \(String(describing: error))")
                return
            }
            #expect(file == root + "/empty")
            #expect(line == nil)
        }
    }

    @Test("importing a Go StorageEngine JSON-lines log")
    func importGoLog() throws {
        try withTempDir { root in
            let path = root + "/go.log"
            try writeFile(path, bytes("""
                {"operation":"SET","key":"k","value":"v"}
                {"operation":"SET","key":"k2","value":"v2"}

                {"operation":"GET","key":"k"}
                {"operation":"DELETE","key":"k2"}
                \t \r
                {"operation":"EXISTS","key":"k"}
                {"operation":"set","key":"ü\\n","value":"\\u00e9 \\"quoted\\""}
                {"operation":"SET","key":"gone","value":""}
                {"operation":"DEL","key":"gone"}
                {"operation":"SET","key":"","value":"empty key"}\r
                {"operation":"DELETE","key":"never-existed"}
                """))
            let store = try KVStore(directory: root + "/target")
            defer { try? store.close() }
            try store.set(bytes("k2"), bytes("before"))
            let summary = try LogImporter.importLog(at: path, into: store)
            #expect(summary.format == "Go StorageEngine JSON lines")
            #expect(summary.source == path)
            #expect(summary.sets == 5)
            #expect(summary.deletes == 3)
            #expect(summary.skipped == 2)
            expectContents(store, equal: [
                bytes("k"): bytes("v"),
                bytes("ü\n"): bytes("é \"quoted\""),
                []: bytes("empty key"),
            ])
        }
    }

    @Test("a malformed JSON line or an unknown operation imports nothing and names the line",
          arguments: [
            ("{\"operation\":\"SET\",\"key\":\"a\",\"value\":\"1\"}\n\n{\"operation\":\"SET\",\"key\":\"b\"", 3),
            ("{\"operation\":\"SET\",\"key\":\"a\",\"value\":\"1\"}\n{\"operation\":\"INCR\",\"key\":\"a\"}\n", 2),
            ("{\"operation\":\"SET\",\"key\":\"a\",\"value\":\"1\"}\n{\"operation\":\"SET\",\"key\":\"b\"}\n", 2),
            ("not json at all\n", 1),
            ("{\"operation\":\"SET\",\"value\":\"no key\"}", 1),
            ("{\"operation\":\"SET\",\"key\":\"a\",\"value\":\"1\"}\n{\"operation\":\"SET\",\"key\":\"b\",\"value\":\"2\"}\n[1,2]\n", 3),
          ])
    func badGoLog(text: String, line: Int) throws {
        try withTempDir { root in
            let path = root + "/go.log"
            try writeFile(path, bytes(text))
            let store = try KVStore(directory: root + "/target")
            defer { try? store.close() }
            try store.set(bytes("existing"), bytes("x"))
            let error = storeError { _ = try LogImporter.importLog(at: path, into: store) }
            guard case .badImport(let file, let reported, _)? = error else {
                Issue.record("expected badImport, got \(String(describing: error))")
                return
            }
            #expect(file == path)
            #expect(reported == line)
            #expect(error!.description.contains("line \(line)"))
            expectContents(store, equal: [bytes("existing"): bytes("x")], "nothing may be imported")
            #expect(store.statistics.lastSequence == 1)
        }
    }

    @Test("a kvsh log with a torn tail imports its good records and reports the tail")
    func importTornKVSHLog() throws {
        try withTempDir { root in
            let source = root + "/source"
            do {
                let store = try KVStore(directory: source)
                try store.set(bytes("a"), bytes("1"))
                try store.set(bytes("b"), bytes("2"))
                try store.close()
            }
            let full = try readFile(logPath(source))
            let copy = root + "/torn.log"
            try writeFile(copy, Array(full.dropLast(3)))
            let store = try KVStore(directory: root + "/target")
            defer { try? store.close() }
            let summary = try LogImporter.importLog(at: copy, into: store)
            #expect(summary.sets == 1)
            let tail = try #require(summary.tornTail)
            #expect(tail.offset == LogFormat.fileHeaderSize + setRecordSize(bytes("a"), bytes("1")))
            #expect(fileSize(copy) == full.count - 3, "importing must not modify the source")
            expectContents(store, equal: [bytes("a"): bytes("1")])
        }
    }

    @Test("a corrupt kvsh log imports nothing")
    func importCorruptKVSHLog() throws {
        try withTempDir { root in
            let source = root + "/source"
            do {
                let store = try KVStore(directory: source)
                for i in 0..<3 { try store.set(bytes("k\(i)"), bytes("v\(i)")) }
                try store.close()
            }
            var log = try readFile(logPath(source))
            log[LogFormat.fileHeaderSize + LogFormat.recordHeaderSize + 1] ^= 1
            try writeFile(logPath(source), log)
            let store = try KVStore(directory: root + "/target")
            defer { try? store.close() }
            let error = storeError { _ = try LogImporter.importLog(at: logPath(source), into: store) }
            guard case .badImportRecord(_, let offset, _)? = error else {
                Issue.record("expected badImportRecord, got \(String(describing: error))")
                return
            }
            #expect(offset == LogFormat.fileHeaderSize)
            #expect(store.count == 0)
        }
    }
}

@Suite("CRC32C")
struct CRC32CTests {
    @Test("the standard check value")
    func checkValue() {
        #expect(CRC32C.checksum(bytes("123456789")) == 0xE306_9283)
        // Other published CRC-32C vectors (RFC 3720, B.4).
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        #expect(CRC32C.checksum((0..<32).map { UInt8(31 - $0) }) == 0x113F_DB5C)
    }

    @Test("an empty buffer")
    func empty() {
        #expect(CRC32C.checksum([]) == 0)
        [UInt8]().withUnsafeBytes { #expect(CRC32C.checksum($0, extending: 0x1234_5678) == 0x1234_5678) }
        #expect(CRC32C.checksum(UnsafeRawBufferPointer(start: nil, count: 0)) == 0)
    }

    @Test("extending piece by piece equals one shot, for every split and odd alignments")
    func extending() {
        var rng = SplitMix64(seed: 3)
        let data = rng.bytes(1000)
        let whole = CRC32C.checksum(data)
        data.withUnsafeBytes { raw in
            for split in [0, 1, 3, 7, 8, 9, 15, 16, 17, 500, 999, 1000] {
                let first = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[..<split]))
                let both = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[split...]), extending: first)
                #expect(both == whole, "split at \(split)")
            }
            // Many small unaligned pieces.
            var crc: UInt32 = 0
            var offset = 0
            while offset < raw.count {
                let length = min(Int.random(in: 1...13, using: &rng), raw.count - offset)
                crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + length)]), extending: crc)
                offset += length
            }
            #expect(crc == whole)
            // A buffer that starts at an odd address gives the same result as an aligned copy.
            let unaligned = UnsafeRawBufferPointer(rebasing: raw[1..<1000])
            #expect(CRC32C.checksum(unaligned) == CRC32C.checksum(Array(data[1...])))
        }
    }

    @Test("against a bitwise reference implementation")
    func reference() {
        func reference(_ bytes: [UInt8]) -> UInt32 {
            var crc: UInt32 = 0xFFFF_FFFF
            for byte in bytes {
                crc ^= UInt32(byte)
                for _ in 0..<8 { crc = (crc >> 1) ^ (0x82F6_3B78 & (0 &- (crc & 1))) }
            }
            return ~crc
        }
        var rng = SplitMix64(seed: 4)
        for length in [1, 2, 7, 8, 9, 63, 64, 65, 4097] {
            let data = rng.bytes(length)
            #expect(CRC32C.checksum(data) == reference(data), "length \(length)")
        }
    }
}
