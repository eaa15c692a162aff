import CCRC32C

/// CRC-32C (Castagnoli) checksums, computed with the CPU's CRC instruction where it has one.
public enum CRC32C {
    /// The checksum of `bytes`, or of their concatenation with the bytes already covered by `crc`.
    @inlinable
    public static func checksum(_ bytes: UnsafeRawBufferPointer, extending crc: UInt32 = 0) -> UInt32 {
        kvsh_crc32c_extend(crc, bytes.baseAddress, bytes.count)
    }

    /// The checksum of `bytes`.
    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }

    /// Whether checksums run on a hardware instruction (SSE4.2 or the ARMv8 CRC extension).
    public static var isHardwareAccelerated: Bool { kvsh_crc32c_is_hardware_accelerated() != 0 }
}
