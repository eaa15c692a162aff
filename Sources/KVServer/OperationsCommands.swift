import KVCommands
import RESP
import KVStore

/// The commands about watching the server: INFO (with Redis 7.0's commandstats, errorstats and latencystats
/// sections beside ``ServerCommands``'s), SLOWLOG, LATENCY and CONFIG RESETSTAT.
enum OperationsCommands {
    /// Whether `arguments` are CONFIG RESETSTAT, which this type answers rather than ServerCommands's CONFIG.
    static func isResetStat(_ arguments: [[UInt8]]) -> Bool {
        arguments.count >= 2 && String(decoding: arguments[1], as: UTF8.self).uppercased() == "RESETSTAT"
    }

    /// Runs INFO, SLOWLOG, LATENCY or CONFIG RESETSTAT (`name` uppercased).
    static func run(_ name: String, _ arguments: [[UInt8]], context: ServerContext) -> (RESPValue, CommandEffect) {
        let metrics = context.metrics
        switch name {
        case "INFO":
            // The per-command figures live on each event loop and are gathered by hopping onto them: off the loop.
            return (.null, .slowNoWrites { .bulk(try info(arguments, context: context)) })
        case "CONFIG":
            guard arguments.count == 2 else { return (.error("ERR wrong number of arguments for 'config|resetstat' command"), .none) }
            return (.null, .slowNoWrites {
                try metrics.resetStatistics()
                return .simpleString("OK")
            })
        case "SLOWLOG":
            return (slowlog(arguments, metrics: metrics), .none)
        case "LATENCY":
            return (latency(arguments, metrics: metrics), .none)
        default:
            return (.error("ERR unknown command '\(name)'"), .none)
        }
    }

    /// INFO with the sections of ``ServerCommands`` and these: `Stats` gains the byte and error totals;
    /// `Errorstats` is a default section, `Commandstats` and `Latencystats` come with `all`, `everything` or their
    /// name, as in Redis.
    static func info(_ arguments: [[UInt8]], context: ServerContext) throws -> String {
        let wanted = Set(arguments.dropFirst().map { String(decoding: $0, as: UTF8.self).lowercased() })
        let everything = !wanted.isDisjoint(with: ["all", "everything"])
        let statistics = try context.metrics.commandStatisticsSinceReset()
        var more: [(name: String, fields: [(String, String)])] = [
            ("Persistence", [("rdb_bgsave_in_progress", "0"), ("aof_rewrite_in_progress", "0")]),
            ("Stats", [
                ("total_net_input_bytes", String(statistics.netInputBytes)),
                ("total_net_output_bytes", String(statistics.netOutputBytes)),
                ("total_error_replies", String(statistics.totalErrorReplies)),
            ]),
        ]
        if everything || wanted.contains("commandstats") {
            more.append(("Commandstats", statistics.commands.keys.sorted().compactMap { name in
                guard let figures = statistics.commands[name] else { return nil }
                return ("cmdstat_\(name)", "calls=\(figures.calls),usec=\(figures.microseconds),"
                        + "usec_per_call=\(fixed(figures.microseconds, per: figures.calls)),"
                        + "rejected_calls=\(figures.rejected),failed_calls=\(figures.failed)")
            }))
        }
        more.append(("Errorstats", statistics.errors.keys.sorted().map { ("errorstat_\($0)", "count=\(statistics.errors[$0] ?? 0)") }))
        if everything || wanted.contains("latencystats") {
            more.append(("Latencystats", statistics.commands.keys.sorted().compactMap { name in
                guard let figures = statistics.commands[name], figures.calls > 0 else { return nil }
                let percentiles = [(50.0, "p50"), (99.0, "p99"), (99.9, "p99.9")].map { percentile, label in
                    "\(label)=\(LatencyBuckets.value(atPercentile: percentile, of: figures.histogram)).000"
                }
                return ("latency_percentiles_usec_\(name)", percentiles.joined(separator: ","))
            }))
        }
        return ServerCommands.info(arguments, context: context, more: more)
    }

    /// `total / count` with two decimals, as Redis's `%.2f`.
    static func fixed(_ total: UInt64, per count: UInt64) -> String {
        guard count > 0 else { return "0.00" }
        let hundredths = (total * 100 + count / 2) / count
        let fraction = hundredths % 100
        return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)"
    }

    private static func subcommand(_ arguments: [[UInt8]]) -> String {
        arguments.count > 1 ? String(decoding: arguments[1], as: UTF8.self).uppercased() : ""
    }

    /// SLOWLOG GET [count] | LEN | RESET | HELP, replies and errors as Redis 7.0's.
    static func slowlog(_ arguments: [[UInt8]], metrics: ServerMetrics) -> RESPValue {
        let sub = subcommand(arguments)
        switch (sub, arguments.count) {
        case ("GET", 2):
            return metrics.slowLog.reply(count: 10)
        case ("GET", 3):
            guard let count = RedisInteger.parse(arguments[2]) else { return .error("ERR value is not an integer or out of range") }
            guard count >= -1 else { return .error("ERR count should be greater than or equal to -1") }
            return metrics.slowLog.reply(count: count)
        case ("LEN", 2):
            return .integer(metrics.slowLog.count)
        case ("RESET", 2):
            metrics.slowLog.reset()
            return .simpleString("OK")
        case ("HELP", 2):
            return .array([
                "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "GET [<count>]", "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
                "    Entries are made of:", "    id, timestamp, time in microseconds, arguments array, client IP and port,",
                "    client name", "LEN", "    Return the length of the slowlog.", "RESET", "    Reset the slowlog.",
                "HELP", "    Print this help.",
            ].map { RESPValue.simpleString($0) })
        case ("", _):
            return .error("ERR wrong number of arguments for 'slowlog' command")
        default:
            return .error("ERR unknown subcommand or wrong number of arguments for '\(sub.lowercased())'. Try SLOWLOG HELP.")
        }
    }

    /// LATENCY LATEST | HISTORY event | RESET [event ...] | HELP, for the `fsync` and `checkpoint` events.
    static func latency(_ arguments: [[UInt8]], metrics: ServerMetrics) -> RESPValue {
        let sub = subcommand(arguments)
        switch (sub, arguments.count) {
        case ("LATEST", 2):
            return metrics.latencyMonitor.latest()
        case ("HISTORY", 3):
            return metrics.latencyMonitor.history(String(decoding: arguments[2], as: UTF8.self))
        case ("RESET", _):
            return .integer(metrics.latencyMonitor.reset(arguments.dropFirst(2).map { String(decoding: $0, as: UTF8.self) }))
        case ("HELP", 2):
            return .array([
                "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                "HISTORY <event>", "    Return time-latency samples for the <event> class.",
                "LATEST", "    Return the latest latency samples for all events.",
                "RESET [<event> ...]", "    Reset latency data of one or more <event> classes.",
                "    (default: reset all data for all event classes)",
                "HELP", "    Print this help.",
            ].map { RESPValue.simpleString($0) })
        case ("", _):
            return .error("ERR wrong number of arguments for 'latency' command")
        default:
            return .error("ERR unknown subcommand or wrong number of arguments for '\(sub.lowercased())'. Try LATENCY HELP.")
        }
    }
}
