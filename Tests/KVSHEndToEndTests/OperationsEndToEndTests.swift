// `kvsh serve` watched as operators watch it: a real Prometheus scraping --metrics-port, the exposition checked by
// the prometheus_client parser, redis-cli's --latency and --stat and SLOWLOG GET, and the JSON log lines.
//
// Uses ServerProcess and freePort (ClientTests.swift), ExternalTool and RedisConnection (ServerTests.swift).

import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One HTTP/1.0 GET on loopback (so the body comes whole, never chunked, and the connection closes after it): the
/// status and the body. Every wait has a deadline.
func httpGet(port: Int, _ target: String, timeout: Duration = .seconds(10)) throws -> (status: Int, body: String) {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { throw HarnessError("socket: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = UInt16(port).bigEndian
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { throw HarnessError("connect to port \(port): \(String(cString: strerror(errno)))") }
    let request = Array("GET \(target) HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".utf8)
    guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else {
        throw HarnessError("send: \(String(cString: strerror(errno)))")
    }
    let deadline = ContinuousClock.now + timeout
    var response: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        guard ContinuousClock.now < deadline else { throw HarnessError("no whole response from port \(port) within \(timeout)") }
        guard poll(&entry, 1, 100) > 0 else { continue }
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n > 0 { response += chunk[..<n] } else if n == 0 { break } else if errno != EINTR { throw HarnessError("recv: \(String(cString: strerror(errno)))") }
    }
    let text = String(decoding: response, as: UTF8.self)
    guard text.hasPrefix("HTTP/1."), let status = Int(text.dropFirst(9).prefix(3)), let split = text.range(of: "\r\n\r\n") else {
        throw HarnessError("not an HTTP response: \"\(escaped(response))\"")
    }
    return (status, String(text[split.upperBound...]))
}

/// A PromQL instant query's results: each series' labels and value.
private func prometheusQuery(port: Int, _ query: String) throws -> [(labels: [String: String], value: Double)] {
    let encoded = query.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? query
    let (status, body) = try httpGet(port: port, "/api/v1/query?query=\(encoded)")
    guard status == 200, let json = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
          let data = json["data"] as? [String: Any], let result = data["result"] as? [[String: Any]] else {
        throw HarnessError("Prometheus answered \(status): \(body)")
    }
    return result.compactMap { series in
        guard let labels = series["metric"] as? [String: String], let pair = series["value"] as? [Any], pair.count == 2,
              let text = pair[1] as? String, let value = Double(text) else { return nil }
        return (labels, value)
    }
}

private func runs(with tool: String?) -> Bool { tool != nil || ExternalTool.required }

private func require(_ tool: String?, _ name: String, install: String) -> String? {
    if tool == nil {
        Issue.record("\(name) is required here (KVSH_REQUIRE_TOOLS or CI is set) but not found: \(install), or run `make test-deps` (.ci/install-deps test)")
    }
    return tool
}

/// python3 with redis-py and prometheus_client.
private let pythonWithPrometheusClient: String? = {
    guard let python = ExternalTool.python, let sandbox = try? Sandbox(),
          let result = try? ExternalTool.run(python, ["-c", "import prometheus_client.parser, prometheus_client.openmetrics.parser"],
                                             sandbox: sandbox, timeout: .seconds(30)) else { return nil }
    return result.termination == .exited(0) ? python : nil
}()

/// Checks two scrapes with load between them: both formats parse, no counter or histogram sample goes down or
/// disappears, buckets are cumulative and end at `_count`, and the command counters moved.
private let expositionCheck = #"""
import sys, urllib.request, redis
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.openmetrics.parser import text_string_to_metric_families as openmetrics_families

metrics_port, port = int(sys.argv[1]), int(sys.argv[2])

def scrape(accept=None):
    headers = {"Accept": accept} if accept else {}
    request = urllib.request.Request(f"http://127.0.0.1:{metrics_port}/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers.get("Content-Type"), response.read().decode()

def samples(text):
    result = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            result[(sample.name, tuple(sorted(sample.labels.items())))] = (family.type, sample.value)
    return result

problems = []
client = redis.Redis(port=port)
client.set("a", "1")
client.get("a")
first = samples(scrape()[1])
for index in range(200):
    client.set(f"k{index}", "v")
    client.get(f"k{index}")
try:
    client.incr("a" * 3 + "x")
    client.execute_command("NOSUCH")
except redis.ResponseError:
    pass
second = samples(scrape()[1])

for key, (kind, value) in first.items():
    if kind not in ("counter", "histogram"):
        continue
    if key not in second:
        problems.append(f"{key} disappeared")
    elif second[key][1] < value:
        problems.append(f"{key} went down: {value} -> {second[key][1]}")

histograms = {}
for (name, labels), (kind, value) in second.items():
    if kind == "histogram" and name.endswith("_bucket"):
        rest = tuple(item for item in labels if item[0] != "le")
        le = dict(labels)["le"]
        histograms.setdefault((name[:-len("_bucket")], rest), []).append((float(le), value))
for (name, labels), buckets in histograms.items():
    buckets.sort()
    counts = [count for _, count in buckets]
    if counts != sorted(counts):
        problems.append(f"{name}{labels} buckets are not cumulative: {buckets}")
    if buckets[-1][0] != float("inf"):
        problems.append(f"{name}{labels} has no +Inf bucket")
    elif second.get((name + "_count", labels), (None, None))[1] != buckets[-1][1]:
        problems.append(f"{name}{labels}: +Inf bucket {buckets[-1][1]} != _count")
if not histograms:
    problems.append("no histograms")

def value(table, name, **labels):
    return table.get((name, tuple(sorted(labels.items()))), (None, 0))[1]
if value(second, "kvsh_commands_total") <= value(first, "kvsh_commands_total") + 400:
    problems.append("kvsh_commands_total did not move by the 400 commands sent")
if value(second, "kvsh_command_duration_seconds_count", command="set") < 201:
    problems.append("kvsh_command_duration_seconds_count{command=set} did not count the SETs")
if value(second, "kvsh_errors_total", code="ERR") < 2:
    problems.append("kvsh_errors_total{code=ERR} did not count the errors")

content_type, text = scrape("application/openmetrics-text; version=1.0.0; charset=utf-8")
if not content_type.startswith("application/openmetrics-text"):
    problems.append(f"OpenMetrics asked for, {content_type} served")
families = list(openmetrics_families(text))
if not any(family.name == "kvsh_command_duration_seconds" for family in families):
    problems.append("the OpenMetrics exposition lacks kvsh_command_duration_seconds")

print("\n".join(problems) if problems else "ok")
sys.exit(1 if problems else 0)
"""#

@Suite("kvsh serve watched by Prometheus and redis-cli", .timeLimit(.minutes(10)))
struct OperationsEndToEndTests {
    @Test("a real Prometheus scrapes --metrics-port and finds the series, with values that move under load",
          .enabled(if: runs(with: ExternalTool.path("prometheus")), "prometheus is not installed (apt-get install prometheus)"))
    func prometheusScrapes() throws {
        guard let prometheus = require(ExternalTool.path("prometheus"), "prometheus", install: "apt-get install prometheus") else { return }
        let sandbox = try Sandbox()
        let metricsPort = try freePort()
        let server = try ServerProcess(sandbox, options: ["--metrics-port", String(metricsPort)])
        defer { _ = try? server.stop() }
        let prometheusPort = try freePort()
        let config = try sandbox.write("prometheus.yml", """
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
            scrape_configs:
              - job_name: kvsh
                static_configs:
                  - targets: ["127.0.0.1:\(metricsPort)"]
            """)
        let scraper = try PipedProcess(executable: prometheus, arguments: [
            "--config.file=\(config)", "--storage.tsdb.path=\(sandbox.path("tsdb"))",
            "--web.listen-address=127.0.0.1:\(prometheusPort)", "--log.level=warn",
        ], environment: sandbox.environment(), directory: sandbox.root)
        defer {
            scraper.signal(SIGTERM)
            _ = try? scraper.finish(timeout: .seconds(30))
        }
        let connection = try RedisConnection(port: server.port)
        var sent = 0
        var firstSeen: Double?
        var moved = false
        let deadline = ContinuousClock.now + .seconds(90)
        while !moved && ContinuousClock.now < deadline && scraper.isRunning {
            for _ in 0..<20 {
                _ = try connection.call("SET", "key\(sent % 50)", "value\(sent)")
                _ = try connection.call("GET", "key\(sent % 50)")
                sent += 1
            }
            let commands = (try? prometheusQuery(port: prometheusPort, "kvsh_commands_total{job=\"kvsh\"}")) ?? []
            if let value = commands.first?.value {
                if let first = firstSeen { moved = value > first } else { firstSeen = value }
            }
            if !moved { scraper.wait(timeout: .milliseconds(250)) { _ in false } }  // the next scrape is at most 1 s away
        }
        #expect(moved, "kvsh_commands_total never moved in Prometheus (first seen: \(String(describing: firstSeen))); prometheus stderr: \(scraper.stderr.text)")
        #expect(try prometheusQuery(port: prometheusPort, "up{job=\"kvsh\"}").first?.value == 1)
        let sets = try prometheusQuery(port: prometheusPort, "kvsh_command_duration_seconds_count{command=\"set\"}")
        #expect((sets.first?.value ?? 0) > 0, "\(sets)")
        #expect((try prometheusQuery(port: prometheusPort, "kvsh_keys").first?.value ?? 0) > 0)
        for name in ["kvsh_command_duration_seconds_bucket", "kvsh_fsync_duration_seconds_count", "kvsh_commit_batch_size_count",
                     "kvsh_resident_memory_bytes", "kvsh_net_input_bytes_total", "kvsh_net_output_bytes_total", "kvsh_connected_clients",
                     "kvsh_log_bytes", "kvsh_log_segments", "kvsh_payload_bytes", "kvsh_last_checkpoint_success_timestamp_seconds"] {
            #expect(try !prometheusQuery(port: prometheusPort, name).isEmpty, "Prometheus has no \(name)")
        }
        let quantile = try prometheusQuery(port: prometheusPort, "histogram_quantile(0.99, sum by (le) (rate(kvsh_command_duration_seconds_bucket[1m])))")
        #expect(quantile.count == 1, "\(quantile)")
        // Every query of the Grafana dashboard in Docs/ is one Prometheus accepts.
        let dashboard = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Docs/grafana-kvsh.json")
        let panels = (try JSONSerialization.jsonObject(with: Data(contentsOf: dashboard)) as? [String: Any])?["panels"] as? [[String: Any]] ?? []
        #expect(panels.count > 10)
        for panel in panels {
            for target in panel["targets"] as? [[String: Any]] ?? [] {
                guard let expression = target["expr"] as? String else { continue }
                let query = expression.replacingOccurrences(of: "$instance", with: ".*").replacingOccurrences(of: "$__rate_interval", with: "1m")
                #expect(throws: Never.self, "dashboard query \(expression)") { _ = try prometheusQuery(port: prometheusPort, query) }
            }
        }
        #expect(try server.stop() == .exited(0))
    }

    @Test("the exposition parses with prometheus_client (text and OpenMetrics); counters only go up; buckets are cumulative",
          .enabled(if: runs(with: pythonWithPrometheusClient), "python3 with redis-py and prometheus_client is not installed"))
    func expositionParses() throws {
        guard let python = require(pythonWithPrometheusClient, "python3 with redis-py and prometheus_client",
                                   install: "pip install redis prometheus_client") else { return }
        let sandbox = try Sandbox()
        let metricsPort = try freePort()
        let server = try ServerProcess(sandbox, options: ["--metrics-port", String(metricsPort)])
        defer { _ = try? server.stop() }
        let script = try sandbox.write("check_exposition.py", expositionCheck)
        let result = try ExternalTool.run(python, [script, String(metricsPort), String(server.port)], sandbox: sandbox, timeout: .seconds(120))
        #expect(result.termination == .exited(0) && result.stdout.text == "ok\n", "\(result.summary)")
        #expect(try server.stop() == .exited(0))
    }

    @Test("redis-cli --latency and --stat, and SLOWLOG GET, against kvsh serve",
          .enabled(if: runs(with: ExternalTool.redisCLI), "redis-cli is not installed (apt-get install redis-tools)"))
    func redisCLITools() throws {
        guard let cli = require(ExternalTool.redisCLI, "redis-cli", install: "apt-get install redis-tools") else { return }
        let sandbox = try Sandbox()
        let server = try ServerProcess(sandbox, options: ["--slowlog-log-slower-than", "0"])
        defer { _ = try? server.stop() }
        func cliRun(_ arguments: String...) throws -> RunResult {
            try ExternalTool.run(cli, ["-p", String(server.port)] + arguments, sandbox: sandbox)
        }
        // Not on a terminal, --latency samples for one interval (1 s) and prints "min max avg count" once.
        let latency = try cliRun("--latency")
        let figures = latency.stdout.text.split(separator: " ").compactMap { Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        #expect(latency.termination == .exited(0) && figures.count == 4, "\(latency.summary)")
        if figures.count == 4 {
            #expect(figures[0] <= figures[2] && figures[2] <= figures[1] && figures[3] > 0, "min avg max count: \(figures)")
        }

        #expect(try cliRun("SET", "k", "v").stdout.text == "OK\n")
        // The newest entry is that SET (SLOWLOG GET itself is logged once it has run): id, time, µs, the arguments,
        // the client's address and its (empty) name, one per line.
        let slowlog = try cliRun("SLOWLOG", "GET", "1")
        let lines = slowlog.stdout.text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(slowlog.termination == .exited(0) && lines.count == 9, "\(slowlog.summary)")
        if lines.count == 9 {
            #expect(Int(lines[0]) != nil && (Int(lines[1]) ?? 0) > 1_700_000_000 && Int(lines[2]) != nil, "\(lines)")
            #expect(Array(lines[3...5]) == ["SET", "k", "v"] && lines[6].hasPrefix("127.0.0.1:") && lines[7].isEmpty, "\(lines)")
        }
        #expect(try cliRun("SLOWLOG", "LEN").stdout.text != "0\n")

        // --stat loops until stopped: line-buffered through stdbuf, read until a few rows are out, then ended.
        guard let stdbuf = ExternalTool.path("stdbuf") else {
            Issue.record("stdbuf (coreutils) not found")
            return
        }
        let stat = try PipedProcess(executable: stdbuf, arguments: ["-oL", cli, "-p", String(server.port), "--stat", "-i", "0.1"],
                                    environment: sandbox.environment(), directory: sandbox.root)
        let rows = stat.waitForLines(4, timeout: .seconds(20))
        stat.signal(SIGTERM)
        _ = try? stat.finish(timeout: .seconds(10))
        let statLines = stat.stdout.text.split(separator: "\n").map(String.init)
        #expect(rows && statLines.first?.hasPrefix("------- data ------") == true, "stdout: \(stat.stdout.text); stderr: \(stat.stderr.text)")
        if statLines.count >= 3 {
            // keys, memory, clients, blocked, requests, connections: 1 key and 1 client (redis-cli itself).
            let columns = statLines[2].split(separator: " ")
            #expect(columns.count >= 6 && columns[0] == "1" && columns[2] == "1" && columns[3] == "0", "\(statLines)")
        }
        #expect(try server.stop() == .exited(0))
    }

    @Test("--log-format json: one JSON object per line, key events with their fields; --log-level filters")
    func jsonLogs() throws {
        let sandbox = try Sandbox()
        let server = try ServerProcess(sandbox, options: ["--log-format", "json"])
        #expect(try server.stop() == .exited(0))
        let lines = server.process.stderr.text.split(separator: "\n").map(String.init)
        var messages: [String: [String: String]] = [:]
        for line in lines {
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String] else {
                Issue.record("not a JSON object of strings: \(line)")
                continue
            }
            #expect(object["time"]?.hasSuffix("Z") == true && object["level"] != nil && object["logger"] == "kvsh.server", "\(line)")
            if let message = object["message"] { messages[message] = object }
        }
        let opened = try #require(messages["store opened"], "\(lines)")
        #expect(opened["event"] == "recovery" && opened["records"] == "0" && opened["keys"] == "0" && opened["duration_ms"] != nil, "\(opened)")
        #expect(messages["kvsh server listening"]?["address"]?.contains(String(server.port)) == true, "\(lines)")
        #expect(messages["server stopped"] != nil, "\(lines)")

        let quiet = try ServerProcess(sandbox, dataDir: sandbox.path("quiet-data"), options: ["--log-level", "warning"])
        #expect(try quiet.stop() == .exited(0))
        #expect(quiet.process.stderr.isEmpty, "\(quiet.process.stderr.text)")
    }
}
