// What operators watch, in process: INFO's commandstats/errorstats/latencystats, SLOWLOG, LATENCY, CONFIG RESETSTAT,
// and the HTTP endpoint's /metrics, /health and /ready (503 while the store loads and after a failed fsync).

#if canImport(Glibc)
import Glibc
#endif
import KVTestSupport
import KVStore
import Logging
import Testing
@testable import KVCommands
@testable import RESP
@testable import KVServer

/// A server with its metrics endpoint, on a store whose file system a test can break.
private final class OperationsServer {
    let directory: String
    let fileSystem = FaultInjectionFileSystem()
    let metrics: ServerMetrics
    let store: KVStore
    let server: KVServer
    let endpoint: MetricsEndpoint
    let port: Int
    let metricsPort: Int

    init(settings: ServerMetrics.Settings = ServerMetrics.Settings()) throws {
        directory = try makeTempDir()
        let logger = Logger(label: "kvsh.operations.test", factory: { _ in SwiftLogNoOpLogHandler() })
        metrics = ServerMetrics(settings: settings, logger: logger)
        do {
            endpoint = try MetricsEndpoint(host: "127.0.0.1", port: 0, metrics: metrics, logger: logger)
            var options = KVStore.Options(syncPolicy: .always, fileSystem: fileSystem)
            options.eventObserver = metrics.storeEventObserver
            store = try KVStore(directory: directory + "/data", options: options)
            metrics.storeOpened(store)
            var configuration = KVServer.Configuration(host: "127.0.0.1", port: 0, threads: 2)
            configuration.metrics = metrics
            server = try KVServer(store: store, configuration: configuration, logger: logger)
            guard let port = server.localAddress?.port, let metricsPort = endpoint.localAddress?.port else {
                throw TestError("no local port")
            }
            self.port = port
            self.metricsPort = metricsPort
        } catch {
            removeTree(directory)
            throw error
        }
    }

    func connect() throws -> RESPClient { try RESPClient(port: port) }

    func stop() {
        server.shutdown()
        endpoint.shutdown()
        try? store.close()
        removeTree(directory)
    }
}

/// One HTTP/1.1 exchange with `Connection: close`: the status code, the headers (names lowercased) and the body.
func httpExchange(port: Int, _ request: String) throws -> (status: Int, headers: [String: String], body: String) {
    let client = try RESPClient(port: port)
    try client.send(request)
    let response = try client.readUntilClosed().text
    guard let split = response.range(of: "\r\n\r\n") else { throw TestError("no end of the headers in \"\(response)\"") }
    let lines = response[..<split.lowerBound].split(separator: "\r\n").map(String.init)
    guard let statusLine = lines.first, statusLine.hasPrefix("HTTP/1.1 "), let status = Int(statusLine.dropFirst(9).prefix(3)) else {
        throw TestError("no status line in \"\(response)\"")
    }
    var headers: [String: String] = [:]
    for line in lines.dropFirst() {
        guard let colon = line.firstIndex(of: ":") else { continue }
        headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: " ")
    }
    return (status, headers, String(response[split.upperBound...]))
}

func httpGet(port: Int, _ path: String, headers: String = "") throws -> (status: Int, headers: [String: String], body: String) {
    try httpExchange(port: port, "GET \(path) HTTP/1.1\r\nHost: localhost\r\n\(headers)Connection: close\r\n\r\n")
}

private extension StringProtocol {
    func trimmingCharacters(in character: Character) -> String {
        String(drop { $0 == character }.reversed().drop { $0 == character }.reversed())
    }
}

/// The `field:value` lines of an INFO reply.
private func infoFields(_ reply: Wire) -> [String: String] {
    var fields: [String: String] = [:]
    for line in (reply.string ?? "").split(separator: "\r\n") where !line.hasPrefix("#") {
        guard let colon = line.firstIndex(of: ":") else { continue }
        fields[String(line[..<colon])] = String(line[line.index(after: colon)...])
    }
    return fields
}

/// A Prometheus text exposition's samples (`name{labels}` → value).
private func samples(_ exposition: String) -> [String: Double] {
    var result: [String: Double] = [:]
    for line in exposition.split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else { continue }
        result[String(line[..<space])] = value
    }
    return result
}

@Suite("Operations: INFO statistics, SLOWLOG, LATENCY, the metrics endpoint", .timeLimit(.minutes(10)))
struct OperationsTests {
    @Test("INFO commandstats, errorstats and latencystats in Redis 7.0's shapes; CONFIG RESETSTAT starts them again")
    func infoStatistics() throws {
        let server = try OperationsServer()
        defer { server.stop() }
        let client = try server.connect()
        #expect(try client.call("SET", "k", "1") == .simple("OK"))
        for _ in 0..<3 { #expect(try client.call("GET", "k") == .text("1")) }
        #expect(try client.call("APPEND", "k", "x") == .integer(2))
        #expect(try client.call("INCR", "k") == .error("ERR value is not an integer or out of range"))  // failed
        #expect(try client.call("GET") == .error("ERR wrong number of arguments for 'get' command"))  // rejected
        if case .error = try client.call("NOSUCH", "x") {} else { Issue.record("NOSUCH did not fail") }  // unknown: errorstats only

        let commandStats = try client.call("INFO", "commandstats")
        let text = commandStats.string ?? ""
        #expect(text.hasPrefix("# Commandstats\r\n"), "\(text)")
        let fields = infoFields(commandStats)
        let get = try #require(fields["cmdstat_get"], "\(text)")
        #expect(get.wholeMatch(of: /calls=3,usec=\d+,usec_per_call=\d+\.\d\d,rejected_calls=1,failed_calls=0/) != nil, "\(get)")
        #expect(fields["cmdstat_incr"]?.wholeMatch(of: /calls=1,usec=\d+,usec_per_call=\d+\.\d\d,rejected_calls=0,failed_calls=1/) != nil, "\(text)")
        #expect(fields["cmdstat_set"]?.hasPrefix("calls=1,") == true && fields["cmdstat_append"]?.hasPrefix("calls=1,") == true, "\(text)")
        #expect(fields["cmdstat_nosuch"] == nil, "\(text)")
        #expect(!text.contains("# Errorstats"), "only the section asked for: \(text)")

        let errorStats = infoFields(try client.call("INFO", "errorstats"))
        #expect(errorStats == ["errorstat_ERR": "count=3"], "\(errorStats)")
        let latency = infoFields(try client.call("INFO", "latencystats"))
        let percentiles = try #require(latency["latency_percentiles_usec_get"], "\(latency)")
        #expect(percentiles.wholeMatch(of: /p50=\d+\.000,p99=\d+\.000,p99\.9=\d+\.000/) != nil, "\(percentiles)")
        // Defaults as Redis's: Errorstats and the new Stats fields, not Commandstats or Latencystats.
        let all = try client.call("INFO").string ?? ""
        #expect(all.contains("# Errorstats\r\nerrorstat_ERR:count=3\r\n") && !all.contains("# Commandstats"), "\(all)")
        let stats = infoFields(try client.call("INFO", "stats"))
        #expect(stats["total_error_replies"] == "3" && Int(stats["total_net_input_bytes"] ?? "") ?? 0 > 0
                && Int(stats["total_net_output_bytes"] ?? "") ?? 0 > 0, "\(stats)")
        #expect(try client.call("INFO", "everything").string?.contains("# Latencystats") == true)

        #expect(try client.call("CONFIG", "RESETSTAT") == .simple("OK"))
        let afterReset = infoFields(try client.call("INFO", "commandstats", "errorstats"))
        #expect(afterReset["cmdstat_get"] == nil && afterReset["errorstat_ERR"] == nil, "\(afterReset)")
        #expect(try client.call("GET", "k") == .text("1x"))
        #expect(infoFields(try client.call("INFO", "commandstats"))["cmdstat_get"]?.hasPrefix("calls=1,") == true)
    }

    @Test("SLOWLOG GET, LEN and RESET: Redis's entry shape, its truncation of long commands, the length limit")
    func slowlog() throws {
        var settings = ServerMetrics.Settings()
        settings.slowlogLogSlowerThan = 0  // every command
        settings.slowlogMaxLength = 4
        let server = try OperationsServer(settings: settings)
        defer { server.stop() }
        let client = try server.connect()
        #expect(try client.call("CLIENT", "SETNAME", "probe") == .simple("OK"))
        let long = String(repeating: "v", count: 200)
        #expect(try client.call("SET", "k", long) == .simple("OK"))
        let keys = (0..<40).map { "key\($0)" }
        #expect(try client.call([Array("DEL".utf8)] + keys.map { Array($0.utf8) }) == .integer(0))
        #expect(try client.call("SLOWLOG", "LEN") == .integer(3))  // CLIENT, SET, DEL; LEN is logged once it ran

        guard case .array(let entries) = try client.call("SLOWLOG", "GET", "2"), entries.count == 2 else {
            Issue.record("SLOWLOG GET 2 did not reply two entries")
            return
        }
        // Newest first: SLOWLOG LEN, then DEL.
        guard case .array(let del) = entries[1], del.count == 6,
              case .integer(let id) = del[0], case .integer(let time) = del[1], case .integer(let micros) = del[2],
              case .array(let arguments) = del[3] else {
            Issue.record("not Redis's entry shape: \(entries[1])")
            return
        }
        #expect(id == 2 && time > 1_700_000_000 && micros >= 0)
        #expect(arguments.count == 32 && arguments.first == .text("DEL") && arguments[30] == .text("key29"))
        #expect(arguments.last == .text("... (10 more arguments)"))
        #expect(del[4].string?.hasPrefix("127.0.0.1:") == true && del[5] == .text("probe"), "\(del)")
        guard case .array(let set) = try client.call("SLOWLOG", "GET", "-1"), set.count == 4,
              case .array(let setEntry) = set[3], case .array(let setArguments) = setEntry[3] else {
            Issue.record("SLOWLOG GET -1 did not reply the 4 entries kept")
            return
        }
        #expect(setArguments == [.text("SET"), .text("k"), .text(String(repeating: "v", count: 128) + "... (72 more bytes)")])
        #expect(try client.call("SLOWLOG", "GET", "-2") == .error("ERR count should be greater than or equal to -1"))
        #expect(try client.call("SLOWLOG", "RESET") == .simple("OK"))
        #expect(try client.call("SLOWLOG", "LEN") == .integer(1))  // SLOWLOG RESET itself, as in Redis
        if case .error(let message) = try client.call("SLOWLOG", "NOPE") {
            #expect(message.hasPrefix("ERR unknown subcommand"))
        } else {
            Issue.record("SLOWLOG NOPE did not fail")
        }
    }

    @Test("the slow log keeps only commands at least as slow as its threshold; a negative one turns it off")
    func slowlogThreshold() throws {
        var settings = ServerMetrics.Settings()
        settings.slowlogLogSlowerThan = -1
        let server = try OperationsServer(settings: settings)
        defer { server.stop() }
        let client = try server.connect()
        for index in 0..<20 { #expect(try client.call("SET", "k\(index)", "v") == .simple("OK")) }
        #expect(try client.call("SLOWLOG", "LEN") == .integer(0))
        #expect(SlowLog(threshold: 10_000, maxLength: 1).isSlow(microseconds: 9_999) == false)
        #expect(SlowLog(threshold: 10_000, maxLength: 1).isSlow(microseconds: 10_000) == true)
    }

    @Test("LATENCY LATEST, HISTORY and RESET report the fsync and checkpoint events")
    func latencyMonitor() throws {
        let server = try OperationsServer()
        defer { server.stop() }
        let client = try server.connect()
        #expect(try client.call("SET", "k", "v") == .simple("OK"))  // --sync always: an fsync
        if case .bulk = try client.call("KVSH.COMPACT") {} else { Issue.record("KVSH.COMPACT failed") }
        guard case .array(let latest) = try client.call("LATENCY", "LATEST") else {
            Issue.record("LATENCY LATEST is not an array")
            return
        }
        let names = latest.compactMap { entry -> String? in
            guard case .array(let fields) = entry, fields.count == 4, case .integer(let time) = fields[1], time > 0,
                  case .integer(let last) = fields[2], case .integer(let maximum) = fields[3], last <= maximum else { return nil }
            return fields[0].string
        }
        #expect(names == ["checkpoint", "fsync"], "\(latest)")
        guard case .array(let history) = try client.call("LATENCY", "HISTORY", "fsync"), !history.isEmpty else {
            Issue.record("no fsync history")
            return
        }
        for sample in history {
            guard case .array(let pair) = sample, pair.count == 2, case .integer = pair[0], case .integer = pair[1] else {
                Issue.record("not a [time, latency] pair: \(sample)")
                continue
            }
        }
        #expect(try client.call("LATENCY", "HISTORY", "nothing") == .array([]))
        #expect(try client.call("LATENCY", "RESET", "fsync") == .integer(1))
        #expect(try client.call("LATENCY", "RESET") == .integer(1))
        #expect(try client.call("LATENCY", "LATEST") == .array([]))
    }

    @Test("/health, /ready and /metrics; 404, 405 and 400 for what it does not serve; HEAD; OpenMetrics when asked")
    func endpoint() throws {
        let server = try OperationsServer()
        defer { server.stop() }
        let client = try server.connect()
        for index in 0..<10 { #expect(try client.call("SET", "k\(index)", "v") == .simple("OK")) }

        let health = try httpGet(port: server.metricsPort, "/health")
        #expect(health.status == 200 && health.body == "{\"status\":\"ok\"}\n" && health.headers["content-type"] == "application/json")
        let ready = try httpGet(port: server.metricsPort, "/ready")
        #expect(ready.status == 200 && ready.body == "{\"status\":\"ready\",\"reasons\":[]}\n", "\(ready)")

        let metrics = try httpGet(port: server.metricsPort, "/metrics?x=1")
        #expect(metrics.status == 200 && metrics.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
        let values = samples(metrics.body)
        #expect(values["kvsh_keys"] == 10 && values["kvsh_connected_clients"] == 1 && values["kvsh_writes_enabled"] == 1, "\(metrics.body)")
        #expect(values["kvsh_command_duration_seconds_count{command=\"set\"}"] == 10, "\(metrics.body)")
        #expect(values["kvsh_command_duration_seconds_bucket{command=\"set\",le=\"+Inf\"}"] == 10)
        #expect((values["kvsh_fsync_duration_seconds_count"] ?? 0) >= 10 && (values["kvsh_commit_batch_size_count"] ?? 0) >= 10)
        #expect((values["kvsh_commands_total"] ?? 0) >= 10 && (values["kvsh_resident_memory_bytes"] ?? 0) > 0)
        #expect(values["kvsh_log_segments"] == 1 && (values["kvsh_log_bytes"] ?? 0) > 0)
        #expect(metrics.body.contains("# TYPE kvsh_commands_total counter\n") && !metrics.body.contains("# EOF"))

        let open = try httpGet(port: server.metricsPort, "/metrics", headers: "Accept: application/openmetrics-text; version=1.0.0\r\n")
        #expect(open.status == 200 && open.headers["content-type"] == "application/openmetrics-text; version=1.0.0; charset=utf-8")
        #expect(open.body.hasSuffix("# EOF\n") && open.body.contains("# TYPE kvsh_commands counter\n")
                && open.body.contains("# UNIT kvsh_fsync_duration_seconds seconds\n"), "\(open.body)")

        let missing = try httpGet(port: server.metricsPort, "/nothing")
        #expect(missing.status == 404)
        let post = try httpExchange(port: server.metricsPort, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
        #expect(post.status == 405 && post.headers["allow"] == "GET, HEAD")
        let head = try httpExchange(port: server.metricsPort, "HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(head.status == 200 && head.body.isEmpty && head.headers["content-length"] == "16")
        let garbage = try httpExchange(port: server.metricsPort, "NOT HTTP AT ALL\r\n\r\n")
        #expect(garbage.status == 400)
        // The server's clients were never disturbed.
        #expect(try client.call("GET", "k0") == .text("v"))
    }

    @Test("/ready answers 503 while writes are disabled after a failed fsync, with the reason")
    func readyAfterFailedFsync() throws {
        let server = try OperationsServer()
        defer { server.stop() }
        let client = try server.connect()
        #expect(try client.call("SET", "a", "1") == .simple("OK"))
        #expect(try httpGet(port: server.metricsPort, "/ready").status == 200)
        server.fileSystem.inject(.fdatasync)
        if case .error = try client.call("SET", "b", "2") {} else { Issue.record("the SET whose fsync failed was acknowledged") }
        let ready = try httpGet(port: server.metricsPort, "/ready")
        #expect(ready.status == 503, "\(ready)")
        #expect(ready.body.hasPrefix("{\"status\":\"unavailable\",\"reasons\":[\"writes disabled after a failed write or fsync: "), "\(ready.body)")
        let values = samples(try httpGet(port: server.metricsPort, "/metrics").body)
        #expect(values["kvsh_writes_enabled"] == 0 && values["kvsh_ready"] == 0 && values["kvsh_fsync_failures_total"] == 1)
        #expect(try httpGet(port: server.metricsPort, "/health").status == 200)  // alive, though not ready
    }

    @Test("/ready answers 503 while the store loads and until the server accepts connections, then 200")
    func readyWhileLoading() throws {
        let directory = try makeTempDir()
        defer { removeTree(directory) }
        let logger = Logger(label: "kvsh.operations.test", factory: { _ in SwiftLogNoOpLogHandler() })
        let metrics = ServerMetrics(logger: logger)
        metrics.storeLoading()  // as kvsh serve does before opening the store
        let endpoint = try MetricsEndpoint(host: "127.0.0.1", port: 0, metrics: metrics, logger: logger)
        defer { endpoint.shutdown() }
        let port = try #require(endpoint.localAddress?.port)
        let loading = try httpGet(port: port, "/ready")
        #expect(loading.status == 503 && loading.body == "{\"status\":\"unavailable\",\"reasons\":[\"loading: the store is replaying its log\"]}\n")
        #expect(samples(try httpGet(port: port, "/metrics").body)["kvsh_loading"] == 1)

        var options = KVStore.Options()
        options.eventObserver = metrics.storeEventObserver
        let store = try KVStore(directory: directory + "/data", options: options)
        defer { try? store.close() }
        metrics.storeOpened(store)
        let opened = try httpGet(port: port, "/ready")
        #expect(opened.status == 503 && opened.body.contains("the server is not accepting connections yet"), "\(opened)")

        var configuration = KVServer.Configuration(host: "127.0.0.1", port: 0, threads: 1)
        configuration.metrics = metrics
        let server = try KVServer(store: store, configuration: configuration, logger: logger)
        defer { server.shutdown() }
        #expect(try httpGet(port: port, "/ready").status == 200)
        // Added conditions (replication's link, say) count too.
        metrics.addReadinessCheck("replica link") { "down" }
        let down = try httpGet(port: port, "/ready")
        #expect(down.status == 503 && down.body.contains("\"replica link: down\""), "\(down)")
        server.shutdown()
        let stopping = try httpGet(port: port, "/ready")
        #expect(stopping.status == 503 && stopping.body.contains("\"shutting down\""), "\(stopping)")
    }

    @Test("collectors add families to /metrics")
    func collectors() throws {
        let server = try OperationsServer()
        defer { server.stop() }
        server.metrics.addCollector {
            [.gauge("kvsh_replica_lag_bytes", help: "Lag.", unit: "bytes", [([("replica", "a\"b")], 42)])]
        }
        let body = try httpGet(port: server.metricsPort, "/metrics").body
        #expect(body.contains("# TYPE kvsh_replica_lag_bytes gauge\nkvsh_replica_lag_bytes{replica=\"a\\\"b\"} 42\n"), "\(body)")
    }

    @Test("latency buckets: every power of two is a boundary; percentiles as HdrHistogram reports them")
    func latencyBuckets() {
        var previous = -1
        for value: UInt64 in [0, 1, 7, 8, 9, 15, 16, 17, 1000, 1 << 20, (1 << 20) + 1, 1 << 39, 1 << 45] {
            let index = LatencyBuckets.index(microseconds: value)
            #expect(index >= previous, "\(value)")
            #expect(index < LatencyBuckets.count)
            if value < 1 << 40 {
                #expect(LatencyBuckets.lowerBound(index) <= value && value < LatencyBuckets.lowerBound(index + 1), "\(value)")
            }
            previous = index
        }
        for power in 0..<40 {
            let index = LatencyBuckets.firstIndex(atPowerOfTwo: power)
            #expect(LatencyBuckets.lowerBound(index) == 1 << UInt64(power), "2^\(power)")
        }
        var counts = [UInt64](repeating: 0, count: LatencyBuckets.count)
        for value: UInt64 in 1...100 { counts[LatencyBuckets.index(microseconds: value)] += 1 }
        #expect(LatencyBuckets.value(atPercentile: 50, of: counts) == 51)  // 50's bucket is 48...51
        #expect(LatencyBuckets.value(atPercentile: 100, of: counts) == 103)  // 100's is 96...103
        #expect(LatencyBuckets.value(atPercentile: 50, of: [UInt64](repeating: 0, count: LatencyBuckets.count)) == 0)
        #expect(OperationsCommands.fixed(10, per: 3) == "3.33" && OperationsCommands.fixed(5, per: 2) == "2.50"
                && OperationsCommands.fixed(0, per: 0) == "0.00" && OperationsCommands.fixed(1, per: 200) == "0.01")
    }
}
