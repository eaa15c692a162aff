// Fuzz entry points for the files the store reads: JSON-lines and kvsh logs to import, a data directory's log and
// image at open, a backup to restore. Only the store's public API: each input is written to a scratch directory.
import KVStore

extension FuzzTargets {
    typealias Contents = [[[UInt8]]]

    static let options = KVStore.Options(syncPolicy: .none)

    /// Every key and value of `store`, in key order.
    static func contents(_ store: KVStore) -> Contents {
        store.range(from: nil, to: nil).map { [$0.key, $0.value] }
    }

    /// Opens the store in `directory`, reads everything and closes it; nil, with the error, if it does not open.
    static func openAndRead(_ directory: String) -> Result<Contents, any Error> {
        Result {
            let store = try KVStore(directory: directory, options: options)
            let result = contents(store)
            try store.close()
            return result
        }
    }

    /// The store directory as the checker and opening it see it, with the invariants between the two:
    ///
    /// - The checker's verdict agrees with opening: `clean` and `tornTail` open, `corrupt` and `newerVersion` do not.
    /// - A store that opened opens again with the same contents (replay is idempotent, cutting a torn tail too),
    ///   and the checker then finds it clean.
    ///
    /// Returns the contents when the store opened.
    @discardableResult
    static func checkAndOpen(_ directory: String, target: String) throws(FuzzViolation) -> Contents? {
        let verdict = Result { try StoreChecker.check(directory: directory) }
        let opened = openAndRead(directory)
        if case .success(let report) = verdict {
            switch (report.status, opened) {
            case (.clean, .failure(let error)), (.tornTail, .failure(let error)):
                throw FuzzViolation(target, "the checker says \(report.status) but the store does not open: \(error)\n\(report)")
            case (.corrupt, .success), (.newerVersion, .success):
                throw FuzzViolation(target, "the checker says \(report.status) but the store opens\n\(report)")
            default:
                break
            }
        }
        guard case .success(let first) = opened else { return nil }
        switch openAndRead(directory) {
        case .success(let second):
            guard second == first else {
                throw FuzzViolation(target, "opened twice, the store holds \(first.count) then \(second.count) entries")
            }
        case .failure(let error):
            throw FuzzViolation(target, "the store opened once and then not again: \(error)")
        }
        switch Result(catching: { try StoreChecker.check(directory: directory) }) {
        case .success(let report) where report.status == .clean:
            break
        case .success(let report):
            throw FuzzViolation(target, "after the store opened the checker says \(report.status)\n\(report)")
        case .failure(let error):
            throw FuzzViolation(target, "after the store opened the checker failed: \(error)")
        }
        return first
    }

    /// Imports the file at `path` into a new store in `directory`. All or nothing: a refused import leaves the
    /// store empty, and nothing changes the file, so it never stops part way. Returns the contents after a
    /// successful import, checked again after reopening the store.
    static func importInto(_ directory: String, from path: String, target: String) throws(FuzzViolation) -> Contents? {
        let imported: Result<(LogImporter.Summary, Contents), any Error>
        do {
            let store = try KVStore(directory: directory, options: options)
            imported = Result { (try LogImporter.importLog(at: path, into: store), contents(store)) }
            if case .failure = imported, store.count(from: nil, to: nil) != 0 {
                throw FuzzViolation(target, "a refused import left \(store.count(from: nil, to: nil)) keys in the store")
            }
            try store.close()
        } catch let violation as FuzzViolation {
            throw violation
        } catch {
            throw FuzzViolation(target, "harness: the empty store does not open or close: \(error)")
        }
        switch imported {
        case .failure(StoreError.importIncomplete(let file, let applied, let total, let cause)):
            throw FuzzViolation(target, "the import of an unchanging \(file) stopped after \(applied) of \(total): \(cause)")
        case .failure:
            return nil
        case .success(let (summary, contents)):
            guard contents.count <= summary.sets else {
                throw FuzzViolation(target, "the import set \(summary.sets) keys but the store holds \(contents.count)")
            }
            switch openAndRead(directory) {
            case .success(let reopened) where reopened == contents: return contents
            case .success(let reopened):
                throw FuzzViolation(target, "after the import the store held \(contents.count) entries, reopened \(reopened.count)")
            case .failure(let error):
                throw FuzzViolation(target, "the store does not open again after an import: \(error)")
            }
        }
    }

    /// The JSON-lines importer (the Go StorageEngine's log): a file of these bytes is imported all or nothing.
    public static func jsonImport(_ data: UnsafeRawBufferPointer) throws(FuzzViolation) {
        try withScratchDirectory("JSONImport") { (scratch) throws(FuzzViolation) in
            let source = scratch + "/import.jsonl"
            try writeFile(source, data, target: "JSONImport")
            _ = try importInto(scratch + "/store", from: source, target: "JSONImport")
        }
    }

    /// The log reader, at open and in the checker: a data directory whose only file is a log of these bytes.
    /// Beyond ``checkAndOpen(_:target:)``'s invariants, importing the same log into an empty store gives the
    /// contents the store opened with, when both accept it.
    public static func logReplay(_ data: UnsafeRawBufferPointer) throws(FuzzViolation) {
        try withScratchDirectory("LogReplay") { (scratch) throws(FuzzViolation) in
            let store = scratch + "/store"
            try makeDirectory(store, target: "LogReplay")
            try writeFile(store + "/000001.log", data, target: "LogReplay")
            // The import reads the file as it was, before opening the store cut a torn tail.
            let source = scratch + "/copy.log"
            try writeFile(source, data, target: "LogReplay")
            guard let opened = try checkAndOpen(store, target: "LogReplay") else { return }
            if let imported = try importInto(scratch + "/imported", from: source, target: "LogReplay"), imported != opened {
                throw FuzzViolation("LogReplay", "the store opened with \(opened.count) entries, the import of its log gave \(imported.count)")
            }
        }
    }

    /// The image reader: these bytes restored as a backup (a restore that succeeds opens with the entries it
    /// reported, and checks clean), and as the image of a data directory.
    public static func imageRestore(_ data: UnsafeRawBufferPointer) throws(FuzzViolation) {
        try withScratchDirectory("ImageRestore") { (scratch) throws(FuzzViolation) in
            let backup = scratch + "/backup.kvbak"
            try writeFile(backup, data, target: "ImageRestore")
            let restored = scratch + "/restored"
            if let summary = try? KVStore.restore(backup: backup, into: restored, force: false) {
                guard let contents = try checkAndOpen(restored, target: "ImageRestore") else {
                    throw FuzzViolation("ImageRestore", "a restored store does not open")
                }
                guard contents.count == summary.entries else {
                    throw FuzzViolation("ImageRestore", "the restore reported \(summary.entries) entries, the store holds \(contents.count)")
                }
            }
            let store = scratch + "/store"
            try makeDirectory(store, target: "ImageRestore")
            try writeFile(store + "/000001.image", data, target: "ImageRestore")
            try checkAndOpen(store, target: "ImageRestore")
        }
    }
}
