// Leader election on one etcd key, with fencing.
//
// The campaign: grant a fresh lease, then one transaction — if the key does not exist (create_revision == 0), put our
// value on it with the lease, else read it (the holder). The winner keeps the lease alive every `renewInterval`
// (TTL/3 by default); the others watch the key from the transaction's revision + 1 and campaign again when it is
// deleted (resigned, or the lease expired).
//
// Fencing: etcd cannot expire the lease before `sendTime + TTL` of the last keep-alive that succeeded (etcd
// restarts the TTL when it receives the request, which is after we sent it). So the holder may act as leader until
// `lastSuccessfulSend + TTL − fenceMargin` and no longer: past that instant it reports `.fenced` whether or not etcd
// answers, so it has stopped acting before anybody else can win. The margin covers the time the owner needs to
// stop acknowledging writes after hearing it, and clock-rate differences. `leadershipDeadline()` gives the same
// instant synchronously, for a check at the moment of acknowledging a write (a process that was itself stopped —
// SIGSTOP, a long pause — must not trust that the watchdog task has run yet).

import Logging
import Synchronization

/// The holder of the leader key, as a follower sees it.
public struct LeaderInfo: Sendable, Equatable, CustomStringConvertible {
    public var value: [UInt8]
    public var leaseID: Int64
    /// The key's create revision: unique to this term, and larger for every later term.
    public var revision: Int64

    public var valueString: String { String(decoding: value, as: UTF8.self) }

    public var description: String { "\(valueString) (lease \(String(leaseID, radix: 16)), revision \(revision))" }

    init(_ kv: EtcdKeyValue) {
        value = kv.value
        leaseID = kv.lease
        revision = kv.createRevision
    }
}

/// Our own term as leader.
public struct LeaderTerm: Sendable, Equatable, CustomStringConvertible {
    public var leaseID: Int64
    /// The leader key's create revision: a fencing token that grows with every term (record it with each write).
    public var revision: Int64
    public var ttl: Duration

    public var description: String { "term \(revision) (lease \(String(leaseID, radix: 16)), TTL \(ttl))" }
}

/// Why a leader stopped being able to prove its leadership.
public enum FenceReason: Sendable, Equatable, CustomStringConvertible {
    /// No keep-alive succeeded in time: the lease might expire soon, and etcd may be unreachable or without quorum.
    case renewalOverdue
    /// etcd says the lease has expired or was revoked.
    case leaseLost
    /// The leader key was deleted or now belongs to another lease.
    case keyLost

    public var description: String {
        switch self {
        case .renewalOverdue: return "no lease renewal succeeded before the renew deadline (etcd unreachable or without quorum?)"
        case .leaseLost: return "etcd reports the lease expired or revoked"
        case .keyLost: return "the leader key was deleted or taken over"
        }
    }
}

/// Where the election stands. Moves: idle → campaigning → leader | follower; leader → fenced → campaigning…;
/// any → resigned (after ``LeaderElection/resign()``) or stopped (the task running it was cancelled).
public enum ElectionState: Sendable, Equatable {
    case idle
    /// Asking etcd for the key.
    case campaigning
    /// Someone else holds the key (nil: nobody, while we do not campaign, or etcd cannot be reached).
    case follower(leader: LeaderInfo?)
    /// We hold the key: act as leader until ``LeaderElection/leadershipDeadline()``.
    case leader(LeaderTerm)
    /// We held the key and can no longer prove it: stop acting as leader now. The campaign goes on.
    case fenced(LeaderTerm, FenceReason)
    /// We resigned: the lease was revoked (if etcd could be reached), and the election has ended.
    case resigned
    /// The task running the election was cancelled: we stopped renewing, without revoking (the lease expires).
    case stopped

    public var isLeader: Bool {
        if case .leader = self { return true }
        return false
    }
}

/// The settings of one campaign.
public struct ElectionOptions: Sendable {
    /// The leader key, such as `/kvsh/<cluster>/leader` (``ClusterKeys/leader``).
    public var key: String
    /// What the winner writes at the key (kvsh: its node record, so followers learn where the primary is).
    public var value: [UInt8]
    /// The lease TTL: how long a dead leader keeps the key. etcd grants at least 2 s; use 5–10 s with a
    /// multi-member etcd (an etcd leader change stalls keep-alives for ~3.5 s).
    public var ttl: Duration
    /// How often the leader renews (default TTL/3).
    public var renewInterval: Duration
    /// How long before the lease could expire the leader reports itself fenced (default max(TTL/5, 0.5 s), at most
    /// TTL/2).
    public var fenceMargin: Duration
    /// The pause before trying again after etcd could not be reached.
    public var retryInterval: Duration
    /// How often `shouldCampaign` is asked again while the key is vacant and it said no (a candidate waiting for
    /// its peers' offsets should not wait a whole `retryInterval` past the moment it may campaign).
    public var vacancyRecheckInterval: Duration

    public init(key: String, value: [UInt8], ttl: Duration = .seconds(5), renewInterval: Duration? = nil,
                fenceMargin: Duration? = nil, retryInterval: Duration = .milliseconds(500),
                vacancyRecheckInterval: Duration? = nil) {
        self.key = key
        self.value = value
        self.ttl = ttl
        self.renewInterval = renewInterval ?? ttl / 3
        self.fenceMargin = fenceMargin ?? min(max(ttl / 5, .milliseconds(500)), ttl / 2)
        self.retryInterval = retryInterval
        self.vacancyRecheckInterval = vacancyRecheckInterval ?? retryInterval
    }

    /// - Throws: ``EtcdError/invalidConfiguration(_:)`` unless 0 < margin < TTL and a renewal is due before the
    ///   renew deadline.
    func validate() throws {
        let ordered = fenceMargin > .zero && (fenceMargin < ttl) && renewInterval > .zero
            && (renewInterval < ttl - fenceMargin) && retryInterval > .zero && vacancyRecheckInterval > .zero
        guard ttl >= .seconds(1), ordered else {
            throw EtcdError.invalidConfiguration(
                "election timings: need TTL ≥ 1 s, 0 < fence margin < TTL, 0 < renew interval < TTL − margin "
                    + "(got TTL \(ttl), margin \(fenceMargin), renew every \(renewInterval))")
        }
    }

    /// The instant until which a leader whose last successful renewal was sent at `lastRenewalSend` may act.
    public func renewDeadline(after lastRenewalSend: ContinuousClock.Instant) -> ContinuousClock.Instant {
        lastRenewalSend + ttl - fenceMargin
    }
}

/// A campaign for one leader key. Create it, consume ``states``, call ``run()`` in a task of its own; ``resign()``
/// hands leadership over cleanly, cancelling the task stops without revoking (as a crash would).
public final class LeaderElection: Sendable {
    public let options: ElectionOptions
    private let client: EtcdClient
    private let logger: Logger
    private let shouldCampaign: @Sendable () async -> Bool

    /// Every change of ``state``, in order, for one consumer (the newest 256 are kept for a slow one). Ends after
    /// `resigned` or `stopped`.
    public let states: AsyncStream<ElectionState>
    private let statesContinuation: AsyncStream<ElectionState>.Continuation
    private let resignRequests: AsyncStream<Void>
    private let resignContinuation: AsyncStream<Void>.Continuation

    private struct Shared {
        var state: ElectionState = .idle
        var started = false
        /// While leader: the send time of the last keep-alive (or the grant) that succeeded.
        var lastRenewalSend: ContinuousClock.Instant?
        /// A lease we campaigned with and still may hold: revoked on resignation.
        var lease: Int64?
        /// Set by resign(): from then on, leadershipDeadline() is nil.
        var resigning = false
    }
    private let shared = Mutex(Shared())

    /// - Parameter shouldCampaign: asked before each campaign; return false to stay a follower (kvsh: a peer has a
    ///   higher replication offset, or this node has priority 0). Re-asked every `vacancyRecheckInterval` while nobody leads.
    public init(client: EtcdClient, options: ElectionOptions, logger: Logger = Logger(label: "kvsh.election"),
                shouldCampaign: @escaping @Sendable () async -> Bool = { true }) {
        self.client = client
        self.options = options
        self.logger = logger
        self.shouldCampaign = shouldCampaign
        (states, statesContinuation) = AsyncStream.makeStream(of: ElectionState.self, bufferingPolicy: .bufferingNewest(256))
        (resignRequests, resignContinuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    public var state: ElectionState { shared.withLock { $0.state } }

    /// While leader, the instant until which this node may act as leader (see the file's comment); nil otherwise.
    /// Check it before acknowledging a write.
    public func leadershipDeadline() -> ContinuousClock.Instant? {
        shared.withLock { shared in
            guard case .leader = shared.state, !shared.resigning, let last = shared.lastRenewalSend else { return nil }
            return options.renewDeadline(after: last)
        }
    }

    /// Asks ``run()`` to step down: it revokes the lease (so another node can win at once) and returns.
    /// ``leadershipDeadline()`` is nil from the moment this is called; stop acting as leader before calling it.
    public func resign() {
        shared.withLock { $0.resigning = true }
        resignContinuation.yield()
    }

    /// Campaigns, holds and follows until ``resign()`` (then returns) or cancellation (then throws
    /// `CancellationError`). etcd errors are logged and retried after `retryInterval`; they do not end the run.
    public func run() async throws {
        let first = shared.withLock { shared -> Bool in
            defer { shared.started = true }
            return !shared.started
        }
        guard first else { throw EtcdError.invalidConfiguration("LeaderElection.run() was called twice; create a new election") }
        try options.validate()

        let resigned = await withTaskGroup(of: Bool.self) { group in
            defer {
                // Resigned or cancelled: no longer the leader, whatever the state says until it is updated.
                shared.withLock { $0.lastRenewalSend = nil }
            }
            group.addTask {
                do { try await self.campaignLoop() } catch {}
                return false
            }
            group.addTask {
                for await _ in self.resignRequests { return true }
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
        if resigned {
            if let lease = shared.withLock({ $0.lease }) {
                do { try await client.revokeLease(lease) } catch {
                    logger.warning("resigning: could not revoke the lease; it expires by itself",
                                   metadata: ["lease": "\(String(lease, radix: 16))", "error": "\(error)"])
                }
            }
            finish(.resigned)
            return
        }
        finish(.stopped)
        throw CancellationError()
    }

    // MARK: The loop

    private func campaignLoop() async throws {
        var abandonedLease: Int64?
        while true {
            try Task.checkCancellation()
            do {
                let current = try await client.range(key: options.key)
                if let holder = current.kvs.first {
                    if holder.lease != 0, holder.lease == abandonedLease {
                        // Our own key from a term we were fenced out of (etcd came back before the lease expired):
                        // end it, so the next term starts with a fresh lease and a new revision.
                        try await client.revokeLease(holder.lease)
                        abandonedLease = nil
                        continue
                    }
                    set(.follower(leader: LeaderInfo(holder)))
                    try await follow(from: current.header.revision + 1, deadline: nil)
                    continue
                }
                guard await shouldCampaign() else {
                    set(.follower(leader: nil))
                    try await follow(from: current.header.revision + 1, deadline: .now + options.vacancyRecheckInterval)
                    continue
                }
                set(.campaigning)
                let grantSent = ContinuousClock.now
                let lease = try await client.grantLease(ttl: options.ttl)
                shared.withLock { $0.lease = lease.id }
                let result = try await client.txn(
                    compare: [.absent(options.key)],
                    success: [.put(key: options.key, value: options.value, lease: lease.id)],
                    failure: [.range(key: options.key)])
                var holder: EtcdKeyValue?
                if case .range(let kvs)? = result.responses.first { holder = kvs.first }
                // A retried transaction may find our own put from an attempt that did reach etcd.
                if result.succeeded || holder?.lease == lease.id {
                    let revision = result.succeeded ? result.header.revision : (holder?.createRevision ?? result.header.revision)
                    let term = LeaderTerm(leaseID: lease.id, revision: revision, ttl: lease.ttl)
                    shared.withLock { $0.lastRenewalSend = grantSent }
                    set(.leader(term))
                    let reason = try await hold(term)
                    set(.fenced(term, reason))
                    shared.withLock { $0.lastRenewalSend = nil }
                    abandonedLease = lease.id
                    // Best effort: if etcd is back, the others need not wait for the expiry.
                    if (try? await client.revokeLease(lease.id)) != nil { abandonedLease = nil }
                    shared.withLock { $0.lease = nil }
                } else {
                    try? await client.revokeLease(lease.id)
                    shared.withLock { $0.lease = nil }
                    if let holder {
                        set(.follower(leader: LeaderInfo(holder)))
                        try await follow(from: result.header.revision + 1, deadline: nil)
                    }
                }
            } catch let error where !(error is CancellationError) && !Task.isCancelled {
                logger.warning("election: etcd call failed; retrying",
                               metadata: ["key": "\(options.key)", "error": "\(error)"])
                if case .campaigning = state { set(.follower(leader: nil)) }
                try await Task.sleep(for: options.retryInterval)
            }
        }
    }

    /// Watches the leader key from `revision` and reports its holder until it is deleted, the watch breaks, or
    /// `deadline` passes.
    private func follow(from revision: Int64, deadline: ContinuousClock.Instant?) async throws {
        let watch = try await client.watch(options.key, fromRevision: revision)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for try await event in watch {
                    switch event.kind {
                    case .delete:
                        self.set(.follower(leader: nil))
                        return
                    case .put:
                        self.set(.follower(leader: LeaderInfo(event.kv)))
                    }
                }
            }
            if let deadline {
                group.addTask { try await Task.sleep(until: deadline) }
            }
            defer { group.cancelAll() }
            do {
                try await group.next()
            } catch let error as EtcdError {
                // The stream broke: the caller reads the key again and watches anew.
                logger.debug("election: watch ended", metadata: ["error": "\(error)"])
            }
        }
    }

    /// Renews the lease and watches the key until leadership can no longer be proven; returns why.
    private func hold(_ term: LeaderTerm) async throws -> FenceReason {
        try await withThrowingTaskGroup(of: FenceReason.self) { group in
            group.addTask { try await self.renew(term) }
            group.addTask { try await self.watchdog() }
            group.addTask { try await self.guardKey(term) }
            defer { group.cancelAll() }
            guard let reason = try await group.next() else { return .renewalOverdue }
            return reason
        }
    }

    /// Keep-alives every `renewInterval`, recording the send time of each that succeeds. Returns only when etcd says
    /// the lease is gone; failures are retried (the watchdog decides when it is too late).
    private func renew(_ term: LeaderTerm) async throws -> FenceReason {
        var next = (shared.withLock { $0.lastRenewalSend } ?? .now) + options.renewInterval
        while true {
            try await Task.sleep(until: next)
            let sent = ContinuousClock.now
            do {
                try await client.keepAlive(term.leaseID)
                shared.withLock { shared in
                    if let last = shared.lastRenewalSend, last >= sent { return }
                    shared.lastRenewalSend = sent
                }
                next = sent + options.renewInterval
            } catch EtcdError.leaseLost {
                return .leaseLost
            } catch let error as EtcdError {
                logger.warning("election: lease renewal failed", metadata: ["error": "\(error)"])
                // Try again soon, not a whole interval later: the deadline is what counts.
                next = .now + min(options.renewInterval, options.retryInterval) / 2
            }
        }
    }

    /// Returns `.renewalOverdue` at the renew deadline of the last successful renewal.
    private func watchdog() async throws -> FenceReason {
        while true {
            guard let last = shared.withLock({ $0.lastRenewalSend }) else { return .renewalOverdue }
            let deadline = options.renewDeadline(after: last)
            if ContinuousClock.now >= deadline { return .renewalOverdue }
            try await Task.sleep(until: deadline)
        }
    }

    /// Returns `.keyLost` when the leader key is deleted or put under another lease.
    private func guardKey(_ term: LeaderTerm) async throws -> FenceReason {
        var next = term.revision + 1
        while true {
            do {
                let watch = try await client.watch(options.key, fromRevision: next)
                for try await event in watch {
                    next = event.kv.modRevision + 1
                    if event.kind == .delete || event.kv.lease != term.leaseID { return .keyLost }
                }
            } catch let error as EtcdError {
                // Cannot watch: the renewals and the watchdog still decide; try again shortly.
                logger.debug("election: leader key watch ended", metadata: ["error": "\(error)"])
                try await Task.sleep(for: options.retryInterval)
            }
        }
    }

    // MARK: State

    private func set(_ new: ElectionState) {
        let changed = shared.withLock { shared -> Bool in
            guard shared.state != new else { return false }
            shared.state = new
            return true
        }
        if changed {
            logger.info("election state", metadata: ["key": "\(options.key)", "state": "\(new)"])
            statesContinuation.yield(new)
        }
    }

    private func finish(_ final: ElectionState) {
        set(final)
        statesContinuation.finish()
    }
}
