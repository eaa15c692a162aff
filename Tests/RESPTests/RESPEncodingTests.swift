// RESPValue's encoding for RESP2 and RESP3 clients, and how the shell's replies map onto it.

import NIOCore
import KVTestSupport
import Testing
@testable import RESP

private func encoded(_ value: RESPValue, _ protocolVersion: Int) -> String {
    var buffer = ByteBuffer()
    value.write(to: &buffer, protocolVersion: protocolVersion)
    return String(decoding: buffer.readableBytesView, as: UTF8.self)
}

private func bulk(_ text: String) -> RESPValue { .bulkString(Array(text.utf8)) }

@Suite("RESP value encoding")
struct RESPEncodingTests {
    @Test("scalars are the same in RESP2 and RESP3", arguments: [2, 3])
    func scalars(version: Int) {
        #expect(encoded(.simpleString("OK"), version) == "+OK\r\n")
        #expect(encoded(.error("ERR boom"), version) == "-ERR boom\r\n")
        #expect(encoded(.integer(0), version) == ":0\r\n")
        #expect(encoded(.integer(-42), version) == ":-42\r\n")
        #expect(encoded(.integer(Int.max), version) == ":9223372036854775807\r\n")
        #expect(encoded(.integer(Int.min), version) == ":-9223372036854775808\r\n")
        #expect(encoded(bulk("hello"), version) == "$5\r\nhello\r\n")
        #expect(encoded(bulk(""), version) == "$0\r\n\r\n")
        #expect(encoded(.array([]), version) == "*0\r\n")
    }

    @Test("bulk strings are binary-safe")
    func binaryBulk() {
        var buffer = ByteBuffer()
        RESPValue.bulkString([0x00, 0x0D, 0x0A, 0xFF]).write(to: &buffer, protocolVersion: 2)
        #expect(Array(buffer.readableBytesView) == Array("$4\r\n".utf8) + [0x00, 0x0D, 0x0A, 0xFF, 0x0D, 0x0A])
    }

    @Test("null is $-1 in RESP2 and _ in RESP3, also inside arrays")
    func null() {
        #expect(encoded(.null, 2) == "$-1\r\n")
        #expect(encoded(.null, 3) == "_\r\n")
        let array = RESPValue.array([bulk("a"), .null, .integer(1)])
        #expect(encoded(array, 2) == "*3\r\n$1\r\na\r\n$-1\r\n:1\r\n")
        #expect(encoded(array, 3) == "*3\r\n$1\r\na\r\n_\r\n:1\r\n")
    }

    @Test("nested arrays")
    func nested() {
        let value = RESPValue.array([bulk("0"), .array([bulk("k1"), bulk("k2")]), .array([])])
        #expect(encoded(value, 2) == "*3\r\n$1\r\n0\r\n*2\r\n$2\r\nk1\r\n$2\r\nk2\r\n*0\r\n")
    }

    @Test("a map is % in RESP3 and a flat array of keys and values in RESP2")
    func map() {
        let value = RESPValue.map([(bulk("server"), bulk("kvsh")), (bulk("proto"), .integer(3)), (bulk("modules"), .array([]))])
        #expect(encoded(value, 3) == "%3\r\n$6\r\nserver\r\n$4\r\nkvsh\r\n$5\r\nproto\r\n:3\r\n$7\r\nmodules\r\n*0\r\n")
        #expect(encoded(value, 2) == "*6\r\n$6\r\nserver\r\n$4\r\nkvsh\r\n$5\r\nproto\r\n:3\r\n$7\r\nmodules\r\n*0\r\n")
        #expect(encoded(.map([]), 3) == "%0\r\n")
        #expect(encoded(.map([]), 2) == "*0\r\n")
    }

    @Test("maps nested in maps are flattened at every level in RESP2")
    func nestedMap() {
        let value = RESPValue.map([(bulk("get"), .map([(bulk("summary"), bulk("Get it.")), (bulk("group"), .null)]))])
        #expect(encoded(value, 3) == "%1\r\n$3\r\nget\r\n%2\r\n$7\r\nsummary\r\n$7\r\nGet it.\r\n$5\r\ngroup\r\n_\r\n")
        #expect(encoded(value, 2) == "*2\r\n$3\r\nget\r\n*4\r\n$7\r\nsummary\r\n$7\r\nGet it.\r\n$5\r\ngroup\r\n$-1\r\n")
    }

    @Test("RESPValue equality compares maps pairwise, in order")
    func mapEquality() {
        #expect(RESPValue.map([(bulk("a"), .integer(1))]) == .map([(bulk("a"), .integer(1))]))
        #expect(RESPValue.map([(bulk("a"), .integer(1))]) != .map([(bulk("a"), .integer(2))]))
        #expect(RESPValue.map([(bulk("a"), .integer(1)), (bulk("b"), .integer(2))]) != .map([(bulk("b"), .integer(2)), (bulk("a"), .integer(1))]))
        #expect(RESPValue.map([]) != .array([]))
    }
}
