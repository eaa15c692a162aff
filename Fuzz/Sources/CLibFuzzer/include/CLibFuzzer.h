// libFuzzer's driver, for executables that keep their own `main` (see Fuzz/Sources/Fuzz*/main.swift).
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
