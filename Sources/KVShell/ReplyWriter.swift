#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Dispatch
import KVStore
import Synchronization
import KVCommands
import RESP

/// Writes batches of replies on a background queue, each only after committing the store, so that no reply
/// acknowledges a write before that write is durable. Without a store (a session connected to a server, which
/// replies only once writes are durable) there is nothing to commit: it only writes.
///
/// Committing and writing off the command thread lets the next commands be parsed and applied while the
/// log is written and fsynced; their commit then covers everything they wrote meanwhile (group commit).
/// Batches are written in the order they were handed over.
final class ReplyWriter: Sendable {
    private let store: KVStore?
    private let outputFD: Int32
    private let errorFD: Int32
    private let queue = DispatchQueue(label: "kvsh.reply-writer")
    /// Bounds the batches waiting, so a slow reader of our output slows the commands down instead of
    /// letting replies pile up in memory.
    private let slots = DispatchSemaphore(value: 4)
    private let failedCommits = Atomic<Int>(0)
    /// Set once replies could not be written (standard output closed, disk full): reported once, and the
    /// exit status says so.
    private let outputFailed = Atomic<Bool>(false)

    init(store: KVStore?, outputFD: Int32, errorFD: Int32) {
        self.store = store
        self.outputFD = outputFD
        self.errorFD = errorFD
    }

    /// Commits that failed (their replies were withheld), plus one if replies could not be written.
    var failures: Int { failedCommits.load(ordering: .acquiring) + (outputFailed.load(ordering: .acquiring) ? 1 : 0) }

    /// Queues `replies`; with `commit`, the store is committed before they are written.
    func send(_ replies: [UInt8], commit: Bool) {
        slots.wait()
        queue.async { [self] in
            defer { slots.signal() }
            if commit, let store {
                do {
                    try store.commit()
                } catch {
                    failedCommits.add(1, ordering: .releasing)
                    writeAll(errorFD, Array("kvsh: ERR \(error); the replies to those writes were withheld\n".utf8))
                    return
                }
            }
            if let code = writeAll(outputFD, replies), !outputFailed.exchange(true, ordering: .acquiringAndReleasing) {
                writeAll(errorFD, Array("kvsh: cannot write replies to standard output: \(String(cString: strerror(code)))\n".utf8))
            }
        }
    }

    /// Returns once everything sent so far has been written.
    func drain() {
        queue.sync {}
    }
}

/// Writes all of `bytes` to `fd`; returns the errno of a failed write, nil on success. A closed pipe ends the
/// process through SIGPIPE, as for any Unix filter.
@discardableResult
func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Int32? {
    // A progress bar on the terminal is erased first, so that the text starts at the beginning of its line.
    ProgressLine.withLineCleared { writeAllNow(fd, bytes) }
}

private func writeAllNow(_ fd: Int32, _ bytes: [UInt8]) -> Int32? {
    bytes.withUnsafeBytes { raw -> Int32? in
        guard let base = raw.baseAddress else { return nil }
        var done = 0
        while done < raw.count {
            let n = write(fd, base + done, raw.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                return errno
            }
            done += n
        }
        return nil
    }
}
