#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Foundation
import KVTestSupport
import Testing
import KVStore
@testable import KVShell

@Suite("Tab completion of keys and file paths")
struct CompletionTests {
    @Test("keys where a command takes one, from a bounded prefix scan; not where it takes a value")
    func keys() throws {
        try withSession { h in
            for key in ["user:1", "user:2", "user:10", "other", "us"] { try h.store.set(Array(key.utf8), Array("v".utf8)) }
            try h.store.set(Array("user:with space".utf8), Array("v".utf8))
            #expect(h.session.completions(forLine: "GET user:") == ["user:1", "user:10", "user:2"], "a key with a blank cannot be typed bare")
            #expect(h.session.completions(forLine: "get o") == ["other"])
            #expect(h.session.completions(forLine: "DEL other user:1") == ["user:1", "user:10"], "every argument of DEL is a key")
            #expect(h.session.completions(forLine: "SET user:1 u").isEmpty, "a value is not completed")
            #expect(h.session.completions(forLine: "GET x").isEmpty)
            #expect(h.session.completions(forLine: "GE") == ["GET", "GETDEL"], "the command names as before")
            for number in 0..<500 { try h.store.set(Array("many:\(number)".utf8), []) }
            #expect(h.session.completions(forLine: "GET many:").count == Session.completionKeyLimit)
        }
    }

    @Test("file paths after :backup, :source and :rebuild; directories end in a slash")
    func paths() throws {
        try withTempDir { root in
            try Data().write(to: URL(fileURLWithPath: root + "/fixtures.kv"))
            try Data().write(to: URL(fileURLWithPath: root + "/fixtures-2.kv"))
            try Data().write(to: URL(fileURLWithPath: root + "/.hidden"))
            #expect(mkdir(root + "/backups", 0o700) == 0)
            try withSession { h in
                #expect(h.session.completions(forLine: ":source " + root + "/fix") == [root + "/fixtures-2.kv", root + "/fixtures.kv"])
                #expect(h.session.completions(forLine: ":backup " + root + "/b") == [root + "/backups/"])
                #expect(h.session.completions(forLine: ":rebuild " + root + "/") == [root + "/backups/", root + "/fixtures-2.kv", root + "/fixtures.kv"])
                #expect(h.session.completions(forLine: ":rebuild " + root + "/.h") == [root + "/.hidden"])
                #expect(h.session.completions(forLine: ":stats " + root + "/f").isEmpty)
            }
        }
    }
}
