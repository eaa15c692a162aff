// swift-tools-version:6.0
// The libFuzzer executables, one per entry point of KVFuzzTargets. A package of its own because they only link with
// `-sanitize=fuzzer` (their `main` calls libFuzzer's driver): build them with `make fuzz`, which passes
// `-sanitize=fuzzer,address`. See CONTRIBUTING.md, "Fuzzing and sanitizers".
import PackageDescription

let targets = ["RequestDecoder", "ReplyParser", "Tokenizer", "JSONImport", "LogReplay", "ImageRestore", "RDBReader"]

let package = Package(
    name: "kvsh-fuzz",
    products: targets.map { .executable(name: "Fuzz\($0)", targets: ["Fuzz\($0)"]) },
    dependencies: [.package(name: "kvsh", path: "..")],
    targets: [.target(name: "CLibFuzzer")] + targets.map {
        .executableTarget(name: "Fuzz\($0)", dependencies: ["CLibFuzzer", .product(name: "KVFuzzTargets", package: "kvsh")])
    }
)
