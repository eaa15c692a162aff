#ifndef KVSH_CCRC32C_H
#define KVSH_CCRC32C_H

#include <stddef.h>
#include <stdint.h>

/// Extends `crc` (start with 0) by `length` bytes at `data` using CRC-32C (Castagnoli, the polynomial of
/// iSCSI, ext4 and LevelDB). Uses the SSE4.2 `crc32` instruction on x86-64 and the ARMv8 CRC extension on
/// AArch64 when the CPU has them, and a table-driven fallback otherwise.
uint32_t kvsh_crc32c_extend(uint32_t crc, const void *data, size_t length);

/// 1 when `kvsh_crc32c_extend` runs on the hardware instruction, 0 on the portable fallback.
int kvsh_crc32c_is_hardware_accelerated(void);

#endif
