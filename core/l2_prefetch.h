// L2 prefetch of a later kernel's weights. At decode batch 1 the kernels between two GEMVs
// (conv, state update, gated norm) move a few MB in ~10 us while the memory bus idles; a kernel
// there can ask the L2 cache to fetch the next GEMV's weights (fire and forget), and the GEMV then
// streams them from L2 (bench/RESULTS.md). The device side is core/l2_prefetch.cuh.
#ifndef MAMBASERVE_CORE_L2_PREFETCH_H_
#define MAMBASERVE_CORE_L2_PREFETCH_H_

#include <cstdint>

namespace mambaserve {

// A byte range to fetch into L2; bytes == 0 means none. Build it with L2PrefetchOf.
struct L2PrefetchRange {
  const void* ptr = nullptr;
  int64_t bytes = 0;
  bool evict_last = false;  // fetch with the L2 evict-last policy
};

// The range [ptr, ptr + bytes) trimmed to what the hardware takes (16-byte aligned start, a
// multiple of 16 bytes), or none when prefetching is off, unsupported, or ptr is not aligned.
L2PrefetchRange L2PrefetchOf(const void* ptr, int64_t bytes);

// 0: off; 1: on (default on a 9.0+ GPU); 2: on with the evict-last policy. Benchmarks compare;
// CUDA graphs captured before keep the old setting.
int L2PrefetchMode();
void SetL2PrefetchMode(int mode);

}  // namespace mambaserve

#endif  // MAMBASERVE_CORE_L2_PREFETCH_H_
