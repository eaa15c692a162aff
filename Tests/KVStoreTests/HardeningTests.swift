#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import KVTestSupport
import Testing
@testable import KVStore

/// The file contents at `path`, or nil if it cannot be read.
private func contents(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var result: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard count > 0 else { return result }
        result += buffer[..<count]
    }
}

private func write(_ text: String, to path: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else { throw TestSupportError(description: "create \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    _ = Array(text.utf8).withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
}

private func permissions(_ path: String) -> mode_t? {
    var info = stat()
    guard lstat(path, &info) == 0 else { return nil }
    return info.st_mode & 0o777
}

private let isRoot = geteuid() == 0

@Suite("Paths from users, clients and files")
struct PathSafetyTests {
    /// A Swift string may hold NUL; the C string a system call gets ends there. `KVSH.BACKUP "DIR/000001.log\0/x/y"`
    /// passed the inside-the-store check as the whole string and then replaced the live log with an image.
    @Test("a path with a NUL byte is refused everywhere and the store is untouched")
    func nulBytes() throws {
        try withTempDir { root in
            let directory = root + "/store"
            let store = try KVStore(directory: directory)
            try store.set(bytes("k"), bytes("v"))
            try store.commit()
            let log = directory + "/000001.log"
            let before = contents(log)
            #expect(throws: StoreError.invalidPath(path: log + "\0/x/y", reason: "contains a NUL byte, which no file name can hold")) {
                _ = try store.backup(to: log + "\0/x/y")
            }
            #expect(throws: StoreError.self) { _ = try LogImporter.importLog(at: log + "\0.json", into: store) }
            #expect(throws: StoreError.self) { _ = try KVStore.restore(backup: root + "/b\0", into: root + "/other", force: false) }
            #expect(throws: StoreError.self) { _ = try KVStore(directory: root + "/x\0y") }
            #expect(contents(log) == before)
            try store.set(bytes("after"), bytes("2"))
            try store.commit()
            try store.close()
            let reopened = try KVStore(directory: directory)
            defer { try? reopened.close() }
            #expect(reopened.get(bytes("k")) == bytes("v") && reopened.get(bytes("after")) == bytes("2"))
            #expect(!listDirectory(root).contains("x"))
        }
    }

    @Test("the message shows a NUL byte as \\x00")
    func nulInMessage() {
        #expect("\(StoreError.invalidPath(path: "a\0b", reason: "r"))" == "path 'a\\x00b' r")
    }

    /// The guard compares where a backup really goes (its directory resolved), not the string given.
    @Test("a backup into the data directory is refused whatever the spelling: link, '..', a subdirectory")
    func backupInsideStoreBySpelling() throws {
        try withTempDir { root in
            let directory = root + "/store"
            let store = try KVStore(directory: directory)
            defer { try? store.close() }
            try store.set(bytes("k"), bytes("v"))
            #expect(symlink(directory, root + "/alias") == 0)
            #expect(mkdir(directory + "/sub", 0o700) == 0)
            for path in [root + "/alias/000001.log", directory + "/sub/../000001.log", directory + "/sub/x.kvbak",
                         root + "/./store/y.kvbak"] {
                #expect(throws: StoreError.backupInsideStore(path: path, directory: directory)) { _ = try store.backup(to: path) }
            }
            for path in [directory + "/", directory + "/.."] {
                #expect(throws: StoreError.self) { _ = try store.backup(to: path) }
            }
            #expect(throws: StoreError.self) { _ = try store.backup(to: root + "/missing-dir/x.kvbak") }
            #expect(try store.backup(to: directory + "/../outside.kvbak").entries == 1)
            #expect(listDirectory(directory) == ["000001.log", "LOCK", "sub"])
        }
    }

    @Test("a backup never replaces an existing file unless asked to")
    func backupDoesNotReplace() throws {
        try withTempDir { root in
            let store = try KVStore(directory: root + "/store")
            defer { try? store.close() }
            try store.set(bytes("k"), bytes("v"))
            let target = root + "/precious.txt"
            try write("keep me\n", to: target)
            #expect(throws: StoreError.fileExists(path: target)) { _ = try store.backup(to: target) }
            #expect(contents(target) == bytes("keep me\n"))
            #expect(listDirectory(root) == ["precious.txt", "store"])  // no temporary left behind
            #expect(try store.backup(to: target, replace: true).entries == 1)
            var index = OrderedIndex()
            #expect(try ImageFile.read(target, into: &index).entries == 1)
        }
    }
}

@Suite("Files and directories others could tamper with")
struct DataDirectorySafetyTests {
    @Test("a new store's directory is 0700 and its files 0600, whatever the umask")
    func privateModes() throws {
        try withTempDir { root in
            let old = umask(0o022)
            defer { umask(old) }
            let directory = root + "/store"
            let store = try KVStore(directory: directory)
            try store.set(bytes("k"), bytes("v"))
            _ = try store.checkpoint()
            _ = try store.backup(to: root + "/b.kvbak")
            try store.close()
            #expect(permissions(directory) == 0o700)
            for name in listDirectory(directory) {
                #expect(permissions(directory + "/" + name) == 0o600, "\(name)")
            }
            #expect(permissions(root + "/b.kvbak") == 0o600)
        }
    }

    /// Whoever can write the data directory plants `LOCK -> /victim`: opening the store truncated the victim.
    @Test("a symlink planted as LOCK or as a log is not followed; its target is untouched")
    func plantedSymlinks() throws {
        try withTempDir { root in
            let victim = root + "/victim"
            try write("secret\n", to: victim)
            for name in ["LOCK", "000001.log"] {
                let directory = root + "/store-\(name)"
                #expect(mkdir(directory, 0o700) == 0)
                #expect(symlink(victim, directory + "/" + name) == 0)
                #expect(throws: StoreError.self) { _ = try KVStore(directory: directory) }
                #expect(contents(victim) == bytes("secret\n"))
            }
        }
    }

    @Test("a data directory that every user can write is refused with what to do")
    func worldWritable() throws {
        try withTempDir { root in
            let directory = root + "/store"
            #expect(mkdir(directory, 0o700) == 0)
            #expect(chmod(directory, 0o777) == 0)
            #expect(throws: StoreError.self) { _ = try KVStore(directory: directory) }
            do {
                _ = try KVStore(directory: directory)
            } catch {
                #expect("\(error)".contains("can be written by every user (mode 777)") && "\(error)".contains("chmod o-w"))
            }
            #expect(listDirectory(directory).isEmpty)
            #expect(chmod(directory, 0o755) == 0)
            let store = try KVStore(directory: directory)
            try store.close()
        }
    }

    @Test("a data directory owned by another user (not root) is refused", .enabled(if: isRoot, "needs root to chown"))
    func ownedByAnother() throws {
        try withTempDir { root in
            let directory = root + "/store"
            #expect(mkdir(directory, 0o700) == 0)
            #expect(chown(directory, 65534, 65534) == 0)
            #expect(throws: StoreError.unsafeDirectory(path: directory, reason: "belongs to another user (uid 65534, while kvsh runs as uid 0)")) {
                _ = try KVStore(directory: directory)
            }
        }
    }
}

/// A bind mount of `source` at `target`, read-only, for as long as `body` runs.
private func withReadOnlyMount(_ source: String, at target: String, _ body: () throws -> Void) throws {
    #expect(mkdir(target, 0o700) == 0)
    guard mount(source, target, nil, UInt(MS_BIND), nil) == 0 else {
        throw TestSupportError(description: "bind mount: \(String(cString: strerror(errno)))")
    }
    defer { umount2(target, Int32(MNT_DETACH)) }
    guard mount(source, target, nil, UInt(MS_BIND | MS_REMOUNT | MS_RDONLY), nil) == 0 else {
        throw TestSupportError(description: "remount read-only: \(String(cString: strerror(errno)))")
    }
    try body()
}

@Suite("A store that cannot be written")
struct ReadOnlyStoreTests {
    @Test("a store on a read-only file system opens read-only: reads, check and backup work, writes are refused",
          .enabled(if: isRoot, "needs root to mount"))
    func readOnlyMount() throws {
        try withTempDir { root in
            let directory = root + "/store"
            let store = try KVStore(directory: directory)
            try store.set(bytes("k"), bytes("v"))
            _ = try store.checkpoint()
            try store.set(bytes("k2"), bytes("v2"))
            try store.close()
            let before = listDirectory(directory).map { ($0, contents(directory + "/" + $0)) }
            try withReadOnlyMount(directory, at: root + "/ro") {
                let readOnly = try KVStore(directory: root + "/ro")
                #expect(readOnly.readOnlyReason?.contains("Read-only file system") == true)
                #expect(readOnly.get(bytes("k")) == bytes("v") && readOnly.get(bytes("k2")) == bytes("v2"))
                #expect(throws: StoreError.self) { try readOnly.set(bytes("x"), bytes("y")) }
                #expect(throws: StoreError.self) { _ = try readOnly.checkpoint() }
                #expect(try readOnly.check().isClean)
                #expect(try readOnly.rebuild().keys == 2)
                #expect(try readOnly.backup(to: root + "/copy.kvbak").entries == 2)
                try readOnly.commit()
                try readOnly.close()
                let lock = try DirectoryLock(directory: root + "/ro", allowReadOnly: true)
                #expect(lock.isReadOnly)
                lock.release()
                #expect(throws: StoreError.self) { _ = try DirectoryLock(directory: root + "/ro") }
            }
            #expect(listDirectory(directory).map { ($0, contents(directory + "/" + $0)) }.elementsEqual(before) { $0 == $1 })
        }
    }
}

@Suite("Closing a store")
struct CloseFailureTests {
    /// `close()` used to swallow a failed final write (`try?`): a caller could not know the last writes were lost.
    @Test("a failed final write at close is reported, and the lock is still released", .enabled(if: isRoot, "needs root to mount"))
    func failedFinalWrite() throws {
        try withTempDir { root in
            let directory = root + "/small"
            #expect(mkdir(directory, 0o700) == 0)
            guard mount("tmpfs", directory, "tmpfs", 0, "size=256k,mode=0700") == 0 else {
                throw TestSupportError(description: "mount tmpfs: \(String(cString: strerror(errno)))")
            }
            defer { umount2(directory, Int32(MNT_DETACH)) }
            let store = try KVStore(directory: directory)
            try store.set(bytes("big"), [UInt8](repeating: 7, count: 512 << 10))  // pending: not written until committed
            #expect(throws: StoreError.self) { try store.close() }
            try store.close()  // a second close does nothing and reports nothing more
            let lock = try DirectoryLock(directory: directory)
            lock.release()
        }
    }
}
