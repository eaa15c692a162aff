#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import KVStore
import Logging
import NIOCore
import Synchronization

/// What operators watch: per-command statistics, error counts, the slow log, the latency monitor, the store's
/// fsync, commit, checkpoint and backup figures, and readiness. Read by `INFO`, `SLOWLOG`, `LATENCY` and the
/// `/metrics`, `/health` and `/ready` endpoints (``MetricsEndpoint``).
///
/// One instance serves one server (``KVServer/Configuration/metrics``). It exists before the store is opened, so
/// that the endpoint can answer (not ready: loading) while a long log replays: call ``storeLoading()``, pass
/// ``storeEventObserver`` in the store's options, then ``storeOpened(_:)``.
///
/// Other parts of the server add their own figures and readiness conditions with ``addCollector(_:)`` and
/// ``addReadinessCheck(_:_:)`` (replication: role, offsets, lag; the replica link), see Docs/Operations.md.
public final class ServerMetrics: Sendable {
    public struct Settings: Sendable {
        /// Redis's `slowlog-log-slower-than`, in microseconds: negative turns the slow log off, 0 logs everything.
        public var slowlogLogSlowerThan = 10_000
        /// Redis's `slowlog-max-len`.
        public var slowlogMaxLength = 128
        /// Redis's `latency-monitor-threshold` in milliseconds; 0 records every fsync and checkpoint.
        public var latencyMonitorThreshold = 0
        /// Whether commands are timed and counted per command (INFO commandstats, latencystats, the slow log,
        /// `kvsh_command_*`); off, only the totals are kept.
        public var commandStatistics = true

        public init() {}
    }

    public let settings: Settings
    let slowLog: SlowLog
    let latencyMonitor: LatencyMonitor
    private let logger: Logger?

    private let loops = Mutex<[ObjectIdentifier: LoopStatistics]>([:])
    /// The totals at the last CONFIG RESETSTAT, subtracted from what INFO shows (Prometheus's counters never go back).
    private let baseline = Mutex(CommandStatisticsSnapshot())
    private let storeFigures = Mutex(StoreFigures())
    private let loading = Atomic<Bool>(false)
    private let stopping = Atomic<Bool>(false)
    private let attached = Mutex(Attachments())
    private let readinessChecks = Mutex<[(name: String, check: @Sendable () -> String?)]>([])
    private let collectors = Mutex<[@Sendable () -> [MetricFamily]]>([])

    private struct Attachments {
        weak var store: KVStore?
        weak var context: ServerContext?
    }

    public init(settings: Settings = Settings(), logger: Logger? = nil) {
        self.settings = settings
        self.logger = logger
        slowLog = SlowLog(threshold: settings.slowlogLogSlowerThan, maxLength: settings.slowlogMaxLength)
        latencyMonitor = LatencyMonitor(threshold: settings.latencyMonitorThreshold)
    }

    // MARK: Hooks for other parts of the server

    /// Adds a condition `/ready` checks: `check` returns nil when it holds, else the reason it does not (shown in
    /// the JSON body). Called on the endpoint's thread; must be quick and thread-safe.
    public func addReadinessCheck(_ name: String, _ check: @escaping @Sendable () -> String?) {
        readinessChecks.withLock { $0.append((name, check)) }
    }

    /// Adds figures to `/metrics`: `collect` is called for every scrape, on the endpoint's thread, and returns
    /// whole families (name them `kvsh_<area>_<what>_<unit>`, counters without `_total`; see ``MetricFamily``).
    public func addCollector(_ collect: @escaping @Sendable () -> [MetricFamily]) {
        collectors.withLock { $0.append(collect) }
    }

    // MARK: The store

    /// The store is being opened (its log replays): `/ready` answers 503 until ``storeOpened(_:)``.
    public func storeLoading() {
        loading.store(true, ordering: .releasing)
    }

    /// The store is open: its figures appear in `/metrics` and `/ready` checks it.
    public func storeOpened(_ store: KVStore) {
        attached.withLock { $0.store = store }
        loading.store(false, ordering: .releasing)
    }

    /// Pass as ``KVStore/Options/eventObserver``: counts fsyncs, commit batches, checkpoints and backups.
    public var storeEventObserver: @Sendable (StoreEvent) -> Void {
        { [weak self] event in self?.observe(event) }
    }

    private func observe(_ event: StoreEvent) {
        switch event {
        case .logWrite(let records, _):
            storeFigures.withLock { $0.commitBatch.observe(Double(records)) }
        case .fsync(let duration, let succeeded):
            storeFigures.withLock {
                $0.fsync.observe(duration.seconds)
                if !succeeded { $0.fsyncFailures += 1 }
            }
            latencyMonitor.record("fsync", duration: duration)
        case .checkpoint(let duration, let succeeded):
            storeFigures.withLock { $0.checkpoint.record(duration, succeeded: succeeded) }
            latencyMonitor.record("checkpoint", duration: duration)
            log(succeeded ? "checkpoint finished" : "checkpoint failed", duration: duration, succeeded: succeeded)
        case .backup(let duration, let succeeded):
            storeFigures.withLock { $0.backup.record(duration, succeeded: succeeded) }
            log(succeeded ? "backup finished" : "backup failed", duration: duration, succeeded: succeeded)
        }
    }

    private func log(_ message: Logger.Message, duration: Duration, succeeded: Bool) {
        let metadata: Logger.Metadata = ["event": "\(message.description.split(separator: " ")[0])",
                                         "duration_ms": "\(Int(duration.seconds * 1000))", "succeeded": "\(succeeded)"]
        if succeeded { logger?.info(message, metadata: metadata) } else { logger?.error(message, metadata: metadata) }
    }

    // MARK: The server

    func attach(_ context: ServerContext) {
        attached.withLock {
            $0.context = context
            if $0.store == nil { $0.store = context.store }
        }
        loading.store(false, ordering: .releasing)
    }

    /// The server is shutting down: `/ready` answers 503 from now on, so traffic goes elsewhere.
    func serverStopping() {
        stopping.store(true, ordering: .releasing)
    }

    /// The statistics of `loop`'s connections, made on first use.
    func loopStatistics(for loop: any EventLoop) -> LoopStatistics {
        loops.withLock { loops in
            if let statistics = loops[ObjectIdentifier(loop)] { return statistics }
            let statistics = LoopStatistics(eventLoop: loop)
            loops[ObjectIdentifier(loop)] = statistics
            return statistics
        }
    }

    /// Every loop's command statistics added up (since the server started), gathered on each loop in turn; the
    /// future completes on `eventLoop`. Loops that have stopped are left out.
    func commandStatistics(on eventLoop: any EventLoop) -> EventLoopFuture<CommandStatisticsSnapshot> {
        let all = loops.withLock { Array($0.values) }
        let parts = all.map { statistics in statistics.eventLoop.submit { statistics.snapshot() } }
        return EventLoopFuture.whenAllComplete(parts, on: eventLoop).map { results in
            var total = CommandStatisticsSnapshot()
            for case .success(let part) in results { total.add(part) }
            return total
        }
    }

    /// Every loop's statistics added up, blocking (call off the event loops: INFO and CONFIG RESETSTAT run on the
    /// thread pool).
    private func commandStatisticsBlocking() throws -> CommandStatisticsSnapshot {
        guard let loop = loops.withLock({ $0.values.first?.eventLoop }) else { return CommandStatisticsSnapshot() }
        return try commandStatistics(on: loop).wait()
    }

    /// The statistics since the last CONFIG RESETSTAT, blocking (call off the event loops).
    func commandStatisticsSinceReset() throws -> CommandStatisticsSnapshot {
        var total = try commandStatisticsBlocking()
        total.add(baseline.withLock { $0 }, sign: -1)
        return total
    }

    /// CONFIG RESETSTAT: INFO's command, error and latency statistics start again from zero (blocking: call off
    /// the event loops). The Prometheus counters keep counting: they never go back.
    func resetStatistics() throws {
        let now = try commandStatisticsBlocking()
        baseline.withLock { $0 = now }
    }

    // MARK: Readiness

    /// Whether the server should get traffic, and if not, why: the store is open and not loading, writes are
    /// enabled, the server accepts connections, and every added check holds.
    public func readiness() -> (ready: Bool, reasons: [String]) {
        var reasons: [String] = []
        let (store, context) = attached.withLock { ($0.store, $0.context) }
        if loading.load(ordering: .acquiring) {
            reasons.append("loading: the store is replaying its log")
        } else if let store {
            if let reason = store.readOnlyReason { reasons.append("writes disabled: the store is read-only (\(reason))") }
            if let failure = store.writeFailure { reasons.append("writes disabled after a failed write or fsync: \(failure)") }
        } else {
            reasons.append("the store is not open")
        }
        if !loading.load(ordering: .acquiring), context == nil { reasons.append("the server is not accepting connections yet") }
        if stopping.load(ordering: .acquiring) { reasons.append("shutting down") }
        for (name, check) in readinessChecks.withLock({ $0 }) {
            if let reason = check() { reasons.append("\(name): \(reason)") }
        }
        return (reasons.isEmpty, reasons)
    }

    // MARK: Prometheus

    /// Every family `/metrics` shows, from `commands` (``commandStatistics(on:)``) and the rest read now.
    func families(commands: CommandStatisticsSnapshot) -> [MetricFamily] {
        let (store, context) = attached.withLock { ($0.store, $0.context) }
        var families: [MetricFamily] = [
            .gauge("kvsh_build_info", help: "kvsh's version, as a label; always 1.", [([("version", KVServer.version)], 1)]),
        ]
        let ready = readiness().ready
        families.append(.gauge("kvsh_ready", help: "1 when /ready answers 200, else 0.", value: ready ? 1 : 0))
        families.append(.gauge("kvsh_loading", help: "1 while the store replays its log at startup.",
                               value: loading.load(ordering: .relaxed) ? 1 : 0))
        if let context {
            families += [
                .gauge("kvsh_uptime_seconds", help: "Time since the server started.", unit: "seconds",
                       value: (ContinuousClock.now - context.startedAt).seconds),
                .gauge("kvsh_connected_clients", help: "Client connections open now.",
                       value: Double(context.connectedClients.load(ordering: .relaxed))),
                .gauge("kvsh_max_clients", help: "The --maxclients limit.", value: Double(context.configuration.maxClients)),
                .counter("kvsh_connections_received", help: "Client connections accepted.",
                         value: Double(context.totalConnections.load(ordering: .relaxed))),
                .counter("kvsh_rejected_connections", help: "Connections refused because --maxclients were open.",
                         value: Double(context.rejectedConnections.load(ordering: .relaxed))),
                .counter("kvsh_commands", help: "Commands processed (every request, known or not).",
                         value: Double(context.totalCommands.load(ordering: .relaxed))),
            ]
        }
        families += commandFamilies(commands)
        families += [
            .counter("kvsh_net_input_bytes", help: "Bytes read from clients.", unit: "bytes", value: Double(commands.netInputBytes)),
            .counter("kvsh_net_output_bytes", help: "Bytes of replies handed to client sockets.", unit: "bytes",
                     value: Double(commands.netOutputBytes)),
            .gauge("kvsh_resident_memory_bytes", help: "The process's resident set.", unit: "bytes",
                   value: Double(ProcessMemory.residentBytes())),
            .gauge("kvsh_slowlog_length", help: "Entries in the slow log.", value: Double(slowLog.count)),
        ]
        if let store {
            let stats = store.statistics
            families += [
                .gauge("kvsh_keys", help: "Keys in the store.", value: Double(stats.keys)),
                .gauge("kvsh_payload_bytes", help: "Bytes of keys and values in the store.", unit: "bytes", value: Double(stats.payloadBytes)),
                .gauge("kvsh_log_bytes", help: "Size of the active write-ahead log file.", unit: "bytes", value: Double(stats.logBytes)),
                .gauge("kvsh_log_segments", help: "Write-ahead log files in the data directory.", value: Double(store.logSegments)),
                .gauge("kvsh_image_bytes", help: "Size of the newest image (checkpoint).", unit: "bytes", value: Double(stats.imageBytes)),
                .gauge("kvsh_last_sequence", help: "Sequence number of the last write.", value: Double(stats.lastSequence)),
                .gauge("kvsh_durable_sequence", help: "Sequence number of the last write known to be on disk.",
                       value: Double(stats.syncedSequence)),
                .gauge("kvsh_writes_enabled", help: "1 while the store accepts writes; 0 once a failed write or fsync disabled them, or read-only.",
                       value: store.writeFailure == nil && store.readOnlyReason == nil ? 1 : 0),
                .gauge("kvsh_recovery_duration_seconds", help: "How long opening the store (image load and log replay) took.",
                       unit: "seconds", value: store.openReport.duration.seconds),
                .gauge("kvsh_recovery_records", help: "Log records replayed when the store was opened.", value: Double(store.openReport.records)),
            ]
        }
        families += storeFigures.withLock { $0.families() }
        for collect in collectors.withLock({ $0 }) { families += collect() }
        return families
    }

    /// Buckets of `kvsh_command_duration_seconds`: every power of two from 4 µs to 2^24 µs (16.8 s), exact sums of
    /// the fine buckets the percentiles come from.
    static let commandBucketPowers = Array(2...24)

    private func commandFamilies(_ commands: CommandStatisticsSnapshot) -> [MetricFamily] {
        var durations = MetricFamily(name: "kvsh_command_duration_seconds",
                                     help: "Time to run each command, from its request being decoded to its reply being encoded (whole microseconds).",
                                     kind: .histogram, unit: "seconds", samples: [])
        var failed: [([(String, String)], Double)] = []
        var rejected: [([(String, String)], Double)] = []
        for name in commands.commands.keys.sorted() {
            guard let figures = commands.commands[name] else { continue }
            var cumulative: UInt64 = 0
            var next = 0
            var buckets: [(Double, UInt64)] = []
            for power in Self.commandBucketPowers {
                let end = LatencyBuckets.firstIndex(atPowerOfTwo: power)
                while next < end { cumulative += figures.histogram[next]; next += 1 }
                buckets.append((Double(1 << power) / 1_000_000, cumulative))
            }
            let labels = [("command", name)]
            durations.appendHistogram(labels: labels, buckets: buckets, count: figures.calls, sum: Double(figures.microseconds) / 1_000_000)
            failed.append((labels, Double(figures.failed)))
            rejected.append((labels, Double(figures.rejected)))
        }
        return [
            durations,
            .counter("kvsh_command_failed_calls", help: "Calls that returned an error while running, by command.", failed),
            .counter("kvsh_command_rejected_calls", help: "Calls refused before running (arity, syntax), by command.", rejected),
            .counter("kvsh_errors", help: "Error replies, by error code (ERR, WRONGTYPE, ...).",
                     commands.errors.keys.sorted().map { ([("code", $0)], Double(commands.errors[$0] ?? 0)) }),
        ]
    }
}

extension Duration {
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}

/// A histogram over fixed bounds, for the store's figures (observed under a lock: at most one observation per
/// write(2) or fsync, never per command).
struct FixedHistogram {
    let bounds: [Double]
    /// Observations in each bound's bucket (not cumulative), then those above the last bound.
    var counts: [UInt64]
    var sum = 0.0
    var count: UInt64 = 0

    init(bounds: [Double]) {
        self.bounds = bounds
        counts = [UInt64](repeating: 0, count: bounds.count + 1)
    }

    mutating func observe(_ value: Double) {
        let index = bounds.firstIndex { value <= $0 } ?? bounds.count
        counts[index] += 1
        sum += value
        count += 1
    }

    func family(_ name: String, help: String, unit: String?) -> MetricFamily {
        var family = MetricFamily(name: name, help: help, kind: .histogram, unit: unit, samples: [])
        var cumulative: UInt64 = 0
        let buckets = bounds.enumerated().map { index, bound in
            cumulative += counts[index]
            return (bound, cumulative)
        }
        family.appendHistogram(labels: [], buckets: buckets, count: count, sum: sum)
        return family
    }

    static let durationBounds = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60]
}

/// A maintenance task's figures: its durations, failures and the time of its last success.
struct TaskFigures {
    var durations = FixedHistogram(bounds: FixedHistogram.durationBounds)
    var failures: UInt64 = 0
    var lastSuccess: Double = 0

    mutating func record(_ duration: Duration, succeeded: Bool) {
        durations.observe(duration.seconds)
        if succeeded {
            var now = timespec()
            clock_gettime(CLOCK_REALTIME, &now)
            lastSuccess = Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
        } else {
            failures += 1
        }
    }
}

/// The store's figures, from its event observer.
struct StoreFigures {
    var fsync = FixedHistogram(bounds: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10])
    var fsyncFailures: UInt64 = 0
    var commitBatch = FixedHistogram(bounds: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384, 65536])
    var checkpoint = TaskFigures()
    var backup = TaskFigures()

    func families() -> [MetricFamily] {
        [
            fsync.family("kvsh_fsync_duration_seconds", help: "Time each fsync (fdatasync) of the write-ahead log took.", unit: "seconds"),
            .counter("kvsh_fsync_failures", help: "Failed fsyncs of the log (each disables writes).", value: Double(fsyncFailures)),
            commitBatch.family("kvsh_commit_batch_size", help: "Records written to the log per write(2) (group commit batch).", unit: nil),
            checkpoint.durations.family("kvsh_checkpoint_duration_seconds",
                                        help: "Time each checkpoint (compaction, KVSH.COMPACT) took, whether it succeeded or not.", unit: "seconds"),
            .counter("kvsh_checkpoint_failures", help: "Checkpoints that failed.", value: Double(checkpoint.failures)),
            .gauge("kvsh_last_checkpoint_success_timestamp_seconds", help: "Unix time of the last successful checkpoint; 0 for none yet.",
                   unit: "seconds", value: checkpoint.lastSuccess),
            backup.durations.family("kvsh_backup_duration_seconds", help: "Time each backup took, whether it succeeded or not.", unit: "seconds"),
            .counter("kvsh_backup_failures", help: "Backups that failed.", value: Double(backup.failures)),
            .gauge("kvsh_last_backup_success_timestamp_seconds", help: "Unix time of the last successful backup; 0 for none yet.",
                   unit: "seconds", value: backup.lastSuccess),
        ]
    }
}
