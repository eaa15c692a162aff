// Nothing to compile: the declaration in include/CLibFuzzer.h is what this target is for. libFuzzer itself is
// linked by -sanitize=fuzzer.
#include "CLibFuzzer.h"
