// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "kvsh",
    products: [
        .executable(name: "kvsh", targets: ["kvsh"]),
        .library(name: "KVStore", targets: ["KVStore"]),
        .library(name: "RESP", targets: ["RESP"]),
        .library(name: "KVCommands", targets: ["KVCommands"]),
        .library(name: "KVShell", targets: ["KVShell"]),
        .library(name: "KVServer", targets: ["KVServer"]),
        .library(name: "RDB", targets: ["RDB"]),
        .library(name: "Etcd", targets: ["Etcd"]),
        .library(name: "KVCluster", targets: ["KVCluster"]),
        .library(name: "KVAccess", targets: ["KVAccess"]),
        // The fuzz entry points, for the libFuzzer executables of the package in Fuzz/ (see CONTRIBUTING.md).
        .library(name: "KVFuzzTargets", targets: ["KVFuzzTargets"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),  // LogHandler.log(event:)
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.29.0"),
        // AES-256-GCM for encryption at rest (BoringSSL with AES-NI on Linux), PBKDF2-HMAC-SHA256 for stored
        // passwords (_CryptoExtras) and SHA-256 for Redis's `#hex` form; already resolved through swift-nio-ssl.
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
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
        .target(name: "KVStore", dependencies: ["CCRC32C", .product(name: "Crypto", package: "swift-crypto")]),
        // The Redis protocol, once: the value type and its encoder, the server's request decoders (in place and
        // incremental), the reply parser clients use, the inline tokenizer, with every limit in one place.
        .target(name: "RESP", dependencies: [.product(name: "NIOCore", package: "swift-nio")]),
        // Redis's RDB snapshot format (version 10), string keys only: a streaming writer and an incremental reader,
        // with LZF and CRC-64/REDIS. Knows nothing of the store; replication glues the two.
        .target(name: "RDB", dependencies: []),
        // Access control: users, Redis's ACL SETUSER rules, command categories, key patterns, password hashes, the
        // ACL file. Knows nothing of the network; the server asks it whether a connection's user may run a command.
        .target(
            name: "KVAccess",
            dependencies: [
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ]
        ),
        // The command layer: the one command table (names, arity, usage, help) and the executor of the data and
        // maintenance commands over a store, with structured errors worded for Redis clients and for people.
        .target(name: "KVCommands", dependencies: ["KVStore", "RESP", "KVAccess"]),
        // The shell's presentation: output formats, the script runner, sessions on an embedded store or a server (over TLS too).
        .target(name: "KVShell", dependencies: [
            "KVStore", "KVCommands", "RESP",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "NIOTLS", package: "swift-nio"),
        ]),
        // The RESP2/RESP3 server on SwiftNIO: connections, server commands, group commit across connections; its
        // statistics, slow log and latency monitor, and the HTTP endpoint for Prometheus and health checks; TLS with swift-nio-ssl.
        .target(
            name: "KVServer",
            dependencies: [
                "RESP",
                "RDB",
                "KVCommands",
                "KVStore",
                "KVAccess",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // A small etcd v3 client over the JSON gateway (KV, txn, leases, watch) and the lease-based election with
        // fencing that automatic failover builds on. Knows nothing of the store or the server.
        .target(
            name: "Etcd",
            dependencies: [
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // A failover cluster on etcd: election, fencing, the Sentinel API and FAILOVER, driving a server's replication.
        .target(
            name: "KVCluster",
            dependencies: ["Etcd", "KVServer", "KVStore", "RESP", .product(name: "Logging", package: "swift-log")]
        ),
        // The thin executable: flags, mode selection, the interactive loop.
        .executableTarget(
            name: "kvsh",
            dependencies: [
                "KVShell",
                "KVCommands",
                "KVAccess",
                "KVServer",
                "KVCluster",
                "LineEditor",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // One fuzz entry point per parser (RESP requests and replies, the tokenizer, the files the store reads),
        // with its invariants: run over the seed corpus by FuzzCorpusTests, and by libFuzzer from Fuzz/.
        .target(name: "KVFuzzTargets", dependencies: ["RESP", "KVStore", "RDB", .product(name: "NIOCore", package: "swift-nio")]),

        // Deterministic randomness, temporary directories and a fault-injecting file system, for every test target.
        .target(name: "KVTestSupport", dependencies: ["KVStore"], path: "Tests/KVTestSupport"),
        .testTarget(name: "KVStoreTests", dependencies: ["KVStore", "KVTestSupport"]),
        .testTarget(name: "RESPTests", dependencies: ["RESP", "KVTestSupport", .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(name: "KVCommandsTests", dependencies: ["KVCommands", "KVTestSupport"]),
        .testTarget(name: "KVAccessTests", dependencies: ["KVAccess", "KVCommands", "KVTestSupport"]),
        .testTarget(name: "KVShellTests", dependencies: ["KVShell", "KVCommands", "KVAccess", "RESP", "KVTestSupport"]),
        .testTarget(name: "KVServerTests", dependencies: [
            "KVServer",
            "RESP",
            "KVCommands",
            "KVTestSupport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        .testTarget(name: "RDBTests", dependencies: ["RDB", "RESP", "KVTestSupport"]),
        .testTarget(name: "FuzzCorpusTests", dependencies: ["KVFuzzTargets", "KVTestSupport"]),
        .testTarget(name: "KVSHEndToEndTests", dependencies: ["kvsh", "RESP"]),
        .testTarget(name: "EtcdTests", dependencies: [
            "Etcd",
            "KVTestSupport",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
        ]),
    ]
)
