import Etcd
import Dispatch
import Foundation
import KVServer
import RESP
import Synchronization

// The Sentinel API's read side, from etcd's view of the cluster, so that redis-py's `Sentinel` and redis-cli find the
// primary the way they find it with Redis Sentinel; and FAILOVER, the planned handover.
extension ClusterNode {
    public func sentinel(_ arguments: [[UInt8]]) -> RESPValue {
        guard let first = arguments.first else { return .error("ERR wrong number of arguments for 'sentinel' command") }
        let sub = String(decoding: first, as: UTF8.self).uppercased()
        let name = arguments.count > 1 ? String(decoding: arguments[1], as: UTF8.self) : nil
        let snapshot = view.withLock { $0 }
        func known(_ name: String?) -> Bool { name == settings.cluster }
        switch (sub, arguments.count) {
        case ("MASTERS", 1):
            return .array([masterEntry(snapshot)])
        case ("MASTER", 2):
            return known(name) ? masterEntry(snapshot) : .error("ERR No such master with that name")
        case ("GET-MASTER-ADDR-BY-NAME", 2):
            guard known(name), let leader = snapshot.leader, let (host, port) = Self.split(leader.address) else { return .null }
            return .array([.bulk(host), .bulk(String(port))])
        case ("REPLICAS", 2), ("SLAVES", 2):
            guard known(name) else { return .error("ERR No such master with that name") }
            let leaderName = snapshot.leader?.name
            return .array(snapshot.nodes.filter { $0.name != leaderName }.compactMap { replicaEntry($0, leader: snapshot.leader) })
        case ("SENTINELS", 2):
            return known(name) ? .array([]) : .error("ERR No such master with that name")
        case ("MYID", 1):
            return .bulk(Self.runID(for: settings.nodeName))
        default:
            return .error("ERR Unknown sentinel subcommand '\(String(decoding: first, as: UTF8.self))' (kvsh answers MASTERS, MASTER, "
                          + "GET-MASTER-ADDR-BY-NAME, REPLICAS, SLAVES, SENTINELS and MYID from etcd's view)")
        }
    }

    /// SENTINEL MASTER's fields for the cluster's primary; flagged down (`s_down,o_down`) while nobody holds the key,
    /// so that clients keep looking rather than write to the last one.
    private func masterEntry(_ snapshot: View) -> RESPValue {
        let leader = snapshot.leader ?? snapshot.lastLeader
        let (host, port) = leader.flatMap { Self.split($0.address) } ?? ("", 0)
        let flags = snapshot.leader != nil ? "master" : "master,s_down,o_down"
        let replicas = snapshot.nodes.filter { $0.name != leader?.name }.count
        let ttl = Int(settings.ttl.components.seconds * 1000)
        let fields: [(String, String)] = [
            ("name", settings.cluster), ("ip", host), ("port", String(port)), ("runid", Self.runID(for: leader?.name ?? "")),
            ("flags", flags), ("link-pending-commands", "0"), ("link-refcount", "1"), ("last-ping-sent", "0"),
            ("last-ok-ping-reply", "0"), ("last-ping-reply", "0"), ("down-after-milliseconds", String(ttl)),
            ("info-refresh", "0"), ("role-reported", "master"), ("role-reported-time", "0"),
            ("config-epoch", String(snapshot.leaderTerm)), ("num-slaves", String(replicas)), ("num-other-sentinels", "0"),
            ("quorum", "1"), ("failover-timeout", String(ttl * 2)), ("parallel-syncs", "1"),
        ]
        return .map(fields.map { (.bulk($0.0), .bulk($0.1)) })
    }

    private func replicaEntry(_ node: NodeRecord, leader: NodeRecord?) -> RESPValue? {
        guard let (host, port) = Self.split(node.address) else { return nil }
        let (leaderHost, leaderPort) = leader.flatMap { Self.split($0.address) } ?? ("?", 0)
        let fields: [(String, String)] = [
            ("name", node.address), ("ip", host), ("port", String(port)), ("runid", Self.runID(for: node.name)),
            ("flags", "slave"), ("link-pending-commands", "0"), ("link-refcount", "1"), ("last-ping-sent", "0"),
            ("last-ok-ping-reply", "0"), ("last-ping-reply", "0"), ("down-after-milliseconds", String(Int(settings.ttl.components.seconds * 1000))),
            ("info-refresh", "0"), ("role-reported", "slave"), ("role-reported-time", "0"),
            ("master-link-down-time", "0"), ("master-link-status", leader == nil ? "err" : "ok"),
            ("master-host", leaderHost), ("master-port", String(leaderPort)), ("slave-priority", String(node.priority)),
            ("slave-repl-offset", String(node.offset)), ("replica-announced", "1"),
        ]
        return .map(fields.map { (.bulk($0.0), .bulk($0.1)) })
    }

    /// A stable 40-hex id for a node, as Sentinel's run ids look.
    static func runID(for name: String) -> String {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        var digits = ""
        for round in 0..<3 {
            for byte in name.utf8 { hash = (hash ^ UInt64(byte) ^ UInt64(round)) &* 0x100_0000_01b3 }
            digits += String(hash, radix: 16).leftPadded(to: 16)
        }
        return String(digits.prefix(40))
    }

    static func split(_ address: String) -> (String, Int)? {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]) else { return nil }
        return (String(address[..<colon]), port)
    }

    // MARK: FAILOVER

    /// `FAILOVER [TO host port] [TIMEOUT ms] [FORCE]` (Redis 6.2's grammar): stops acknowledging writes, waits until the
    /// target replica (the given one, or the most up-to-date) has every write, names it in etcd and resigns, so that
    /// it wins at once; this node then follows it. Without FORCE, a target that does not catch up within the timeout
    /// (default 10 s) abandons the handover and writes resume. Nothing acknowledged is lost.
    public func failover(_ arguments: [[UInt8]]) -> RESPValue {
        var target: String?
        var timeout = Duration.seconds(10)
        var force = false
        var index = 0
        while index < arguments.count {
            switch String(decoding: arguments[index], as: UTF8.self).uppercased() {
            case "TO" where index + 2 < arguments.count:
                target = String(decoding: arguments[index + 1], as: UTF8.self) + ":" + String(decoding: arguments[index + 2], as: UTF8.self)
                index += 3
            case "TIMEOUT" where index + 1 < arguments.count:
                guard let milliseconds = Int(String(decoding: arguments[index + 1], as: UTF8.self)), milliseconds > 0 else {
                    return .error("ERR FAILOVER timeout must be greater than 0")
                }
                timeout = .milliseconds(milliseconds)
                index += 2
            case "FORCE":
                force = true
                index += 1
            case "ABORT" where arguments.count == 1:
                return .error("ERR No failover in progress.")
            default:
                return .error("ERR syntax error")
            }
        }
        if force && target == nil { return .error("ERR FAILOVER with force option requires both a timeout and target HOST and IP.") }
        let (election, isLeader, nodes, handingOver) = view.withLock { ($0.election, $0.state.isLeader, $0.nodes, $0.handingOver) }
        guard isLeader, let election else { return .error("ERR FAILOVER is not valid when server is a replica.") }
        guard !handingOver else { return .error("ERR FAILOVER already in progress.") }
        let replicas = control.replicas
        let chosen: NodeRecord?
        if let target {
            chosen = nodes.first { $0.address == target && $0.name != settings.nodeName }
            guard chosen != nil, replicas.contains(where: { "\($0.host):\($0.port)" == target }) else {
                return .error("ERR FAILOVER target HOST and PORT is not a replica.")
            }
        } else {
            let online = Set(replicas.map { "\($0.host):\($0.port)" })
            chosen = nodes.filter { online.contains($0.address) && $0.priority > 0 }.max { a, b in
                let ackA = replicas.first { "\($0.host):\($0.port)" == a.address }?.offset ?? 0
                let ackB = replicas.first { "\($0.host):\($0.port)" == b.address }?.offset ?? 0
                return ackA != ackB ? ackA < ackB : a.priority < b.priority
            }
        }
        guard let chosen else { return .error("ERR FAILOVER requires connected replicas.") }

        view.withLock { $0.handingOver = true }  // writes get -READONLY from here on
        let offset = control.offset
        let deadline = ContinuousClock.now + timeout
        var caughtUp = false
        while ContinuousClock.now < deadline {
            if control.replicas.contains(where: { "\($0.host):\($0.port)" == chosen.address && $0.offset >= offset }) {
                caughtUp = true
                break
            }
            _ = control.waitForAcknowledgements(count: replicas.count + 1, offset: offset, timeout: .milliseconds(20))
        }
        guard caughtUp || force else {
            view.withLock { $0.handingOver = false }
            return .error("ERR FAILOVER target \(chosen.address) did not catch up within the timeout; writes resumed (FORCE hands over anyway)")
        }
        let handed = blocking { [self] in
            let lease = try await client.grantLease(ttl: settings.ttl)
            try await client.put(handoverKey, Array(chosen.name.utf8), lease: lease.id)
            election.resign()
            // Done once the target holds the key.
            let until = ContinuousClock.now + settings.ttl
            while ContinuousClock.now < until {
                if let holder = try await client.get(keys.leader), (try? NodeRecord.decode(holder.value))?.name == chosen.name { return true }
                try await Task.sleep(for: .milliseconds(10))
            }
            return false
        }
        logger.info("failover: handed over", metadata: ["to": "\(chosen.name)", "offset": "\(offset)", "caught-up": "\(caughtUp)",
                                                      "done": "\(handed)"])
        return handed ? .simpleString("OK") : .error("ERR FAILOVER handed over to \(chosen.address), which has not taken the role yet")
    }

    /// Runs async work from the thread pool's (blocking) thread.
    private func blocking(_ work: @escaping @Sendable () async throws -> Bool) -> Bool {
        let done = DispatchSemaphore(value: 0)
        let result = Mutex(false)
        Task {
            let value = (try? await work()) ?? false
            result.withLock { $0 = value }
            done.signal()
        }
        done.wait()
        return result.withLock { $0 }
    }
}

extension String {
    fileprivate func leftPadded(to length: Int) -> String {
        count >= length ? self : String(repeating: "0", count: length - count) + self
    }
}
