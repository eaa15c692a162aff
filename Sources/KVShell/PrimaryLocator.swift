import RESP

/// How `kvsh --connect` finds the primary of a replicated kvsh (or Redis) deployment and follows it: several
/// addresses (the one whose `ROLE` says `master`), or Sentinel (`SENTINEL GET-MASTER-ADDR-BY-NAME`), as Redis
/// clients do. A write refused with `-READONLY` (the node is a replica now) or a lost connection makes the session
/// look again.
public struct PrimaryLocator: Sendable {
    public enum Source: Sendable, Equatable {
        /// Nodes to ask `ROLE`.
        case nodes([Endpoint])
        /// Sentinels (any kvsh cluster node) to ask for the primary named `name`.
        case sentinels([Endpoint], name: String)
    }

    public struct Endpoint: Sendable, Equatable {
        public var host: String
        public var port: Int
        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }
    }

    public let source: Source
    /// TLS for every connection it makes (`--tls`), or nil.
    public let tls: RESPClientTLS?
    /// What every connection authenticates with (the primary's and the sentinels' alike).
    public let credentials: RESPCredentials?

    public init(_ source: Source, tls: RESPClientTLS? = nil, credentials: RESPCredentials? = nil) {
        self.source = source
        self.tls = tls
        self.credentials = credentials
    }

    /// A connection to the primary.
    /// - Throws: ``RESPClientError`` naming every address tried when none leads to a primary.
    public func connect() throws -> RESPClient {
        var tried: [String] = []
        switch source {
        case .nodes(let nodes):
            var fallback: RESPClient?
            for node in nodes {
                guard let client = try? RESPClient(host: node.host, port: node.port, tls: tls, credentials: credentials) else {
                    tried.append("\(RESPClient.endpoint(host: node.host, port: node.port)) (unreachable)")
                    continue
                }
                if case .array(let role)? = try? client.call([Array("ROLE".utf8)]), case .bulkString(let name)? = role.first,
                   name == Array("master".utf8) {
                    return client
                }
                tried.append("\(client.endpoint) (not the primary)")
                if fallback == nil { fallback = client }
            }
            // No node says it is the primary (a failover in progress): the first reachable one serves reads.
            if let fallback { return fallback }
        case .sentinels(let sentinels, let name):
            for sentinel in sentinels {
                guard let client = try? RESPClient(host: sentinel.host, port: sentinel.port, tls: tls, credentials: credentials),
                      let reply = try? client.call(["SENTINEL", "GET-MASTER-ADDR-BY-NAME", name].map { Array($0.utf8) }) else {
                    tried.append("\(RESPClient.endpoint(host: sentinel.host, port: sentinel.port)) (unreachable)")
                    continue
                }
                guard case .array(let address) = reply, address.count == 2, case .bulkString(let host) = address[0],
                      case .bulkString(let portText) = address[1], let port = Int(String(decoding: portText, as: UTF8.self)) else {
                    tried.append("\(client.endpoint) (knows no primary named \(name))")
                    continue
                }
                client.close()
                return try RESPClient(host: String(decoding: host, as: UTF8.self), port: port, tls: tls, credentials: credentials)
            }
        }
        throw RESPClientError(kind: .cannotConnect, endpoint: "the primary", reason: "none found (tried " + tried.joined(separator: ", ") + ")")
    }
}
