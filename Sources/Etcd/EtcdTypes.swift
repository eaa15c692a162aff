// The client's public values: what etcd returns (key-values, headers, leases, members, status, watch events) and
// what a transaction is built from. Converted from the wire shapes in EtcdWire.swift, with etcd's omitted zero
// fields filled in.

/// The header of every etcd reply: which cluster and member answered, and the store's revision at that moment.
public struct EtcdResponseHeader: Sendable, Equatable {
    public var clusterID: UInt64
    public var memberID: UInt64
    public var revision: Int64
    public var raftTerm: UInt64

    init(_ wire: WireHeader?) {
        clusterID = wire?.cluster_id?.value ?? 0
        memberID = wire?.member_id?.value ?? 0
        revision = wire?.revision?.value ?? 0
        raftTerm = wire?.raft_term?.value ?? 0
    }
}

/// A key and its value as etcd stores them. Revisions are etcd's: `createRevision` is unique per creation of the key
/// (0 when it does not exist), which makes it a fencing token for whoever created it.
public struct EtcdKeyValue: Sendable, Equatable {
    public var key: [UInt8]
    public var value: [UInt8]
    public var createRevision: Int64
    public var modRevision: Int64
    public var version: Int64
    /// The lease the key is attached to; 0 for none.
    public var lease: Int64

    public var keyString: String { String(decoding: key, as: UTF8.self) }
    public var valueString: String { String(decoding: value, as: UTF8.self) }

    public init(key: [UInt8], value: [UInt8], createRevision: Int64, modRevision: Int64, version: Int64, lease: Int64) {
        self.key = key
        self.value = value
        self.createRevision = createRevision
        self.modRevision = modRevision
        self.version = version
        self.lease = lease
    }

    init(_ wire: WireKeyValue) {
        key = wire.key?.bytes ?? []
        value = wire.value?.bytes ?? []
        createRevision = wire.create_revision?.value ?? 0
        modRevision = wire.mod_revision?.value ?? 0
        version = wire.version?.value ?? 0
        lease = wire.lease?.value ?? 0
    }
}

/// The keys a range read returned, and the revision it read at.
public struct EtcdRangeResult: Sendable, Equatable {
    public var header: EtcdResponseHeader
    public var kvs: [EtcdKeyValue]
    /// How many keys matched (more than `kvs.count` when a limit cut the result).
    public var count: Int64
    public var more: Bool
}

/// One comparison of a transaction's guard.
public struct EtcdCompare: Sendable, Equatable {
    public enum Operator: String, Sendable {
        case equal = "EQUAL", notEqual = "NOT_EQUAL", greater = "GREATER", less = "LESS"
    }

    public enum Target: Sendable, Equatable {
        /// The key's create revision; 0 means "the key does not exist".
        case createRevision(Int64)
        case modRevision(Int64)
        case version(Int64)
        case value([UInt8])
        case lease(Int64)
    }

    public var key: String
    public var op: Operator
    public var target: Target

    public init(key: String, _ op: Operator, _ target: Target) {
        self.key = key
        self.op = op
        self.target = target
    }

    /// The key does not exist (its create revision is 0): the campaign's guard.
    public static func absent(_ key: String) -> EtcdCompare { EtcdCompare(key: key, .equal, .createRevision(0)) }

    var wire: WireCompare {
        var compare = WireCompare(result: op.rawValue, target: "", key: WireBytes(key))
        switch target {
        case .createRevision(let revision):
            compare.target = "CREATE"
            compare.create_revision = WireInt64(revision)
        case .modRevision(let revision):
            compare.target = "MOD"
            compare.mod_revision = WireInt64(revision)
        case .version(let version):
            compare.target = "VERSION"
            compare.version = WireInt64(version)
        case .value(let value):
            compare.target = "VALUE"
            compare.value = WireBytes(value)
        case .lease(let lease):
            compare.target = "LEASE"
            compare.lease = WireInt64(lease)
        }
        return compare
    }
}

/// One operation of a transaction branch.
public enum EtcdOperation: Sendable, Equatable {
    /// Writes `value` at `key`, attached to `lease` (0: none).
    case put(key: String, value: [UInt8], lease: Int64 = 0)
    /// Reads `key`, or every key starting with it when `prefix` is true.
    case range(key: String, prefix: Bool = false)
    /// Deletes `key`, or every key starting with it when `prefix` is true.
    case delete(key: String, prefix: Bool = false)

    var wire: WireRequestOp {
        switch self {
        case .put(let key, let value, let lease):
            return WireRequestOp(request_put: WirePutRequest(key: WireBytes(key), value: WireBytes(value),
                                                             lease: lease == 0 ? nil : WireInt64(lease)))
        case .range(let key, let prefix):
            return WireRequestOp(request_range: WireRangeRequest(key: WireBytes(key), range_end: prefix ? rangeEnd(ofPrefix: key) : nil))
        case .delete(let key, let prefix):
            return WireRequestOp(request_delete_range: WireDeleteRequest(key: WireBytes(key), range_end: prefix ? rangeEnd(ofPrefix: key) : nil))
        }
    }
}

/// What one operation of a transaction returned.
public enum EtcdOperationResult: Sendable, Equatable {
    case put(revision: Int64)
    case range([EtcdKeyValue])
    case delete(deleted: Int64)

    init(_ wire: WireResponseOp) throws {
        if let put = wire.response_put {
            self = .put(revision: EtcdResponseHeader(put.header).revision)
        } else if let range = wire.response_range {
            self = .range((range.kvs ?? []).map(EtcdKeyValue.init))
        } else if let delete = wire.response_delete_range {
            self = .delete(deleted: delete.deleted?.value ?? 0)
        } else {
            throw EtcdError.malformedResponse("a transaction response with no put, range or delete result")
        }
    }
}

/// A transaction's outcome: which branch ran, and each of its operations' results, in order.
public struct EtcdTxnResult: Sendable, Equatable {
    public var header: EtcdResponseHeader
    public var succeeded: Bool
    public var responses: [EtcdOperationResult]
}

/// A granted lease.
public struct EtcdLease: Sendable, Equatable {
    public var id: Int64
    /// The TTL etcd granted (at least 2 s: etcd raises smaller requests).
    public var ttl: Duration
    public var header: EtcdResponseHeader
}

/// A watch event on a key.
public struct EtcdWatchEvent: Sendable, Equatable {
    public enum Kind: Sendable, Equatable { case put, delete }
    public var kind: Kind
    /// For a delete, only `key` and `modRevision` (the deletion's revision) are set.
    public var kv: EtcdKeyValue
    /// The value before the event, when the watch asked for it.
    public var previous: EtcdKeyValue?
}

/// A member of the etcd cluster.
public struct EtcdMember: Sendable, Equatable {
    public var id: UInt64
    public var name: String
    public var peerURLs: [String]
    public var clientURLs: [String]
    public var isLearner: Bool
}

/// What one endpoint says of itself (`/v3/maintenance/status`).
public struct EtcdStatus: Sendable, Equatable {
    public var endpoint: String
    public var version: String
    public var memberID: UInt64
    /// The raft leader's member ID; 0 when the member knows of no leader (no quorum).
    public var leader: UInt64
    public var raftTerm: UInt64
    public var raftIndex: UInt64
    public var dbSize: Int64
    public var errors: [String]
    public var isLeader: Bool { leader != 0 && leader == memberID }
}

/// The end of the range `[prefix, end)` that holds exactly the keys starting with `prefix` (etcd's convention: the
/// prefix with its last byte below 0xff incremented; "\0" means "to the end of the key space").
func rangeEnd(ofPrefix prefix: String) -> WireBytes {
    var bytes = Array(prefix.utf8)
    while let last = bytes.last {
        if last < 0xff {
            bytes[bytes.count - 1] = last + 1
            return WireBytes(bytes)
        }
        bytes.removeLast()
    }
    return WireBytes([0])
}
