// libFuzzer on FuzzTargets.rdbReader. SwiftPM links an executable's `main` to its module's top-level code, so this
// code hands the process to libFuzzer's driver; whichever `main` the linker keeps, libFuzzer's or this one, runs
// LLVMFuzzerTestOneInput. (-parse-as-library, the usual recipe, leaves SwiftPM's renamed entry point undefined.)
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CLibFuzzer
import KVFuzzTargets

@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    FuzzTargets.libFuzzerInput(FuzzTargets.rdbReader, data, size)
}

var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv, testOneInput))
