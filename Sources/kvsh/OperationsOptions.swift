import ArgumentParser
import KVServer
import KVStore
import Logging

/// `kvsh serve`'s options for operators: the metrics endpoint, the slow log, the latency monitor, logging.
struct OperationsOptions: ParsableArguments {
    @Option(name: .customLong("metrics-port"),
            help: ArgumentHelp("Serve /metrics (Prometheus), /health and /ready over HTTP on this port (default: no endpoint).", valueName: "n"))
    var metricsPort: Int?

    @Option(name: .customLong("metrics-bind"), help: ArgumentHelp("Address of the metrics endpoint.", valueName: "addr"))
    var metricsBind = "127.0.0.1"

    @Flag(name: .customLong("command-stats"), inversion: .prefixedNo,
          help: "Time and count every command (INFO commandstats/latencystats, SLOWLOG, kvsh_command_* metrics).")
    var commandStatistics = true

    @Option(name: .customLong("slowlog-log-slower-than"),
            help: ArgumentHelp("Log commands that take at least this many microseconds in SLOWLOG; negative: off, 0: every command.", valueName: "usec"))
    var slowlogLogSlowerThan = 10_000

    @Option(name: .customLong("slowlog-max-len"), help: ArgumentHelp("Entries SLOWLOG keeps.", valueName: "n"))
    var slowlogMaxLength = 128

    @Option(name: .customLong("latency-monitor-threshold"),
            help: ArgumentHelp("LATENCY records fsyncs and checkpoints that take at least this many milliseconds (0: all of them).", valueName: "ms"))
    var latencyMonitorThreshold = 0

    @Option(name: .customLong("log-format"), help: ArgumentHelp("Log lines on stderr as text or as one JSON object each.", valueName: "text|json"))
    var logFormat: LogFormat = .text

    @Option(name: .customLong("log-level"), help: ArgumentHelp("Least severe level logged.", valueName: "trace|debug|info|notice|warning|error|critical"))
    var logLevel: LogLevel = .info

    enum LogFormat: String, ExpressibleByArgument, CaseIterable {
        case text, json
    }

    /// swift-log's levels, by their names.
    struct LogLevel: ExpressibleByArgument {
        let level: Logger.Level
        init?(argument: String) {
            guard let level = Logger.Level(rawValue: argument.lowercased()) else { return nil }
            self.level = level
        }
        init(_ level: Logger.Level) { self.level = level }
        static let info = LogLevel(.info)
        static var allValueStrings: [String] { Logger.Level.allCases.map(\.rawValue) }
        var defaultValueDescription: String { level.rawValue }
    }

    func validate() throws {
        if let metricsPort, !(0...65535).contains(metricsPort) { throw ValidationError("--metrics-port must be between 0 and 65535") }
        guard slowlogMaxLength >= 0 else { throw ValidationError("--slowlog-max-len must be 0 or more") }
        guard latencyMonitorThreshold >= 0 else { throw ValidationError("--latency-monitor-threshold must be 0 or more") }
    }

    /// Sets swift-log up for the whole process (once) with the chosen format and level.
    func bootstrapLogging() {
        let level = logLevel.level
        switch logFormat {
        case .text:
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
        case .json:
            LoggingSystem.bootstrap { label in
                var handler = JSONLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
        }
    }

    func makeMetrics(logger: Logger) -> ServerMetrics {
        var settings = ServerMetrics.Settings()
        settings.commandStatistics = commandStatistics
        settings.slowlogLogSlowerThan = slowlogLogSlowerThan
        settings.slowlogMaxLength = slowlogMaxLength
        settings.latencyMonitorThreshold = latencyMonitorThreshold
        return ServerMetrics(settings: settings, logger: logger)
    }

    /// The endpoint, if asked for, started before the store opens so that /ready answers 503 while it loads.
    func startEndpoint(_ metrics: ServerMetrics, logger: Logger) throws -> MetricsEndpoint? {
        guard let metricsPort else { return nil }
        metrics.storeLoading()
        do {
            let endpoint = try MetricsEndpoint(host: metricsBind, port: metricsPort, metrics: metrics, logger: logger)
            if let address = endpoint.localAddress?.ipAddress, !ServeCommand.isLoopback(address) {
                logger.warning("the metrics endpoint listens on \(address) without authentication: anyone who can reach it can read the server's figures; bind it to 127.0.0.1 or firewall the port")
            }
            return endpoint
        } catch {
            throw ServeError(message: "cannot listen on \(metricsBind):\(metricsPort) for metrics: \(error)")
        }
    }

    /// The recovery, as a log line with its figures.
    static func logOpened(_ store: KVStore, logger: Logger) {
        let report = store.openReport
        logger.info("store opened", metadata: [
            "event": "recovery", "data-dir": "\(store.directory)", "keys": "\(report.keys)", "records": "\(report.records)",
            "log-files": "\(report.logFiles)", "log-bytes": "\(report.logBytes)", "image": "\(report.imageFile ?? "none")",
            "duration_ms": "\(Int(Double(report.duration.components.seconds) * 1000 + Double(report.duration.components.attoseconds) / 1e15))",
        ])
    }
}
