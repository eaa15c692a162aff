import KVCommands
import KVStore
import NIOCore
import RESP

// The replication commands, as Redis 7.0 answers them: REPLCONF, PSYNC, SYNC, REPLICAOF (SLAVEOF), ROLE, WAIT, and
// INFO's replication section.
extension ServerCommands {
    static func replicationCommand(_ name: String, _ arguments: [[UInt8]], client: inout ClientState,
                                   context: ServerContext) -> (RESPValue, CommandEffect) {
        let replication = context.replication
        func text(_ index: Int) -> String { String(decoding: arguments[index], as: UTF8.self) }
        func wrongArity() -> (RESPValue, CommandEffect) {
            (.error("ERR wrong number of arguments for '\(name.lowercased())' command"), .none)
        }
        switch name {
        case "REPLCONF":
            guard arguments.count >= 2, arguments.count % 2 == 1 else { return (.error("ERR syntax error"), .none) }
            defer { context.clients.update(client) }
            var index = 1
            while index + 1 < arguments.count {
                let option = text(index).lowercased()
                let value = text(index + 1)
                switch option {
                case "listening-port":
                    guard let port = Int(value), (0...65535).contains(port) else { return (.error("ERR value is not an integer or out of range"), .none) }
                    client.replicaListeningPort = port
                case "ip-address":
                    guard value.utf8.count <= 255, ServerCommands.isValidClientAttribute(arguments[index + 1]) else {
                        return (.error("ERR REPLCONF ip-address provided by replica instance is too long or invalid"), .none)
                    }
                    client.replicaAnnouncedIP = value
                case "capa":
                    if client.replicaCapabilities.count < 16 { client.replicaCapabilities.insert(value.lowercased()) }
                case "ack", "getack":
                    return (.null, .none)  // from a connection that is not (yet) a replica: ignored, as Redis does
                case "rdb-only", "rdb-filter-only":
                    break
                default:
                    return (.error("ERR Unrecognized REPLCONF option: \(text(index))"), .none)
                }
                index += 2
            }
            return (.simpleString("OK"), .none)
        case "PSYNC":
            guard arguments.count == 3 else { return wrongArity() }
            if replication.isReplica { return (.error("NOMASTERLINK Can't SYNC while not connected with my master"), .none) }
            guard let offset = Int64(text(2)) else { return (.error("ERR value is not an integer or out of range"), .none) }
            let replid = arguments[1]
            let request = replid.count == 40 ? (replid, offset) : nil
            return (.null, .becomeReplicaLink(psync: true, request: request))
        case "SYNC":
            guard arguments.count == 1 else { return wrongArity() }
            if replication.isReplica { return (.error("NOMASTERLINK Can't SYNC while not connected with my master"), .none) }
            return (.null, .becomeReplicaLink(psync: false, request: nil))
        case "REPLICAOF", "SLAVEOF":
            guard arguments.count == 3 else { return wrongArity() }
            do {
                if text(1).uppercased() == "NO" && text(2).uppercased() == "ONE" {
                    try replication.promote()
                    return (.simpleString("OK"), .none)
                }
                guard let port = Int(text(2)), (1...65535).contains(port) else {
                    return (.error("ERR Invalid master port"), .none)
                }
                let host = text(1)
                if let current = replication.currentLink, current.host == host, current.port == port {
                    return (.simpleString("OK Already connected to specified master"), .none)
                }
                try replication.replicate(from: host, port: port, context: context)
                return (.simpleString("OK"), .none)
            } catch {
                return (.error(CommandError.redisText(for: error)), .none)
            }
        case "ROLE":
            guard arguments.count == 1 else { return wrongArity() }
            return (role(context: context), .none)
        case "WAIT":
            guard arguments.count == 3 else { return wrongArity() }
            if replication.isReplica {
                return (.error("ERR WAIT cannot be used with replica instances. Please also note that since Redis 4.0 if a replica is "
                               + "configured to be writable (which is not the default) writes to replicas are just local and are not propagated."), .none)
            }
            guard let count = Int(text(1)), let milliseconds = Int64(text(2)) else {
                return (.error("ERR value is not an integer or out of range"), .none)
            }
            guard milliseconds >= 0 else { return (.error("ERR timeout is negative"), .none) }
            let offset = context.store.replicationPosition?.offset ?? 0
            return (.null, .waitForReplicas(count: count, offset: offset, timeout: milliseconds == 0 ? nil : .milliseconds(milliseconds)))
        default:
            return (.error(CommandError.unknownCommand(name, arguments: arguments.dropFirst()).redisMessage), .none)
        }
    }

    /// ROLE in Redis's shapes: `master offset [[ip port offset] ...]` (ports and offsets as bulk strings, online
    /// replicas only), or `slave host port state offset`.
    static func role(context: ServerContext) -> RESPValue {
        let replication = context.replication
        if replication.isReplica {
            guard let link = replication.currentLink else {
                // A replica of nobody (a cluster node that does not know the primary yet).
                return .array([.bulk("slave"), .bulk(""), .integer(0), .bulk("none"), .integer(-1)])
            }
            let status = link.status.withLock { $0 }
            let offset = status.state == .connected ? (context.store.replicationPosition?.offset ?? -1) : -1
            return .array([.bulk("slave"), .bulk(link.host), .integer(link.port), .bulk(status.state.rawValue), .integer(Int(offset))])
        }
        let view = replication.primary.view
        let offset = context.store.replicationPosition?.offset ?? 0
        return .array([
            .bulk("master"), .integer(Int(offset)),
            .array(view.replicas.filter { $0.state == .online }.map { replica in
                .array([.bulk(replica.ip), .bulk(String(replica.port)), .bulk(String(replica.offset))])
            }),
        ])
    }

    /// The replication lines of `KVSH.STATS` (the shell's `:stats` with `--connect`): role, link, offsets and lag.
    static func replicationSummary(context: ServerContext) -> String {
        let replication = context.replication
        let offset = context.store.replicationPosition?.offset ?? 0
        if replication.isReplica, let link = replication.currentLink {
            let status = link.status.withLock { $0 }
            let silent = (ContinuousClock.now - status.lastInteraction).components.seconds
            var line = "replication:     replica of \(link.host):\(link.port), link \(status.state == .connected ? "up" : "down (\(status.state.rawValue))"), "
                + "offset \(offset), last heard from \(silent) s ago"
            if let error = status.lastError, status.state != .connected { line += "; last error: \(error)" }
            return line + "\n"
        }
        let view = replication.primary.view
        var lines = ["replication:     primary, offset \(offset), \(view.replicas.count) replica\(view.replicas.count == 1 ? "" : "s")"
                     + (replication.settings.syncReplicas > 0 ? " (--sync-replicas \(replication.settings.syncReplicas))" : "")]
        for replica in view.replicas {
            lines.append("  \(replica.ip):\(replica.port) \(replica.state.rawValue), acknowledged \(replica.offset) "
                         + "(\(max(0, offset - replica.offset)) bytes behind, last ACK \(replica.lagSeconds) s ago)")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// INFO's `# Replication` fields, Redis 7.0's names and order.
    static func replicationInfo(context: ServerContext) -> [(String, String)] {
        let replication = context.replication
        let position = context.store.replicationPosition
        let replid = position?.replidText ?? String(decoding: ReplicationPosition.noReplid, as: UTF8.self)
        let offset = position?.offset ?? 0
        var fields: [(String, String)] = []
        if replication.isReplica, let link = replication.currentLink {
            let status = link.status.withLock { $0 }
            let up = status.state == .connected
            fields += [
                ("role", "slave"), ("master_host", link.host), ("master_port", String(link.port)),
                ("master_link_status", up ? "up" : "down"),
                ("master_last_io_seconds_ago", String((ContinuousClock.now - status.lastInteraction).components.seconds)),
                ("master_sync_in_progress", status.state == .sync ? "1" : "0"),
                ("slave_read_repl_offset", String(offset)), ("slave_repl_offset", String(offset)),
            ]
            if status.state == .sync { fields.append(("master_sync_read_bytes", String(status.syncBytesReceived))) }
            if let since = status.downSince, !up {
                fields.append(("master_link_down_since_seconds", String((ContinuousClock.now - since).components.seconds)))
            }
            fields += [
                ("slave_priority", "100"), ("slave_read_only", "1"), ("replica_announced", "1"),
                ("kvsh_full_syncs", String(status.fullSyncs)), ("kvsh_partial_syncs", String(status.partialSyncs)),
            ]
            if let error = status.lastError { fields.append(("kvsh_last_link_error", String(error.map { $0 == "\r" || $0 == "\n" ? " " : $0 }))) }
        } else if replication.isReplica {
            fields += [("role", "slave"), ("master_host", ""), ("master_port", "0"), ("master_link_status", "down")]
        } else {
            fields.append(("role", "master"))
        }
        let view = replication.primary.view
        fields.append(("connected_slaves", String(view.replicas.count)))
        for (index, replica) in view.replicas.enumerated() {
            fields.append(("slave\(index)", "ip=\(replica.ip),port=\(replica.port),state=\(replica.state.rawValue),offset=\(replica.offset),lag=\(replica.lagSeconds)"))
        }
        let settings = replication.settings
        if settings.minReplicasToWrite > 0 { fields.append(("min_slaves_good_slaves", String(replication.primary.goodReplicas))) }
        fields += [
            ("master_failover_state", "no-failover"),
            ("master_replid", replid),
            ("master_replid2", position?.replid2Text ?? String(decoding: ReplicationPosition.noReplid, as: UTF8.self)),
            ("master_repl_offset", String(offset)),
            ("second_repl_offset", String(position?.secondOffset ?? -1)),
            ("repl_backlog_active", position == nil ? "0" : "1"),
            ("repl_backlog_size", String(settings.backlogSize)),
            ("repl_backlog_first_byte_offset", String(max(1, offset - Int64(view.backlogBytes) + 1))),
            ("repl_backlog_histlen", String(view.backlogBytes)),
            ("kvsh_sync_replicas", String(settings.syncReplicas)),
        ]
        return fields
    }
}
