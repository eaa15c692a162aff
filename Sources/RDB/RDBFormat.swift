/// The bytes of Redis's RDB snapshot format that this module writes and reads: the one place its constants are
/// defined. `Docs/RDB.md` describes the same bytes in prose.
///
/// A file is the magic `REDIS` and four ASCII digits of version, then a sequence of items each introduced by one byte:
/// an opcode (0xF5...0xFF) or a value type (0 is a string; the others are lists, sets, hashes... which this module
/// refuses), then EOF (0xFF) and, from version 5, the CRC-64/REDIS of everything before it, little-endian.
public enum RDBFormat {
    /// "REDIS": the first five bytes of every file, followed by the version as four ASCII digits.
    public static let magicPrefix: [UInt8] = Array("REDIS".utf8)
    /// What Redis 7.0 writes, and the newest version the reader accepts (7.2's 11 added types this module cannot read).
    public static let version = 10
    /// The oldest version where EOF is followed by a checksum.
    static let firstVersionWithChecksum = 5

    /// The opcode bytes. Values below 0xF5 are value types.
    public enum Opcode {
        /// From 7.0 GA: one string, a function library's code (skipped by the reader).
        public static let function2: UInt8 = 0xF5
        /// 7.0 release candidates only; refused, as Redis 7.0 itself refuses it.
        public static let functionPreGA: UInt8 = 0xF6
        /// Module auxiliary data: module-defined bytes that cannot be skipped without the module.
        public static let moduleAux: UInt8 = 0xF7
        /// LRU idle time of the next key (a length); skipped.
        public static let idle: UInt8 = 0xF8
        /// LFU frequency of the next key (one byte); skipped.
        public static let freq: UInt8 = 0xF9
        /// Two strings: an auxiliary field's name and value.
        public static let aux: UInt8 = 0xFA
        /// Two lengths: hints of the number of keys and of keys with an expiry in the current database.
        public static let resizeDB: UInt8 = 0xFB
        /// An int64, little-endian: absolute Unix time in milliseconds at which the next key expires.
        public static let expireTimeMs: UInt8 = 0xFC
        /// An int32, little-endian: absolute Unix time in seconds at which the next key expires (old files).
        public static let expireTime: UInt8 = 0xFD
        /// A length: the database the following keys belong to.
        public static let selectDB: UInt8 = 0xFE
        /// The end, followed by the checksum from version 5.
        public static let eof: UInt8 = 0xFF
    }

    /// The value type of a string key, the only one this module handles.
    public static let stringType: UInt8 = 0

    /// Redis's names for the value types it writes (rdb.h), for errors that say what a key held.
    public static func typeName(_ type: UInt8) -> String? {
        switch type {
        case 0: return "string"
        case 1: return "list"
        case 2: return "set"
        case 3: return "zset"
        case 4: return "hash"
        case 5: return "zset (zset2)"
        case 6: return "module value (module)"
        case 7: return "module value (module2)"
        case 9: return "hash (zipmap)"
        case 10: return "list (ziplist)"
        case 11: return "set (intset)"
        case 12: return "zset (ziplist)"
        case 13: return "hash (ziplist)"
        case 14: return "list (quicklist)"
        case 15: return "stream (listpacks)"
        case 16: return "hash (listpack)"
        case 17: return "zset (listpack)"
        case 18: return "list (quicklist2)"
        case 19: return "stream (listpacks2)"
        case 20: return "set (listpack)"
        case 21: return "stream (listpacks3)"
        default: return nil
        }
    }

    /// Length encoding: the top two bits of the first byte say how the length is stored.
    enum Length {
        /// `00xxxxxx`: the length is the low six bits.
        static let sixBit: UInt8 = 0b00
        /// `01xxxxxx yyyyyyyy`: fourteen bits, big-endian.
        static let fourteenBit: UInt8 = 0b01
        /// `0x80` then four bytes big-endian.
        static let thirtyTwoBit: UInt8 = 0x80
        /// `0x81` then eight bytes big-endian.
        static let sixtyFourBit: UInt8 = 0x81
        /// `11xxxxxx`: not a length but a special string encoding, in the low six bits.
        static let encoded: UInt8 = 0b11
    }

    /// The special string encodings (the first byte in full).
    enum StringEncoding {
        static let int8: UInt8 = 0xC0
        static let int16: UInt8 = 0xC1
        static let int32: UInt8 = 0xC2
        static let lzf: UInt8 = 0xC3
    }

    /// Redis tries LZF only on strings longer than this, and int encoding only on strings up to 11 bytes
    /// ("-2147483648").
    static let compressionThreshold = 20
    static let maxIntEncodedLength = 11

    /// The number of bytes `appendLength` writes for `length`.
    @inline(__always)
    static func lengthSize(_ length: UInt64) -> Int {
        length < 1 << 6 ? 1 : length < 1 << 14 ? 2 : length <= UInt64(UInt32.max) ? 5 : 9
    }

    /// Writes `length` encoded at `offset` in `bytes` and returns the offset after it. The caller made room
    /// (`lengthSize`).
    @inline(__always)
    static func storeLength(_ length: UInt64, in bytes: UnsafeMutableRawBufferPointer, at offset: Int) -> Int {
        if length < 1 << 6 {
            bytes[offset] = UInt8(length)
            return offset + 1
        } else if length < 1 << 14 {
            bytes[offset] = 0x40 | UInt8(length >> 8)
            bytes[offset + 1] = UInt8(truncatingIfNeeded: length)
            return offset + 2
        } else if length <= UInt64(UInt32.max) {
            bytes[offset] = Length.thirtyTwoBit
            bytes.storeBytes(of: UInt32(length).bigEndian, toByteOffset: offset + 1, as: UInt32.self)
            return offset + 5
        } else {
            bytes[offset] = Length.sixtyFourBit
            bytes.storeBytes(of: length.bigEndian, toByteOffset: offset + 1, as: UInt64.self)
            return offset + 9
        }
    }

    /// The value of `text` if it is the canonical decimal form of an int32 (what Redis int-encodes: no sign on
    /// zero, no plus, no leading zeros, at most 11 bytes), else nil. Such a string round-trips through the
    /// integer unchanged, which is what makes the encoding lossless.
    @inline(__always)
    static func canonicalInt32(_ text: UnsafeRawBufferPointer) -> Int32? {
        let count = text.count
        guard count >= 1, count <= maxIntEncodedLength else { return nil }
        var index = 0
        var negative = false
        if text[0] == UInt8(ascii: "-") {
            negative = true
            index = 1
            guard count >= 2 else { return nil }
        }
        let first = text[index]
        // "0" alone is canonical; "-0", "00", "01" are not.
        if first == UInt8(ascii: "0") { return count == 1 ? 0 : nil }
        var value: Int64 = 0
        while index < count {
            let digit = text[index] &- UInt8(ascii: "0")
            guard digit < 10 else { return nil }
            value = value * 10 + Int64(digit)
            index += 1
        }
        if negative { value = -value }
        guard value >= Int64(Int32.min), value <= Int64(Int32.max) else { return nil }
        return Int32(value)
    }
}
