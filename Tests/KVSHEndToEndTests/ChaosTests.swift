// Failover against a three-member etcd: its raft leader killed (kvsh must not fail over), and a bounded chaos run
// of kill -9 and SIGSTOP on the primary, a replica or an etcd member, with writers recording who acknowledged what.

import Foundation
import RESP
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Three etcd members on loopback ports, started together, each its own process.
final class EtcdTrio {
    let members: [EtcdProcess]
    var endpoints: String { members.map(\.url).joined(separator: ",") }

    init(_ sandbox: Sandbox) throws {
        let ports = try (1...3).map { _ in (client: try freePort(), peer: try freePort()) }
        let cluster = ports.enumerated().map { "m\($0.offset + 1)=http://127.0.0.1:\($0.element.peer)" }.joined(separator: ",")
        members = try ports.enumerated().map {
            try EtcdProcess(sandbox, name: "m\($0.offset + 1)", clientPort: $0.element.client, peerPort: $0.element.peer, cluster: cluster)
        }
        for member in members { try member.waitUntilReady() }
    }

    /// The index of the raft leader, as `etcdctl endpoint status` reports it (its fifth column: IS LEADER).
    func leader(_ sandbox: Sandbox, among indices: [Int]? = nil) -> Int? {
        guard let etcdctl = ExternalTool.path("etcdctl") else { return nil }
        for index in indices ?? Array(members.indices) {
            let member = members[index]
            guard let result = try? ExternalTool.run(etcdctl, ["--endpoints", member.url, "--command-timeout", "2s", "endpoint", "status", "-w", "simple"],
                                                     sandbox: sandbox, timeout: .seconds(5)),
                  result.termination == .exited(0) else { continue }
            let columns = result.stdout.text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            if columns.count > 4, columns[4] == "true" { return index }
        }
        return nil
    }
}

/// What `INFO cluster` says on `port`, as a dictionary of its fields.
func clusterInfo(_ port: Int) -> [String: String] {
    guard case .bulkString(let text)? = try? RedisConnection(port: port).call("INFO", "cluster", timeout: .seconds(2)) else { return [:] }
    var fields: [String: String] = [:]
    for line in String(decoding: text, as: UTF8.self).split(whereSeparator: \.isNewline) {
        guard let colon = line.firstIndex(of: ":") else { continue }
        fields[String(line[..<colon])] = String(line[line.index(after: colon)...])
    }
    return fields
}

/// Writers that find the primary through the Sentinel API and write unique keys; after each acknowledged write the
/// same connection asks `INFO cluster`, and while the node still says it is the primary, the write is stamped with
/// its term (a connection's commands run in order, so the node was primary in that term when it acknowledged).
final class StampedWriters: @unchecked Sendable {
    struct Acknowledged: Sendable {
        let key: String
        let port: Int
        let term: String?
        /// The chaos round under way when it was acknowledged (for a failure message).
        let round: Int
    }

    /// The round under way, set by the test.
    var round: Int {
        get { lock.lock(); defer { lock.unlock() }; return currentRound }
        set { lock.lock(); currentRound = newValue; lock.unlock() }
    }
    private var currentRound = 0

    private let lock = NSLock()
    private var acknowledged: [Acknowledged] = []
    private var stopping = false
    private let group = DispatchGroup()

    var writes: [Acknowledged] { lock.lock(); defer { lock.unlock() }; return acknowledged }
    private var isStopping: Bool { lock.lock(); defer { lock.unlock() }; return stopping }

    func start(_ count: Int, ports: [Int]) {
        for writer in 0..<count {
            group.enter()
            Thread { [self] in
                defer { group.leave() }
                var connection: (RedisConnection, Int)?
                var index = 0
                while !isStopping {
                    if connection == nil {
                        guard let port = ClusterNodes.primaryPort(among: ports), let opened = try? RedisConnection(port: port) else {
                            Thread.sleep(forTimeInterval: 0.02)  // back-off between attempts, not synchronisation
                            continue
                        }
                        connection = (opened, port)
                    }
                    guard let (client, port) = connection else { continue }
                    let key = "c\(writer):\(index)"
                    index += 1
                    guard (try? client.call("SET", key, key, timeout: .seconds(3))) == .simpleString("OK") else {
                        connection = nil  // READONLY, NOREPLICAS, a closed connection or no answer: look again
                        continue
                    }
                    var term: String?
                    if case .bulkString(let text)? = try? client.call("INFO", "cluster", timeout: .seconds(3)) {
                        let info = String(decoding: text, as: UTF8.self)
                        if info.contains("kvsh_cluster_role:primary"),
                           let line = info.split(whereSeparator: \.isNewline).first(where: { $0.hasPrefix("kvsh_leader_term:") }) {
                            term = String(line.dropFirst("kvsh_leader_term:".count))
                        }
                    }
                    lock.lock(); acknowledged.append(Acknowledged(key: key, port: port, term: term, round: currentRound)); lock.unlock()
                }
            }.start()
        }
    }

    func stop() -> Bool {
        lock.lock(); stopping = true; lock.unlock()
        return group.wait(timeout: .now() + 60) == .success
    }
}

@Suite("Failover with a three-member etcd", .timeLimit(.minutes(10)), .enabled(if: etcdAvailable, "etcd is not installed (apt-get install etcd-server)"))
struct EtcdClusterFailoverTests {
    @Test("killing etcd's raft leader fails nothing over: the same primary, the same term, its lease renewed through the new etcd leader")
    func etcdLeaderKilled() throws {
        let sandbox = try Sandbox()
        let etcd = try EtcdTrio(sandbox)
        let nodes = try ClusterNodes(sandbox, etcd: etcd.endpoints, ttl: "5s")
        defer { nodes.stopAll() }
        #expect(waitFor { nodes.primaryPort().map { role($0) == "master" } ?? false })
        let primary = try #require(nodes.primaryPort())
        #expect(waitFor { (try? RedisConnection(port: primary).call("SET", "before", "1")) == .simpleString("OK") })
        let before = clusterInfo(primary)
        let term = try #require(before["kvsh_leader_term"])
        let etcdLeader = try #require(etcd.leader(sandbox), "no etcd member says it is the raft leader")

        // The lease's deadline as the primary sees it now; once it has moved a whole TTL later, the primary renewed
        // its lease after the kill, through whichever member etcd elected.
        func deadline() -> ContinuousClock.Instant? {
            clusterInfo(primary)["kvsh_lease_remaining_ms"].flatMap(Int.init).map { .now + .milliseconds($0) }
        }
        let deadlineBefore = try #require(deadline())
        etcd.members[etcdLeader].kill()
        let survivors = etcd.members.indices.filter { $0 != etcdLeader }
        #expect(waitFor { etcd.leader(sandbox, among: survivors) != nil }, "etcd elected no new leader")
        #expect(waitFor(.seconds(30)) { (deadline().map { $0 > deadlineBefore + .seconds(5) }) ?? false },
                "the primary did not renew its lease after etcd's leader was killed: \(clusterInfo(primary))")

        let after = clusterInfo(primary)
        #expect(after["kvsh_leader_term"] == term, "the term changed: \(before) -> \(after)")
        #expect(after["kvsh_last_failover"] == before["kvsh_last_failover"], "a failover happened: \(after)")
        #expect(nodes.primaryPort() == primary)
        #expect(waitFor(.seconds(10)) { (try? RedisConnection(port: primary).call("SET", "after", "2")) == .simpleString("OK") },
                "the primary takes no writes after etcd's leader changed")
    }

    // KVSH_CHAOS_SEED=N replays a run's choices (its failure message names the seed). What it found is in
    // Docs/Failover.md, "Tested".
    @Test("chaos: 20 rounds of kill -9 or SIGSTOP on the primary, a replica or an etcd member; every acknowledged write survives, no term has two primaries")
    func chaos() throws {
        let sandbox = try Sandbox()
        let etcd = try EtcdTrio(sandbox)
        let nodes = try ClusterNodes(sandbox, etcd: etcd.endpoints, options: ["--sync-replicas", "1"])
        defer { nodes.stopAll() }
        #expect(waitFor { nodes.primaryPort().map { role($0) == "master" } ?? false })

        var generator = SeededGenerator(seed: UInt64(ProcessInfo.processInfo.environment["KVSH_CHAOS_SEED"] ?? "") ?? .random(in: 1...UInt64.max))
        let seed = generator.seed
        let writers = StampedWriters()
        writers.start(3, ports: nodes.ports)
        var rounds: [String] = []
        func serving() -> Bool {
            guard let port = nodes.primaryPort(), let client = try? RedisConnection(port: port) else { return false }
            return (try? client.call("SET", "probe", "\(rounds.count)", timeout: .seconds(3))) == .simpleString("OK")
        }
        for round in 1...20 {
            writers.round = round
            let primary = nodes.primaryPort().flatMap(nodes.index(ofPort:))
            let replicas = nodes.ports.indices.filter { $0 != primary }
            let target = Int.random(in: 0..<3, using: &generator)  // 0: the primary, 1: a replica, 2: an etcd member
            let freeze = Bool.random(using: &generator)
            // How long a frozen process stays frozen: the fault's length (longer than the 2 s TTL half the time).
            let frozenFor = Double.random(in: 0.5...3.5, using: &generator)
            switch target {
            case 0, 1:
                guard let victim = target == 0 ? primary : replicas.randomElement(using: &generator) else { continue }
                if freeze, let process = nodes.server(victim)?.process {
                    rounds.append("\(round): SIGSTOP node \(victim) (\(target == 0 ? "primary" : "replica")) for \(frozenFor) s")
                    process.signal(SIGSTOP)
                    Thread.sleep(forTimeInterval: frozenFor)
                    process.signal(SIGCONT)
                } else {
                    rounds.append("\(round): kill -9 node \(victim) (\(target == 0 ? "primary" : "replica"))")
                    nodes.kill(victim)
                    #expect(waitFor(.seconds(30)) { serving() }, "round \(round): no primary took writes with node \(victim) down")
                    try nodes.start(victim)
                }
            default:
                let member = Int.random(in: 0..<3, using: &generator)
                if freeze {
                    rounds.append("\(round): SIGSTOP etcd member \(member) for \(frozenFor) s")
                    etcd.members[member].process.signal(SIGSTOP)
                    Thread.sleep(forTimeInterval: frozenFor)
                    etcd.members[member].process.signal(SIGCONT)
                } else {
                    rounds.append("\(round): kill -9 etcd member \(member)")
                    try etcd.members[member].restart(sandbox)
                }
            }
            // Every round ends with the cluster whole again: all three nodes up and a primary taking writes.
            #expect(waitFor(.seconds(40)) { serving() && nodes.ports.allSatisfy { role($0) != nil } },
                    "round \(round) (seed \(seed)): the cluster did not recover\n\(rounds.joined(separator: "\n"))\n\(nodes.logs())")
        }
        #expect(writers.stop(), "a writer did not stop")

        let writes = writers.writes
        #expect(writes.count > 100, "only \(writes.count) writes were acknowledged in 20 rounds")
        // No term has two primaries: every write stamped with a term was acknowledged by the one node of that term.
        var nodeOfTerm: [String: Int] = [:]
        for write in writes {
            guard let term = write.term else { continue }
            if let other = nodeOfTerm[term], other != write.port {
                Issue.record("term \(term) had two primaries: ports \(other) and \(write.port) (seed \(seed))")
            }
            nodeOfTerm[term] = write.port
        }
        // Every acknowledged write is on the primary at the end.
        let primary = try #require(nodes.primaryPort())
        let client = try RedisConnection(port: primary)
        var missing: [String] = []
        for chunk in stride(from: 0, to: writes.count, by: 500) {
            let keys = writes[chunk..<min(chunk + 500, writes.count)].map(\.key)
            try client.send(RedisConnection.encode(["MGET"] + keys))
            guard case .array(let values) = try client.reply() else { Issue.record("MGET is not an array"); return }
            missing += zip(keys, values).filter { $0.1 == .null }.map(\.0)
        }
        let lost = Set(missing)
        let acknowledgedBy = Dictionary(grouping: writes.filter { lost.contains($0.key) }, by: { "port \($0.port), term \($0.term ?? "?"), round \($0.round)" })
            .map { "\($0.key): \($0.value.count)" }.joined(separator: "; ")
        #expect(missing.isEmpty, "seed \(seed): \(missing.count) of \(writes.count) acknowledged writes are lost (\(acknowledgedBy)), final primary \(primary): \(missing.prefix(5))\nports \(nodes.ports)\n\(rounds.joined(separator: "\n"))\n\(missing.isEmpty ? "" : nodes.logs())")
    }
}

/// A small deterministic generator (SplitMix64), so that a failing chaos run can be replayed with KVSH_CHAOS_SEED.
struct SeededGenerator: RandomNumberGenerator {
    let seed: UInt64
    private var state: UInt64

    init(seed: UInt64) {
        self.seed = seed
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
