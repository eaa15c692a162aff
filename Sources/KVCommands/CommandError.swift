import KVStore
import RESP

/// A command that could not run. Two wordings: `message` for people (Redis's text plus what to do), and
/// `redisMessage`, Redis's exact text, for the server, whose clients may match on it.
public struct CommandError: Error, Sendable, CustomStringConvertible {
    /// The message the shell prints, starting with `ERR`.
    public let message: String
    /// What Redis replies in the same case, starting with `ERR`.
    public let redisMessage: String

    public var description: String { message }

    /// The error's code, as Redis clients match on it: the first word (`ERR`, `WRONGTYPE`, `NOPERM`, ...).
    public var code: Substring { redisMessage.prefix { $0 != " " } }

    public init(message: String, redisMessage: String? = nil) {
        self.message = message
        self.redisMessage = redisMessage ?? message
    }

    public static func other(_ text: String) -> CommandError { CommandError(message: "ERR " + text) }

    /// The reply text a Redis client gets for `error`, whatever raised it: a command's error in Redis's wording, any
    /// other (the store's: a full disk, a value too large) as `ERR` and what it says. One wording, whichever path
    /// of the server ran the command.
    public static func redisText(for error: any Error) -> String {
        (error as? CommandError)?.redisMessage ?? "ERR \(error)"
    }

    /// A state the code should never reach: reported as an error rather than a trap, so the shell goes on.
    public static func internalError(_ what: String) -> CommandError {
        other("internal error: \(what); please report it")
    }

    /// Redis's wording plus a hint in parentheses for the shell.
    static func redis(_ text: String, hint: String) -> CommandError {
        CommandError(message: "ERR \(text) (\(hint))", redisMessage: "ERR " + text)
    }

    public static let unbalancedQuotes = CommandError(
        message: "ERR unbalanced quotes (close every quote, and follow a closing quote with a blank or the end of the line)",
        redisMessage: "ERR Protocol error: unbalanced quotes in request")

    /// `text` with control characters escaped (`\x01`), so that a stray byte in a bad command cannot garble
    /// the terminal the error is printed on.
    static func printable(_ text: String) -> String {
        var result = ""
        for scalar in text.unicodeScalars {
            if scalar.value < 0x20 || scalar.value == 0x7F {
                let hex = String(scalar.value, radix: 16)
                result += "\\x" + (hex.count == 1 ? "0" + hex : hex)
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    public static func unknownCommand(_ rawName: String, arguments: ArraySlice<[UInt8]> = []) -> CommandError {
        let name = printable(rawName)
        let hint = CommandTable.suggestion(for: name).map { "did you mean '\($0)'? " } ?? ""
        let kind = name.hasPrefix(":") ? "meta-command" : "command"
        let beginning = arguments.prefix(3).map { "'\(printable(String(decoding: $0.prefix(128), as: UTF8.self)))' " }.joined()
        return CommandError(message: "ERR unknown \(kind) '\(name)' (\(hint)type :help for the list)",
                            redisMessage: "ERR unknown command '\(name)', with args beginning with: \(beginning)")
    }

    /// - Parameter typed: the name as the client typed it; Redis names the alias used (`'del'`, not `'delete'`).
    public static func wrongArity(_ spec: CommandSpec, typed: [UInt8]? = nil) -> CommandError {
        let name = typed.map { String(decoding: $0, as: UTF8.self).lowercased() } ?? spec.name.lowercased()
        return CommandError(message: "ERR wrong number of arguments for '\(spec.name)' (usage: \(spec.usage))",
                            redisMessage: "ERR wrong number of arguments for '\(name)' command")
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

    /// SET's expiry options (`EX`, `PX`, `EXAT`, `PXAT`, `KEEPTTL`): keys never expire in kvsh. Not Redis wording
    /// (Redis accepts them); `option` is named as typed, in upper case.
    public static func expiryNotSupported(_ option: String) -> CommandError {
        CommandError(message: "ERR the \(option) option is not supported: keys do not expire in kvsh (drop the option; DEL removes a key)",
                     redisMessage: "ERR the \(option) option is not supported: keys do not expire in kvsh")
    }

    /// INCR and friends on a value that is not a decimal integer within 64 bits.
    /// SCAN's `COUNT n` and RANGE's `LIMIT n`, when n is not a fitting integer.
    public static let scanCountNotAnInteger = notAnInteger("COUNT n takes an integer >= 1")
    public static let rangeLimitNotAnInteger = notAnInteger("LIMIT n takes an integer >= 0")

    public static let valueNotAnInteger = notAnInteger("the value stored at the key is not a decimal integer within 64 bits")

    /// INCRBY's or DECRBY's amount is not an integer within 64 bits.
    public static func amountNotAnInteger(_ spec: CommandSpec) -> CommandError {
        let name = spec.id == .decrby ? "decrement" : "increment"
        return notAnInteger("usage: \(spec.usage); the \(name) must be an integer from -9223372036854775808 to 9223372036854775807")
    }

    /// Redis's `ERR increment or decrement would overflow`: the result does not fit in 64 bits.
    public static let incrementOverflow = redis("increment or decrement would overflow",
                                                hint: "the result would be outside -9223372036854775808...9223372036854775807")

    /// Redis's `ERR decrement would overflow`: `DECRBY key -9223372036854775808`, whose negation does not fit.
    public static let decrementOverflow = redis("decrement would overflow",
                                                hint: "DECRBY cannot take -9223372036854775808: its negation does not fit in 64 bits")

    /// Redis's error for a value that would grow past the largest a value may be (APPEND).
    public static let valueTooLarge = redis("string exceeds maximum allowed size (proto-max-bulk-len)",
                                            hint: "a value holds at most \(LogFormat.maxValueSize) bytes")

    /// A backup without a path where no backup directory is set.
    public static let noBackupDirectory = CommandError(
        message: "ERR KVSH.BACKUP without a path writes into the server's backup directory, and none is set: "
            + "restart kvsh serve with --backup-dir DIR")

    public static func badArgument(_ spec: CommandSpec, _ argument: String) -> CommandError {
        other("invalid argument '\(argument)' for '\(spec.name)' (usage: \(spec.usage))")
    }
}

extension CommandError {
    /// An error reply a server sent for a command, as the error the command layer raised there: the server sends
    /// each error's ``redisMessage`` (`CODE text`), so the error is the one among those the command can raise whose
    /// Redis text is exactly this, and the shell then prints its ``message`` (with the hint) as for an embedded
    /// store. A text none of them has (another server's error, a limit) is kept as it came.
    public init(serverReply text: String, spec: CommandSpec?, arguments: [[UInt8]]) {
        guard let spec else {
            if text.hasPrefix("ERR unknown command ") {
                self = .unknownCommand(String(decoding: arguments[0], as: UTF8.self), arguments: arguments.dropFirst())
            } else {
                self = CommandError(message: text)
            }
            return
        }
        var candidates: [CommandError] = [.wrongArity(spec), .syntax(spec), .invalidCursor, .incrementOverflow,
                                          .decrementOverflow, .valueTooLarge]
        // "value is not an integer or out of range" has a hint per command (OrderedCommands, StringCommands).
        switch spec.id {
        case .scan: candidates.append(.scanCountNotAnInteger)
        case .range: candidates.append(.rangeLimitNotAnInteger)
        case .incr, .decr: candidates.append(.valueNotAnInteger)
        case .incrby, .decrby:
            // The amount is checked before the stored value, as in Redis.
            let amountIsInteger = arguments.count > 2 && RedisInteger.parse(arguments[2]) != nil
            candidates.append(amountIsInteger ? .valueNotAnInteger : .amountNotAnInteger(spec))
        case .set:
            candidates += arguments.dropFirst(3).map {
                .expiryNotSupported(String(decoding: OrderedCommands.asciiUppercased($0), as: UTF8.self))
            }
        default:
            break
        }
        self = candidates.first { $0.redisMessage == text } ?? CommandError(message: text)
    }
}
