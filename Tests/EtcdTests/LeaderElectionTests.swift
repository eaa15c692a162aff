// The election against a real etcd: one winner, take-over after a crash (lease expiry) and after resigning, fencing
// when etcd stops answering, and a three-member etcd losing its raft leader without a change of ours.

import Etcd
import Synchronization
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// Records every state an election reports, with when, for waits and for asserting the order of events.
final class StateRecorder: Sendable {
    struct Entry: Sendable {
        let state: ElectionState
        let at: ContinuousClock.Instant
    }
    private final class Log: Sendable {
        let entries = Mutex<[Entry]>([])
    }
    private let log = Log()
    private let task: Task<Void, Never>

    init(_ election: LeaderElection) {
        let log = self.log
        task = Task {
            for await state in election.states { log.entries.withLock { $0.append(Entry(state: state, at: .now)) } }
        }
    }

    var all: [Entry] { log.entries.withLock { $0 } }

    /// The first recorded state (from index `from` on) satisfying `predicate`; polls until `timeout`.
    func wait(_ what: String, timeout: Duration = .seconds(15), from: Int = 0,
              _ predicate: (ElectionState) -> Bool) async throws -> Entry {
        let deadline = ContinuousClock.now + timeout
        while true {
            let entries = all
            if entries.count > from, let found = entries[from...].first(where: { predicate($0.state) }) { return found }
            guard ContinuousClock.now < deadline else {
                throw HarnessError("waited \(timeout) for \(what); states: \(entries.map { "\($0.state)" })")
            }
            try await Task.sleep(for: .milliseconds(5))
        }
    }

    deinit { task.cancel() }
}

func isFollower(of value: String) -> (ElectionState) -> Bool {
    { state in
        if case .follower(let leader?) = state { return leader.valueString == value }
        return false
    }
}

func term(_ state: ElectionState) -> LeaderTerm? {
    if case .leader(let term) = state { return term }
    return nil
}

final class LeaderElectionTests: XCTestCase {
    private func withEtcd(size: Int = 1, timeout: Duration = .seconds(2),
                          _ body: (EtcdCluster, EtcdClient) async throws -> Void) async throws {
        let cluster = try EtcdCluster(size: size)
        defer { cluster.stop() }
        let client = try EtcdClient(EtcdConfiguration(endpoints: cluster.endpoints, requestTimeout: timeout))
        do {
            try await cluster.waitUntilHealthy(client)
            try await body(cluster, client)
        } catch {
            try await client.shutdown()
            throw error
        }
        try await client.shutdown()
    }

    private func campaigner(_ client: EtcdClient, _ name: String, ttl: Duration = .seconds(2),
                            renewInterval: Duration? = nil,
                            shouldCampaign: @escaping @Sendable () async -> Bool = { true })
        throws -> (LeaderElection, StateRecorder, Task<Void, Error>) {
        let keys = try ClusterKeys(cluster: "test")
        let election = LeaderElection(client: client, options: ElectionOptions(
            key: keys.leader, value: Array(name.utf8), ttl: ttl, renewInterval: renewInterval,
            retryInterval: .milliseconds(100)), shouldCampaign: shouldCampaign)
        let recorder = StateRecorder(election)
        let task = Task { try await election.run() }
        return (election, recorder, task)
    }

    /// Follows the leader's renew deadline until it reports itself fenced, and asserts the order that matters: fenced
    /// at its renew deadline (its last successful renewal send + TTL − margin), before the lease could expire (that
    /// send + TTL). Returns the fenced entry and the instant the lease could expire.
    private func assertFencesBeforeExpiry(_ election: LeaderElection, _ recorder: StateRecorder,
                                          file: StaticString = #filePath, line: UInt = #line)
        async throws -> (fenced: StateRecorder.Entry, leaseCouldExpire: ContinuousClock.Instant) {
        var lastDeadline = try XCTUnwrap(election.leadershipDeadline(), file: file, line: line)
        let giveUp = ContinuousClock.now + election.options.ttl * 3
        while election.state.isLeader, ContinuousClock.now < giveUp {
            if let deadline = election.leadershipDeadline() { lastDeadline = deadline }
            try await Task.sleep(for: .milliseconds(5))
        }
        let fenced = try await recorder.wait("the leader fenced") {
            if case .fenced(_, .renewalOverdue) = $0 { return true }
            return false
        }
        let leaseCouldExpire = lastDeadline + election.options.fenceMargin
        XCTAssertGreaterThanOrEqual(fenced.at, lastDeadline, "fenced before its renew deadline", file: file, line: line)
        XCTAssertLessThan(fenced.at, leaseCouldExpire, "fenced only after its lease could have expired", file: file, line: line)
        XCTAssertNil(election.leadershipDeadline(), file: file, line: line)
        return (fenced, leaseCouldExpire)
    }

    func testOneWinsTheOtherFollowsAndTakesOverWhenTheLeaderStopsRenewing() async throws {
        try await withEtcd { _, client in
            let (a, recordA, runA) = try campaigner(client, "A")
            let elected = try await recordA.wait("A elected") { $0.isLeader }
            let (b, recordB, runB) = try campaigner(client, "B")
            _ = try await recordB.wait("B follows A", isFollower(of: "A"))
            XCTAssertTrue(a.state.isLeader)
            let holder = try await client.get(a.options.key)
            XCTAssertEqual(holder?.valueString, "A")
            XCTAssertEqual(holder?.lease, term(elected.state)?.leaseID)

            // A stops renewing without revoking, as if it crashed: B wins once A's lease has expired.
            let deadlineOfA = try XCTUnwrap(a.leadershipDeadline())
            let crashed = ContinuousClock.now
            runA.cancel()
            _ = await runA.result
            XCTAssertEqual(a.state, .stopped)
            XCTAssertNil(a.leadershipDeadline())
            let wonB = try await recordB.wait("B elected after A's lease expired") { $0.isLeader }
            // B cannot have won before A's lease could expire: A's last renewal send + TTL = its deadline + margin.
            let expiryOfA = deadlineOfA + a.options.fenceMargin
            XCTAssertGreaterThan(wonB.at, expiryOfA)
            XCTAssertGreaterThan(try XCTUnwrap(term(wonB.state)).revision, try XCTUnwrap(term(elected.state)).revision)
            print("election timing: leader stopped renewing → follower elected in \(wonB.at - crashed) (TTL 2 s)")

            b.resign()
            try await runB.value
            XCTAssertEqual(b.state, .resigned)
            let vacant = try await client.get(b.options.key)
            XCTAssertNil(vacant)
        }
    }

    func testResignHandsOverAtOnce() async throws {
        try await withEtcd { _, client in
            let (a, recordA, runA) = try campaigner(client, "A", ttl: .seconds(10))
            _ = try await recordA.wait("A elected") { $0.isLeader }
            let (b, recordB, runB) = try campaigner(client, "B", ttl: .seconds(10))
            _ = try await recordB.wait("B follows A", isFollower(of: "A"))

            let expiryOfA = try XCTUnwrap(a.leadershipDeadline()) + a.options.fenceMargin
            let resigned = ContinuousClock.now
            a.resign()
            XCTAssertNil(a.leadershipDeadline(), "no longer leader from the moment it resigns")
            try await runA.value
            let wonB = try await recordB.wait("B elected after A resigned") { $0.isLeader }
            print("election timing: resign → follower elected in \(wonB.at - resigned) (TTL 10 s)")
            XCTAssertLessThan(wonB.at, expiryOfA, "a resignation must not wait for the lease to expire")
            XCTAssertEqual(recordA.all.last?.state, .resigned)
            XCTAssertFalse(recordA.all.contains { if case .fenced = $0.state { return true } else { return false } })

            b.resign()
            try await runB.value
        }
    }

    func testANodeThatShouldNotCampaignFollowsAndNeverLeadsUntilAllowed() async throws {
        try await withEtcd { _, client in
            let allowed = Mutex(false)
            let (a, recordA, runA) = try campaigner(client, "A", ttl: .seconds(10))
            _ = try await recordA.wait("A elected") { $0.isLeader }
            let (b, recordB, runB) = try campaigner(client, "B", ttl: .seconds(10)) { allowed.withLock { $0 } }
            _ = try await recordB.wait("B follows A", isFollower(of: "A"))

            // A resigns: B sees the key vacant and, not allowed to campaign, leaves it so.
            a.resign()
            try await runA.value
            let vacant = try await recordB.wait("B sees no leader") { $0 == .follower(leader: nil) }
            let stillVacant = try await client.get(b.options.key)
            XCTAssertNil(stillVacant)
            XCTAssertFalse(recordB.all.contains { $0.state.isLeader || $0.state == .campaigning })

            // Allowed: B campaigns at its next check and wins.
            let index = recordB.all.count
            allowed.withLock { $0 = true }
            let won = try await recordB.wait("B elected once allowed", from: index) { $0.isLeader }
            XCTAssertGreaterThan(won.at, vacant.at)
            b.resign()
            try await runB.value
        }
    }

    func testALeaderWhoseKeyIsDeletedIsFencedAndCampaignsAgain() async throws {
        try await withEtcd { _, client in
            let (a, recordA, runA) = try campaigner(client, "A", ttl: .seconds(10))
            let elected = try await recordA.wait("A elected") { $0.isLeader }
            // An operator deletes the key (etcdctl del): A can no longer prove it leads.
            try await client.delete(a.options.key)
            _ = try await recordA.wait("A fenced") {
                if case .fenced(_, .keyLost) = $0 { return true }
                return false
            }
            let again = try await recordA.wait("A elected again", from: 2) { $0.isLeader }
            XCTAssertGreaterThan(try XCTUnwrap(term(again.state)).revision, try XCTUnwrap(term(elected.state)).revision)
            a.resign()
            try await runA.value
        }
    }

    func testElectionTimingsAreValidated() async throws {
        try await withEtcd { _, client in
            let election = LeaderElection(client: client, options: ElectionOptions(
                key: "/kvsh/test/leader", value: [], ttl: .seconds(3), renewInterval: .seconds(3)))
            await XCTAssertThrowsErrorAsync(try await election.run()) { error in
                guard case .invalidConfiguration(let message)? = error as? EtcdError else { return XCTFail("\(error)") }
                XCTAssertTrue(message.contains("renew interval"), message)
            }
        }
    }

    func testLeaderFencesItselfBeforeItsLeaseCouldExpireWhenEtcdStops() async throws {
        try await withEtcd(timeout: .milliseconds(500)) { cluster, client in
            let (a, recordA, runA) = try campaigner(client, "A", ttl: .seconds(3))
            let elected = try await recordA.wait("A elected") { $0.isLeader }
            let firstTerm = try XCTUnwrap(term(elected.state))
            // Let a renewal or two happen first.
            let initialDeadline = try XCTUnwrap(a.leadershipDeadline())
            while let deadline = a.leadershipDeadline(), deadline == initialDeadline {
                try await Task.sleep(for: .milliseconds(10))
            }

            cluster.members[0].signal(SIGSTOP)
            let stopped = ContinuousClock.now
            let (fenced, leaseCouldExpire) = try await assertFencesBeforeExpiry(a, recordA)
            print("fencing timing: etcd stopped → leader fenced in \(fenced.at - stopped); fenced "
                  + "\(leaseCouldExpire - fenced.at) before the lease could expire (TTL 3 s, margin \(a.options.fenceMargin))")

            // etcd comes back: A campaigns again and leads under a new term (new lease, larger revision).
            cluster.members[0].signal(SIGCONT)
            let again = try await recordA.wait("A elected again", from: recordA.all.count - 1) { $0.isLeader }
            let secondTerm = try XCTUnwrap(term(again.state))
            XCTAssertGreaterThan(secondTerm.revision, firstTerm.revision)
            XCTAssertNotEqual(secondTerm.leaseID, firstTerm.leaseID)

            a.resign()
            try await runA.value
        }
    }

    func testKillingTheEtcdRaftLeaderDoesNotChangeOurLeaderButLosingQuorumFencesIt() async throws {
        try await withEtcd(size: 3) { cluster, client in
            let (a, recordA, runA) = try campaigner(client, "A", ttl: .seconds(10), renewInterval: .seconds(1))
            let elected = try await recordA.wait("A elected") { $0.isLeader }

            let statuses = await client.health()
            let raftLeader = try XCTUnwrap(statuses.first { (try? $0.result.get())?.isLeader == true }?.endpoint)
            let victim = try XCTUnwrap(cluster.members.first { $0.clientURL == raftLeader })
            let killed = ContinuousClock.now
            victim.kill9()

            // The two others elect a new raft leader…
            let survivors = try EtcdClient(EtcdConfiguration(endpoints: cluster.endpoints.filter { $0 != raftLeader }))
            do {
                try await EtcdCluster.waitForLeader(survivors, timeout: .seconds(20))
            } catch {
                try await survivors.shutdown()
                throw error
            }
            try await survivors.shutdown()
            // …and A's renewals succeed again, under the same term.
            let afterElection = try XCTUnwrap(a.leadershipDeadline())
            let renewalDeadline = ContinuousClock.now + .seconds(15)
            while (a.leadershipDeadline() ?? afterElection) <= afterElection, ContinuousClock.now < renewalDeadline {
                try await Task.sleep(for: .milliseconds(10))
            }
            XCTAssertGreaterThan(try XCTUnwrap(a.leadershipDeadline()), afterElection, "a renewal succeeded after the etcd leader change")
            print("cluster timing: etcd raft leader killed → first renewal after it in \(ContinuousClock.now - killed)")
            XCTAssertEqual(a.state, elected.state)
            XCTAssertEqual(recordA.all.map(\.state), [.campaigning, elected.state], "no fencing, no change of leader")
            let holder = try await client.get(a.options.key)
            XCTAssertEqual(holder?.lease, term(elected.state)?.leaseID)

            // A second member dies: no quorum. etcd holds the keep-alives (about 7 s) and the lease cannot expire,
            // so nobody else could win — but A cannot prove it leads, and fences itself at its renew deadline.
            let quorumLost = ContinuousClock.now
            try XCTUnwrap(cluster.members.first { $0.running }).kill9()
            let (fenced, leaseCouldExpire) = try await assertFencesBeforeExpiry(a, recordA)
            print("cluster timing: quorum lost → leader fenced in \(fenced.at - quorumLost); fenced "
                  + "\(leaseCouldExpire - fenced.at) before the lease could expire (TTL 10 s, margin \(a.options.fenceMargin))")
            runA.cancel()
            _ = await runA.result
        }
    }
}

extension EtcdCluster {
    /// Polls until every endpoint of `client` answers and they agree on a raft leader.
    static func waitForLeader(_ client: EtcdClient, timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let statuses = await client.health()
            let leaders = Set(statuses.compactMap { try? $0.result.get().leader })
            if statuses.allSatisfy({ (try? $0.result.get()) != nil }), leaders.count == 1, leaders.first != 0 { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw HarnessError("the surviving etcd members did not elect a leader in \(timeout)")
    }
}
