import KVStore

/// A command that could not run. Two wordings: `message` for people (Redis's text plus what to do), and
/// `redisMessage`, Redis's exact text, for the server, whose clients may match on it.
public struct CommandError: Error, Sendable, CustomStringConvertible {
    /// The message the shell prints, starting with `ERR`.
    public let message: String
    /// What Redis replies in the same case, starting with `ERR`.
    public let redisMessage: String

    public var description: String { message }

    public init(message: String, redisMessage: String? = nil) {
        self.message = message
        self.redisMessage = redisMessage ?? message
    }

    public static func other(_ text: String) -> CommandError { CommandError(message: "ERR " + text) }

    /// Redis's wording plus a hint in parentheses for the shell.
    static func redis(_ text: String, hint: String) -> CommandError {
        CommandError(message: "ERR \(text) (\(hint))", redisMessage: "ERR " + text)
    }

    public static let unbalancedQuotes = CommandError(
        message: "ERR unbalanced quotes (close every quote, and follow a closing quote with a blank or the end of the line)",
        redisMessage: "ERR Protocol error: unbalanced quotes in request")

    public static func unknownCommand(_ name: String, arguments: ArraySlice<[UInt8]> = []) -> CommandError {
        let hint = CommandTable.suggestion(for: name).map { "did you mean '\($0)'? " } ?? ""
        let kind = name.hasPrefix(":") ? "meta-command" : "command"
        let beginning = arguments.prefix(3).map { "'\(String(decoding: $0.prefix(128), as: UTF8.self))' " }.joined()
        return CommandError(message: "ERR unknown \(kind) '\(name)' (\(hint)type :help for the list)",
                            redisMessage: "ERR unknown command '\(name)', with args beginning with: \(beginning)")
    }

    public static func wrongArity(_ spec: CommandSpec) -> CommandError {
        CommandError(message: "ERR wrong number of arguments for '\(spec.name)' (usage: \(spec.usage))",
                     redisMessage: "ERR wrong number of arguments for '\(spec.name.lowercased())' command")
    }

    /// Redis's `ERR syntax error`, with the usage.
    public static func syntax(_ spec: CommandSpec) -> CommandError {
        redis("syntax error", hint: "usage: \(spec.usage)")
    }

    /// Redis's `ERR value is not an integer or out of range`, with what is expected.
    public static func notAnInteger(_ hint: String) -> CommandError {
        redis("value is not an integer or out of range", hint: hint)
    }

    /// Redis's `ERR invalid cursor`, with how to get a valid one.
    public static let invalidCursor = redis("invalid cursor", hint: "start with 0, then pass the cursor the previous SCAN returned")

    public static func badArgument(_ spec: CommandSpec, _ argument: String) -> CommandError {
        other("invalid argument '\(argument)' for '\(spec.name)' (usage: \(spec.usage))")
    }
}
