#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVTestSupport
import Testing
@testable import KVStore

/// A store written through `KVStore` with known records, so every record's offset in `000001.log` is known.
private struct SampleStore {
    var directory: String
    /// (key, value) of each SET, in sequence order: record i has sequence i + 1.
    var pairs: [([UInt8], [UInt8])]
    var offsets: [Int] = []
    var sizes: [Int] = []
    var logBytes: [UInt8] = []

    init(in directory: String, count: Int = 7) throws {
        self.directory = directory
        pairs = (0..<count).map { (bytes("key\($0)"), bytes("value number \($0) " + String(repeating: "x", count: $0 * 3))) }
        let store = try KVStore(directory: directory, syncPolicy: .none)
        var offset = LogFormat.fileHeaderSize
        for (i, (key, value)) in pairs.enumerated() {
            #expect(try store.set(key, value) == UInt64(i + 1))
            offsets.append(offset)
            sizes.append(setRecordSize(key, value))
            offset += setRecordSize(key, value)
        }
        try store.commit()
        try store.close()
        logBytes = try readFile(logPath(directory))
        #expect(logBytes.count == offset)
    }

    func model(without skipped: Set<Int> = []) -> [[UInt8]: [UInt8]] {
        var model: [[UInt8]: [UInt8]] = [:]
        for (i, (key, value)) in pairs.enumerated() where !skipped.contains(i) { model[key] = value }
        return model
    }
}

/// The report's words without its layout (the shell renders it): problems, file names and notes, notes, the loss
/// a salvage would cause, and what a repair did.
private func text(of report: StoreChecker.Report) -> String {
    (report.problems.map(\.description) + report.files.flatMap { [$0.name, $0.note ?? ""] } + report.notes
        + [report.salvageLoss.description] + (report.repair?.actions ?? [])).joined(separator: "\n")
}

/// Every file of `directory` with its bytes.
private func snapshot(_ directory: String) throws -> [String: [UInt8]] {
    var files: [String: [UInt8]] = [:]
    for name in listDirectory(directory) { files[name] = try readFile(directory + "/" + name) }
    return files
}

/// Opens the store, checks it opened without cutting anything and holds `model`, then closes it.
private func expectOpens(_ directory: String, holding model: [[UInt8]: [UInt8]], nextSequence: UInt64? = nil,
                         sourceLocation: SourceLocation = #_sourceLocation) throws {
    let store = try KVStore(directory: directory, syncPolicy: .none)
    defer { try? store.close() }
    #expect(store.openReport.tornTail == nil, sourceLocation: sourceLocation)
    expectContents(store, equal: model, sourceLocation: sourceLocation)
    if let nextSequence {
        #expect(try store.set(bytes("after repair"), []) == nextSequence, sourceLocation: sourceLocation)
    }
}

/// Offsets of the records (blocks, then the end record) of an image.
private func imageRecordOffsets(_ image: [UInt8]) -> [Int] {
    var offsets: [Int] = []
    var offset = LogFormat.fileHeaderSize
    while offset + LogFormat.recordHeaderSize <= image.count {
        offsets.append(offset)
        offset += LogFormat.recordHeaderSize + Int(littleEndian(image, at: offset + 4, as: UInt32.self))
    }
    return offsets
}

@Suite("Checker")
struct CheckerTests {
    // MARK: Clean stores

    @Test("a clean store is clean, with the right counts of files, records and keys")
    func cleanStore() throws {
        try withTempDir { root in
            let directory = root + "/s"
            let sample = try SampleStore(in: directory)
            do {
                let store = try KVStore(directory: directory, syncPolicy: .none)
                #expect(try store.delete([bytes("key1"), bytes("key4")]) == 2)
                try store.commit()
                try store.close()
            }
            let before = try snapshot(directory)
            let report = try StoreChecker.check(directory: directory)
            #expect(report.isClean)
            #expect(report.status == .clean)
            #expect(report.wouldOpen)
            #expect(report.problem == nil)
            #expect(report.fileCount == 1)
            #expect(report.records == 8)
            #expect(report.keys == 5)
            #expect(report.lastSequence == 8)
            let file = try #require(report.files.first)
            #expect(file.name == "000001.log")
            #expect(file.kind == .log)
            #expect(file.size == fileSize(logPath(directory)))
            #expect(file.records == 8)
            #expect(file.firstSequence == 1 && file.lastSequence == 8)
            #expect(report.status == .clean)
            #expect(try snapshot(directory) == before, "check must change nothing")
            _ = sample
        }
    }

    @Test("a store with a checkpoint: the image and the log after it; a covered old log is a note, not damage")
    func storeWithCheckpoint() throws {
        try withTempDir { root in
            let directory = root + "/s"
            let sample = try SampleStore(in: directory)
            let oldLog = try readFile(logPath(directory))
            var model = sample.model()
            do {
                let store = try KVStore(directory: directory, syncPolicy: .none)
                let checkpoint = try store.checkpoint()
                #expect(checkpoint.sequence == 7)
                #expect(try store.set(bytes("key0"), bytes("changed")) == 8)
                #expect(try store.delete([bytes("key2")]) == 1)
                #expect(try store.set(bytes("new"), bytes("n")) == 10)
                try store.commit()
                try store.close()
            }
            model[bytes("key0")] = bytes("changed")
            model[bytes("key2")] = nil
            model[bytes("new")] = bytes("n")
            #expect(listDirectory(directory).filter { $0 != "LOCK" } == ["000002.image", "000002.log"])

            let report = try StoreChecker.check(directory: directory)
            #expect(report.isClean, "\(report)")
            #expect(report.fileCount == 2)
            #expect(report.records == 3)
            #expect(report.keys == model.count)
            #expect(report.lastSequence == 10)
            let image = try #require(report.files.first)
            #expect(image.name == "000002.image" && image.kind == .image)
            #expect(image.records == 1 && image.entries == 7)
            #expect(image.lastSequence == 7)
            let log = report.files[1]
            #expect(log.name == "000002.log" && log.firstSequence == 8 && log.lastSequence == 10)

            // A log file the image covers (a crash before the checkpoint deleted it) is noted, not damage.
            try writeFile(logPath(directory), oldLog)
            let withCovered = try StoreChecker.check(directory: directory)
            #expect(withCovered.isClean)
            #expect(withCovered.fileCount == 3)
            #expect(withCovered.records == 3, "covered files are not replayed")
            #expect(withCovered.keys == model.count)
            let covered = try #require(withCovered.files.first { $0.name == "000001.log" })
            #expect(covered.isCovered)
            #expect(covered.note?.contains("covered, will be deleted at open") == true)
            #expect(covered.records == 7)
            #expect(text(of: withCovered).contains("covered, will be deleted at open"))
            try expectOpens(directory, holding: model, nextSequence: 11)
        }
    }

    // MARK: Torn tail

    @Test("a torn tail is reported with its offset; repair keeps a copy and cuts it; the store opens")
    func tornTail() throws {
        try withTempDir { root in
            let directory = root + "/s"
            let sample = try SampleStore(in: directory)
            let path = logPath(directory)
            let torn = Array(sample.logBytes[..<(sample.logBytes.count - 5)])  // the last record loses 5 bytes
            try writeFile(path, torn)
            let lastOffset = sample.offsets[6]

            let report = try StoreChecker.check(directory: directory)
            #expect(!report.isClean)
            #expect(report.status == .tornTail)
            #expect(report.wouldOpen)
            let problem = try #require(report.problem)
            #expect(problem.kind == .tornTail)
            #expect(problem.file == path)
            #expect(problem.offset == lastOffset)
            #expect(problem.bytes == torn.count - lastOffset)
            #expect(text(of: report).contains("open would cut \(torn.count - lastOffset) bytes at offset \(lastOffset)"))
            #expect(report.records == 6)
            #expect(report.keys == 6)
            #expect(try readFile(path) == torn, "check must change nothing")

            let repaired = try StoreChecker.repair(directory: directory, salvage: false)
            let summary = try #require(repaired.repair)
            #expect(summary.outcome == .cutTornTail)
            #expect(summary.problemBefore == problem)
            #expect(summary.backups == [path + ".broken"])
            #expect(try readFile(path + ".broken") == torn, "the copy holds the file as it was")
            #expect(try readFile(path) == Array(sample.logBytes[..<lastOffset]))
            #expect(repaired.isClean, "\(repaired)")
            #expect(text(of: repaired).contains("cut \(torn.count - lastOffset) bytes at offset \(lastOffset)"))
            try expectOpens(directory, holding: sample.model(without: [6]), nextSequence: 7)
        }
    }

    @Test("a second repair never overwrites an earlier .broken copy")
    func backupsAreNeverOverwritten() throws {
        try withTempDir { root in
            let directory = root + "/s"
            let sample = try SampleStore(in: directory)
            let path = logPath(directory)
            try appendFile(path, [1, 2, 3])
            _ = try StoreChecker.repair(directory: directory, salvage: false)
            try appendFile(path, [4, 5, 6, 7])
            let second = try StoreChecker.repair(directory: directory, salvage: true)
            #expect(second.repair?.outcome == .cutTornTail, "a torn tail alone is cut, even with salvage")
            #expect(second.repair?.backups == [path + ".broken.1"])
            #expect(try readFile(path + ".broken") == sample.logBytes + [1, 2, 3])
            #expect(try readFile(path + ".broken.1") == sample.logBytes + [4, 5, 6, 7])
            #expect(try readFile(path) == sample.logBytes)
            #expect(second.isClean)
            #expect(second.notes.contains { $0.contains("000001.log.broken") }, "the copies are listed as ignored files")
        }
    }

    @Test("a clean store: repair changes nothing")
    func repairOfCleanStore() throws {
        try withTempDir { root in
            let directory = root + "/s"
            _ = try SampleStore(in: directory)
            let before = try snapshot(directory)
            let report = try StoreChecker.repair(directory: directory, salvage: true)
            #expect(report.repair?.outcome == .nothingToDo)
            #expect(report.isClean)
            #expect(try snapshot(directory) == before)
        }
    }

    // MARK: Corruption in the middle

    @Test("a bit flip mid-log: corruption at that record; repair refuses without salvage; salvage loses exactly that record",
          arguments: [(1, 2), (3, LogFormat.recordHeaderSize + 3), (3, 5), (5, 0)])
    func bitFlipMidLog(record: Int, within: Int) throws {
        try withTempDir { root in
            let directory = root + "/s"
            let sample = try SampleStore(in: directory)
            let path = logPath(directory)
            var damaged = sample.logBytes
            damaged[sample.offsets[record] + within] ^= 0x08
            try writeFile(path, damaged)

            let report = try StoreChecker.check(directory: directory)
            #expect(report.status == .corrupt)
            #expect(!report.wouldOpen)
            let problem = try #require(report.problem)
            #expect(problem.kind == .corruption)
            #expect(problem.file == path)
            #expect(problem.offset == sample.offsets[record], "\(problem)")
            #expect(problem.reason.contains("yet a valid record follows at offset \(sample.offsets[record + 1])"))
            #expect(report.salvageLoss == StoreChecker.Loss(records: 1, bytes: sample.sizes[record], imageEntries: 0))
            #expect(report.keys == 6)
            #expect(text(of: report).contains("\(path): corrupt at offset \(sample.offsets[record])"))
            // Open agrees about the file and offset.
            let error = storeError { _ = try KVStore(directory: directory) }
            #expect(error == .corruption(file: path, offset: problem.offset, reason: problem.reason))

            let before = try snapshot(directory)
            let refused = try StoreChecker.repair(directory: directory, salvage: false)
            #expect(refused.repair?.outcome == .refused)
            #expect(refused.repair?.message.contains("use --salvage") == true)
            #expect(refused.status == .corrupt)
            #expect(try snapshot(directory) == before, "a refused repair changes nothing")

            let salvaged = try StoreChecker.repair(directory: directory, salvage: true)
            let summary = try #require(salvaged.repair)
            #expect(summary.outcome == .salvaged)
            #expect(summary.lost?.records == 1)
            #expect(summary.lost?.bytes == sample.sizes[record])
            #expect(summary.backups == [path + ".broken"])
            #expect(try readFile(path + ".broken") == damaged)
            #expect(!fileExists(path), "the old log is replaced")
            #expect(salvaged.isClean, "\(salvaged)")
            #expect(salvaged.files.map(\.name) == ["000002.image", "000002.log"])
            #expect(salvaged.keys == 6)
            #expect(salvaged.lastSequence == 7)
            try expectOpens(directory, holding: sample.model(without: [record]), nextSequence: 8)
        }
    }

    @Test("a bit flip at any byte of a middle record: check agrees with open; salvage loses exactly that record")
    func bitFlipAtEveryByte() throws {
        try withTempDir { root in
            let sample = try SampleStore(in: root + "/source")
            let record = 3
            for position in sample.offsets[record]..<(sample.offsets[record] + sample.sizes[record]) {
                let directory = root + "/flip\(position)"
                try makeDirectory(directory)
                var damaged = sample.logBytes
                damaged[position] ^= 0x20
                try writeFile(logPath(directory), damaged)
                let report = try StoreChecker.check(directory: directory)
                let opened = storeError { _ = try KVStore(directory: directory) }
                #expect(opened == .corruption(file: logPath(directory), offset: report.problem?.offset ?? -1,
                                              reason: report.problem?.reason ?? ""), "byte \(position)")
                #expect(report.problem?.offset == sample.offsets[record], "byte \(position)")
                let salvaged = try StoreChecker.repair(directory: directory, salvage: true)
                #expect(salvaged.repair?.lost == StoreChecker.Loss(records: 1, bytes: sample.sizes[record], imageEntries: 0),
                        "byte \(position)")
                #expect(salvaged.isClean, "byte \(position)")
                try expectOpens(directory, holding: sample.model(without: [record]), nextSequence: 8)
                removeTree(directory)
            }
        }
    }

    @Test("a log cut at every byte of its last record: check reports the torn tail open cuts")
    func cutAtEveryByte() throws {
        try withTempDir { root in
            let sample = try SampleStore(in: root + "/source")
            let directory = root + "/cut"
            try makeDirectory(directory)
            for cut in sample.offsets[6]..<sample.logBytes.count {
                try writeFile(logPath(directory), Array(sample.logBytes[..<cut]))
                let report = try StoreChecker.check(directory: directory)
                if cut == sample.offsets[6] {
                    #expect(report.isClean, "cut \(cut)")
                } else {
                    #expect(report.status == .tornTail, "cut \(cut)")
                    #expect(report.problem?.offset == sample.offsets[6], "cut \(cut)")
                    #expect(report.problem?.bytes == cut - sample.offsets[6], "cut \(cut)")
                }
                #expect(report.keys == 6 && report.records == 6, "cut \(cut)")
                let store = try KVStore(directory: directory, syncPolicy: .none)
                #expect(store.openReport.tornTail?.offset == report.problem?.offset, "cut \(cut)")
                #expect(store.count == report.keys)
                try store.close()
            }
        }
    }

    @Test("a record with a good checksum but a sequence number out of line is corruption; salvage counts the gap")
    func sequenceJumpInsideLog() throws {
        try withTempDir { root in
            let directory = root + "/s"
            let sample = try SampleStore(in: directory, count: 4)
            var damaged = Array(sample.logBytes[..<sample.offsets[2]])
            let (key, value) = sample.pairs[2]
            LogFormat.appendSet(key: key, value: value, sequence: 5, to: &damaged)  // 3 expected
            damaged += sample.logBytes[sample.offsets[3]...]                         // then 4: below 6
            try writeFile(logPath(directory), damaged)
            let report = try StoreChecker.check(directory: directory)
            #expect(report.problem?.offset == sample.offsets[2])
            #expect(report.problem?.reason == "record has sequence number 5 where 3 was expected")
            #expect(report.problems.count == 2, "the record numbered 4 after 5 is damage too")
            // Salvage keeps 1, 2, 5 (two lost: 3, 4) and skips the record numbered 4.
            #expect(report.salvageLoss.records == 2)
            #expect(report.salvageLoss.bytes == sample.sizes[3])
            let salvaged = try StoreChecker.repair(directory: directory, salvage: true)
            #expect(salvaged.isClean)
            try expectOpens(directory, holding: sample.model(without: [3]), nextSequence: 6)
        }
    }

    // MARK: Images

    /// A store whose checkpoint image has three blocks (keys 0-2, 3-5, 6-7 of 100 KB values), with writes after it.
    private static func storeWithImage(in directory: String) throws -> (model: [[UInt8]: [UInt8]], image: [UInt8]) {
        var model: [[UInt8]: [UInt8]] = [:]
        let store = try KVStore(directory: directory, syncPolicy: .none)
        for i in 0..<8 {
            let value = [UInt8](repeating: UInt8(i + 1), count: 100_000)
            _ = try store.set(bytes("big\(i)"), value)
            model[bytes("big\(i)")] = value
        }
        _ = try store.checkpoint()
        _ = try store.set(bytes("big4"), bytes("rewritten after the checkpoint"))
        _ = try store.set(bytes("small"), bytes("s"))
        model[bytes("big4")] = bytes("rewritten after the checkpoint")
        model[bytes("small")] = bytes("s")
        try store.commit()
        try store.close()
        let image = try readFile(directory + "/000002.image")
        #expect(imageRecordOffsets(image).count == 4, "three blocks and the end record")
        return (model, image)
    }

    @Test("a damaged image block is reported; salvage keeps the other blocks and counts the lost entries")
    func damagedImageBlock() throws {
        try withTempDir { root in
            let directory = root + "/s"
            let (model, image) = try Self.storeWithImage(in: directory)
            let imagePath = directory + "/000002.image"
            let blocks = imageRecordOffsets(image)
            var damaged = image
            damaged[blocks[1] + 50_000] ^= 0x01
            try writeFile(imagePath, damaged)

            let report = try StoreChecker.check(directory: directory)
            #expect(report.status == .corrupt)
            let problem = try #require(report.problem)
            #expect(problem.file == imagePath)
            #expect(problem.offset == blocks[1])
            #expect(problem.reason.contains("block 2: record checksum mismatch"))
            #expect(report.salvageLoss == StoreChecker.Loss(records: 0, bytes: blocks[2] - blocks[1], imageEntries: 3))
            #expect(report.salvageLoss.description == "0 records, \(blocks[2] - blocks[1]) bytes and 3 image entries")
            #expect(storeError { _ = try KVStore(directory: directory) } != nil, "open refuses the image")

            let salvaged = try StoreChecker.repair(directory: directory, salvage: true)
            #expect(salvaged.repair?.outcome == .salvaged)
            #expect(salvaged.repair?.lost?.imageEntries == 3)
            #expect(Set(salvaged.repair?.backups ?? []) == [imagePath + ".broken", directory + "/000002.log.broken"])
            #expect(salvaged.isClean, "\(salvaged)")
            #expect(salvaged.files.map(\.name) == ["000003.image", "000003.log"])
            var expected = model
            expected[bytes("big3")] = nil  // big4 was written again after the checkpoint
            expected[bytes("big5")] = nil
            try expectOpens(directory, holding: expected, nextSequence: 11)
        }
    }

    @Test("an image without its end record: incomplete; salvage cannot say how many entries were lost")
    func imageWithoutEndRecord() throws {
        try withTempDir { root in
            let directory = root + "/s"
            let (model, image) = try Self.storeWithImage(in: directory)
            let blocks = imageRecordOffsets(image)
            try writeFile(directory + "/000002.image", Array(image[..<blocks[3]]))
            let report = try StoreChecker.check(directory: directory)
            #expect(report.problem?.reason == "image ends without its end record (incomplete image)")
            #expect(report.problem?.offset == blocks[3])
            #expect(report.salvageLoss.imageEntries == nil)
            #expect(text(of: report).contains("an unknown number of image entries"))
            let salvaged = try StoreChecker.repair(directory: directory, salvage: true)
            #expect(salvaged.isClean)
            try expectOpens(directory, holding: model)
        }
    }

    @Test("an image whose keys are out of order is corruption")
    func imageKeysOutOfOrder() throws {
        try withTempDir { root in
            let directory = root + "/s"
            try makeDirectory(directory)
            var image = LogFormat.fileHeader(magic: LogFormat.imageMagic, sequence: 2)
            var payload: [UInt8] = []
            LogFormat.appendLittleEndian(UInt32(2), to: &payload)
            for key in ["b", "a"] {
                LogFormat.appendLittleEndian(UInt32(1), to: &payload)
                LogFormat.appendLittleEndian(UInt32(0), to: &payload)
                payload += bytes(key)
            }
            LogFormat.appendRecord(type: .imageEntries, sequence: 1, payloadLength: payload.count, to: &image) { $0 += payload }
            LogFormat.appendRecord(type: .imageEnd, sequence: 2, payloadLength: 8, to: &image) {
                LogFormat.appendLittleEndian(UInt64(2), to: &$0)
            }
            try writeFile(directory + "/000001.image", image)
            try writeFile(directory + "/000001.log", LogFormat.fileHeader(firstSequence: 3))
            let report = try StoreChecker.check(directory: directory)
            #expect(report.problem?.reason == "keys out of order")
            #expect(report.problem?.offset == LogFormat.fileHeaderSize)
            #expect(storeError { _ = try KVStore(directory: directory) } != nil)
        }
    }

    // MARK: Sequence numbers across files

    @Test("a gap in sequence numbers between two log files is detected; salvage counts the missing records")
    func gapBetweenLogFiles() throws {
        try withTempDir { root in
            let directory = root + "/s"
            let sample = try SampleStore(in: directory, count: 3)
            var second = LogFormat.fileHeader(firstSequence: 5)  // 4 is missing
            LogFormat.appendSet(key: bytes("five"), value: bytes("5"), sequence: 5, to: &second)
            LogFormat.appendSet(key: bytes("six"), value: bytes("6"), sequence: 6, to: &second)
            let secondPath = directory + "/000002.log"
            try writeFile(secondPath, second)

            let report = try StoreChecker.check(directory: directory)
            #expect(report.status == .corrupt)
            let problem = try #require(report.problem)
            #expect(problem.file == secondPath)
            #expect(problem.offset == 0)
            #expect(problem.reason == "log starts at sequence 5 but the writes before it end at 3")
            #expect(report.salvageLoss == StoreChecker.Loss(records: 1, bytes: 0, imageEntries: 0))
            #expect(report.records == 5)
            #expect(report.lastSequence == 6)
            #expect(storeError { _ = try KVStore(directory: directory) } == .corruption(file: secondPath, offset: 0, reason: problem.reason))

            let salvaged = try StoreChecker.repair(directory: directory, salvage: true)
            #expect(salvaged.repair?.lost?.records == 1)
            #expect(salvaged.isClean)
            var model = sample.model()
            model[bytes("five")] = bytes("5")
            model[bytes("six")] = bytes("6")
            try expectOpens(directory, holding: model, nextSequence: 7)
        }
    }

    @Test("the first log file after an image must start right after the writes it covers")
    func imageLogMismatch() throws {
        try withTempDir { root in
            let directory = root + "/s"
            _ = try SampleStore(in: directory, count: 3)
            do {
                let store = try KVStore(directory: directory, syncPolicy: .none)
                _ = try store.checkpoint()
                try store.close()
            }
            try writeFile(directory + "/000002.log", LogFormat.fileHeader(firstSequence: 9))
            let report = try StoreChecker.check(directory: directory)
            #expect(report.problem?.file == directory + "/000002.log")
            #expect(report.problem?.reason == "log starts at sequence 9 but 000002.image covers the writes through 3")
            #expect(report.salvageLoss.records == 5)
        }
    }

    // MARK: Headers

    @Test("a damaged header of a log with records: corruption at offset 0; salvage keeps every record")
    func damagedLogHeader() throws {
        try withTempDir { root in
            let directory = root + "/s"
            let sample = try SampleStore(in: directory)
            var damaged = sample.logBytes
            damaged[3] ^= 0x40  // magic
            try writeFile(logPath(directory), damaged)
            let report = try StoreChecker.check(directory: directory)
            #expect(report.problem == StoreChecker.Problem(kind: .corruption, file: logPath(directory), offset: 0,
                                                           reason: "bad magic bytes (not a kvsh file of this kind)",
                                                           bytes: LogFormat.fileHeaderSize))
            #expect(report.records == 7, "the records after the header are still read")
            let salvaged = try StoreChecker.repair(directory: directory, salvage: true)
            #expect(salvaged.repair?.lost == StoreChecker.Loss(records: 0, bytes: LogFormat.fileHeaderSize, imageEntries: 0))
            try expectOpens(directory, holding: sample.model(), nextSequence: 8)
        }
    }

    @Test("a torn header of the last log file is repaired by writing it again")
    func tornHeaderOfLastLog() throws {
        try withTempDir { root in
            let directory = root + "/s"
            let sample = try SampleStore(in: directory, count: 3)
            let secondPath = directory + "/000002.log"
            try writeFile(secondPath, Array(LogFormat.fileHeader(firstSequence: 4)[..<11]))
            let report = try StoreChecker.check(directory: directory)
            #expect(report.status == .tornTail)
            #expect(report.problem?.file == secondPath)
            #expect(report.problem?.offset == 0)
            #expect(text(of: report).contains("open would write the header again"))
            let repaired = try StoreChecker.repair(directory: directory, salvage: false)
            #expect(repaired.repair?.outcome == .cutTornTail)
            #expect(try readFile(secondPath) == LogFormat.fileHeader(firstSequence: 4))
            #expect(fileSize(secondPath + ".broken") == 11)
            #expect(repaired.isClean)
            try expectOpens(directory, holding: sample.model(), nextSequence: 4)
        }
    }

    @Test("a damaged image header is corruption at offset 0")
    func damagedImageHeader() throws {
        try withTempDir { root in
            let directory = root + "/s"
            let (_, image) = try Self.storeWithImage(in: directory)
            var damaged = image
            damaged[20] ^= 0x01  // the sequence field: the header checksum no longer matches
            try writeFile(directory + "/000002.image", damaged)
            let report = try StoreChecker.check(directory: directory)
            #expect(report.problem?.file == directory + "/000002.image")
            #expect(report.problem?.offset == 0)
            #expect(report.problem?.reason == "image header checksum mismatch")
            #expect(report.files[0].entries == 8, "the blocks after the header are still read")
        }
    }

    @Test("a file written by a newer version is refused, even by a salvage")
    func newerVersion() throws {
        try withTempDir { root in
            let directory = root + "/s"
            let sample = try SampleStore(in: directory, count: 2)
            var header = LogFormat.magic
            LogFormat.appendLittleEndian(LogFormat.encryptedVersion + 1, to: &header)  // 2 is an encrypted file's
            LogFormat.appendLittleEndian(UInt32(0), to: &header)
            LogFormat.appendLittleEndian(UInt64(1), to: &header)
            LogFormat.appendLittleEndian(CRC32C.checksum(header), to: &header)
            try writeFile(logPath(directory), header + sample.logBytes[LogFormat.fileHeaderSize...])
            let before = try snapshot(directory)
            let report = try StoreChecker.repair(directory: directory, salvage: true)
            #expect(report.status == .newerVersion)
            #expect(report.repair?.outcome == .refused)
            #expect(report.problem?.reason.contains("upgrade kvsh") == true)
            #expect(try snapshot(directory) == before)
        }
    }

    // MARK: Leftovers

    @Test(".tmp leftovers are noted but are not damage; check leaves them alone")
    func temporaryLeftovers() throws {
        try withTempDir { root in
            let directory = root + "/s"
            _ = try SampleStore(in: directory, count: 2)
            try writeFile(directory + "/000002.image.tmp", [1, 2, 3, 4])
            let report = try StoreChecker.check(directory: directory)
            #expect(report.isClean)
            #expect(report.fileCount == 2)
            #expect(report.records == 2)
            let leftover = try #require(report.files.last)
            #expect(leftover.name == "000002.image.tmp" && leftover.kind == .temporary && leftover.size == 4)
            #expect(leftover.note?.contains("open deletes it") == true)
            #expect(text(of: report).contains("000002.image.tmp"))
            #expect(fileExists(directory + "/000002.image.tmp"))
        }
    }

    @Test("an empty directory is clean: open would create a new store")
    func emptyDirectory() throws {
        try withTempDir { root in
            let report = try StoreChecker.check(directory: root)
            #expect(report.isClean)
            #expect(report.fileCount == 0 && report.keys == 0 && report.lastSequence == 0)
            #expect(report.notes.contains { $0.contains("new, empty store") })
        }
    }
}
