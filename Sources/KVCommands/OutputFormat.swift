/// How replies are printed. See `Docs/Commands.md`.
public enum OutputFormat: String, Sendable, CaseIterable {
    /// As redis-cli prints on a terminal: `OK`, `"quoted value"`, `(nil)`, `(integer) 3`, arrays as numbered
    /// lines (`1) "a"`), nested arrays indented under their number, `(empty array)`.
    case human
    /// Values as-is, nil as an empty line, bare integers, one array item per line (nested arrays flattened,
    /// an empty array prints nothing): what a pipe or a file wants.
    case raw
    /// One JSON value per reply: `"v"`, `null`, `3`, `["a","b"]`; values that are not UTF-8 as `{"base64":"..."}`.
    case json
}
