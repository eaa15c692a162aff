// A real network partition: kvsh nodes in network namespaces of the test's own, joined by veth pairs to a bridge
// where etcd listens; the primary's link is cut while a client beside it can still reach it.

import Foundation
import RESP
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Namespaces, veth pairs and a bridge made by the test (root only), removed at the end.
final class TestNetwork {
    let id: String
    let subnet: String
    let bridge: String
    let sandbox: Sandbox
    private(set) var namespaces: [String] = []

    init(_ sandbox: Sandbox, hosts: Int) throws {
        self.sandbox = sandbox
        id = String(UInt32.random(in: 0...0xFFFF), radix: 16)
        subnet = "10.231.\(Int.random(in: 1...250))"
        bridge = "kvb\(id)"
        try ip(["link", "add", bridge, "type", "bridge"])
        try ip(["addr", "add", "\(subnet).1/24", "dev", bridge])
        try ip(["link", "set", bridge, "up"])
        for host in 1...hosts {
            let namespace = "kvn\(id)-\(host)"
            try ip(["netns", "add", namespace])
            namespaces.append(namespace)
            try ip(["link", "add", hostSide(host), "type", "veth", "peer", "name", "kv\(id)n\(host)"])
            try ip(["link", "set", "kv\(id)n\(host)", "netns", namespace])
            try ip(["link", "set", hostSide(host), "master", bridge])
            try ip(["link", "set", hostSide(host), "up"])
            try ip(["netns", "exec", namespace, "ip", "addr", "add", "\(address(host))/24", "dev", "kv\(id)n\(host)"])
            try ip(["netns", "exec", namespace, "ip", "link", "set", "kv\(id)n\(host)", "up"])
            try ip(["netns", "exec", namespace, "ip", "link", "set", "lo", "up"])
        }
    }

    /// The address of host `n` (1-based); the bridge (etcd's side) is `.1`.
    func address(_ host: Int) -> String { "\(subnet).\(10 + host)" }
    var bridgeAddress: String { "\(subnet).1" }
    func hostSide(_ host: Int) -> String { "kv\(id)h\(host)" }

    func ip(_ arguments: [String]) throws {
        let result = try ExternalTool.run("/usr/sbin/ip", arguments, sandbox: sandbox, timeout: .seconds(20))
        guard result.termination == .exited(0) else {
            throw HarnessError("ip \(arguments.joined(separator: " ")): \(result.stderr.text)")
        }
    }

    /// Cuts host `n` off (its link to the bridge down) or heals it.
    func setLink(_ host: Int, up: Bool) throws {
        try ip(["link", "set", hostSide(host), up ? "up" : "down"])
    }

    deinit {
        for namespace in namespaces { _ = try? ExternalTool.run("/usr/sbin/ip", ["netns", "del", namespace], sandbox: sandbox) }
        _ = try? ExternalTool.run("/usr/sbin/ip", ["link", "del", bridge], sandbox: sandbox)
    }

    /// Whether this process may make namespaces (root, with iproute2).
    static let available: Bool = {
        guard getuid() == 0, access("/usr/sbin/ip", X_OK) == 0, let sandbox = try? Sandbox() else { return false }
        let probe = "kvprobe\(getpid())"
        guard (try? ExternalTool.run("/usr/sbin/ip", ["netns", "add", probe], sandbox: sandbox))?.termination == .exited(0) else { return false }
        _ = try? ExternalTool.run("/usr/sbin/ip", ["netns", "del", probe], sandbox: sandbox)
        return true
    }()
}

private func reply(_ host: String, _ port: Int, _ arguments: String...) -> RESPValue? {
    guard let connection = try? RedisConnection(port: port, host: host) else { return nil }
    try? connection.send(RedisConnection.encode(arguments))
    return try? connection.reply(timeout: .seconds(3))
}

@Suite("Failover across a network partition", .timeLimit(.minutes(10)),
       .enabled(if: (ExternalTool.path("etcd") != nil && TestNetwork.available) || ExternalTool.required,
                "needs root (network namespaces: ip netns add) and etcd"))
struct PartitionTests {
    @Test("the primary cut off from etcd and the replicas fences itself within its TTL while its clients still reach it; a new primary is elected on the other side; after healing nothing acknowledged is lost")
    func partitionedPrimary() throws {
        guard TestNetwork.available else {
            Issue.record("network namespaces cannot be created here (root and iproute2 are needed): the partition test cannot run")
            return
        }
        let sandbox = try Sandbox()
        let network = try TestNetwork(sandbox, hosts: 3)
        let etcd = try EtcdProcess(sandbox, listenHost: network.bridgeAddress)
        try etcd.waitUntilReady()
        let kvsh = try KVSHBinary.path()
        let port = 7379
        var nodes: [PipedProcess] = []
        defer {
            for node in nodes {
                node.signal(SIGKILL)
                _ = try? node.finish(timeout: .seconds(10))
            }
        }
        for host in 1...3 {
            nodes.append(try PipedProcess(executable: "/usr/sbin/ip", arguments: [
                "netns", "exec", network.namespaces[host - 1], kvsh, "serve", "--data-dir", sandbox.path("node\(host)"),
                "--bind", network.address(host), "--port", String(port), "--cluster", "c1",
                "--etcd", "http://\(network.bridgeAddress):\(etcd.clientPort)", "--announce", "\(network.address(host)):\(port)",
                "--failover-ttl", "2s", "--sync-replicas", "1", "--protected-mode", "no",
            ], environment: sandbox.environment(), directory: sandbox.root, outputFile: sandbox.path("node\(host).out")))
        }
        func primary(askingHosts hosts: [Int]) -> Int? {
            for host in hosts {
                guard case .array(let address)? = reply(network.address(host), port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "c1"),
                      address.count == 2, case .bulkString(let ip) = address[0] else { continue }
                let text = String(decoding: ip, as: UTF8.self)
                return (1...3).first { network.address($0) == text }
            }
            return nil
        }
        #expect(waitFor { primary(askingHosts: [1, 2, 3]).map { reply(network.address($0), port, "SET", "ready", "1") == .simpleString("OK") } ?? false },
                "no primary took writes: \(nodes.map { String($0.errorOutput.text.suffix(500)) })")
        let cut = try #require(primary(askingHosts: [1, 2, 3]))
        var acknowledged: [String] = []
        for index in 0..<50 where reply(network.address(cut), port, "SET", "before\(index)", "v") == .simpleString("OK") {
            acknowledged.append("before\(index)")
        }
        #expect(acknowledged.count == 50)

        try network.setLink(cut, up: false)
        // A client beside the primary (in its namespace) still reaches it: its writes are refused within the TTL.
        let beside = ExternalTool.redisCLI.map { cli in
            waitFor(.seconds(15)) {
                let result = try? ExternalTool.run("/usr/sbin/ip", ["netns", "exec", network.namespaces[cut - 1], cli, "-h",
                                                                     network.address(cut), "-p", String(port), "SET", "during", "x"],
                                                   sandbox: sandbox, timeout: .seconds(10))
                return result?.stdout.text.contains("READONLY") ?? false
            }
        } ?? false
        #expect(beside, "the cut-off primary kept accepting writes from a client beside it")
        let others = (1...3).filter { $0 != cut }
        #expect(waitFor { primary(askingHosts: others).map { $0 != cut } ?? false }, "no new primary on the other side")
        let second = try #require(primary(askingHosts: others))
        func logs() -> String {
            nodes.enumerated().map { index, node in
                _ = node.wait(timeout: .milliseconds(50)) { _ in false }
                return "node \(index + 1):\n" + node.errorOutput.text.split(separator: "\n").filter { !$0.contains("etcd call failed") }
                    .suffix(25).joined(separator: "\n")
            }.joined(separator: "\n")
        }
        if waitFor(.seconds(30), { reply(network.address(second), port, "SET", "after", "partition") == .simpleString("OK") }) {
            acknowledged.append("after")
        } else {
            let infos = (1...3).map { "INFO \($0): \(String(describing: reply(network.address($0), port, "INFO", "replication")))" }
            let refusal = String(describing: reply(network.address(second), port, "SET", "after", "partition"))
            Issue.record("the new primary (host \(second)) takes no writes: \(refusal)\n\(infos.joined(separator: "\n"))\n\(logs())")
        }

        try network.setLink(cut, up: true)
        #expect(waitFor {
            guard case .array(let role)? = reply(network.address(cut), port, "ROLE") else { return false }
            return role.first == .bulkString(Array("slave".utf8))
        }, "the old primary did not rejoin as a replica")
        for key in acknowledged {
            #expect(reply(network.address(second), port, "GET", key) != .null, "\(key) was acknowledged and is lost")
        }
        #expect(reply(network.address(second), port, "GET", "during") == .null)
        #expect(waitFor { reply(network.address(cut), port, "GET", "after") == .bulkString(Array("partition".utf8)) })
    }
}
