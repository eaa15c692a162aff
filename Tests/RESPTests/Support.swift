@testable import RESP

/// `arguments` as a client sends them: the encoder under test elsewhere, so that a decoder test needs no codec of
/// its own.
func encodeCommand(_ arguments: [[UInt8]]) -> [UInt8] {
    var bytes: [UInt8] = []
    RESPValue.appendCommand(arguments, to: &bytes)
    return bytes
}

func encodeCommand(_ arguments: String...) -> [UInt8] {
    encodeCommand(arguments.map { Array($0.utf8) })
}

/// Bytes for a failure message: printable ASCII as is, the rest escaped.
func escaped<C: Collection>(_ bytes: C, limit: Int = 400) -> String where C.Element == UInt8 {
    var text = ""
    for byte in bytes.prefix(limit) {
        switch byte {
        case 0x0A: text += "\\n"
        case 0x0D: text += "\\r"
        case 0x5C: text += "\\\\"
        case 0x20...0x7E: text.unicodeScalars.append(Unicode.Scalar(byte))
        default:
            let hex = String(byte, radix: 16)
            text += "\\x" + (hex.count == 1 ? "0" + hex : hex)
        }
    }
    return text + (bytes.count > limit ? "…" : "")
}

func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }
