/// Why an RDB stream was refused, with the file offset where the problem was found. Once a reader has produced one,
/// it produces the same one again on every call: a stream is never resumed past damage.
public struct RDBError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: Equatable, Sendable {
        /// The first bytes are not `REDIS` and four digits.
        case badMagic
        /// A version other than 1...10 (7.2 writes 11, with encodings this reader does not know).
        case unsupportedVersion(Int)
        /// A key holding something other than a string; `type` is its RDB type byte.
        case unsupportedType(key: [UInt8], type: UInt8)
        /// A byte where an opcode or value type belongs that is neither.
        case unknownOpcode(UInt8)
        /// Module auxiliary data (0xF7): only the module that wrote it can parse it.
        case moduleAux
        /// The pre-release function format (0xF6) of Redis 7.0's release candidates.
        case functionPreGA
        /// A length whose first byte is `10xxxxxx` other than 0x80 and 0x81.
        case badLengthEncoding(UInt8)
        /// A string whose first byte is `11xxxxxx` other than 0xC0...0xC3.
        case unknownStringEncoding(UInt8)
        /// A string (or database index) longer than the reader's limit for it.
        case tooLong(what: String, length: UInt64, limit: Int)
        /// More keys than the reader's limit.
        case tooManyEntries(limit: Int)
        /// An LZF-compressed string that does not decompress to its declared length.
        case lzf(LZF.Error)
        /// The CRC-64 stored after EOF is not the CRC of the bytes before it.
        case checksumMismatch(stored: UInt64, computed: UInt64)
        /// The input ended before EOF and its checksum.
        case truncated
    }

    public let kind: Kind
    /// The offset in the stream (counting from the `R` of `REDIS`) of the item or field at fault.
    public let offset: Int

    public init(_ kind: Kind, offset: Int) {
        self.kind = kind
        self.offset = offset
    }

    public var description: String {
        let what: String
        switch kind {
        case .badMagic:
            what = "Wrong signature trying to load DB from file: the stream does not start with REDIS and a 4-digit version"
        case .unsupportedVersion(let version):
            what = "Can't handle RDB format version \(version) (versions 1 to \(RDBFormat.version) are supported: Redis up to 7.0)"
        case .unsupportedType(let key, let type):
            let name = RDBFormat.typeName(type) ?? "unknown type"
            what = "key '\(printable(key))' holds a \(name) (RDB value type \(type)); only string keys are supported:"
                + " delete or convert it on the source, or copy only the string keys"
        case .unknownOpcode(let byte):
            what = "unknown RDB opcode or value type 0x\(hex(byte)): the stream is damaged or from a newer Redis"
        case .moduleAux:
            what = "module auxiliary data (opcode 0xF7) is not supported: the source uses Redis modules"
        case .functionPreGA:
            what = "Pre-release function format not supported (opcode 0xF6, Redis 7.0 release candidates)"
        case .badLengthEncoding(let byte):
            what = "bad length encoding byte 0x\(hex(byte))"
        case .unknownStringEncoding(let byte):
            what = "unknown string encoding 0x\(hex(byte))"
        case .tooLong(let field, let length, let limit):
            what = "\(field) of \(length) bytes is over the limit of \(limit)"
        case .tooManyEntries(let limit):
            what = "more than \(limit) keys"
        case .lzf(let error):
            what = error.description
        case .checksumMismatch(let stored, let computed):
            what = "wrong RDB checksum: stored 0x\(String(stored, radix: 16)), computed 0x\(String(computed, radix: 16)): the stream is damaged"
        case .truncated:
            what = "the RDB stream ended before its EOF marker and checksum"
        }
        return "\(what) (at byte \(offset))"
    }
}

private func hex(_ byte: UInt8) -> String {
    let digits = String(byte, radix: 16, uppercase: true)
    return digits.count == 1 ? "0" + digits : digits
}

/// `bytes` for an error message: printable ASCII as is, the rest as \xNN, cut at 100 bytes.
func printable(_ bytes: [UInt8]) -> String {
    var text = ""
    for byte in bytes.prefix(100) {
        if byte >= 0x20 && byte < 0x7F && byte != UInt8(ascii: "\\") && byte != UInt8(ascii: "'") {
            text.unicodeScalars.append(Unicode.Scalar(byte))
        } else {
            text += "\\x" + hex(byte)
        }
    }
    if bytes.count > 100 { text += "... (\(bytes.count) bytes)" }
    return text
}
