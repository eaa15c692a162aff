/// LZF, the compression Redis applies to RDB strings longer than 20 bytes (liblzf's format, as in lzf_d.c).
///
/// The compressed stream is a sequence of runs, each starting with a control byte `ctrl`:
/// - `ctrl < 32`: a literal run; the next `ctrl + 1` bytes are copied to the output.
/// - otherwise a back reference: `len = ctrl >> 5` (if 7, plus the next byte), then one more byte `low`; copy
///   `len + 2` bytes from `distance = ((ctrl & 0x1F) << 8) + low + 1` bytes back in the output. The source may
///   overlap the bytes being written (a run of one byte repeated), so the copy goes forward byte by byte.
public enum LZF {
    /// Why a compressed string could not be decompressed. The input is untrusted (it came off a socket or a file),
    /// so each way it can be wrong is an error, never a crash or an out-of-bounds access.
    public enum Error: Swift.Error, Equatable, Sendable, CustomStringConvertible {
        /// The runs would produce more than the declared uncompressed length.
        case outputTooLong(declared: Int)
        /// The runs ended before producing the declared length.
        case outputTooShort(declared: Int, produced: Int)
        /// A back reference pointed before the start of the output.
        case referenceBeforeStart(position: Int, distance: Int)
        /// A run needed bytes past the end of the compressed input.
        case truncatedInput(position: Int)

        public var description: String {
            switch self {
            case .outputTooLong(let declared):
                return "LZF data decompresses to more than its declared \(declared) bytes"
            case .outputTooShort(let declared, let produced):
                return "LZF data decompresses to \(produced) bytes, not its declared \(declared)"
            case .referenceBeforeStart(let position, let distance):
                return "LZF back reference \(distance) bytes back at output byte \(position) points before the start"
            case .truncatedInput(let position):
                return "LZF data ends in the middle of a run (at compressed byte \(position))"
            }
        }
    }

    /// The longest back reference (`len` 7 + 255, plus 2) and the farthest (13 bits of distance).
    static let maxReferenceLength = 264
    static let maxDistance = 1 << 13
    /// The longest literal run.
    static let maxLiteral = 32
    /// The most output one compressed byte can yield (a three-byte reference copies 264 bytes): a declared length
    /// above `88 × compressed length` cannot be honest, so it is refused before anything is allocated for it.
    public static let maxExpansion = 88

    /// Decompresses `input` into exactly `length` bytes.
    /// - Throws: `LZF.Error` if the runs do not produce exactly `length` bytes from exactly the input given.
    public static func decompress(_ input: UnsafeRawBufferPointer, length: Int) throws(LZF.Error) -> [UInt8] {
        guard length >= 0, length <= input.count * maxExpansion else { throw .outputTooLong(declared: length) }
        var failure: LZF.Error?
        let output = [UInt8](unsafeUninitializedCapacity: length) { buffer, initialized in
            do throws(LZF.Error) {
                initialized = try decompress(input, into: UnsafeMutableRawBufferPointer(buffer))
            } catch {
                failure = error
                initialized = 0
            }
        }
        if let failure { throw failure }
        return output
    }

    /// Decompresses `input` into `output` (whose size is the declared length) and returns the bytes written, which
    /// must be all of them.
    static func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws(LZF.Error) -> Int {
        let inputCount = input.count, outputCount = output.count
        var inPosition = 0, outPosition = 0
        while inPosition < inputCount {
            let ctrl = Int(input[inPosition])
            inPosition += 1
            if ctrl < 32 {
                let run = ctrl + 1
                guard outPosition + run <= outputCount else { throw .outputTooLong(declared: outputCount) }
                guard inPosition + run <= inputCount else { throw .truncatedInput(position: inPosition) }
                // Both are in bounds (checked just above), so the copy is one memcpy.
                UnsafeMutableRawBufferPointer(rebasing: output[outPosition..<(outPosition + run)])
                    .copyMemory(from: UnsafeRawBufferPointer(rebasing: input[inPosition..<(inPosition + run)]))
                inPosition += run
                outPosition += run
            } else {
                var length = ctrl >> 5
                if length == 7 {
                    guard inPosition < inputCount else { throw .truncatedInput(position: inPosition) }
                    length += Int(input[inPosition])
                    inPosition += 1
                }
                guard inPosition < inputCount else { throw .truncatedInput(position: inPosition) }
                let distance = ((ctrl & 0x1F) << 8) + Int(input[inPosition]) + 1
                inPosition += 1
                length += 2
                guard distance <= outPosition else { throw .referenceBeforeStart(position: outPosition, distance: distance) }
                guard outPosition + length <= outputCount else { throw .outputTooLong(declared: outputCount) }
                var source = outPosition - distance
                if distance >= length {
                    UnsafeMutableRawBufferPointer(rebasing: output[outPosition..<(outPosition + length)])
                        .copyMemory(from: UnsafeRawBufferPointer(rebasing: output[source..<(source + length)]))
                    outPosition += length
                } else {
                    // Overlapping: each byte may be one this very run wrote.
                    for _ in 0..<length {
                        output[outPosition] = output[source]
                        outPosition += 1
                        source += 1
                    }
                }
            }
        }
        guard outPosition == outputCount else { throw .outputTooShort(declared: outputCount, produced: outPosition) }
        return outPosition
    }

    public static func decompress(_ input: [UInt8], length: Int) throws(LZF.Error) -> [UInt8] {
        let result = input.withUnsafeBytes { bytes in
            Result { () throws(LZF.Error) -> [UInt8] in try decompress(bytes, length: length) }
        }
        return try result.get()
    }

    /// Compresses `input`, or returns nil when the result would not be shorter than `limit` bytes (Redis keeps a
    /// string raw unless LZF saves at least 4 bytes). A fresh compressor each call: to compress many strings, keep
    /// one `LZF.Compressor`.
    public static func compress(_ input: [UInt8], limit: Int? = nil) -> [UInt8]? {
        var compressor = Compressor()
        var output: [UInt8] = []
        let produced = input.withUnsafeBytes { compressor.compress($0, limit: limit ?? input.count - 4, into: &output) }
        return produced ? output : nil
    }

    /// A liblzf-style compressor: a hash table of the last position where each three-byte prefix was seen proposes
    /// a match, which is used if its bytes really are equal. The table is kept between calls (clearing 64 KiB per
    /// 100-byte value would cost more than compressing it); a stale entry is harmless because a candidate is
    /// accepted only after its bytes are compared in the current input.
    public struct Compressor: Sendable {
        static let hashBits = 14
        private var table: [Int32]

        /// Allocates nothing: the table is made on the first compression, so a writer with compression off pays
        /// nothing for it.
        public init() { table = [] }

        /// Replaces `output`'s contents with the compressed form of `input` and returns true, or returns false if that
        /// form would be longer than `limit` bytes (then `output` holds nothing useful).
        public mutating func compress(_ input: UnsafeRawBufferPointer, limit: Int, into output: inout [UInt8]) -> Bool {
            let count = input.count
            guard count > 0, limit > 0 else { return false }
            if table.isEmpty { table = [Int32](repeating: -1, count: 1 << Compressor.hashBits) }
            // The worst case never exceeds the limit check below by more than one run header and one reference.
            let capacity = limit + 4
            // Grow only (removeLast below keeps the capacity), so a compressor reused over many values stops
            // allocating once its output has reached the largest size needed.
            if output.count < capacity { output.append(contentsOf: repeatElement(0, count: capacity - output.count)) }
            let written: Int? = table.withUnsafeMutableBufferPointer { table in
                output.withUnsafeMutableBytes { out in
                    Compressor.run(input, limit: limit, table: table, out: out)
                }
            }
            guard let written else { return false }
            output.removeLast(output.count - written)
            return true
        }

        /// The three bytes at `position` as the low 24 bits of a word (one unaligned load where four bytes are there).
        @inline(__always)
        private static func triple(_ input: UnsafeRawBufferPointer, _ position: Int) -> UInt32 {
            if position + 4 <= input.count {
                return UInt32(littleEndian: input.loadUnaligned(fromByteOffset: position, as: UInt32.self)) & 0xFF_FFFF
            }
            return UInt32(input[position]) | UInt32(input[position + 1]) << 8 | UInt32(input[position + 2]) << 16
        }

        @inline(__always)
        private static func hash(_ triple: UInt32) -> Int {
            Int((triple &* 2_654_435_761) >> UInt32(32 - hashBits))
        }

        /// How far the bytes at `candidate` and `position` (> candidate) agree, from `start` up to `longest`, eight
        /// bytes per step. `position + longest` is within the input.
        @inline(__always)
        private static func matchLength(_ input: UnsafeRawBufferPointer, _ candidate: Int, _ position: Int, from start: Int, longest: Int) -> Int {
            var length = start
            while length + 8 <= longest {
                let a = UInt64(littleEndian: input.loadUnaligned(fromByteOffset: candidate + length, as: UInt64.self))
                let b = UInt64(littleEndian: input.loadUnaligned(fromByteOffset: position + length, as: UInt64.self))
                let difference = a ^ b
                if difference != 0 { return length + difference.trailingZeroBitCount / 8 }
                length += 8
            }
            while length < longest && input[candidate + length] == input[position + length] { length += 1 }
            return length
        }

        /// The compression loop: returns the bytes written to `out`, or nil once they would exceed `limit`.
        private static func run(_ input: UnsafeRawBufferPointer, limit: Int, table: UnsafeMutableBufferPointer<Int32>,
                                out: UnsafeMutableRawBufferPointer) -> Int? {
            let count = input.count
            var ip = 0
            // Each literal run's control byte is written when the run closes; `runStart` is where it goes.
            var runStart = 0, op = 1, literals = 0
            var misses = 0
            while ip + 2 < count {
                let word = triple(input, ip)
                let slot = hash(word)
                let candidate = Int(table[slot])
                table[slot] = Int32(truncatingIfNeeded: ip)
                let distance = ip - candidate
                if candidate >= 0, distance > 0, distance <= LZF.maxDistance, triple(input, candidate) == word {
                    let length = matchLength(input, candidate, ip, from: 3, longest: min(count - ip, LZF.maxReferenceLength))
                    // Close the literal run (or take back its unused control byte).
                    if literals > 0 { out[runStart] = UInt8(literals - 1) } else { op -= 1 }
                    guard op + 4 <= limit else { return nil }
                    let encodedLength = length - 2, encodedDistance = distance - 1
                    if encodedLength < 7 {
                        out[op] = UInt8(encodedLength << 5 | encodedDistance >> 8)
                        op += 1
                    } else {
                        out[op] = UInt8(7 << 5 | encodedDistance >> 8)
                        out[op + 1] = UInt8(encodedLength - 7)
                        op += 2
                    }
                    out[op] = UInt8(truncatingIfNeeded: encodedDistance)
                    op += 1
                    runStart = op
                    op += 1
                    literals = 0
                    ip += length
                    // Remember the prefixes at the match's last two positions, as liblzf does, so that the next
                    // repetition of this text is found.
                    if ip + 2 < count {
                        table[hash(triple(input, ip - 2))] = Int32(truncatingIfNeeded: ip - 2)
                        table[hash(triple(input, ip - 1))] = Int32(truncatingIfNeeded: ip - 1)
                    }
                    misses = 0
                } else {
                    // No match here. After a run of misses the data is probably incompressible (random bytes,
                    // already-compressed values), so probe less often: every 2nd byte after 16 misses, every 3rd
                    // after 32... (as LZ4's acceleration does). The bytes passed over are literals all the same.
                    let step = min(1 + misses >> 4, count - 2 - ip)
                    misses += 1
                    for _ in 0..<step {
                        guard op < limit else { return nil }
                        out[op] = input[ip]
                        op += 1
                        ip += 1
                        literals += 1
                        if literals == LZF.maxLiteral {
                            out[runStart] = UInt8(LZF.maxLiteral - 1)
                            runStart = op
                            op += 1
                            literals = 0
                        }
                    }
                }
            }
            while ip < count {
                guard op < limit else { return nil }
                out[op] = input[ip]
                op += 1
                ip += 1
                literals += 1
                if literals == LZF.maxLiteral {
                    out[runStart] = UInt8(LZF.maxLiteral - 1)
                    runStart = op
                    op += 1
                    literals = 0
                }
            }
            if literals > 0 { out[runStart] = UInt8(literals - 1) } else { op -= 1 }
            return op <= limit ? op : nil
        }
    }
}
