import KVStore

/// The text the shell prints for its maintenance meta-commands; the server sends the same text for the
/// `KVSH.*` commands, so `kvsh --connect` prints exactly what the embedded shell does.
public enum ShellText {
    /// "1 key", "2 keys".
    static func counted(_ count: Int, _ noun: String) -> String {
        "\(count) \(noun)\(count == 1 ? "" : "s")"
    }

    public static func describe(rebuild report: KVStore.ReplayReport) -> String {
        var text = "rebuilt from the log: \(counted(report.keys, "key")) from \(counted(report.records, "record")) "
            + "(\(report.logBytes) bytes in \(counted(report.logFiles, "file"))) in \(formatMilliseconds(report.duration))\n"
        if let tail = report.tornTail { text += "warning: \(tail)\n" }
        return text
    }

    public static func describe(import summary: LogImporter.Summary, keys: Int) -> String {
        var text = "rebuilt from \(summary.source) (\(summary.format)): \(counted(summary.sets, "set")), \(counted(summary.deletes, "delete"))"
        if summary.skipped > 0 { text += ", \(counted(summary.skipped, "read")) skipped" }
        text += " in \(formatMilliseconds(summary.duration)); the store holds \(counted(keys, "key"))\n"
        if let tail = summary.tornTail { text += "warning: \(tail)\n" }
        return text
    }

    public static func describe(_ report: KVStore.CheckpointReport) -> String {
        "compacted through sequence \(report.sequence): log \(report.logBytesBefore) bytes + image \(report.imageBytesBefore) bytes"
            + " -> image \(report.imageBytesAfter) bytes (\(counted(report.keys, "key"))) + a new empty log, in \(formatMilliseconds(report.duration))"
            + " (commits waited \(formatMilliseconds(report.stall)))\n"
    }

    public static func describe(_ stats: KVStore.Statistics) -> String {
        """
        keys:            \(stats.keys)
        key+value bytes: \(stats.payloadBytes)
        log file:        \(stats.logFile) (\(stats.logBytes) bytes)
        image:           \(stats.imageBytes) bytes (checkpoints by this process: \(stats.checkpoints))
        last sequence:   \(stats.lastSequence) (durable through \(stats.syncedSequence))
        sync policy:     \(stats.syncPolicy.rawValue) (\(stats.fsyncs) fsyncs)
        crc32c:          \(stats.hardwareCRC ? "hardware" : "software")

        """
    }

    public static func describe(backup summary: ImageSummary, path: String) -> String {
        "backup written to \(path): \(counted(summary.entries, "key")) through sequence \(summary.sequence), \(summary.bytes) bytes\n"
    }
}

/// "1.234 ms"
public func formatMilliseconds(_ duration: Duration) -> String {
    let (seconds, attoseconds) = duration.components
    let microseconds = seconds * 1_000_000 + attoseconds / 1_000_000_000_000
    let whole = microseconds / 1000
    let fraction = String(microseconds % 1000)
    return "\(whole).\(String(repeating: "0", count: 3 - fraction.count))\(fraction) ms"
}
