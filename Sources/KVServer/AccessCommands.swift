import KVAccess
import KVCommands
import NIOCore
import RESP

/// Access control in the server: the ACL table of the server's own commands, the check every command passes before
/// it runs, and AUTH, HELLO's AUTH option and ACL.
enum AccessCommands {
    /// The server's commands as the ACL sees them, with Redis 7.0's categories (`COMMAND INFO` of redis-server
    /// 7.0.15); the data commands' come from ``CommandTable``. One table, so that `ACL CAT` and the checks agree.
    static let serverDescriptors: [ACLCommandDescriptor] = {
        let adminSlow: ACLCategories = [.admin, .slow, .dangerous]
        let slowConnection: ACLCategories = [.slow, .connection]
        return [
            ACLCommandDescriptor(name: "quit", categories: [.fast, .connection]),
            ACLCommandDescriptor(name: "select", categories: [.fast, .connection]),
            ACLCommandDescriptor(name: "auth", categories: [.fast, .connection]),
            ACLCommandDescriptor(name: "hello", categories: [.fast, .connection]),
            ACLCommandDescriptor(name: "type", categories: [.keyspace, .read, .fast]),
            ACLCommandDescriptor(name: "ttl", categories: [.keyspace, .read, .fast]),
            ACLCommandDescriptor(name: "pttl", categories: [.keyspace, .read, .fast]),
            ACLCommandDescriptor(name: "client", categories: [.slow], subcommands: [
                ("id", slowConnection), ("info", slowConnection), ("list", [.admin, .slow, .dangerous, .connection]),
                ("getname", slowConnection), ("setname", slowConnection), ("setinfo", slowConnection),
            ]),
            ACLCommandDescriptor(name: "command", categories: slowConnection, subcommands: [
                ("count", slowConnection), ("docs", slowConnection), ("info", slowConnection), ("list", slowConnection),
            ]),
            ACLCommandDescriptor(name: "config", categories: [.slow], subcommands: [
                ("get", adminSlow), ("set", adminSlow), ("resetstat", adminSlow), ("rewrite", adminSlow), ("help", [.slow]),
            ]),
            ACLCommandDescriptor(name: "info", categories: [.slow, .dangerous]),
            ACLCommandDescriptor(name: "slowlog", categories: [.slow], subcommands: [
                ("get", adminSlow), ("len", adminSlow), ("reset", adminSlow), ("help", [.slow]),
            ]),
            ACLCommandDescriptor(name: "latency", categories: [.slow], subcommands: [
                ("latest", adminSlow), ("history", adminSlow), ("reset", adminSlow), ("graph", adminSlow),
                ("histogram", adminSlow), ("doctor", adminSlow), ("help", [.slow]),
            ]),
            ACLCommandDescriptor(name: "replconf", categories: adminSlow),
            ACLCommandDescriptor(name: "psync", categories: adminSlow),
            ACLCommandDescriptor(name: "sync", categories: adminSlow),
            ACLCommandDescriptor(name: "replicaof", categories: adminSlow),
            ACLCommandDescriptor(name: "slaveof", categories: adminSlow),
            ACLCommandDescriptor(name: "role", categories: [.admin, .fast, .dangerous]),
            ACLCommandDescriptor(name: "wait", categories: slowConnection),
            ACLCommandDescriptor(name: "sentinel", categories: adminSlow),
            ACLCommandDescriptor(name: "failover", categories: adminSlow),
            ACLCommandDescriptor(name: "shutdown", categories: adminSlow),
            ACLCommandDescriptor(name: "acl", categories: [.slow], subcommands: [
                ("cat", [.slow]), ("whoami", [.slow]), ("genpass", [.slow]), ("deluser", adminSlow), ("getuser", adminSlow),
                ("list", adminSlow), ("load", adminSlow), ("log", adminSlow), ("save", adminSlow), ("setuser", adminSlow),
                ("users", adminSlow), ("dryrun", adminSlow), ("help", [.slow]),
            ]),
        ] + MaintenanceCommand.serverNames.map { ACLCommandDescriptor(name: $0, categories: [.admin, .dangerous, .slow]) }
    }()

    /// The server's commands that name a key, and how they use it (Redis 7.0's key specs: TYPE uses no value).
    static let serverKeyAccess: [String: ACLKeyAccess] = ["type": [], "ttl": .read, "pttl": .read]

    /// Every command of the server, for the ACL.
    static var catalog: ACLCatalog { ACLCatalog(CommandTable.aclDescriptors + serverDescriptors) }

    static let noAuth = "NOAUTH Authentication required."
    static let helloNoAuth = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH "
        + "<user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"
    static let wrongPass = "WRONGPASS invalid username-password pair or user is disabled."
    static let keyDenied = "NOPERM this user has no permissions to access one of the keys used as arguments"
    /// Redis's `-DENIED` text, with kvsh's flags for its remedies.
    static let protectedModeDenial = "DENIED kvsh is running in protected mode because protected mode is enabled and no password is set "
        + "for the default user. In this mode connections are only accepted from the loopback interface. If you want to connect from "
        + "external computers to kvsh you may adopt one of the following solutions: 1) Set a password for the default user: restart "
        + "kvsh serve with --requirepass PASSWORD or --aclfile FILE, or send 'ACL SETUSER default on >PASSWORD' from the loopback "
        + "interface. 2) Restart kvsh serve with '--protected-mode no', but MAKE SURE kvsh is not publicly accessible from internet "
        + "if you do so. 3) If only this machine should connect, restart kvsh serve with --bind 127.0.0.1. NOTE: You only need to do "
        + "one of the above things in order for the server to start accepting connections from the outside."

    // MARK: The check

    /// Brings the connection's copy of its user up to date after any ACL change; false if its user was deleted (the
    /// connection is then closed, as Redis closes the clients of a deleted user).
    static func refresh(_ client: inout ClientState, access: AccessControl, protectedMode: Bool) -> Bool {
        let generation = access.generation.load(ordering: .acquiring)
        guard client.aclGeneration != generation else { return true }
        client.aclGeneration = generation
        if client.authenticated || client.user.name == "default" {
            guard let user = access.user(named: client.user.name) else { return false }
            client.user = user
        }
        if !client.authenticated && !access.authenticationRequired && client.user.name == "default" { client.authenticated = true }
        // An unknown address (a test's embedded channel) is not a remote client.
        client.denied = protectedMode && client.address != "?" && !client.isLocal && client.user.name == "default" && !access.authenticationRequired
        client.unrestricted = client.authenticated && !client.denied && client.user.isUnrestricted
        if client.unrestricted {
            client.inPlace = .unrestricted
        } else if client.authenticated && !client.denied {
            let user = client.user
            let may = { (name: String) in access.catalog.index(named: name).map(user.mayRun) ?? false }
            client.inPlace = InPlaceAccess(user: user, get: may("get"), set: may("set"))
        } else {
            client.inPlace = nil
        }
        return true
    }

    /// The refusal of `arguments` for this connection, or nil if it may run them. Costs one comparison for a user
    /// with every permission (the default user without a password).
    static func check(_ arguments: [[UInt8]], client: inout ClientState, context: ServerContext) -> (RESPValue, CommandEffect)? {
        let access = context.access
        guard refresh(&client, access: access, protectedMode: context.configuration.protectedMode) else { return (.null, .drop) }
        if client.unrestricted { return nil }
        if client.denied { return (.error(protectedModeDenial), .close) }
        let catalog = access.catalog
        guard let index = catalog.index(for: arguments) else { return nil }  // unknown: "unknown command" as usual
        let spec = CommandTable.lookup(arguments[0]).flatMap { $0.isMeta ? nil : $0 }
        // As Redis, a wrong number of arguments is reported before authentication or permissions.
        if let spec, !spec.arity.contains(arguments.count - 1) { return nil }
        let entry = catalog.entries[index]
        let top = catalog.entries[entry.parent ?? index].fullName
        if !client.authenticated {
            switch top {
            case "auth", "quit": return nil
            case "hello": return arguments.count > 2 ? nil : (.error(helloNoAuth), .none)
            default: return (.error(noAuth), .none)
            }
        }
        // AUTH, HELLO and QUIT run for every user (Redis's no-auth commands are outside the ACL).
        if entry.parent == nil && (top == "auth" || top == "hello" || top == "quit") { return nil }
        let user = client.user
        if !user.mayRun(index) {
            // Named as sent (DEL, not kvsh's DELETE), as Redis names it.
            var name = String(decoding: arguments[0], as: UTF8.self).lowercased()
            if entry.parent != nil { name += "|" + String(decoding: arguments[1], as: UTF8.self).lowercased() }
            access.logDenial(.command, object: name, username: user.name, clientInfo: clientInfo(client))
            return (.error("NOPERM this user has no permissions to run the '\(name)' command"), .none)
        }
        if let spec {
            let keyAccess = CommandTable.keyAccess(spec, arguments)
            if case .everything = spec.access.keys, !user.mayAccessAllKeys(keyAccess) {
                access.logDenial(.key, object: "*", username: user.name, clientInfo: clientInfo(client))
                return (.error(keyDenied), .none)
            }
            for position in spec.access.keyIndices(arguments.count) where !user.mayAccess(arguments[position], keyAccess) {
                access.logDenial(.key, object: String(decoding: arguments[position], as: UTF8.self), username: user.name,
                                 clientInfo: clientInfo(client))
                return (.error(keyDenied), .none)
            }
        } else if let keyAccess = serverKeyAccess[top], arguments.count == 2, !user.mayAccess(arguments[1], keyAccess) {
            access.logDenial(.key, object: String(decoding: arguments[1], as: UTF8.self), username: user.name, clientInfo: clientInfo(client))
            return (.error(keyDenied), .none)
        }
        return nil
    }

    static func clientInfo(_ client: ClientState) -> String {
        String(client.listLine.dropLast())
    }

    // MARK: AUTH and HELLO

    /// Authenticates the connection as `user`, or says why not (logged, and slowed after a few failures). A password
    /// not checked before is hashed on the thread pool, and the command runs again once it is (``CommandEffect/rerunAfter(_:)``):
    /// a PBKDF2 takes tens of milliseconds, which a stream of wrong passwords would otherwise take from every client
    /// of the event loop.
    static func authenticate(user name: [UInt8], password: [UInt8], client: inout ClientState,
                             context: ServerContext) -> (RESPValue, CommandEffect)? {
        let userName = String(decoding: name, as: UTF8.self)
        let host = AuthThrottle.host(of: client.address)
        let access = context.access
        guard case .decided(let authenticated) = access.quickAuthentication(user: userName, password: password) else {
            return (.null, .rerunAfter { _ = access.authenticate(user: userName, password: password) })
        }
        guard let user = authenticated else {
            context.access.logDenial(.auth, object: "auth", username: userName, clientInfo: clientInfo(client))
            let delay = context.authThrottle.failed(address: host)
            if delay > .zero {
                context.logger.warning("authentication failures from \(host); slowing its replies",
                                       metadata: ["client": "\(client.id)", "delay": "\(delay)"])
                return (.error(wrongPass), .delayed(TimeAmount(delay)))
            }
            return (.error(wrongPass), .none)
        }
        context.authThrottle.succeeded(address: host)
        client.user = user
        client.authenticated = true
        client.aclGeneration = .max  // recompute `unrestricted` and protected mode on the next command
        context.clients.update(client)
        return nil
    }

    static func auth(_ arguments: [[UInt8]], client: inout ClientState, context: ServerContext) -> (RESPValue, CommandEffect) {
        switch arguments.count {
        case 2:
            let defaultUser = context.access.user(named: "default")
            if defaultUser?.noPassword ?? false {
                return (.error("ERR AUTH <password> called without any password configured for the default user. "
                               + "Are you sure your configuration is correct?"), .none)
            }
            return authenticate(user: Array("default".utf8), password: arguments[1], client: &client, context: context)
                ?? (.simpleString("OK"), .none)
        case 3:
            return authenticate(user: arguments[1], password: arguments[2], client: &client, context: context)
                ?? (.simpleString("OK"), .none)
        case 0, 1:
            return (.error("ERR wrong number of arguments for 'auth' command"), .none)
        default:
            return (.error("ERR syntax error"), .none)
        }
    }

    // MARK: ACL

    static func acl(_ arguments: [[UInt8]], client: ClientState, context: ServerContext) -> (RESPValue, CommandEffect) {
        guard arguments.count >= 2 else { return (.error("ERR wrong number of arguments for 'acl' command"), .none) }
        let access = context.access
        let sub = String(decoding: arguments[1], as: UTF8.self).lowercased()
        let rest = arguments.dropFirst(2).map { String(decoding: $0, as: UTF8.self) }
        func arity(_ allowed: ClosedRange<Int>) -> RESPValue? {
            allowed.contains(rest.count) ? nil : .error("ERR wrong number of arguments for 'acl|\(sub)' command")
        }
        switch sub {
        case "whoami":
            if let error = arity(0...0) { return (error, .none) }
            return (.bulk(client.user.name), .none)
        case "users":
            if let error = arity(0...0) { return (error, .none) }
            return (.array(access.allUsers().map { .bulk($0.name) }), .none)
        case "list":
            if let error = arity(0...0) { return (error, .none) }
            return (.array(access.allUsers().map { .bulk($0.description) }), .none)
        case "getuser":
            if let error = arity(1...1) { return (error, .none) }
            guard let user = access.user(named: rest[0]) else { return (.null, .none) }
            return (.map([
                (.bulk("flags"), .array(user.flags.map { .bulk($0) })),
                (.bulk("passwords"), .array(user.passwords.map { .bulk($0.text) })),
                (.bulk("commands"), .bulk(user.commandRules.joined(separator: " "))),
                (.bulk("keys"), .bulk(user.keysDescription)),
                (.bulk("channels"), .bulk(user.channelsDescription)),
                (.bulk("selectors"), .array([])),
            ]), .none)
        case "setuser":
            guard rest.count >= 1 else { return (arity(1...Int.max) ?? .null, .none) }
            guard AccessControl.isValidUserName(rest[0]) else {
                return (.error("ERR Usernames can't contain spaces or null characters"), .none)
            }
            guard rest.count <= 1024 else { return (.error("ERR too many rules in one ACL SETUSER (at most 1024)"), .none) }
            let name = rest[0], rules = Array(rest.dropFirst())
            // New passwords are hashed with PBKDF2: on the thread pool, not on the event loop.
            return (.null, .slowNoWrites {
                do {
                    try access.setUser(name, rules: rules)
                    return .simpleString("OK")
                } catch {
                    return .error("ERR \(error)")
                }
            })
        case "deluser":
            guard rest.count >= 1 else { return (arity(1...Int.max) ?? .null, .none) }
            if rest.contains("default") { return (.error("ERR The 'default' user cannot be removed"), .none) }
            return (.integer(access.deleteUsers(rest)), .none)
        case "cat":
            if let error = arity(0...1) { return (error, .none) }
            guard let name = rest.first else { return (.array(ACLCategories.named.map { .bulk($0.name) }), .none) }
            guard let category = ACLCategories.named(name), name.lowercased() != "all" else {
                return (.error("ERR Unknown category '\(name)'"), .none)
            }
            return (.array(access.catalog.entries.filter { $0.categories.contains(category) }.map { .bulk($0.fullName) }), .none)
        case "log":
            if let error = arity(0...1) { return (error, .none) }
            var limit = 10
            if let argument = rest.first {
                if argument.lowercased() == "reset" {
                    access.resetLog()
                    return (.simpleString("OK"), .none)
                }
                guard let count = Int(argument), count >= 0 else {
                    return (.error("ERR value is out of range, must be positive"), .none)
                }
                limit = min(count, AccessControl.maxLogEntries)
            }
            let now = ContinuousClock.now
            return (.array(access.logEntries(limit: limit).map { entry in
                let age = now - entry.lastSeen
                let seconds = Double(age.components.seconds) + Double(age.components.attoseconds) / 1e18
                return .map([
                    (.bulk("count"), .integer(entry.count)),
                    (.bulk("reason"), .bulk(entry.reason.rawValue)),
                    (.bulk("context"), .bulk("toplevel")),
                    (.bulk("object"), .bulk(entry.object)),
                    (.bulk("username"), .bulk(entry.username)),
                    (.bulk("age-seconds"), .number(String(seconds))),
                    (.bulk("client-info"), .bulk(entry.clientInfo)),
                ])
            }), .none)
        case "save", "load":
            if let error = arity(0...0) { return (error, .none) }
            guard access.aclFile != nil else {
                return (.error("ERR This kvsh server is not configured to use an ACL file. Restart kvsh serve with --aclfile FILE "
                               + "to save users with ACL SAVE and read them back with ACL LOAD."), .none)
            }
            let logger = context.logger
            return (.null, .slowNoWrites {
                do {
                    if sub == "save" { try access.save() } else { try access.load() }
                    return .simpleString("OK")
                } catch {
                    logger.error("ACL \(sub.uppercased()) failed: \(error)")
                    return .error(sub == "save"
                        ? "ERR There was an error trying to save the ACLs: \(error)"
                        : "ERR \(error)")
                }
            })
        case "help":
            return (.array([
                "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "CAT [<category>]", "DELUSER <username> [<username> ...]", "GETUSER <username>", "LIST", "LOAD",
                "LOG [<count> | RESET]", "SAVE", "SETUSER <username> <attribs> ...", "USERS", "WHOAMI", "HELP",
            ].map { .bulk($0) }), .none)
        default:
            return (.error("ERR unknown subcommand '\(String(decoding: arguments[1], as: UTF8.self))'. Try ACL HELP."), .none)
        }
    }
}
