// The etcd client against a real etcd: KV, transactions, leases, watches, endpoint fail-over, status.

import AsyncHTTPClient
import Etcd
import KVTestSupport
import NIOCore
import XCTest

final class EtcdClientTests: XCTestCase {
    /// Runs `body` with a fresh one-member etcd and a client of it; stops both afterwards, whatever happens.
    func withEtcd(_ body: (EtcdCluster, EtcdClient) async throws -> Void) async throws {
        let cluster = try EtcdCluster()
        defer { cluster.stop() }
        let client = try EtcdClient(EtcdConfiguration(endpoints: cluster.endpoints))
        do {
            try await cluster.waitUntilHealthy(client)
            try await body(cluster, client)
        } catch {
            try await client.shutdown()
            throw error
        }
        try await client.shutdown()
    }

    func testPutGetRangeDelete() async throws {
        try await withEtcd { _, client in
            let missing = try await client.get("/t/none")
            XCTAssertNil(missing)
            let first = try await client.put("/t/a", "1")
            let binary: [UInt8] = [0, 255, 10, 13, 34, 92]
            let second = try await client.put("/t/b", binary)
            XCTAssertGreaterThan(second, first)
            try await client.put("/u/c", "outside the prefix")

            let readA = try await client.get("/t/a")
            let a = try XCTUnwrap(readA)
            XCTAssertEqual(a.valueString, "1")
            XCTAssertEqual(a.createRevision, first)
            XCTAssertEqual(a.modRevision, first)
            XCTAssertEqual(a.version, 1)
            XCTAssertEqual(a.lease, 0)

            let range = try await client.range(prefix: "/t/")
            XCTAssertEqual(range.kvs.map(\.keyString), ["/t/a", "/t/b"])
            XCTAssertEqual(range.kvs[1].value, binary)
            XCTAssertEqual(range.count, 2)
            XCTAssertEqual(range.header.revision, second + 1)

            try await client.put("/t/a", "2")
            let readUpdated = try await client.get("/t/a")
            let updated = try XCTUnwrap(readUpdated)
            XCTAssertEqual(updated.createRevision, first)
            XCTAssertGreaterThan(updated.modRevision, first)
            XCTAssertEqual(updated.version, 2)

            let deletedOne = try await client.delete("/t/a")
            XCTAssertEqual(deletedOne, 1)
            let deletedNone = try await client.delete("/t/a")
            XCTAssertEqual(deletedNone, 0)
            let deletedPrefix = try await client.delete("/t/", prefix: true)
            XCTAssertEqual(deletedPrefix, 1)
            let left = try await client.range(prefix: "/")
            XCTAssertEqual(left.kvs.map(\.keyString), ["/u/c"])
        }
    }

    func testTransactions() async throws {
        try await withEtcd { _, client in
            // Create-if-absent: the first succeeds, the second reads the holder.
            let won = try await client.txn(compare: [.absent("/t/leader")],
                                           success: [.put(key: "/t/leader", value: Array("me".utf8))],
                                           failure: [.range(key: "/t/leader")])
            XCTAssertTrue(won.succeeded)
            guard case .put(let revision)? = won.responses.first else { return XCTFail("expected a put result: \(won)") }
            XCTAssertEqual(revision, won.header.revision)

            let lost = try await client.txn(compare: [.absent("/t/leader")],
                                            success: [.put(key: "/t/leader", value: Array("you".utf8))],
                                            failure: [.range(key: "/t/leader")])
            XCTAssertFalse(lost.succeeded)
            guard case .range(let kvs)? = lost.responses.first else { return XCTFail("expected a range result: \(lost)") }
            XCTAssertEqual(kvs.first?.valueString, "me")
            XCTAssertEqual(kvs.first?.createRevision, revision)

            // Compare on value and on mod revision; several operations per branch.
            let byValue = try await client.txn(
                compare: [EtcdCompare(key: "/t/leader", .equal, .value(Array("me".utf8))),
                          EtcdCompare(key: "/t/leader", .equal, .modRevision(revision))],
                success: [.put(key: "/t/x", value: Array("1".utf8)), .delete(key: "/t/leader"), .range(key: "/t/", prefix: true)])
            XCTAssertTrue(byValue.succeeded)
            XCTAssertEqual(byValue.responses.count, 3)
            XCTAssertEqual(byValue.responses[1], .delete(deleted: 1))
            guard case .range(let after) = byValue.responses[2] else { return XCTFail("expected a range result") }
            XCTAssertEqual(after.map(\.keyString), ["/t/x"])

            let stale = try await client.txn(compare: [EtcdCompare(key: "/t/x", .equal, .modRevision(revision))],
                                             success: [.delete(key: "/t/x")], failure: [])
            XCTAssertFalse(stale.succeeded)
            XCTAssertEqual(stale.responses, [])
            let x = try await client.get("/t/x")
            XCTAssertNotNil(x)
        }
    }

    func testLeaseKeepAliveAndExpiryObservedByWatch() async throws {
        try await withEtcd { _, client in
            let lease = try await client.grantLease(ttl: .seconds(2))
            XCTAssertEqual(lease.ttl, .seconds(2))
            let written = try await client.put("/t/leased", "v", lease: lease.id)
            let readLeased = try await client.get("/t/leased")
            let kv = try XCTUnwrap(readLeased)
            XCTAssertEqual(kv.lease, lease.id)
            let renewed = try await client.keepAlive(lease.id)
            XCTAssertEqual(renewed, .seconds(2))
            let remaining = try await client.leaseTimeToLive(lease.id)
            XCTAssertNotNil(remaining)

            // No more keep-alives: etcd deletes the key when the lease expires, and the watch sees it.
            let watch = try await client.watch("/t/leased", fromRevision: written + 1)
            let event = try await first(watch, within: .seconds(10), "the leased key's deletion") { $0.kind == .delete }
            XCTAssertEqual(event.kv.keyString, "/t/leased")

            await XCTAssertThrowsErrorAsync(try await client.keepAlive(lease.id)) { error in
                XCTAssertEqual(error as? EtcdError, .leaseLost(lease.id))
            }
            // A put under the expired lease says the same (a node whose record's lease expired while it was frozen
            // must grant a new one: it took this for etcd being unreachable and never published again).
            await XCTAssertThrowsErrorAsync(try await client.put("/t/leased", "again", lease: lease.id)) { error in
                XCTAssertEqual(error as? EtcdError, .leaseLost(lease.id))
            }
            let gone = try await client.leaseTimeToLive(lease.id)
            XCTAssertNil(gone)
            // Revoking a lease that is already gone is not an error.
            try await client.revokeLease(lease.id)

            // Revoke deletes the keys at once.
            let second = try await client.grantLease(ttl: .seconds(30))
            try await client.put("/t/revoked", "v", lease: second.id)
            try await client.revokeLease(second.id)
            let revoked = try await client.get("/t/revoked")
            XCTAssertNil(revoked)
        }
    }

    func testWatchPrefixFromRevisionAndCompaction() async throws {
        try await withEtcd { cluster, client in
            let start = try await client.put("/w/a", "1")
            try await client.put("/w/b", "2")
            try await client.delete("/w/a")
            try await client.put("/other", "x")
            // From a past revision: the history is replayed, in order, prefix only, with previous values.
            let watch = try await client.watch("/w/", prefix: true, fromRevision: start, previousValues: true)
            var seen: [String] = []
            for try await event in watch {
                seen.append("\(event.kind) \(event.kv.keyString) \(event.kv.valueString) prev=\(event.previous?.valueString ?? "-")")
                if seen.count == 3 { break }
            }
            XCTAssertEqual(seen, ["put /w/a 1 prev=-", "put /w/b 2 prev=-", "delete /w/a  prev=1"])
            // cancel() ends the iteration.
            let live = try await client.watch("/w/", prefix: true)
            live.cancel()
            var afterCancel = 0
            for try await _ in live { afterCancel += 1 }
            XCTAssertEqual(afterCancel, 0)

            // A watch from a compacted revision is refused with the compact revision.
            let now = try await client.put("/w/c", "3")
            try await compact(cluster, client, revision: now)
            let compacted = try await client.watch("/w/", prefix: true, fromRevision: start)
            await XCTAssertThrowsErrorAsync(try await { for try await _ in compacted {} }()) { error in
                XCTAssertEqual(error as? EtcdError, .watchCompacted(compactRevision: now))
            }
        }
    }

    func testWatchEndsWhenEtcdDies() async throws {
        try await withEtcd { cluster, client in
            let watch = try await client.watch("/w/", prefix: true)
            cluster.members[0].kill9()
            await XCTAssertThrowsErrorAsync(try await { for try await _ in watch {} }()) { error in
                guard case .watchEnded? = error as? EtcdError else { return XCTFail("expected watchEnded, got \(error)") }
            }
        }
    }

    func testFailsOverToTheNextEndpointAndReportsUnreachable() async throws {
        let cluster = try EtcdCluster()
        defer { cluster.stop() }
        let dead = "http://127.0.0.1:\(try freePort())"
        let client = try EtcdClient(EtcdConfiguration(endpoints: [dead] + cluster.endpoints, requestTimeout: .seconds(5)))
        do {
            try await cluster.waitUntilHealthy(EtcdClient(EtcdConfiguration(endpoints: cluster.endpoints)), shutdown: true)
            try await client.put("/f/a", "1")
            let value = try await client.get("/f/a")
            XCTAssertEqual(value?.valueString, "1")
            let members = try await client.memberList()
            XCTAssertEqual(members.map(\.name), ["n1"])
            XCTAssertEqual(members.first?.clientURLs, cluster.endpoints)
            let health = await client.health()
            XCTAssertEqual(health.map(\.endpoint), [dead] + cluster.endpoints)
            XCTAssertThrowsError(try health[0].result.get())
            let status = try health[1].result.get()
            XCTAssertTrue(status.isLeader)
            XCTAssertTrue(status.version.hasPrefix("3."))

            // Every endpoint down: a clear error, quickly.
            cluster.stop()
            let started = ContinuousClock.now
            await XCTAssertThrowsErrorAsync(try await client.get("/f/a")) { error in
                guard case .unreachable? = error as? EtcdError else { return XCTFail("expected unreachable, got \(error)") }
                XCTAssertTrue("\(error)".contains("no etcd endpoint answered"), "\(error)")
                XCTAssertTrue("\(error)".contains(dead + ": "), "each endpoint's failure is named: \(error)")
                XCTAssertTrue("\(error)".contains(cluster.endpoints[0] + ": "), "each endpoint's failure is named: \(error)")
            }
            XCTAssertLessThan(ContinuousClock.now - started, .seconds(5), "a refused connection does not wait for the timeout")
        } catch {
            try await client.shutdown()
            throw error
        }
        try await client.shutdown()
    }

    func testStoppedEtcdTimesOutWithinTheRequestTimeout() async throws {
        let cluster = try EtcdCluster()
        defer { cluster.stop() }
        let client = try EtcdClient(EtcdConfiguration(endpoints: cluster.endpoints, requestTimeout: .milliseconds(500)))
        do {
            try await cluster.waitUntilHealthy(client)
            try await client.put("/s/a", "1")
            cluster.members[0].signal(SIGSTOP)
            let started = ContinuousClock.now
            await XCTAssertThrowsErrorAsync(try await client.put("/s/a", "2")) { error in
                guard case .timedOut? = error as? EtcdError else { return XCTFail("expected timedOut, got \(error)") }
            }
            let elapsed = ContinuousClock.now - started
            XCTAssertLessThan(elapsed, .seconds(5), "the request timeout (0.5 s) bounds a call to a stopped etcd")
            cluster.members[0].signal(SIGCONT)
            let value = try await client.get("/s/a")
            XCTAssertNotNil(value)
        } catch {
            try await client.shutdown()
            throw error
        }
        try await client.shutdown()
    }

    /// The chaos run's lost writes: a former primary, fenced with writes nobody acknowledged, restarted and published
    /// its offset, higher than that of the new primary's replica, which had every acknowledged write, and won.
    func testElectionRanksTheNewestHistoryBeforeOffsets() throws {
        let diverged = NodeRecord(name: "a", address: "127.0.0.1:7001", offset: 9_000, priority: 100, role: "replica", term: nil)
        let replica = NodeRecord(name: "b", address: "127.0.0.1:7002", offset: 5_000, priority: 100, role: "replica", term: 117)
        let formerLeader = NodeRecord(name: "c", address: "127.0.0.1:7003", offset: 8_000, priority: 100, role: "replica", term: 115)
        XCTAssertTrue(replica.isMoreUpToDate(than: diverged))
        XCTAssertTrue(replica.isMoreUpToDate(than: formerLeader))
        XCTAssertFalse(diverged.isMoreUpToDate(than: replica))
        // Within one term, the offset, then priority, then the smaller name.
        var ahead = replica
        ahead.name = "z"
        ahead.offset += 1
        XCTAssertTrue(ahead.isMoreUpToDate(than: replica))
        ahead.offset = replica.offset
        XCTAssertTrue(replica.isMoreUpToDate(than: ahead))
        ahead.priority = 101
        XCTAssertTrue(ahead.isMoreUpToDate(than: replica))
        // A record from a node without terms (an older kvsh) decodes, with no term.
        let old = try NodeRecord.decode(Array(#"{"address":"h:1","name":"n","offset":3,"priority":1,"role":"replica"}"#.utf8))
        XCTAssertNil(old.term)
        XCTAssertEqual(try NodeRecord.decode(try replica.encoded()), replica)
    }

    func testNodeRecordsAndKeyLayout() async throws {
        try await withEtcd { _, client in
            let keys = try ClusterKeys(cluster: "c1")
            XCTAssertEqual(keys.leader, "/kvsh/c1/leader")
            XCTAssertEqual(try keys.node("n1"), "/kvsh/c1/nodes/n1")
            XCTAssertThrowsError(try ClusterKeys(cluster: "a/b"))
            XCTAssertThrowsError(try keys.node(""))

            let lease = try await client.grantLease(ttl: .seconds(30))
            let one = NodeRecord(name: "n1", address: "127.0.0.1:7001", offset: 42, priority: 1, role: "primary")
            let two = NodeRecord(name: "n2", address: "127.0.0.1:7002", offset: 40, priority: 0, role: "replica")
            try await client.publish(one, in: keys, lease: lease.id)
            try await client.publish(two, in: keys, lease: lease.id)
            try await client.put(keys.nodesPrefix + "junk", "not json")
            let listed = try await client.nodes(in: keys)
            XCTAssertEqual(listed.nodes, [one, two])
            XCTAssertEqual(listed.unreadable, ["/kvsh/c1/nodes/junk"])
            // keepLeaseAlive renews until the lease is gone, then says so.
            let keeper = Task { try await client.keepLeaseAlive(lease.id, every: .milliseconds(200)) }
            try await client.revokeLease(lease.id)
            let after = try await client.nodes(in: keys)
            XCTAssertEqual(after.nodes, [])
            let ended = await keeper.result
            XCTAssertThrowsError(try ended.get()) { error in
                XCTAssertEqual(error as? EtcdError, .leaseLost(lease.id))
            }
        }
    }

    private func compact(_ cluster: EtcdCluster, _ client: EtcdClient, revision: Int64) async throws {
        // Compaction is not part of the client's API (operators run `etcdctl compaction`); post it directly.
        var request = HTTPClientRequest(url: cluster.endpoints[0] + "/v3/kv/compaction")
        request.method = .POST
        request.body = .bytes(ByteBuffer(string: "{\"revision\":\"\(revision)\",\"physical\":true}"))
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        XCTAssertEqual(response.status, .ok)
    }
}

extension EtcdCluster {
    func waitUntilHealthy(_ client: EtcdClient, shutdown: Bool) async throws {
        do {
            try await waitUntilHealthy(client)
        } catch {
            if shutdown { try await client.shutdown() }
            throw error
        }
        if shutdown { try await client.shutdown() }
    }
}

func XCTAssertThrowsErrorAsync<T>(_ expression: @autoclosure () async throws -> T, _ message: String = "",
                                  file: StaticString = #filePath, line: UInt = #line,
                                  _ handler: (Error) -> Void = { _ in }) async {
    do {
        _ = try await expression()
        XCTFail("expected an error. \(message)", file: file, line: line)
    } catch {
        handler(error)
    }
}

final class EtcdAuthTests: XCTestCase {
    /// Runs etcdctl against `endpoint` and waits for it (bounded by etcdctl's own dial and command timeouts).
    private func etcdctl(_ endpoint: String, _ arguments: [String]) throws {
        let directories = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        guard let binary = directories.map({ String($0) + "/etcdctl" }).first(where: { access($0, X_OK) == 0 }) else {
            let hint = "etcdctl is not installed: apt-get install etcd-client"
            if EtcdBinary.required { XCTFail(hint) }
            throw XCTSkip(hint)
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["--endpoints", endpoint, "--dial-timeout", "5s", "--command-timeout", "10s"] + arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, "etcdctl \(arguments.joined(separator: " "))")
    }

    func testCredentialsGetATokenAndWrongOnesAreRefused() async throws {
        let cluster = try EtcdCluster()
        defer { cluster.stop() }
        let endpoint = cluster.endpoints[0]
        let good = try EtcdClient(EtcdConfiguration(endpoints: [endpoint], credentials: .init(user: "root", password: "secret")))
        let anonymous = try EtcdClient(EtcdConfiguration(endpoints: [endpoint]))
        let wrong = try EtcdClient(EtcdConfiguration(endpoints: [endpoint], credentials: .init(user: "root", password: "nope")))
        do {
            try await cluster.waitUntilHealthy(anonymous)
            try etcdctl(endpoint, ["user", "add", "root:secret"])
            try etcdctl(endpoint, ["user", "grant-role", "root", "root"])
            try etcdctl(endpoint, ["auth", "enable"])

            let watch = try await good.watch("/a/", prefix: true)
            try await good.put("/a/k", "v")
            let value = try await good.get("/a/k")
            XCTAssertEqual(value?.valueString, "v")
            let event = try await first(watch, within: .seconds(10), "the put, on a watch with a token") { _ in true }
            XCTAssertEqual(event.kv.keyString, "/a/k")
            await XCTAssertThrowsErrorAsync(try await anonymous.get("/a/k")) { error in
                guard case .server(_, _, let message)? = error as? EtcdError else { return XCTFail("\(error)") }
                XCTAssertTrue(message.contains("user name is empty"), message)
            }
            await XCTAssertThrowsErrorAsync(try await wrong.get("/a/k")) { error in
                guard case .server(_, _, let message)? = error as? EtcdError else { return XCTFail("\(error)") }
                XCTAssertTrue(message.contains("authentication failed"), message)
            }
        } catch {
            try await good.shutdown(); try await anonymous.shutdown(); try await wrong.shutdown()
            throw error
        }
        try await good.shutdown(); try await anonymous.shutdown(); try await wrong.shutdown()
    }
}

final class EtcdTLSTests: XCTestCase {
    func testClientCertificatesOverHTTPS() async throws {
        _ = try EtcdBinary.require()
        let directory = try makeTempDirectory(prefix: "kvsh-etcd-tls")
        defer { removeTree(directory) }
        let certificates = try TestCertificates(directory: directory)
        let cluster = try EtcdCluster(tls: certificates)
        defer { cluster.stop() }
        XCTAssertTrue(cluster.endpoints[0].hasPrefix("https://"))
        let client = try EtcdClient(EtcdConfiguration(endpoints: cluster.endpoints, tls: .init(
            caFile: certificates.ca, certificateFile: certificates.clientCertificate, keyFile: certificates.clientKey)))
        // etcd requires a client certificate (--client-cert-auth): without one the handshake fails.
        let anonymous = try EtcdClient(EtcdConfiguration(endpoints: cluster.endpoints, tls: .init(caFile: certificates.ca)))
        do {
            try await cluster.waitUntilHealthy(client)
            try await client.put("/tls/k", "v")
            let value = try await client.get("/tls/k")
            XCTAssertEqual(value?.valueString, "v")
            await XCTAssertThrowsErrorAsync(try await anonymous.get("/tls/k")) { error in
                guard case .unreachable? = error as? EtcdError else { return XCTFail("expected unreachable, got \(error)") }
            }
            XCTAssertThrowsError(try EtcdClient(EtcdConfiguration(endpoints: cluster.endpoints, tls: .init(
                certificateFile: certificates.clientCertificate)))) { error in
                guard case .invalidConfiguration? = error as? EtcdError else { return XCTFail("\(error)") }
            }
        } catch {
            try await client.shutdown(); try await anonymous.shutdown()
            throw error
        }
        try await client.shutdown(); try await anonymous.shutdown()
    }
}
