#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVAccess
import KVCommands
import RESP
import KVStore
import NIOCore

/// Per-connection settings that commands change (HELLO, CLIENT SETNAME, ...), and what CLIENT LIST shows of the
/// connection. The connection owns it; the server's registry (``ServerContext/clients``) holds a copy, refreshed
/// whenever a command changes it.
struct ClientState: Sendable {
    let id: Int
    /// The peer's and this end's addresses, as Redis prints them (`127.0.0.1:50312`, `[::1]:50312`).
    var address = "?"
    var localAddress = "?"
    let connectedAt = ContinuousClock.now
    var protocolVersion = 2
    var name: [UInt8]?
    var libraryName: [UInt8]?
    var libraryVersion: [UInt8]?
    /// What a replica said in REPLCONF before its PSYNC: its port, its announced address, its capabilities.
    var replicaListeningPort = 0
    var replicaAnnouncedIP: String?
    var replicaCapabilities: Set<String> = []
    /// Set once the connection is a replica's link (after PSYNC or SYNC): CLIENT LIST shows `flags=S`.
    var isReplica = false
    /// The connection's user (a snapshot, refreshed when ``aclGeneration`` falls behind the server's), and whether
    /// it has authenticated; see ``AccessCommands/check(_:client:context:)``.
    var user: ACLUser
    var authenticated = false
    /// The ACL generation `user`, `unrestricted` and `denied` were computed at; `.max` forces a recomputation.
    var aclGeneration = UInt64.max
    /// Whether every command may run without a check (an authenticated user with every permission): the hot path.
    var unrestricted = false
    /// Whether protected mode refuses this connection (a remote client while the default user has no password).
    var denied = false
    /// What the in-place GET and SET may do for this connection (nil: every request takes the general path).
    var inPlace: InPlaceAccess?

    /// Until the first command loads the real one (see ``AccessCommands/refresh(_:access:protectedMode:)``).
    static let placeholderUser = ACLUser(name: "default", catalog: ACLCatalog([]))

    init(id: Int, user: ACLUser = placeholderUser) {
        self.id = id
        self.user = user
    }

    /// This connection's line of CLIENT LIST and CLIENT INFO, in Redis's `field=value` layout.
    var listLine: String {
        func text(_ bytes: [UInt8]?) -> String { bytes.map { String(decoding: $0, as: UTF8.self) } ?? "" }
        let age = (ContinuousClock.now - connectedAt).components.seconds
        return "id=\(id) addr=\(address) laddr=\(localAddress) name=\(text(name)) age=\(age) flags=\(isReplica ? "S" : "N") db=0 "
            + "user=\(user.name) resp=\(protocolVersion) "
            + "lib-name=\(text(libraryName)) lib-ver=\(text(libraryVersion))\n"
    }

    /// Whether the connection comes from this machine (a loopback address).
    var isLocal: Bool {
        address.hasPrefix("127.") || address.hasPrefix("[::1]:") || address.hasPrefix("[::ffff:127.")
    }

    /// `address` as Redis prints it: IPv6 in brackets.
    static func describe(_ address: SocketAddress?) -> String {
        guard let address, let ip = address.ipAddress, let port = address.port else { return "?" }
        return ip.contains(":") ? "[\(ip)]:\(port)" : "\(ip):\(port)"
    }
}

/// What a server command asks of its connection besides a reply.
enum CommandEffect {
    case none
    /// Close the connection once the reply is written (QUIT).
    case close
    /// Close the connection at once, replying nothing (an HTTP request sent to the server).
    case drop
    /// Hold the reply back this long (a failed AUTH from an address that keeps failing); later commands wait.
    case delayed(TimeAmount)
    /// The reply acknowledges a write: it waits for a commit.
    case wrote
    /// Run this on the thread pool (it may take long), then reply with its result (which may acknowledge writes: it
    /// waits for a commit).
    case slow(@Sendable () throws -> RESPValue)
    /// Run this on the thread pool, then reply with its result, which acknowledges no write (FAILOVER, INFO): it
    /// neither waits for a commit nor is withheld by a fenced cluster node.
    case slowNoWrites(@Sendable () throws -> RESPValue)
    /// WAIT: reply with how many replicas acknowledged `offset`, once `count` have or `timeout` passes.
    case waitForReplicas(count: Int, offset: Int64, timeout: TimeAmount?)
    /// PSYNC or SYNC: the connection becomes a replica's link; the sync runs on the thread pool.
    case becomeReplicaLink(psync: Bool, request: (replid: [UInt8], offset: Int64)?)
    /// Run `work` on the thread pool, then run the same command again, which then finds what the work prepared
    /// (AUTH and HELLO … AUTH with a password not checked before: its PBKDF2 runs off the event loop). The reply
    /// given with this effect is not sent.
    case rerunAfter(@Sendable () -> Void)

    /// Whether the command is counted when ``ServerCommands/run`` returns: not a slow one (counted once its work is
    /// done) nor a dropped HTTP request (no command at all).
    var isCountedNow: Bool {
        switch self {
        case .slow, .slowNoWrites, .waitForReplicas, .drop, .delayed, .rerunAfter: return false
        default: return true
        }
    }
}

/// The commands clients send that are about the connection or the server rather than the data (HELLO,
/// CLIENT, COMMAND, CONFIG, INFO, ...; PING and ECHO are in the shared command table), the shell's maintenance meta-commands under `KVSH.*` names, and the
/// data commands of the shared command table.
enum ServerCommands {
    static func run(_ arguments: [[UInt8]], client: inout ClientState, context: ServerContext) -> (RESPValue, CommandEffect) {
        if !client.unrestricted || client.aclGeneration != context.access.generation.load(ordering: .relaxed),
           let refusal = AccessCommands.check(arguments, client: &client, context: context) {
            return refusal
        }
        // Data commands first, looked up on the bytes: the common case allocates no name.
        if let spec = CommandTable.lookup(arguments[0]), !spec.isMeta {
            if spec.writesData, context.replication.gatesWrites, let refusal = context.replication.refusalOfWrite() {
                return (.error(refusal), .none)
            }
            return data(spec, arguments, context: context)
        }
        let name = String(decoding: arguments[0], as: UTF8.self).uppercased()
        let count = arguments.count - 1
        func arity(_ allowed: some RangeExpression<Int>) -> RESPValue? {
            allowed.contains(count) ? nil : .error("ERR wrong number of arguments for '\(name.lowercased())' command")
        }

        switch name {
        case "POST", "HOST:":
            // An HTTP request, such as a web page can make a browser send to 127.0.0.1: its lines would run as
            // inline commands (KVSH.BACKUP among them). Redis drops such connections; so does kvsh.
            context.logger.warning("dropping a connection that sent an HTTP request (a cross-protocol attack from a web page?)",
                                   metadata: ["client": "\(client.id)", "address": "\(client.address)"])
            return (.null, .drop)
        case "QUIT":
            return (.simpleString("OK"), .close)
        case "SELECT":
            if let error = arity(1...1) { return (error, .none) }
            guard let index = RedisInteger.parse(arguments[1]) else {
                return (.error("ERR value is not an integer or out of range"), .none)
            }
            guard Int32(exactly: index) != nil else {  // Redis's wording, to the letter
                return (.error("ERR value is out of range, value must between -2147483648 and 2147483647"), .none)
            }
            return (index == 0 ? .simpleString("OK") : .error("ERR DB index is out of range"), .none)
        case "AUTH":
            return AccessCommands.auth(arguments, client: &client, context: context)
        case "ACL":
            return AccessCommands.acl(arguments, client: client, context: context)
        case "HELLO":
            defer { context.clients.update(client) }
            return hello(arguments, client: &client, context: context)
        case "SHUTDOWN":
            return shutdown(arguments, client: client, context: context)
        case "TYPE":
            // For tools that walk the keyspace (redis-cli --bigkeys, GUIs): every value is a string.
            if let error = arity(1...1) { return (error, .none) }
            return (.simpleString(context.store.countExisting([arguments[1]]) > 0 ? "string" : "none"), .none)
        case "TTL", "PTTL":
            // Keys never expire: -1 for a key that exists, -2 for one that does not, as Redis answers.
            if let error = arity(1...1) { return (error, .none) }
            return (.integer(context.store.countExisting([arguments[1]]) > 0 ? -1 : -2), .none)
        case "CLIENT":
            defer { context.clients.update(client) }
            return (clientCommand(arguments, client: &client, context: context), .none)
        case "COMMAND":
            return (commandCommand(arguments), .none)
        case "CONFIG" where OperationsCommands.isResetStat(arguments):
            return OperationsCommands.run(name, arguments, context: context)
        case "CONFIG":
            return (configCommand(arguments, context: context), .none)
        case "INFO", "SLOWLOG", "LATENCY":
            return OperationsCommands.run(name, arguments, context: context)
        case "REPLCONF", "PSYNC", "SYNC", "REPLICAOF", "SLAVEOF", "ROLE", "WAIT":
            return replicationCommand(name, arguments, client: &client, context: context)
        case "SENTINEL", "FAILOVER":
            guard let membership = context.replication.membership else {
                if name == "FAILOVER" {
                    return (.error("ERR FAILOVER needs a failover cluster: start kvsh serve with --cluster NAME --etcd URL --announce HOST:PORT"), .none)
                }
                return (.error(CommandError.unknownCommand(String(decoding: arguments[0], as: UTF8.self), arguments: arguments.dropFirst()).redisMessage), .none)
            }
            if name == "SENTINEL" { return (membership.sentinel(Array(arguments.dropFirst())), .none) }
            let rest = Array(arguments.dropFirst())
            return (.null, .slowNoWrites { membership.failover(rest) })
        case _ where MaintenanceCommand.serverNames.contains(name):
            return maintenance(arguments, client: client, context: context)
        default:
            return (.error(CommandError.unknownCommand(String(decoding: arguments[0], as: UTF8.self),
                                                       arguments: arguments.dropFirst()).redisMessage), .none)
        }
    }

    /// Runs the two commands that dominate real traffic, `GET key` and plain `SET key value`, on the request's
    /// bytes in place: the key and value go from the read buffer into the store, and a GET's value from the
    /// index into `output`, with no copy or allocation in between. Returns whether the reply acknowledges a
    /// write, or nil for any other request, which then takes the general path. A SET the store refuses gets its
    /// error here, worded as the general path words it: running it again there would run it twice, and a `set`
    /// that failed while flushing has already changed the index.
    /// A request the connection's user may not make (`access`) takes the general path too, which refuses it with
    /// Redis's words and logs it.
    static func runInPlace(_ request: BorrowedRequest, protocolVersion: Int, store: KVStore, writesGated: Bool,
                           access: InPlaceAccess, output: inout ByteBuffer) -> Bool? {
        guard request.arguments.count == 2 || request.arguments.count == 3 else { return nil }
        let name = request[0]
        guard name.count == 3 else { return nil }
        // ASCII case folding: `byte | 0x20` equals a lowercase letter only for that letter and its capital.
        guard name[1] | 0x20 == UInt8(ascii: "e"), name[2] | 0x20 == UInt8(ascii: "t") else { return nil }
        let key = request[1]
        switch name[0] | 0x20 {
        case UInt8(ascii: "g") where request.arguments.count == 2:
            guard access.read.admit(key) else { return nil }
            store.withValue(for: key) { value in
                if let value {
                    RESPValue.writeBulkString(value, to: &output)
                } else {
                    RESPValue.null.write(to: &output, protocolVersion: protocolVersion)
                }
            }
            return false
        case UInt8(ascii: "s") where request.arguments.count == 3 && !writesGated:
            guard access.write.admit(key) else { return nil }
            do {
                try store.set(key, request[2])
            } catch {
                RESPValue.error(CommandError.redisText(for: error)).write(to: &output, protocolVersion: protocolVersion)
                return false
            }
            output.writeStaticString("+OK\r\n")
            return true
        default:
            return nil
        }
    }

    private static func data(_ spec: CommandSpec, _ arguments: [[UInt8]], context: ServerContext) -> (RESPValue, CommandEffect) {
        do {
            let outcome = try context.executor.execute(spec, arguments)
            return (outcome.reply, outcome.wrote ? .wrote : .none)
        } catch {
            return (.error(CommandError.redisText(for: error)), .none)
        }
    }

    /// HELLO [protover [AUTH username password] [SETNAME name]]: checks everything first and changes the
    /// connection only if all of it is valid, as Redis does.
    private static func hello(_ arguments: [[UInt8]], client: inout ClientState, context: ServerContext) -> (RESPValue, CommandEffect) {
        let role = context.replication.isReplica ? "replica" : "master"
        var index = 1
        var version: Int?
        if arguments.count > 1 {
            guard let requested = RedisInteger.parse(arguments[1]) else {
                return (.error("ERR Protocol version is not an integer or out of range"), .none)
            }
            guard requested == 2 || requested == 3 else { return (.error("NOPROTO unsupported protocol version"), .none) }
            version = requested
            index = 2
        }
        var credentials: (user: [UInt8], password: [UInt8])?
        var name: [UInt8]?
        while index < arguments.count {
            let option = String(decoding: arguments[index], as: UTF8.self).uppercased()
            if option == "AUTH", index + 2 < arguments.count {
                credentials = (arguments[index + 1], arguments[index + 2])
                index += 3
            } else if option == "SETNAME", index + 1 < arguments.count {
                name = arguments[index + 1]
                index += 2
            } else {
                return (.error("ERR Syntax error in HELLO option '\(String(decoding: arguments[index], as: UTF8.self))'"), .none)
            }
        }
        if let name, let refusal = validateClientName(name) { return (refusal, .none) }
        if let credentials, let refusal = AccessCommands.authenticate(user: credentials.user, password: credentials.password,
                                                                      client: &client, context: context) {
            return refusal
        }
        if let name { client.name = name.isEmpty ? nil : name }
        if let version { client.protocolVersion = version }
        return (.map([
            (.bulk("server"), .bulk("kvsh")),
            (.bulk("version"), .bulk(KVServer.version)),
            (.bulk("proto"), .integer(client.protocolVersion)),
            (.bulk("id"), .integer(client.id)),
            (.bulk("mode"), .bulk("standalone")),
            (.bulk("role"), .bulk(role)),
            (.bulk("modules"), .array([])),
        ]), .none)
    }

    private static func clientCommand(_ arguments: [[UInt8]], client: inout ClientState, context: ServerContext) -> RESPValue {
        guard arguments.count >= 2 else { return .error("ERR wrong number of arguments for 'client' command") }
        let sub = String(decoding: arguments[1], as: UTF8.self).uppercased()
        switch (sub, arguments.count) {
        case ("SETNAME", 3):
            if let refusal = validateClientName(arguments[2]) { return refusal }
            client.name = arguments[2].isEmpty ? nil : arguments[2]
            return .simpleString("OK")
        case ("GETNAME", 2):
            return client.name.map(RESPValue.bulkString) ?? .null
        case ("ID", 2):
            return .integer(client.id)
        case ("SETINFO", 4):
            let attribute = String(decoding: arguments[2], as: UTF8.self)
            let value = arguments[3].isEmpty ? nil : arguments[3]  // an empty value clears the field, as in Redis
            let isLibraryName: Bool
            switch attribute.uppercased() {
            case "LIB-NAME": isLibraryName = true
            case "LIB-VER": isLibraryName = false
            default: return .error("ERR Unrecognized option '\(attribute)'")
            }
            // CLIENT LIST prints the value unquoted: a space or a newline in it would forge fields or whole entries.
            guard isValidClientAttribute(arguments[3]) else {
                return .error("ERR \(attribute) cannot contain spaces, newlines or special characters.")
            }
            if isLibraryName { client.libraryName = value } else { client.libraryVersion = value }
            return .simpleString("OK")
        case ("INFO", 2):
            return .bulk(client.listLine)
        case ("LIST", _):
            // As Redis 7.0: CLIENT LIST (every connection, oldest first), CLIENT LIST TYPE type (all of them are
            // `normal`), CLIENT LIST ID id ... (those IDs, in the order given).
            let option = arguments.count > 2 ? String(decoding: arguments[2], as: UTF8.self).uppercased() : nil
            switch option {
            case nil:
                return .bulk(context.clients.all().map(\.listLine).joined())
            case "TYPE" where arguments.count == 4:
                switch String(decoding: arguments[3], as: UTF8.self).lowercased() {
                case "normal": return .bulk(context.clients.all().filter { !$0.isReplica }.map(\.listLine).joined())
                case "replica", "slave": return .bulk(context.clients.all().filter(\.isReplica).map(\.listLine).joined())
                case "master", "pubsub": return .bulk("")
                default: return .error("ERR Unknown client type '\(String(decoding: arguments[3], as: UTF8.self))'")
                }
            case "ID" where arguments.count > 3:
                var ids: [Int] = []
                for argument in arguments[3...] {
                    guard let id = RedisInteger.parse(argument) else { return .error("ERR Invalid client ID") }
                    ids.append(id)
                }
                return .bulk(context.clients.entries(ids).map(\.listLine).joined())
            default:
                return .error("ERR syntax error")
            }
        default:
            return .error("ERR unknown subcommand or wrong number of arguments for '\(sub.lowercased())'. Try CLIENT HELP.")
        }
    }

    /// Redis's refusal of a client name with spaces, newlines or other characters outside printable ASCII.
    private static func validateClientName(_ name: [UInt8]) -> RESPValue? {
        isValidClientAttribute(name) ? nil : .error("ERR Client names cannot contain spaces, newlines or special characters.")
    }

    /// Redis's rule for what CLIENT LIST shows of a connection (its name, CLIENT SETINFO's lib-name and lib-ver):
    /// only printable ASCII other than the space ('!' to '~'), so that the list splits on spaces and newlines.
    static func isValidClientAttribute(_ value: [UInt8]) -> Bool {
        value.allSatisfy { $0 >= UInt8(ascii: "!") && $0 <= UInt8(ascii: "~") }
    }

    /// `SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE] [ABORT]` (Redis 7.0's grammar): the clean stop SIGTERM makes (every
    /// acknowledged write is already durable, so SAVE and NOSAVE change nothing; a cluster primary hands over). As in
    /// Redis, a client that asked gets no reply: its connection closes with the server.
    private static func shutdown(_ arguments: [[UInt8]], client: ClientState, context: ServerContext) -> (RESPValue, CommandEffect) {
        var seen = Set<String>()
        for argument in arguments.dropFirst() {
            let option = String(decoding: argument, as: UTF8.self).uppercased()
            guard ["NOSAVE", "SAVE", "NOW", "FORCE", "ABORT"].contains(option), seen.insert(option).inserted else {
                return (.error("ERR syntax error"), .none)
            }
        }
        if seen.contains("SAVE") && seen.contains("NOSAVE") { return (.error("ERR syntax error"), .none) }
        if seen.contains("ABORT") {
            return (.error(seen.count == 1 ? "ERR No shutdown in progress." : "ERR syntax error"), .none)
        }
        guard let request = context.configuration.shutdownRequested else {
            return (.error("ERR SHUTDOWN is not available in this server: stop the process that embeds it"), .none)
        }
        context.logger.notice("shutdown requested by a client", metadata: ["client": "\(client.id)", "address": "\(client.address)"])
        request()
        return (.null, .drop)
    }

    /// Names clients may ask COMMAND about: the server's own and the shared data commands.
    private static let builtinNames = ["QUIT", "SELECT", "AUTH", "ACL", "HELLO", "CLIENT", "COMMAND", "CONFIG", "INFO",
                                       "TYPE", "TTL", "PTTL", "SLOWLOG", "LATENCY", "REPLCONF", "PSYNC", "SYNC", "REPLICAOF", "SLAVEOF",
                                       "ROLE", "WAIT", "SENTINEL", "FAILOVER", "SHUTDOWN"] + MaintenanceCommand.serverNames
    private static var allNames: [String] {
        builtinNames + CommandTable.dataCommands.flatMap { [$0.name] + $0.aliases }
    }

    private static func commandCommand(_ arguments: [[UInt8]]) -> RESPValue {
        let sub = arguments.count > 1 ? String(decoding: arguments[1], as: UTF8.self).uppercased() : ""
        switch sub {
        case "COUNT":
            return .integer(allNames.count)
        case "DOCS":
            // Each data command (and alias) in Redis 7.0's shape, from the command table: redis-cli builds its hints
            // and `help COMMAND` from these.
            let wanted = arguments.count > 2 ? Set(arguments.dropFirst(2).map { String(decoding: $0, as: UTF8.self).uppercased() }) : nil
            return .map(CommandTable.dataCommands.flatMap { spec in
                ([spec.name] + spec.aliases).filter { wanted?.contains($0) ?? true }.map { name in
                    (RESPValue.bulk(name.lowercased()), CommandTable.docs(spec))
                }
            })
        case "INFO":
            return .array(arguments.dropFirst(2).map { name in
                let upper = String(decoding: name, as: UTF8.self).uppercased()
                return allNames.contains(upper) ? .array([.bulk(upper.lowercased())]) : .null
            })
        case "":
            return .array(allNames.map { .array([.bulk($0.lowercased())]) })
        default:
            return .error("ERR unknown subcommand '\(sub.lowercased())'. Try COMMAND HELP.")
        }
    }

    private static func configCommand(_ arguments: [[UInt8]], context: ServerContext) -> RESPValue {
        guard arguments.count >= 2 else { return .error("ERR wrong number of arguments for 'config' command") }
        let sub = String(decoding: arguments[1], as: UTF8.self).uppercased()
        guard sub == "GET" else {
            return .error("ERR CONFIG \(sub) is not supported by kvsh (its settings are command-line flags of kvsh serve)")
        }
        guard arguments.count >= 3 else { return .error("ERR wrong number of arguments for 'config|get' command") }
        let configuration = context.configuration
        let appendfsync: String
        switch context.store.syncPolicy {
        case .always: appendfsync = "always"
        case .everysec: appendfsync = "everysec"
        case .none: appendfsync = "no"
        }
        let settings: [(String, String)] = [
            ("appendonly", "yes"), ("appendfsync", appendfsync), ("save", ""), ("databases", "1"),
            ("maxclients", String(configuration.maxClients)), ("port", String(context.plainPort.load(ordering: .relaxed))),
            ("bind", configuration.host), ("proto-max-bulk-len", String(configuration.maxBulkLength)),
            ("dir", context.store.directory), ("timeout", String(configuration.idleTimeout)),
            ("tcp-keepalive", String(configuration.tcpKeepAlive)), ("enable-path-commands", configuration.pathCommands.rawValue),
        ]
        let patterns = arguments.dropFirst(2).map { GlobPattern(Array(String(decoding: $0, as: UTF8.self).lowercased().utf8)) }
        let matching = settings.filter { setting in patterns.contains { $0.matches(Array(setting.0.utf8)) } }
        return .map(matching.map { (.bulk($0.0), .bulk($0.1)) })
    }

    /// INFO [section ...]: Redis's layout (`# Section` headers, `field:value` lines, CRLF, a blank line between
    /// sections). Named sections only, in any letter case; none, `all`, `everything` or `default` give them all, and
    /// an unknown name contributes nothing, as in Redis. `more` adds fields to sections (by name) and sections
    /// after them (``OperationsCommands/info(_:context:)``).
    static func info(_ arguments: [[UInt8]], context: ServerContext, more: [(name: String, fields: [(String, String)])] = []) -> String {
        let stats = context.store.statistics
        let resident = ProcessMemory.residentBytes()
        var sections: [(name: String, fields: [(String, String)])] = [
            ("Server", [
                ("kvsh_version", KVServer.version), ("redis_version", "7.0.0"), ("redis_mode", "standalone"),
                ("tcp_port", String(context.plainPort.load(ordering: .relaxed))),
                ("uptime_in_seconds", String((ContinuousClock.now - context.startedAt).components.seconds)),
            ]),
            ("Clients", [
                ("connected_clients", String(context.connectedClients.load(ordering: .relaxed))),
                ("maxclients", String(context.configuration.maxClients)), ("blocked_clients", "0"),
            ]),
            // kvsh has no allocator statistics to report as Redis's used_memory: it reports its resident set for
            // both, and the bytes of keys and values apart.
            ("Memory", [
                ("used_memory", String(resident)), ("used_memory_human", ProcessMemory.human(resident)),
                ("used_memory_rss", String(resident)), ("used_memory_rss_human", ProcessMemory.human(resident)),
                ("kvsh_payload_bytes", String(stats.payloadBytes)),
                ("maxmemory", "0"), ("maxmemory_policy", "noeviction"),
            ]),
            ("Persistence", [
                ("loading", "0"), ("aof_enabled", "1"), ("kvsh_sync", stats.syncPolicy.rawValue),
                ("kvsh_log_bytes", String(stats.logBytes)), ("kvsh_image_bytes", String(stats.imageBytes)),
                ("kvsh_last_sequence", String(stats.lastSequence)), ("kvsh_durable_sequence", String(stats.syncedSequence)),
            ]),
            ("Stats", [
                ("total_connections_received", String(context.totalConnections.load(ordering: .relaxed))),
                ("total_commands_processed", String(context.totalCommands.load(ordering: .relaxed))),
                ("rejected_connections", String(context.rejectedConnections.load(ordering: .relaxed))),
            ]),
            ("Replication", replicationInfo(context: context)),
            ("Cluster", [("cluster_enabled", "0")] + (context.replication.membership?.infoFields() ?? [])),
            // As in Redis, an empty database has no line.
            ("Keyspace", stats.keys > 0 ? [("db0", "keys=\(stats.keys),expires=0,avg_ttl=0")] : []),
        ]
        for extra in more {
            if let index = sections.firstIndex(where: { $0.name == extra.name }) { sections[index].fields += extra.fields } else { sections.append(extra) }
        }
        let wanted = Set(arguments.dropFirst().map { String(decoding: $0, as: UTF8.self).lowercased() })
        let everything = wanted.isEmpty || !wanted.isDisjoint(with: ["all", "everything", "default"])
        return sections.filter { everything || wanted.contains($0.name.lowercased()) }
            .map { section in
                "# \(section.name)\r\n" + section.fields.map { "\($0.0):\($0.1)\r\n" }.joined()
            }
            .joined(separator: "\r\n")
    }

    /// The shell's maintenance meta-commands, for `kvsh --connect` and for administrators: their text replies
    /// are what the shell prints. They can take long, so they run on the thread pool.
    private static func maintenance(_ arguments: [[UInt8]], client: ClientState, context: ServerContext) -> (RESPValue, CommandEffect) {
        let command: MaintenanceCommand
        do {
            guard let parsed = try MaintenanceCommand(serverArguments: arguments) else {
                return (.error(CommandError.internalError("\(MaintenanceCommand.serverNames) and the parser disagree").redisMessage), .none)
            }
            command = parsed
        } catch {
            return (.error(CommandError.redisText(for: error)), .none)
        }
        if command.path != nil, let refusal = refusePath(command.serverName, client: client, policy: context.configuration.pathCommands) {
            return (refusal, .none)
        }
        let backups = context.configuration.backupDirectory
        if case .backup(nil, _) = command, backups == nil { return (.error(CommandError.noBackupDirectory.redisMessage), .none) }
        let store = context.store
        if command == .stats {
            // The server's `:stats` also says where replication stands (the shell prints it with --connect).
            return (.null, .slowNoWrites {
                var outcome = try command.run(on: store, backups: backups)
                outcome.text += replicationSummary(context: context)
                return command.reply(outcome)
            })
        }
        return (.null, .slow { command.reply(try command.run(on: store, backups: backups)) })
    }

    /// A path names a file of the server's machine, written (BACKUP) or read (REBUILD) with the server's rights:
    /// as Redis refuses DEBUG and its protected configs unless `enable-debug-command` says otherwise, no client
    /// may name one unless `--enable-path-commands` allows it (`local`: loopback connections only). Loopback does
    /// not separate the users of one machine, hence the default `no`.
    static func refusePath(_ name: String, client: ClientState, policy: KVServer.PathCommandPolicy) -> RESPValue? {
        switch policy {
        case .yes: return nil
        case .local where client.isLocal: return nil
        case .no, .local:
            let hint = name == "KVSH.BACKUP" ? " Without a path, KVSH.BACKUP writes into the server's --backup-dir." : ""
            return .error("ERR \(name) with a path is not allowed. If the enable-path-commands option is set to \"local\", "
                          + "you can run it from a local connection, otherwise you need to restart kvsh serve with "
                          + "--enable-path-commands local (or yes).\(hint)")
        }
    }
}

/// What the in-place GET and SET (``ServerCommands/runInPlace``) may do for a connection, worked out when its user
/// is (``AccessCommands/refresh(_:access:protectedMode:)``): everything, for a user with every permission; for
/// another, each only if the user may run it, and then on keys its patterns allow, checked in the request buffer. A
/// user restricted to `~app:*` keeps the hot path. A class: a request takes one reference, not one per array of a
/// user.
final class InPlaceAccess: Sendable {
    /// The keys one command may touch: prepared so that the usual ACL pattern, a literal prefix and `*` (`app:*`),
    /// costs one `memcmp`.
    struct Keys: Sendable {
        /// Whether the command may run in place at all (the user may run it).
        let allowed: Bool
        /// A `*` pattern: every key.
        let every: Bool
        let prefixes: [[UInt8]]
        /// Any other pattern, for the general matcher.
        let others: [GlobPattern]

        init(allowed: Bool, patterns: [GlobPattern]) {
            self.allowed = allowed
            every = patterns.contains { $0.pattern == [UInt8(ascii: "*")] }
            prefixes = patterns.filter { $0.matchesEveryKeyWithPrefix && !$0.literalPrefix.isEmpty }.map(\.literalPrefix)
            others = patterns.filter { !$0.matchesEveryKeyWithPrefix }
        }

        @inline(__always)
        func admit(_ key: UnsafeRawBufferPointer) -> Bool {
            guard allowed else { return false }
            if every { return true }
            for index in prefixes.indices {
                let matched = prefixes[index].withUnsafeBytes { prefix in
                    guard key.count >= prefix.count, let start = key.baseAddress, let wanted = prefix.baseAddress else { return false }
                    return memcmp(wanted, start, prefix.count) == 0
                }
                if matched { return true }
            }
            return others.contains { $0.matches(key) }
        }
    }

    let read: Keys
    let write: Keys

    private init(read: Keys, write: Keys) {
        self.read = read
        self.write = write
    }

    static let unrestricted = InPlaceAccess(read: Keys(allowed: true, patterns: [GlobPattern([UInt8(ascii: "*")])]),
                                            write: Keys(allowed: true, patterns: [GlobPattern([UInt8(ascii: "*")])]))

    /// For `user`, which may run GET if `get` and SET if `set`.
    convenience init(user: ACLUser, get: Bool, set: Bool) {
        func patterns(_ access: ACLKeyAccess) -> [GlobPattern] {
            user.keyPatterns.filter { $0.access.isSuperset(of: access) }.map(\.pattern)
        }
        self.init(read: Keys(allowed: get, patterns: patterns(.read)), write: Keys(allowed: set, patterns: patterns(.write)))
    }
}
