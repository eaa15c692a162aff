/// A command as the ACL sees it: its name, aliases, categories, and the subcommands that ACL rules can name apart
/// (`+acl|whoami`). The command tables (data commands, server commands) describe their commands this way; the
/// catalog numbers them so that a user's permissions are a bit set.
public struct ACLCommandDescriptor: Sendable {
    public let name: String
    public let aliases: [String]
    public let categories: ACLCategories
    public let subcommands: [(name: String, categories: ACLCategories)]

    public init(name: String, aliases: [String] = [], categories: ACLCategories,
                subcommands: [(name: String, categories: ACLCategories)] = []) {
        self.name = name.lowercased()
        self.aliases = aliases.map { $0.lowercased() }
        self.categories = categories
        self.subcommands = subcommands.map { (name: $0.name.lowercased(), categories: $0.categories) }
    }
}

/// Every command an ACL rule can name, numbered. Built once per server from the command tables.
public final class ACLCatalog: Sendable {
    public struct Entry: Sendable {
        /// `get`, or `acl|whoami` for a subcommand: the name NOPERM errors and `ACL LOG` show.
        public let fullName: String
        public let categories: ACLCategories
        public let parent: Int?
        public let children: [Int]
    }

    public let entries: [Entry]
    private let indexByName: [String: Int]

    public init(_ descriptors: [ACLCommandDescriptor]) {
        var entries: [Entry] = []
        var index: [String: Int] = [:]
        for descriptor in descriptors where index[descriptor.name] == nil {
            let parent = entries.count
            let children = descriptor.subcommands.indices.map { parent + 1 + $0 }
            entries.append(Entry(fullName: descriptor.name, categories: descriptor.categories, parent: nil, children: children))
            for name in [descriptor.name] + descriptor.aliases { index[name] = parent }
            for sub in descriptor.subcommands {
                let fullName = descriptor.name + "|" + sub.name
                index[fullName] = entries.count
                for alias in descriptor.aliases { index[alias + "|" + sub.name] = entries.count }
                entries.append(Entry(fullName: fullName, categories: sub.categories, parent: parent, children: []))
            }
        }
        self.entries = entries
        indexByName = index
    }

    /// The entry a rule names (`get`, `acl|whoami`), in any letter case.
    public func index(named name: String) -> Int? {
        indexByName[name.lowercased()]
    }

    /// The entry a request runs: its subcommand's when the command has subcommands and the second argument names
    /// one, else the command's. Nil for a command the catalog does not know (it gets "unknown command" anyway).
    public func index(for arguments: [[UInt8]]) -> Int? {
        guard let first = arguments.first, let command = indexByName[Self.lowercased(first)] else { return nil }
        let entry = entries[command]
        if !entry.children.isEmpty, arguments.count > 1,
           let sub = indexByName[entry.fullName + "|" + Self.lowercased(arguments[1])] {
            return sub
        }
        return command
    }

    /// The indices of the entries in every one of `categories`.
    func indices(in categories: ACLCategories) -> [Int] {
        entries.indices.filter { entries[$0].categories.isSuperset(of: categories) && !entries[$0].categories.isEmpty }
    }

    static func lowercased(_ bytes: [UInt8]) -> String {
        String(decoding: bytes.map { $0 >= 65 && $0 <= 90 ? $0 + 32 : $0 }, as: UTF8.self)
    }
}
