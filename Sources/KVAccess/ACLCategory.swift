/// Redis's ACL command categories (`ACL CAT`), as a bit set: a command table entry names the categories its
/// command belongs to, and `+@category` / `-@category` rules select commands by them.
public struct ACLCategories: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let keyspace = ACLCategories(rawValue: 1 << 0)
    public static let read = ACLCategories(rawValue: 1 << 1)
    public static let write = ACLCategories(rawValue: 1 << 2)
    public static let set = ACLCategories(rawValue: 1 << 3)
    public static let sortedset = ACLCategories(rawValue: 1 << 4)
    public static let list = ACLCategories(rawValue: 1 << 5)
    public static let hash = ACLCategories(rawValue: 1 << 6)
    public static let string = ACLCategories(rawValue: 1 << 7)
    public static let bitmap = ACLCategories(rawValue: 1 << 8)
    public static let hyperloglog = ACLCategories(rawValue: 1 << 9)
    public static let geo = ACLCategories(rawValue: 1 << 10)
    public static let stream = ACLCategories(rawValue: 1 << 11)
    public static let pubsub = ACLCategories(rawValue: 1 << 12)
    public static let admin = ACLCategories(rawValue: 1 << 13)
    public static let fast = ACLCategories(rawValue: 1 << 14)
    public static let slow = ACLCategories(rawValue: 1 << 15)
    public static let blocking = ACLCategories(rawValue: 1 << 16)
    public static let dangerous = ACLCategories(rawValue: 1 << 17)
    public static let connection = ACLCategories(rawValue: 1 << 18)
    public static let transaction = ACLCategories(rawValue: 1 << 19)
    public static let scripting = ACLCategories(rawValue: 1 << 20)

    /// Every category with its name, in the order Redis 7.0's `ACL CAT` lists them.
    public static let named: [(name: String, category: ACLCategories)] = [
        ("keyspace", .keyspace), ("read", .read), ("write", .write), ("set", .set), ("sortedset", .sortedset),
        ("list", .list), ("hash", .hash), ("string", .string), ("bitmap", .bitmap), ("hyperloglog", .hyperloglog),
        ("geo", .geo), ("stream", .stream), ("pubsub", .pubsub), ("admin", .admin), ("fast", .fast), ("slow", .slow),
        ("blocking", .blocking), ("dangerous", .dangerous), ("connection", .connection), ("transaction", .transaction),
        ("scripting", .scripting),
    ]

    /// The category named `name` (without the `@`, any letter case); `all` is every category.
    public static func named(_ name: String) -> ACLCategories? {
        let lower = name.lowercased()
        if lower == "all" { return ACLCategories(rawValue: .max) }
        return named.first { $0.name == lower }?.category
    }
}

/// How a command uses the keys it names, as Redis 7.0's key specs flag them: `read` for a command that returns or
/// uses the value (Redis's ACCESS), `write` for one that inserts, updates or deletes it. A command with neither
/// (EXISTS, STRLEN, TYPE) needs only some key pattern to match, with any permission.
public struct ACLKeyAccess: OptionSet, Sendable, Hashable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let read = ACLKeyAccess(rawValue: 1)
    public static let write = ACLKeyAccess(rawValue: 2)
    public static let readWrite: ACLKeyAccess = [.read, .write]
}
