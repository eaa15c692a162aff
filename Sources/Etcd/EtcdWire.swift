// The JSON shapes of etcd's /v3/ gateway, in one place. The gateway's rules: bytes are base64, 64-bit integers are
// JSON strings, enums are names, and every zero-valued field (false, 0, "", empty list) is omitted — so every field
// here is optional or defaulted, and integers decode from a string or a number.

import Foundation

/// A 64-bit integer written as a JSON string (grpc-gateway's rule for int64/uint64); reads a bare number too.
struct WireInt64: Codable, Sendable, Equatable {
    var value: Int64
    init(_ value: Int64) { self.value = value }
    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let text = try? container.decode(String.self) {
            guard let number = Int64(text) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "not an int64: \(text)")
            }
            value = number
        } else {
            value = try container.decode(Int64.self)
        }
    }
    func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(String(value))
    }
}

/// An unsigned 64-bit integer (cluster and member IDs use the whole range).
struct WireUInt64: Codable, Sendable, Equatable {
    var value: UInt64
    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let text = try? container.decode(String.self) {
            guard let number = UInt64(text) else {
                throw DecodingError.dataCorruptedError(in: container, debugDescription: "not a uint64: \(text)")
            }
            value = number
        } else {
            value = try container.decode(UInt64.self)
        }
    }
    func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(String(value))
    }
}

/// Bytes as base64 (protobuf `bytes` in JSON).
struct WireBytes: Codable, Sendable, Equatable {
    var bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }
    init(_ string: String) { self.bytes = Array(string.utf8) }
    init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        guard let data = Data(base64Encoded: text) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "not base64")
        }
        bytes = Array(data)
    }
    func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(Data(bytes).base64EncodedString())
    }
}

struct WireHeader: Decodable, Sendable {
    var cluster_id: WireUInt64?
    var member_id: WireUInt64?
    var revision: WireInt64?
    var raft_term: WireUInt64?
}

struct WireKeyValue: Decodable, Sendable {
    var key: WireBytes?
    var create_revision: WireInt64?
    var mod_revision: WireInt64?
    var version: WireInt64?
    var value: WireBytes?
    var lease: WireInt64?
}

/// The error body of a failed call: `{"error": …, "message": …, "code": 5}`.
struct WireError: Decodable {
    var error: String?
    var message: String?
    var code: Int?
}

// MARK: KV

struct WirePutRequest: Encodable {
    var key: WireBytes
    var value: WireBytes
    var lease: WireInt64?
    var prev_kv: Bool?
}

struct WirePutResponse: Decodable {
    var header: WireHeader?
    var prev_kv: WireKeyValue?
}

struct WireRangeRequest: Encodable {
    var key: WireBytes
    var range_end: WireBytes?
    var limit: WireInt64?
    var revision: WireInt64?
    var serializable: Bool?
    var count_only: Bool?
}

struct WireRangeResponse: Decodable {
    var header: WireHeader?
    var kvs: [WireKeyValue]?
    var more: Bool?
    var count: WireInt64?
}

struct WireDeleteRequest: Encodable {
    var key: WireBytes
    var range_end: WireBytes?
    var prev_kv: Bool?
}

struct WireDeleteResponse: Decodable {
    var header: WireHeader?
    var deleted: WireInt64?
    var prev_kvs: [WireKeyValue]?
}

struct WireCompare: Encodable {
    var result: String
    var target: String
    var key: WireBytes
    var range_end: WireBytes?
    var version: WireInt64?
    var create_revision: WireInt64?
    var mod_revision: WireInt64?
    var value: WireBytes?
    var lease: WireInt64?
}

struct WireRequestOp: Encodable {
    var request_range: WireRangeRequest?
    var request_put: WirePutRequest?
    var request_delete_range: WireDeleteRequest?
}

struct WireResponseOp: Decodable {
    var response_range: WireRangeResponse?
    var response_put: WirePutResponse?
    var response_delete_range: WireDeleteResponse?
}

struct WireTxnRequest: Encodable {
    var compare: [WireCompare]
    var success: [WireRequestOp]
    var failure: [WireRequestOp]
}

struct WireTxnResponse: Decodable {
    var header: WireHeader?
    var succeeded: Bool?
    var responses: [WireResponseOp]?
}

// MARK: Lease

struct WireLeaseGrantRequest: Encodable {
    var TTL: WireInt64
    var ID: WireInt64?
}

struct WireLeaseGrantResponse: Decodable {
    var header: WireHeader?
    var ID: WireInt64?
    var TTL: WireInt64?
    var error: String?
}

struct WireLeaseID: Encodable {
    var ID: WireInt64
}

struct WireLeaseKeepAliveResponse: Decodable {
    struct Result: Decodable {
        var header: WireHeader?
        var ID: WireInt64?
        var TTL: WireInt64?
    }
    var result: Result?
    var error: WireError?
}

struct WireLeaseTimeToLiveRequest: Encodable {
    var ID: WireInt64
    var keys: Bool?
}

struct WireLeaseTimeToLiveResponse: Decodable {
    var header: WireHeader?
    var ID: WireInt64?
    var TTL: WireInt64?
    var grantedTTL: WireInt64?
}

struct WireHeaderOnly: Decodable {
    var header: WireHeader?
}

// MARK: Watch

struct WireWatchCreateRequest: Encodable {
    struct Create: Encodable {
        var key: WireBytes
        var range_end: WireBytes?
        var start_revision: WireInt64?
        var prev_kv: Bool?
    }
    var create_request: Create
}

/// One line of the watch stream: `{"result": {…}}`, or `{"error": {…}}` when the gateway gives up.
struct WireWatchLine: Decodable {
    struct Result: Decodable {
        var header: WireHeader?
        var created: Bool?
        var canceled: Bool?
        var compact_revision: WireInt64?
        var cancel_reason: String?
        var events: [WireEvent]?
    }
    struct StreamError: Decodable {
        var message: String?
        var http_code: Int?
        var grpc_code: Int?
    }
    var result: Result?
    var error: StreamError?
}

struct WireEvent: Decodable {
    var type: String?  // absent for PUT (the enum's zero value)
    var kv: WireKeyValue?
    var prev_kv: WireKeyValue?
}

// MARK: Cluster, maintenance, auth

struct WireMember: Decodable {
    var ID: WireUInt64?
    var name: String?
    var peerURLs: [String]?
    var clientURLs: [String]?
    var isLearner: Bool?
}

struct WireMemberListResponse: Decodable {
    var header: WireHeader?
    var members: [WireMember]?
}

struct WireStatusResponse: Decodable {
    var header: WireHeader?
    var version: String?
    var dbSize: WireInt64?
    var leader: WireUInt64?
    var raftIndex: WireUInt64?
    var raftTerm: WireUInt64?
    var raftAppliedIndex: WireUInt64?
    var errors: [String]?
}

struct WireAuthenticateRequest: Encodable {
    var name: String
    var password: String
}

struct WireAuthenticateResponse: Decodable {
    var header: WireHeader?
    var token: String?
}

struct WireEmpty: Encodable {}
