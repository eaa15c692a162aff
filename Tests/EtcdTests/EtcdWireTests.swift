// The parts of the client that need no etcd: the gateway's JSON conventions, prefix ranges, the watch stream's line
// splitting, and the election's deadline arithmetic.

import Foundation
import NIOCore
import XCTest
@testable import Etcd

final class EtcdWireTests: XCTestCase {
    func testInt64sAreStringsBothWaysAndNumbersAreAccepted() throws {
        let decoded = try JSONDecoder().decode([WireInt64].self, from: Data(#"["9223372036854775807", -5, "0"]"#.utf8))
        XCTAssertEqual(decoded.map(\.value), [Int64.max, -5, 0])
        XCTAssertEqual(String(decoding: try JSONEncoder().encode(WireInt64(42)), as: UTF8.self), #""42""#)
        XCTAssertThrowsError(try JSONDecoder().decode(WireInt64.self, from: Data(#""12x""#.utf8)))
        let ids = try JSONDecoder().decode(WireUInt64.self, from: Data(#""15118495548433857066""#.utf8))
        XCTAssertEqual(ids.value, 15_118_495_548_433_857_066)
    }

    func testOmittedFieldsReadAsZeroes() throws {
        // A failed transaction has no `succeeded`; a DELETE event's kv has only key and mod_revision.
        let txn = try JSONDecoder().decode(WireTxnResponse.self, from: Data(#"{"header":{"revision":"3"},"responses":[{"response_range":{"header":{"revision":"3"}}}]}"#.utf8))
        XCTAssertNil(txn.succeeded)
        XCTAssertEqual(try EtcdOperationResult(XCTUnwrap(txn.responses?.first)), .range([]))
        let kv = EtcdKeyValue(try JSONDecoder().decode(WireKeyValue.self, from: Data(#"{"key":"YQ==","mod_revision":"5"}"#.utf8)))
        XCTAssertEqual(kv, EtcdKeyValue(key: Array("a".utf8), value: [], createRevision: 0, modRevision: 5, version: 0, lease: 0))
        XCTAssertThrowsError(try JSONDecoder().decode(WireBytes.self, from: Data(#""not base64!""#.utf8)))
    }

    func testPrefixRangeEnds() {
        XCTAssertEqual(rangeEnd(ofPrefix: "/kvsh/c/nodes/").bytes, Array("/kvsh/c/nodes0".utf8))
        XCTAssertEqual(rangeEnd(ofPrefix: "a").bytes, Array("b".utf8))
        XCTAssertEqual(rangeEnd(ofPrefix: "a\u{7f}").bytes, [0x61, 0x80])
        // (0xff, which cannot be incremented, never occurs in UTF-8.) The empty prefix means every key.
        XCTAssertEqual(rangeEnd(ofPrefix: "").bytes, [0])
    }

    func testWatchLinesAcrossChunksAndTheLineLimit() throws {
        var lines = LineSplitter(limit: 64)
        try lines.append(ByteBuffer(string: "{\"a\":1}\n{\"b\""))
        XCTAssertEqual(lines.next().map { String(decoding: $0, as: UTF8.self) }, "{\"a\":1}")
        XCTAssertNil(lines.next())
        try lines.append(ByteBuffer(string: ":2}\r\n\n"))
        XCTAssertEqual(lines.next().map { String(decoding: $0, as: UTF8.self) }, "{\"b\":2}\r")
        XCTAssertNil(lines.next(), "blank lines are skipped")
        XCTAssertThrowsError(try lines.append(ByteBuffer(string: String(repeating: "x", count: 65)))) { error in
            guard case .malformedResponse? = error as? EtcdError else { return XCTFail("\(error)") }
        }
    }

    func testElectionDefaultsAndRenewDeadline() throws {
        let five = ElectionOptions(key: "/k", value: [], ttl: .seconds(5))
        XCTAssertEqual(five.fenceMargin, .seconds(1))
        XCTAssertEqual(five.renewInterval, .seconds(5) / 3)
        let two = ElectionOptions(key: "/k", value: [], ttl: .seconds(2))
        XCTAssertEqual(two.fenceMargin, .milliseconds(500))
        let sent = ContinuousClock.now
        XCTAssertEqual(five.renewDeadline(after: sent), sent + .seconds(4))
        XCTAssertNoThrow(try five.validate())
        XCTAssertThrowsError(try ElectionOptions(key: "/k", value: [], ttl: .seconds(5), fenceMargin: .seconds(5)).validate())
    }
}
