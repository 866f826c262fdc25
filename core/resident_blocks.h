// How many blocks of a kernel the current GPU holds at once, for launch policies that depend on
// whether a grid is resident in one wave (a block that reads ahead of its dependent wait, or a
// scan that splits time across warps, only pays when every block runs at the same time).
#ifndef MAMBASERVE_CORE_RESIDENT_BLOCKS_H_
#define MAMBASERVE_CORE_RESIDENT_BLOCKS_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"

namespace mambaserve {

// Multiprocessors x blocks per multiprocessor of `kernel` (a __global__ function) launched with
// `threads` threads and `smem` bytes of dynamic shared memory on the current device. The
// occupancy query costs microseconds, so answers are cached per (device, kernel, threads, smem);
// set the kernel's attributes (shared-memory size and carveout) before the first call.
absl::StatusOr<int64_t> ResidentBlocks(const void* kernel, int threads, size_t smem);

}  // namespace mambaserve

#endif  // MAMBASERVE_CORE_RESIDENT_BLOCKS_H_
