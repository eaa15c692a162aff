import Synchronization

/// What the caller of one long operation (an import, a rebuild, a checkpoint, a backup, a check, a restore) holds
/// to watch it and to stop it: the shell's progress bar reads ``progress``, and Ctrl-C calls ``cancel()``.
///
/// Unlike ``KVStore/cancelMaintenance()`` (a shutdown: permanent, for every operation of a store), a control
/// serves the operations run inside one ``run(_:)`` on one thread, and nothing else: the next command gets a
/// fresh one. Work that finds it cancelled throws ``StoreError/interrupted(operation:undone:)`` and leaves the
/// store's contents as they were before it (an interrupted import puts back what it had applied).
///
/// Progress is counted in bytes, per stage: a stage is one file read or one image written, and starting one
/// resets `done` (so an import shows "checking FILE" then "applying FILE", each from 0 to the file's size).
public final class OperationControl: Sendable {
    /// How far the current stage is.
    public struct Progress: Sendable, Equatable {
        /// What is being done ("checking", "applying", "writing image", ...), empty before the first stage.
        public var stage: String
        /// The file read or written, if any (its last path component).
        public var item: String
        public var done: Int
        /// 0 when unknown.
        public var total: Int
        /// Counts the stages started, so that a reader can tell a new stage from the same one going on.
        public var number: Int

        public init(stage: String, item: String, done: Int, total: Int, number: Int) {
            (self.stage, self.item, self.done, self.total, self.number) = (stage, item, done, total, number)
        }
    }

    private let cancelled = Atomic<Bool>(false)
    private let state = Mutex(Progress(stage: "", item: "", done: 0, total: 0, number: 0))
    /// The stage name the next file read is shown under (set by the operation, used by ``beginFile(_:size:)``).
    private let fileStage = Mutex("reading")

    public init() {}

    /// The control of the operation the calling thread runs, bound by ``run(_:)``.
    @TaskLocal public static var current: OperationControl?

    /// Runs `body` (one or more store operations on the calling thread) under this control.
    public func run<T>(_ body: () throws -> T) rethrows -> T {
        try Self.$current.withValue(self) { try body() }
    }

    /// Asks the operation to stop at its next record or block. Safe from any thread (a signal watcher).
    public func cancel() { cancelled.store(true, ordering: .relaxed) }

    public var isCancelled: Bool { cancelled.load(ordering: .relaxed) }

    public var progress: Progress { state.withLock { $0 } }

    /// Starts a stage of `total` bytes (0 when unknown).
    public func begin(stage: String, item: String = "", total: Int) {
        state.withLock { $0 = Progress(stage: stage, item: item, done: 0, total: max(total, 0), number: $0.number + 1) }
    }

    /// Counts `bytes` more of the current stage as done.
    public func advance(by bytes: Int) {
        guard bytes > 0 else { return }
        state.withLock { $0.done += bytes }
    }

    /// Names the stage that files read from now on are shown under ("checking", "applying").
    func setFileStage(_ stage: String) { fileStage.withLock { $0 = stage } }

    /// A file of `size` bytes starts being read (by ``MappedFile``): a stage of its own.
    func beginFile(_ path: String, size: Int) {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        begin(stage: fileStage.withLock { $0 }, item: name, total: size)
    }

    /// Throws ``StoreError/interrupted(operation:undone:)`` once cancelled.
    public func check(_ operation: @autoclosure () -> String = "the command") throws {
        if isCancelled { throw StoreError.interrupted(operation: operation(), undone: nil) }
    }
}
