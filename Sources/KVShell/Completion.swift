#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVCommands

extension Session {
    /// Keys offered by one Tab: a bounded scan, so that a key space of any size answers at once.
    static let completionKeyLimit = 100

    /// Tab-completion candidates for the word being typed at the end of `line`: the command table's (names, the
    /// choices of `:help`, `:timing`, `:hints`, `:format`); file paths after `:backup`, `:source` and `:rebuild`; keys
    /// where a data command takes a key (a prefix scan of the store, or `SCAN 0 MATCH prefix* COUNT 100` on a server).
    public func completions(forLine line: String) -> [String] {
        let table = CommandTable.completions(forLine: line)
        guard table.isEmpty else { return table }
        let words = line.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        let endsWithBlank = line.last == " "
        let current = endsWithBlank ? "" : (words.last ?? "")
        let position = endsWithBlank ? words.count : words.count - 1
        guard position >= 1, let first = words.first, let spec = CommandTable.lookup(first) else { return [] }
        switch spec.id {
        case .backup, .source, .rebuild, .rekey:
            return position == 1 ? Self.paths(startingWith: current) : []
        default:
            guard !spec.isMeta, Self.takesKey(spec, at: position), !current.contains("\"") && !current.contains("'") else { return [] }
            let keys = (try? backend.keys(withPrefix: Array(current.utf8), limit: Self.completionKeyLimit)) ?? []
            // Keys that a line can hold as one bare word only: no blanks, quotes or bytes that are not UTF-8.
            return keys.compactMap { String(validating: $0, as: UTF8.self) }
                .filter { key in !key.isEmpty && !key.contains { $0 == " " || $0 == "\"" || $0 == "'" || $0.isNewline } }
        }
    }

    /// Whether the argument at `position` (1 for the first after the name) is a key, by the command's syntax.
    static func takesKey(_ spec: CommandSpec, at position: Int) -> Bool {
        let arguments = spec.syntax
        guard !arguments.isEmpty else { return false }
        if position <= arguments.count { return arguments[position - 1].kind == .key }
        guard let last = arguments.last, last.isMultiple else { return false }
        return last.kind == .key
    }

    /// Paths that start with `typed`: the entries of its directory whose names start with its last component
    /// (hidden ones only when that starts with a dot), directories with a trailing slash.
    static func paths(startingWith typed: String) -> [String] {
        let slash = typed.lastIndex(of: "/")
        let directoryPart = slash.map { String(typed[...$0]) } ?? ""
        let namePrefix = slash.map { String(typed[typed.index(after: $0)...]) } ?? typed
        let directory = directoryPart.isEmpty ? "." : directoryPart
        guard let handle = opendir(directory) else { return [] }
        defer { closedir(handle) }
        var candidates: [String] = []
        while let entry = readdir(handle), candidates.count < 1000 {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard name != ".", name != "..", name.hasPrefix(namePrefix), namePrefix.hasPrefix(".") || !name.hasPrefix(".") else { continue }
            var info = stat()
            let isDirectory = stat(directoryPart + name, &info) == 0 && (info.st_mode & S_IFMT) == S_IFDIR
            candidates.append(directoryPart + name + (isDirectory ? "/" : ""))
        }
        return candidates.sorted()
    }
}
