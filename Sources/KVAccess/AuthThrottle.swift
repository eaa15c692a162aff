import Synchronization

/// Slows password guessing: after a few failed authentications from one client address (the IP, whichever port or
/// connection), each further reply to a failed attempt is delayed, doubling up to a ceiling. A success from the
/// address clears its count; so does a quiet period. Redis has no such brake.
public final class AuthThrottle: Sendable {
    struct Record {
        var failures: Int
        var last: ContinuousClock.Instant
    }

    private let records = Mutex<[String: Record]>([:])
    /// Failures allowed before replies are delayed.
    public let freeAttempts: Int
    public let baseDelay: Duration
    public let maxDelay: Duration
    /// An address quiet this long starts over.
    public let forgetAfter: Duration
    /// Addresses tracked at once: past this, the oldest half is forgotten (an attacker with many addresses gains
    /// little from it; the bound keeps memory fixed).
    static let maxAddresses = 65_536

    public init(freeAttempts: Int = 3, baseDelay: Duration = .milliseconds(100), maxDelay: Duration = .seconds(5),
                forgetAfter: Duration = .seconds(600)) {
        self.freeAttempts = freeAttempts
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.forgetAfter = forgetAfter
    }

    /// Records a failure from `address` and returns how long to hold its reply back (zero for the first few).
    public func failed(address: String) -> Duration {
        let now = ContinuousClock.now
        return records.withLock { records in
            var record = records[address] ?? Record(failures: 0, last: now)
            if now - record.last > forgetAfter { record.failures = 0 }
            record.failures += 1
            record.last = now
            if records[address] == nil && records.count >= Self.maxAddresses {
                let sorted = records.sorted { $0.value.last < $1.value.last }
                for (key, _) in sorted.prefix(records.count / 2) { records.removeValue(forKey: key) }
            }
            records[address] = record
            let excess = record.failures - freeAttempts
            guard excess > 0 else { return .zero }
            let delay = baseDelay * (1 << min(excess - 1, 16))
            return min(delay, maxDelay)
        }
    }

    public func succeeded(address: String) {
        _ = records.withLock { $0.removeValue(forKey: address) }
    }

    /// The IP part of a client address as ClientState prints it (`1.2.3.4:5678`, `[::1]:5678`).
    public static func host(of address: String) -> String {
        guard let colon = address.lastIndex(of: ":") else { return address }
        return String(address[..<colon])
    }
}
