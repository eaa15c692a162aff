// Only in `make tsan` builds, which pass -DKVSH_TSAN: a Mutex ThreadSanitizer can see. (The same as KVStore's, which
// cannot lend it: a public `Mutex` there would clash with Synchronization's in every module importing both.)
//
// Synchronization.Mutex on Linux takes a contended lock and hands it over with raw futex system calls (FUTEX_LOCK_PI
// and FUTEX_UNLOCK_PI, through `syscall`) in a library that is not instrumented, so ThreadSanitizer sees no
// happens-before edge between two critical sections that contended, and reports every access inside them as a race:
// a false positive, reproduced with a dozen lines that touch shared state only inside `withLock`. This type shadows
// it within the module, with the same API over a pthread mutex, whose lock and unlock ThreadSanitizer intercepts;
// everything else in a ThreadSanitizer build is the code that ships.
#if KVSH_TSAN
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

struct Mutex<Value: ~Copyable>: ~Copyable, @unchecked Sendable {
    private let lock: UnsafeMutablePointer<pthread_mutex_t>
    private let value: UnsafeMutablePointer<Value>

    init(_ initialValue: consuming sending Value) {
        lock = .allocate(capacity: 1)
        pthread_mutex_init(lock, nil)
        value = .allocate(capacity: 1)
        value.initialize(to: initialValue)
    }

    deinit {
        value.deinitialize(count: 1)
        value.deallocate()
        pthread_mutex_destroy(lock)
        lock.deallocate()
    }

    borrowing func withLock<Result: ~Copyable, E: Error>(_ body: (inout Value) throws(E) -> Result) throws(E) -> Result {
        pthread_mutex_lock(lock)
        defer { pthread_mutex_unlock(lock) }
        return try body(&value.pointee)
    }
}
#endif
