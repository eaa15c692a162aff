import Testing
@testable import KVCommands

@Suite("Hints while typing, from the command table")
struct HintTests {
    @Test("the arguments not typed yet, as redis-cli hints them", arguments: [
        ("SET", " key value [NX|XX] [GET]"),
        ("set ", "key value [NX|XX] [GET]"),
        ("SET k", " value [NX|XX] [GET]"),
        ("SET k v", " [NX|XX] [GET]"),
        ("DEL k1", " [key ...]"),
        ("GET", " key"),
        (":backup", " path [--force]"),
        (":hints ", "on|off"),
    ])
    func hints(line: String, expected: String) {
        #expect(CommandTable.hint(forLine: line) == expected)
    }

    @Test("nothing for a word that is no command, a command without arguments, or all arguments typed",
          arguments: ["", "SE", "FROB x", "DBSIZE", ":quit", "GET k", "GET k extra"])
    func noHint(line: String) {
        #expect(CommandTable.hint(forLine: line) == nil)
    }
}
