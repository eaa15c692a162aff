import KVTestSupport
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


func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }
