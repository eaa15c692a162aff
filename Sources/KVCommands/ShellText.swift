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
        sync policy:     \(stats.syncPolicy.rawValue) (\(counted(stats.fsyncs, "fsync")) by this process)
        crc32c:          \(stats.hardwareCRC ? "hardware" : "software")

        """
    }

    /// `:rekey`, `KVSH.REKEY` and `kvsh rekey`: what was sealed with which key, and what the operator does next.
    public static func describe(rekey report: KVStore.CheckpointReport, keyFile: String, keyID: String) -> String {
        "re-encrypted \(counted(report.keys, "key")) with \(keyFile) (key id \(keyID)); start kvsh with --encryption-key-file \(keyFile) "
            + "from now on: the old key no longer opens the store, but still opens backups made before\n"
    }

    public static func describe(backup summary: ImageSummary, path: String) -> String {
        "backup written to \(path): \(counted(summary.entries, "key")) through sequence \(summary.sequence), \(summary.bytes) bytes\n"
    }

    // MARK: Check reports

    /// A check's (or repair's) report as `kvsh check`, `:check` and `KVSH.CHECK` print it: what a repair did, one
    /// row per file, notes, totals, the problems and the status.
    public static func describe(check report: StoreChecker.Report) -> String {
        var lines: [String] = []
        if let repair = report.repair {
            lines.append("repair\(repair.salvage ? " --salvage" : ""): \(repair.message)")
            lines += repair.actions.map { "  " + $0 }
            lines.append(repair.outcome == .cutTornTail || repair.outcome == .salvaged ? "after the repair:" : "the store as it is:")
        }
        lines.append("check of \(report.directory)")
        // One row per file: name, kind, size, records, sequences, status; every column but the last padded.
        var rows: [[String]] = []
        for file in report.files {
            var count = "", sequences = ""
            switch file.kind {
            case .log:
                count = plural(file.records, "record")
                if let first = file.firstSequence, let last = file.lastSequence {
                    sequences = "sequences \(first)..\(last)"
                } else if let header = file.headerSequence {
                    sequences = "starts at \(header)"
                }
            case .image:
                count = "\(plural(file.records, "block")), \(plural(file.entries, "entry", "entries"))"
                if let sequence = file.lastSequence { sequences = "covers ..\(sequence)" }
            case .temporary:
                break
            }
            var status = file.problems.first.map { Self.shortStatus($0) } ?? "ok"
            if file.problems.count > 1 { status += " (+\(file.problems.count - 1) more)" }
            if file.kind == .temporary {
                status = file.note ?? ""
            } else if let note = file.note {
                status = file.problems.isEmpty ? note : "\(note); \(status)"
            }
            rows.append([file.name, file.kind.rawValue, plural(file.size, "byte"), count, sequences, status])
        }
        let widths = (0..<5).map { column in rows.map { $0[column].count }.max() ?? 0 }
        for row in rows {
            var line = " "
            for column in 0..<5 {
                let cell = row[column]
                // Sizes are right-aligned, everything else left-aligned.
                let pad = String(repeating: " ", count: widths[column] - cell.count)
                line += " " + (column == 2 ? pad + cell : cell + pad) + " "
            }
            line += " " + row[5]
            lines.append(line)
        }
        lines += report.notes.map { "note: " + $0 }
        let logFiles = report.files.filter { $0.kind == .log }.count
        let images = report.files.filter { $0.kind == .image }.count
        var totals = "totals: \(plural(report.files.count, "file")) (\(plural(logFiles, "log file")), \(plural(images, "image"))"
        totals += "), \(plural(report.records, "record")), \(plural(report.keys, "key"))"
        if report.status == .corrupt { totals += " recoverable with --salvage" }
        totals += ", last sequence \(report.lastSequence)"
        lines.append(totals)
        let problems = report.problems
        if let first = problems.first {
            lines.append("first problem: \(first)")
            if problems.count > 1 {
                lines.append("other problems:")
                lines += problems.dropFirst().prefix(20).map { "  \($0)" }
                if problems.count > 21 { lines.append("  ... and \(problems.count - 21) more") }
            }
        }
        switch report.status {
        case .clean:
            lines.append("status: clean")
        case .tornTail:
            lines.append("status: torn tail: the store opens (open cuts the tail); `repair` cuts it now and keeps a copy")
        case .corrupt:
            lines.append("status: CORRUPT: the store does not open; `repair` without --salvage changes nothing; "
                         + "with --salvage it keeps every valid record and loses \(report.salvageLoss)")
        case .newerVersion:
            lines.append("status: written by a newer kvsh; upgrade kvsh")
        }
        return lines.joined(separator: "\n")
    }

    private static func shortStatus(_ problem: StoreChecker.Problem) -> String {
        switch problem.kind {
        case .tornTail where problem.offset == 0:
            return "torn header (\(problem.reason)): open would write it again"
        case .tornTail:
            return "torn tail (\(problem.reason)): open would cut \(problem.bytes) bytes at offset \(problem.offset)"
        case .corruption:
            return "CORRUPT at offset \(problem.offset): \(problem.reason)"
        case .newerVersion:
            return problem.reason
        }
    }

    /// "1 byte", "2 bytes"; `plural` for irregular nouns.
    private static func plural(_ count: Int, _ word: String, _ plural: String? = nil) -> String {
        "\(count) \(count == 1 ? word : plural ?? word + "s")"
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
