// The key layout of a kvsh cluster in etcd, defined once, and the node records nodes publish under it:
//
//   /kvsh/<cluster>/leader         the elected primary's record, attached to its election lease
//   /kvsh/<cluster>/nodes/<name>   each node's record (JSON), attached to that node's own lease

import Foundation

/// The keys of one cluster.
public struct ClusterKeys: Sendable, Equatable {
    public let cluster: String
    /// `/kvsh/<cluster>`
    public let root: String

    /// - Throws: ``EtcdError/invalidConfiguration(_:)`` for an empty name or one with `/` (it would nest clusters).
    public init(cluster: String, root: String = "/kvsh") throws {
        try Self.validate(cluster, what: "cluster name")
        self.cluster = cluster
        self.root = root + "/" + cluster
    }

    public var leader: String { root + "/leader" }
    /// The prefix of every node record, ending in `/`.
    public var nodesPrefix: String { root + "/nodes/" }

    public func node(_ name: String) throws -> String {
        try Self.validate(name, what: "node name")
        return nodesPrefix + name
    }

    static func validate(_ name: String, what: String) throws {
        guard !name.isEmpty, !name.contains("/"), name.utf8.count <= 200,
              name.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value != 0x7f }) else {
            throw EtcdError.invalidConfiguration("the \(what) \"\(name)\" must be 1–200 printable characters without / or spaces")
        }
    }
}

/// What a node tells the others about itself.
public struct NodeRecord: Codable, Sendable, Equatable {
    public var name: String
    /// Where clients and replicas reach it, `host:port`.
    public var address: String
    /// Its replication offset: the election prefers the most up-to-date node.
    public var offset: Int64
    /// 0 never becomes primary; otherwise higher wins ties of offset.
    public var priority: Int
    /// "primary" or "replica".
    public var role: String
    /// The leader term (the leader key's revision) whose stream this node's data follows: the term it led, or the
    /// term of the primary it last finished a sync with; nil until it knows (a node just started). Offsets are only
    /// comparable within one history: a former primary's unacknowledged writes raise its offset past the new
    /// primary's replicas without making it more up to date.
    public var term: Int64?

    public init(name: String, address: String, offset: Int64, priority: Int, role: String, term: Int64? = nil) {
        self.name = name
        self.address = address
        self.offset = offset
        self.priority = priority
        self.role = role
        self.term = term
    }

    /// Whether `self` is a better primary than `other`: the newer history (term), then the higher offset, then the
    /// higher priority, then the smaller name (so that every node ranks the same records the same way).
    public func isMoreUpToDate(than other: NodeRecord) -> Bool {
        if (term ?? 0) != (other.term ?? 0) { return (term ?? 0) > (other.term ?? 0) }
        if offset != other.offset { return offset > other.offset }
        if priority != other.priority { return priority > other.priority }
        return name < other.name
    }

    public func encoded() throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return Array(try encoder.encode(self))
    }

    public static func decode(_ bytes: [UInt8]) throws -> NodeRecord {
        try JSONDecoder().decode(NodeRecord.self, from: Data(bytes))
    }
}

extension EtcdClient {
    /// Writes `record` at `<root>/nodes/<name>`, attached to `lease` (the node keeps that lease alive; when the node
    /// dies its record disappears with it). Returns the revision of the write.
    @discardableResult
    public func publish(_ record: NodeRecord, in keys: ClusterKeys, lease: Int64) async throws -> Int64 {
        try await put(keys.node(record.name), record.encoded(), lease: lease)
    }

    /// Every node record of the cluster, by name, and the revision of the read (watch the prefix from it + 1 to
    /// follow changes). Records that are not valid JSON are skipped and named in `unreadable`.
    public func nodes(in keys: ClusterKeys) async throws -> (nodes: [NodeRecord], unreadable: [String], revision: Int64) {
        let result = try await range(prefix: keys.nodesPrefix)
        var nodes: [NodeRecord] = []
        var unreadable: [String] = []
        for kv in result.kvs {
            if let record = try? NodeRecord.decode(kv.value) { nodes.append(record) } else { unreadable.append(kv.keyString) }
        }
        return (nodes, unreadable, result.header.revision)
    }

    /// Keeps `lease` alive every `interval` until it is lost (throws ``EtcdError/leaseLost(_:)``) or the task is
    /// cancelled. Other failures are retried at the next interval. For a node record's lease; the election
    /// renews its own.
    public func keepLeaseAlive(_ lease: Int64, every interval: Duration) async throws {
        while true {
            do {
                try await keepAlive(lease)
            } catch EtcdError.leaseLost {
                throw EtcdError.leaseLost(lease)
            } catch let error as EtcdError {
                logger.warning("lease renewal failed; retrying", metadata: ["lease": "\(String(lease, radix: 16))", "error": "\(error)"])
            }
            try await Task.sleep(for: interval)
        }
    }
}
