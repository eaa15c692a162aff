// The RDB module on its own: CRC-64/REDIS, LZF both ways, the writer's bytes, the reader's events, limits and
// damage. The files Redis itself writes and reads are in RedisInteropTests.

import Foundation
import KVTestSupport
import Testing
@testable import RDB

/// Every event `reader` yields from `chunks` fed one after the other, pulling after each chunk as a socket reader
/// would, then `finishInput()`.
func readAll(_ chunks: [[UInt8]], limits: RDBReader.Limits = .init()) throws(RDBError) -> [RDBEvent] {
    var reader = RDBReader(limits: limits)
    var events: [RDBEvent] = []
    for chunk in chunks {
        reader.feed(chunk)
        while let event = try reader.next() { events.append(event) }
    }
    try reader.finishInput()
    return events
}

/// The entries among `events`, as (key, value, expiry) triples.
func entries(_ events: [RDBEvent]) -> [Entry] {
    events.compactMap { if case .entry(let key, let value, let expire) = $0 { return Entry(key, value, expire) } else { return nil } }
}

struct Entry: Equatable, CustomStringConvertible {
    let key: [UInt8], value: [UInt8], expireAtMs: Int64?
    init(_ key: [UInt8], _ value: [UInt8], _ expireAtMs: Int64? = nil) {
        self.key = key
        self.value = value
        self.expireAtMs = expireAtMs
    }
    var description: String { "\(printable(key))=\(printable(value.count > 40 ? Array(value.prefix(40)) : value))(\(value.count))@\(expireAtMs.map(String.init) ?? "-")" }
}

/// A whole file from the writer.
func writeFile(_ entries: [Entry], aux: [(key: String, value: String)] = [], compression: Bool = true) -> [UInt8] {
    var writer = RDBWriter(auxFields: aux, compression: compression)
    writer.selectDB(0)
    writer.resizeDB(keys: entries.count, expires: entries.filter { $0.expireAtMs != nil }.count)
    for entry in entries { writer.append(key: entry.key, value: entry.value, expireAtMs: entry.expireAtMs) }
    writer.finish()
    return writer.takeBytes()
}

/// A file body (after the magic, before EOF) framed as a version-`version` file with a correct checksum.
func framed(_ body: [UInt8], version: String = "0010", checksum: Bool = true) -> [UInt8] {
    var file = Array("REDIS\(version)".utf8) + body + [0xFF]
    if checksum {
        let crc = CRC64.checksum(file)
        file += withUnsafeBytes(of: crc.littleEndian) { Array($0) }
    }
    return file
}

/// A raw length-prefixed string (6-bit length).
func short(_ text: String) -> [UInt8] { [UInt8(text.utf8.count)] + Array(text.utf8) }

/// The bit-by-bit definition from the notes, to check the table-driven CRC against.
func referenceCRC64(_ bytes: [UInt8]) -> UInt64 {
    var crc: UInt64 = 0
    for byte in bytes {
        crc ^= UInt64(byte)
        for _ in 0..<8 { crc = (crc >> 1) ^ ((crc & 1) == 1 ? 0x95AC_9329_AC4B_C9B5 : 0) }
    }
    return crc
}

@Suite("CRC-64/REDIS")
struct CRC64Tests {
    @Test("the check value")
    func checkValue() {
        #expect(CRC64.checksum(Array("123456789".utf8)) == 0xE9C6_D914_C4B8_D9CA)
        #expect(CRC64.checksum([]) == 0)
    }

    @Test("slice-by-8 equals the bitwise definition, at every length and split")
    func matchesReference() {
        var random = SplitMix64(seed: 64)
        for length in [1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000] {
            let bytes = random.bytes(length)
            #expect(CRC64.checksum(bytes) == referenceCRC64(bytes), "length \(length)")
            for split in [0, 1, length / 3, length - 1, length] {
                var crc = CRC64()
                crc.update(Array(bytes[..<split]))
                crc.update(Array(bytes[split...]))
                #expect(crc.value == referenceCRC64(bytes), "length \(length) split at \(split)")
            }
        }
    }
}

@Suite("LZF")
struct LZFTests {
    @Test("the 100 × 'a' example from the notes")
    func notesExample() throws {
        let compressed: [UInt8] = [0x01, 0x61, 0x61, 0xE0, 0x57, 0x00, 0x01, 0x61, 0x61]
        #expect(try LZF.decompress(compressed, length: 100) == Array(repeating: UInt8(ascii: "a"), count: 100))
        // Declared lengths other than the true one are refused, both ways.
        #expect(throws: LZF.Error.outputTooLong(declared: 99)) { try LZF.decompress(compressed, length: 99) }
        #expect(throws: LZF.Error.outputTooShort(declared: 101, produced: 100)) { try LZF.decompress(compressed, length: 101) }
    }

    @Test("damaged input is an error, never a crash")
    func damage() {
        // A reference before the start of the output.
        #expect(throws: LZF.Error.referenceBeforeStart(position: 0, distance: 1)) { try LZF.decompress([0x20, 0x00], length: 3) }
        #expect(throws: LZF.Error.referenceBeforeStart(position: 2, distance: 3)) { try LZF.decompress([0x01, 0x61, 0x61, 0x20, 0x02], length: 5) }
        // Literal runs and references cut short.
        #expect(throws: LZF.Error.truncatedInput(position: 1)) { try LZF.decompress([0x05, 0x61], length: 6) }
        #expect(throws: LZF.Error.truncatedInput(position: 3)) { try LZF.decompress([0x00, 0x61, 0xE0], length: 20) }
        #expect(throws: LZF.Error.truncatedInput(position: 4)) { try LZF.decompress([0x00, 0x61, 0xE0, 0x05], length: 20) }
        // A declared length no LZF input of this size can reach is refused before allocating.
        #expect(throws: LZF.Error.outputTooLong(declared: 1 << 40)) { try LZF.decompress([0x00, 0x61], length: 1 << 40) }
        // Random garbage: whatever comes out is an error or exactly the declared length.
        var random = SplitMix64(seed: 7)
        for _ in 0..<2000 {
            let input = random.bytes(Int.random(in: 0...40, using: &random))
            let length = Int.random(in: 0...200, using: &random)
            if let output = try? LZF.decompress(input, length: length) { #expect(output.count == length) }
        }
    }

    @Test("compress then decompress gives the input back", arguments: [0, 1, 2, 3, 21, 100, 1000, 70_000])
    func roundTrip(length: Int) throws {
        var random = SplitMix64(seed: UInt64(length))
        var compressor = LZF.Compressor()
        var output: [UInt8] = []
        // Random bytes (rarely compressible), text with repeats, runs, and a mixture.
        let alphabet = Array("abcdefgh ".utf8)
        let inputs: [[UInt8]] = [
            random.bytes(length),
            (0..<length).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &random)] },
            Array(repeating: UInt8(ascii: "x"), count: length),
            (0..<length).map { UInt8(truncatingIfNeeded: $0 / 50) },
        ]
        for input in inputs {
            // No limit that matters: every input must come back.
            let compressed = input.withUnsafeBytes { compressor.compress($0, limit: input.count * 2 + 64, into: &output) }
            if input.isEmpty { #expect(!compressed); continue }
            #expect(compressed)
            #expect(try LZF.decompress(output, length: input.count) == input)
            // With Redis's limit (4 bytes shorter than the input), only a real saving is returned.
            if let shorter = LZF.compress(input) {
                #expect(shorter.count <= input.count - 4)
                #expect(try LZF.decompress(shorter, length: input.count) == input)
            }
        }
        if length >= 100 {
            // Runs and repeated text do shrink.
            #expect(LZF.compress(Array(repeating: UInt8(ascii: "x"), count: length)) != nil)
        }
    }
}

@Suite("RDB writer")
struct RDBWriterTests {
    @Test("the minimal file from the notes, byte for byte, and read back")
    func minimalFile() throws {
        let expected: [UInt8] = [0x52, 0x45, 0x44, 0x49, 0x53, 0x30, 0x30, 0x31, 0x30, 0xFE, 0x00, 0xFB, 0x01, 0x00,
                                 0x00, 0x01, 0x6B, 0x01, 0x76, 0xFF, 0xBF, 0xC6, 0x84, 0xBA, 0xAD, 0x6C, 0xA1, 0x03]
        let file = writeFile([Entry(bytes("k"), bytes("v"))])
        #expect(file == expected)
        #expect(try readAll([file]) == [.selectDB(0), .resizeDB(keys: 1, expires: 0), .entry(key: bytes("k"), value: bytes("v"), expireAtMs: nil), .end])
    }

    @Test("integers are int-encoded exactly when Redis would")
    func integerEncodings() throws {
        let cases: [(String, [UInt8])] = [
            ("0", [0xC0, 0x00]), ("-1", [0xC0, 0xFF]), ("127", [0xC0, 0x7F]), ("-128", [0xC0, 0x80]),
            ("128", [0xC1, 0x80, 0x00]), ("-32768", [0xC1, 0x00, 0x80]), ("12345", [0xC1, 0x39, 0x30]),
            ("32768", [0xC2, 0x00, 0x80, 0x00, 0x00]), ("2147483647", [0xC2, 0xFF, 0xFF, 0xFF, 0x7F]),
            ("-2147483648", [0xC2, 0x00, 0x00, 0x00, 0x80]),
            // Not canonical or out of int32 range: raw.
            ("2147483648", short("2147483648")), ("-2147483649", short("-2147483649")), ("007", short("007")),
            ("-0", short("-0")), ("+1", short("+1")), ("", [0x00]), ("-", short("-")), ("1a", short("1a")),
            (" 1", short(" 1")), ("12345678901", short("12345678901")),
        ]
        for (text, encoded) in cases {
            var writer = RDBWriter()
            _ = writer.takeBytes()
            writer.append(key: bytes("k"), value: bytes(text))
            #expect(writer.takeBytes() == [0x00, 0x01, 0x6B] + encoded, "\(text)")
        }
        let file = writeFile(cases.enumerated().map { Entry(bytes("k\($0.offset)"), bytes($0.element.0)) })
        #expect(entries(try readAll([file])) == cases.enumerated().map { Entry(bytes("k\($0.offset)"), bytes($0.element.0)) })
    }

    @Test("long values are LZF-compressed when it saves 4 bytes; expiries are written before their key")
    func compressionAndExpiry() throws {
        let long = Array(repeating: UInt8(ascii: "a"), count: 100)
        var writer = RDBWriter()
        _ = writer.takeBytes()
        writer.append(key: bytes("k"), value: long, expireAtMs: 1_700_000_000_123)
        let written = writer.takeBytes()
        #expect(Array(written[0..<9]) == [0xFC] + withUnsafeBytes(of: Int64(1_700_000_000_123).littleEndian) { Array($0) })
        #expect(Array(written[9..<12]) == [0x00, 0x01, 0x6B])
        #expect(written[12] == 0xC3)
        #expect(written.count < 40)

        var plain = RDBWriter(compression: false)
        _ = plain.takeBytes()
        plain.append(key: bytes("k"), value: long)
        #expect(plain.takeBytes() == [0x00, 0x01, 0x6B, 0x40, 100] + long)

        // 20 bytes: never compressed, even when it would pay.
        var twenty = RDBWriter()
        _ = twenty.takeBytes()
        twenty.append(key: bytes("k"), value: Array(long[..<20]))
        #expect(twenty.takeBytes() == [0x00, 0x01, 0x6B, 20] + Array(long[..<20]))
    }

    @Test("draining in pieces gives the same file as taking it whole")
    func streaming() throws {
        var random = SplitMix64(seed: 11)
        let items = (0..<3000).map { index in
            Entry(bytes("key:\(index)"), random.chance(0.5) ? random.bytes(Int.random(in: 0...300, using: &random)) : bytes(String(repeating: "v\(index)", count: 20)),
                  random.chance(0.2) ? 1_800_000_000_000 + Int64(index) : nil)
        }
        let whole = writeFile(items)
        var writer = RDBWriter()
        writer.selectDB(0)
        writer.resizeDB(keys: items.count, expires: items.filter { $0.expireAtMs != nil }.count)
        var drained: [UInt8] = []
        for item in items {
            writer.append(key: item.key, value: item.value, expireAtMs: item.expireAtMs)
            if writer.pendingByteCount >= 4096 { writer.drain { drained.append(contentsOf: $0) } }
        }
        writer.finish()
        writer.drain { drained.append(contentsOf: $0) }
        #expect(writer.pendingByteCount == 0)
        #expect(writer.totalByteCount == whole.count)
        #expect(drained == whole)
        #expect(entries(try readAll([whole])) == items)
    }

    @Test("the replication AUX fields, int-encoded where Redis int-encodes them")
    func auxFields() throws {
        let id = String(repeating: "a1", count: 20)
        let aux = RDBWriter.replicationAuxFields(replicationID: id, replicationOffset: 1234, creationTime: 1_700_000_000, usedMemory: 5)
        let file = writeFile([], aux: aux)
        #expect(file.count > 9 && file[9] == 0xFA)
        // redis-bits is 64, int-encoded as c0 40.
        let bits: [UInt8] = [0xFA] + short("redis-bits") + [0xC0, 0x40]
        #expect(file.indices.contains { Array(file[$0..<min($0 + bits.count, file.count)]) == bits })
        let events = try readAll([file])
        #expect(Array(events.prefix(8)) == [
            .aux(key: "redis-ver", value: "7.0.15"), .aux(key: "redis-bits", value: "64"), .aux(key: "ctime", value: "1700000000"),
            .aux(key: "used-mem", value: "5"), .aux(key: "repl-stream-db", value: "0"), .aux(key: "repl-id", value: id),
            .aux(key: "repl-offset", value: "1234"), .aux(key: "aof-base", value: "0"),
        ])
    }
}

@Suite("RDB reader")
struct RDBReaderTests {
    /// A file with a bit of everything the reader accepts.
    static func sampleItems() -> [Entry] {
        var random = SplitMix64(seed: 5)
        var items: [Entry] = [Entry([], []), Entry(bytes("int"), bytes("-7")), Entry(bytes("big"), bytes("2147483647")),
                              Entry(bytes("bin"), [0, 0xFF, 0x0D, 0x0A, 0xC3]), Entry(random.bytes(70), random.bytes(20_000))]
        for index in 0..<200 {
            items.append(Entry(bytes("k\(index)"), bytes(String(repeating: "abc\(index % 7)", count: index)), index % 3 == 0 ? 1_900_000_000_000 + Int64(index) : nil))
        }
        return items
    }

    @Test("chunks split anywhere: one byte at a time, and random sizes")
    func chunkSplitting() throws {
        let items = Self.sampleItems()
        let file = writeFile(items, aux: [("redis-ver", "7.0.15"), ("repl-offset", "99")])
        let whole = try readAll([file])
        #expect(entries(whole) == items)
        #expect(whole.last == .end)
        #expect(try readAll(file.map { [$0] }) == whole)
        var random = SplitMix64(seed: 3)
        for _ in 0..<20 {
            var chunks: [[UInt8]] = []
            var position = 0
            while position < file.count {
                let size = min(file.count - position, Int.random(in: 1...5000, using: &random))
                chunks.append(Array(file[position..<(position + size)]))
                position += size
            }
            #expect(try readAll(chunks) == whole)
        }
    }

    @Test("every length encoding, and strings encoded with each")
    func lengthEncodings() throws {
        let value = Array(repeating: UInt8(ascii: "z"), count: 3)
        let body: [UInt8] = [0xFE, 0x81, 0, 0, 0, 0, 0, 0, 0, 2, 0xFB, 0x80, 0, 0, 0x01, 0x00, 0x41, 0x02]
            + [0x00, 0x01, 0x61, 0x80, 0, 0, 0, 3] + value
            + [0x00, 0x01, 0x62, 0x81, 0, 0, 0, 0, 0, 0, 0, 3] + value
            + [0x00, 0x01, 0x63, 0x40, 3] + value
            + [0x00, 0xC1, 0x39, 0x30, 0xC2, 0xF9, 0xFF, 0xFF, 0xFF]
        #expect(try readAll([framed(body)]) == [
            .selectDB(2), .resizeDB(keys: 256, expires: 258),
            .entry(key: bytes("a"), value: value, expireAtMs: nil), .entry(key: bytes("b"), value: value, expireAtMs: nil),
            .entry(key: bytes("c"), value: value, expireAtMs: nil), .entry(key: bytes("12345"), value: bytes("-7"), expireAtMs: nil), .end,
        ])
    }

    @Test("skips FREQ, IDLE and FUNCTION2; reads old expiries in seconds; the zero checksum is accepted")
    func skippedOpcodes() throws {
        let body: [UInt8] = [0xF5] + short("#!lua name=lib\nredis.register_function('f', f)")
            + [0xFE, 0x00, 0xF9, 0x05, 0xF8, 0x40, 0x10, 0x00] + short("a") + short("1x")
            + [0xFD] + withUnsafeBytes(of: Int32(2_000_000_000).littleEndian) { Array($0) } + [0x00] + short("b") + short("2")
            + [0x00] + short("c") + short("3")
        let expected: [RDBEvent] = [.selectDB(0), .entry(key: bytes("a"), value: bytes("1x"), expireAtMs: nil),
                                    .entry(key: bytes("b"), value: bytes("2"), expireAtMs: 2_000_000_000_000),
                                    .entry(key: bytes("c"), value: bytes("3"), expireAtMs: nil), .end]
        #expect(try readAll([framed(body)]) == expected)
        var unchecked = framed(body, checksum: false)
        unchecked += [UInt8](repeating: 0, count: 8)
        #expect(try readAll([unchecked]) == expected)
        // Version 4 and older have no checksum at all.
        #expect(try readAll([framed(body, version: "0004", checksum: false)]) == expected)
    }

    @Test("refusals: versions, magic, module data, other types (named), unknown opcodes, damage")
    func refusals() throws {
        func error(_ file: [UInt8], limits: RDBReader.Limits = .init()) -> RDBError? {
            do { _ = try readAll([file], limits: limits); return nil } catch { return error }
        }
        let eleven = error(framed([], version: "0011"))
        #expect(eleven?.kind == .unsupportedVersion(11))
        #expect(eleven?.description.hasPrefix("Can't handle RDB format version 11") == true)
        #expect(error(framed([], version: "0000"))?.kind == .unsupportedVersion(0))
        #expect(error(Array("REDIS00x0".utf8))?.kind == .badMagic)
        #expect(error(Array("RUDIS".utf8))?.kind == .badMagic)
        #expect(error(Array("*1\r\n".utf8))?.kind == .badMagic)
        #expect(error(framed([0xF7, 0x01, 0x02]))?.kind == .moduleAux)
        #expect(error(framed([0xF6]))?.kind == .functionPreGA)
        #expect(error(framed([0x30]))?.kind == .unknownOpcode(0x30))
        #expect(error(framed([0x08]))?.kind == .unknownOpcode(0x08))
        #expect(error(framed([0x00, 0xC4]))?.kind == .unknownStringEncoding(0xC4))
        #expect(error(framed([0xFE, 0x82]))?.kind == .badLengthEncoding(0x82))
        for (type, name) in [(1, "list"), (2, "set"), (3, "zset"), (4, "hash"), (14, "list (quicklist)"), (15, "stream"),
                             (16, "hash (listpack)"), (18, "list (quicklist2)"), (19, "stream (listpacks2)"), (6, "module"), (7, "module")] {
            let refused = error(framed([UInt8(type)] + short("my:key\u{1}") + [0x01, 0x02]))
            #expect(refused?.kind == .unsupportedType(key: bytes("my:key\u{1}"), type: UInt8(type)))
            #expect(refused?.description.contains("key 'my:key\\x01' holds a \(name)") == true, "\(refused?.description ?? "none")")
        }
        // A damaged byte is caught by the checksum.
        var damaged = writeFile([Entry(bytes("key"), bytes("value"))])
        damaged[damaged.count - 11] ^= 0x20
        guard case .checksumMismatch = error(damaged)?.kind else { Issue.record("expected a checksum mismatch"); return }
        // Truncation anywhere is .truncated, never an event past the damage.
        let file = writeFile(RDBReaderTests.sampleItems())
        for cut in stride(from: 0, to: file.count, by: max(1, file.count / 500)) {
            #expect(error(Array(file[..<cut]))?.kind == .truncated, "cut at \(cut)")
        }
        // An error is sticky.
        var reader = RDBReader()
        reader.feed(framed([0x30]))
        #expect(throws: RDBError.self) { try reader.next() }
        #expect(throws: RDBError(.unknownOpcode(0x30), offset: 9)) { try reader.next() }
    }

    @Test("limits: announced lengths are checked before anything is waited for or allocated")
    func limits() throws {
        let limits = RDBReader.Limits(maxKeyLength: 10, maxValueLength: 100, maxEntries: 2, maxDatabaseIndex: 15)
        var reader = RDBReader(limits: limits)
        // A 4 GiB value announced and not sent: refused at once, not waited for.
        reader.feed(Array("REDIS0010".utf8) + [0x00, 0x01, 0x6B, 0x81, 0, 0, 0, 1, 0, 0, 0, 0])
        #expect(throws: RDBError(.tooLong(what: "value", length: 1 << 32, limit: 100), offset: 12)) { try reader.next() }
        func error(_ body: [UInt8]) -> RDBError.Kind? {
            do { _ = try readAll([framed(body)], limits: limits); return nil } catch { return error.kind }
        }
        #expect(error([0x00, 11] + [UInt8](repeating: 0x61, count: 11) + [0x00]) == .tooLong(what: "key", length: 11, limit: 10))
        #expect(error([0xFE, 16]) == .tooLong(what: "database index", length: 16, limit: 15))
        #expect(error([0x00, 0x01, 0x61, 0x00, 0x00, 0x01, 0x62, 0x00, 0x00, 0x01, 0x63, 0x00]) == .tooManyEntries(limit: 2))
        // LZF: a declared length over the limit, and one its compressed size cannot produce.
        #expect(error([0x00, 0x01, 0x61, 0xC3, 0x02, 0x40, 101, 0x00, 0x61]) == .tooLong(what: "value", length: 101, limit: 100))
        #expect(error([0x00, 0x01, 0x61, 0xC3, 0x01, 0x40, 99, 0x00]) == .lzf(.outputTooLong(declared: 99)))
        #expect(error([0x00, 0x01, 0x61, 0xC3, 0x02, 0x02, 0x00, 0x61]) == .lzf(.outputTooShort(declared: 2, produced: 1)))
    }

    @Test("trailing bytes after the RDB are handed back")
    func trailingBytes() throws {
        var reader = RDBReader()
        let stream = Array("*1\r\n$4\r\nping\r\n".utf8)
        reader.feed(writeFile([Entry(bytes("k"), bytes("v"))]) + stream)
        var events: [RDBEvent] = []
        while let event = try reader.next() { events.append(event) }
        #expect(events.last == .end)
        #expect(reader.consumedByteCount == 28)
        #expect(reader.takeTrailingBytes() == stream)
    }

    @Test("randomized damage: truncated and mutated files give events or an error, never a crash")
    func fuzz() {
        var random = SplitMix64(seed: 99)
        let items = Array(Self.sampleItems().filter { $0.value.count < 2000 }.prefix(40)) + [Entry(bytes("z"), Array(repeating: 0x7A, count: 500))]
        let file = writeFile(items, aux: [("redis-ver", "7.0.15")])
        let limits = RDBReader.Limits(maxKeyLength: 1 << 16, maxValueLength: 1 << 20)
        for round in 0..<(Int(ProcessInfo.processInfo.environment["RDB_FUZZ_ROUNDS"] ?? "") ?? 1500) {
            var mutated = file
            for _ in 0..<Int.random(in: 1...4, using: &random) {
                let position = Int.random(in: 0..<mutated.count, using: &random)
                switch Int.random(in: 0..<4, using: &random) {
                case 0: mutated[position] = UInt8.random(in: 0...255, using: &random)
                case 1: mutated[position] ^= 1 << UInt8.random(in: 0...7, using: &random)
                case 2: mutated.removeSubrange(position...)
                default: mutated.insert(contentsOf: random.bytes(Int.random(in: 1...8, using: &random)), at: position)
                }
                if mutated.isEmpty { break }
            }
            // Mutations after the magic keep the file parseable far enough to exercise the body.
            let chunkSize = round % 10 == 0 ? 1 : Int.random(in: 1...700, using: &random)
            let chunks = stride(from: 0, to: mutated.count, by: chunkSize).map { Array(mutated[$0..<min($0 + chunkSize, mutated.count)]) }
            do {
                let events = try readAll(chunks, limits: limits)
                // A damaged file that still reads fully must have got past the checksum: exactly one end, last.
                #expect(events.last == .end)
            } catch {
                #expect(!error.description.isEmpty)
            }
        }
    }
}
