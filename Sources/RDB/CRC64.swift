/// CRC-64/REDIS, the checksum at the end of an RDB file: the Jones polynomial 0xad93d23594c935a9, reflected in and
/// out, initial value 0, no final xor. Check value: "123456789" → 0xe9c6d914c4b8d9ca.
///
/// It runs over whole snapshots (a million keys of 100 bytes is 100 MB per full sync), so it is computed eight
/// bytes at a time with eight 256-entry tables ("slice-by-8") instead of bit by bit.
public struct CRC64: Sendable, Equatable {
    /// The CRC of the bytes given so far.
    public private(set) var value: UInt64

    /// A CRC over no bytes yet, or continuing from `value`.
    public init(value: UInt64 = 0) { self.value = value }

    /// The CRC of `bytes` in one call.
    public static func checksum(_ bytes: [UInt8]) -> UInt64 {
        var crc = CRC64()
        crc.update(bytes)
        return crc.value
    }

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// Extends the CRC over `bytes`, as if they followed the bytes already given.
    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard var pointer = bytes.baseAddress else { return }
        var remaining = bytes.count
        var crc = value
        CRC64.tables.withUnsafeBufferPointer { table in
            // The reflected form: the low byte of the CRC meets the next input byte, so eight input bytes xored
            // into the CRC as a little-endian word are consumed together, each through its own table.
            while remaining >= 8 {
                crc ^= UInt64(littleEndian: pointer.loadUnaligned(as: UInt64.self))
                crc = table[7 * 256 + Int(crc & 0xFF)] ^ table[6 * 256 + Int((crc >> 8) & 0xFF)]
                    ^ table[5 * 256 + Int((crc >> 16) & 0xFF)] ^ table[4 * 256 + Int((crc >> 24) & 0xFF)]
                    ^ table[3 * 256 + Int((crc >> 32) & 0xFF)] ^ table[2 * 256 + Int((crc >> 40) & 0xFF)]
                    ^ table[1 * 256 + Int((crc >> 48) & 0xFF)] ^ table[Int(crc >> 56)]
                pointer += 8
                remaining -= 8
            }
            while remaining > 0 {
                crc = table[Int((crc ^ UInt64(pointer.load(as: UInt8.self))) & 0xFF)] ^ (crc >> 8)
                pointer += 1
                remaining -= 1
            }
        }
        value = crc
    }

    /// The polynomial bit-reversed, for the LSB-first (reflected) computation.
    static let reflectedPolynomial: UInt64 = 0x95AC_9329_AC4B_C9B5

    /// Table k (k = 0...7, 256 entries each) gives the CRC contribution of a byte followed by k zero bytes.
    static let tables: [UInt64] = {
        var tables = [UInt64](repeating: 0, count: 8 * 256)
        for byte in 0..<256 {
            var crc = UInt64(byte)
            for _ in 0..<8 { crc = (crc >> 1) ^ ((crc & 1) == 1 ? reflectedPolynomial : 0) }
            tables[byte] = crc
        }
        for slice in 1..<8 {
            for byte in 0..<256 {
                let previous = tables[(slice - 1) * 256 + byte]
                tables[slice * 256 + byte] = (previous >> 8) ^ tables[Int(previous & 0xFF)]
            }
        }
        return tables
    }()
}
