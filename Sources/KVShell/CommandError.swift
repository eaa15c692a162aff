import KVStore

/// A command that could not run, with a message in Redis's style that says what to do.
public struct CommandError: Error, Sendable, CustomStringConvertible {
    /// The full message, starting with `ERR`.
    public let message: String

    public var description: String { message }

    public static func other(_ text: String) -> CommandError { CommandError(message: "ERR " + text) }

    public static let unbalancedQuotes = CommandError(
        message: "ERR unbalanced quotes (close every quote, and follow a closing quote with a blank or the end of the line)")

    public static func unknownCommand(_ name: String) -> CommandError {
        let hint = CommandTable.suggestion(for: name).map { "did you mean '\($0)'? " } ?? ""
        let kind = name.hasPrefix(":") ? "meta-command" : "command"
        return other("unknown \(kind) '\(name)' (\(hint)type :help for the list)")
    }

    public static func wrongArity(_ spec: CommandSpec) -> CommandError {
        other("wrong number of arguments for '\(spec.name)' (usage: \(spec.usage))")
    }

    /// Redis's `ERR syntax error`, with the usage.
    public static func syntax(_ spec: CommandSpec) -> CommandError {
        other("syntax error (usage: \(spec.usage))")
    }

    /// Redis's `ERR value is not an integer or out of range`, with what is expected.
    public static func notAnInteger(_ hint: String) -> CommandError {
        other("value is not an integer or out of range (\(hint))")
    }

    /// Redis's `ERR invalid cursor`, with how to get a valid one.
    public static let invalidCursor = other("invalid cursor (start with 0, then pass the cursor the previous SCAN returned)")

    public static func badArgument(_ spec: CommandSpec, _ argument: String) -> CommandError {
        other("invalid argument '\(argument)' for '\(spec.name)' (usage: \(spec.usage))")
    }
}
