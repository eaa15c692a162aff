// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "kvsh",
    products: [
        .executable(name: "kvsh", targets: ["kvsh"]),
        .library(name: "KVStore", targets: ["KVStore"]),
        .library(name: "KVShell", targets: ["KVShell"]),
        .library(name: "KVServer", targets: ["KVServer"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // libedit, reached through pkg-config; the shim header wraps its variadic C API for Swift.
        .systemLibrary(
            name: "CLibEdit",
            pkgConfig: "libedit",
            providers: [.apt(["libedit-dev"])]
        ),
        // A small line-editor wrapper: prompt, history file, Tab completion, Ctrl-C handling.
        .target(name: "LineEditor", dependencies: ["CLibEdit"]),

        // CRC32C with the SSE4.2 / ARMv8 CRC instructions and a portable fallback.
        .target(name: "CCRC32C"),
        // The storage engine: write-ahead log, recovery, ordered in-memory index. No terminals here.
        .target(name: "KVStore", dependencies: ["CCRC32C"]),
        // Tokenizer, command table, reply formatting and the script runner, between engine and executable.
        .target(name: "KVShell", dependencies: ["KVStore"]),
        // The RESP2/RESP3 server on SwiftNIO: protocol, connections, group commit across connections.
        .target(
            name: "KVServer",
            dependencies: [
                "KVShell",
                "KVStore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The thin executable: flags, mode selection, the interactive loop.
        .executableTarget(
            name: "kvsh",
            dependencies: [
                "KVShell",
                "KVServer",
                "LineEditor",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // Deterministic randomness, temporary directories and a fault-injecting file system, for every test target.
        .target(name: "KVTestSupport", dependencies: ["KVStore"], path: "Tests/KVTestSupport"),
        .testTarget(name: "KVStoreTests", dependencies: ["KVStore", "KVTestSupport"]),
        .testTarget(name: "KVShellTests", dependencies: ["KVShell", "KVTestSupport"]),
        .testTarget(name: "KVServerTests", dependencies: [
            "KVServer",
            "KVTestSupport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        .testTarget(name: "KVSHEndToEndTests", dependencies: ["kvsh"]),
    ]
)
