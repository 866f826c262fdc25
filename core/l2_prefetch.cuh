// Device side of core/l2_prefetch.h.
#ifndef MAMBASERVE_CORE_L2_PREFETCH_CUH_
#define MAMBASERVE_CORE_L2_PREFETCH_CUH_

#include <cstdint>

#include "core/l2_prefetch.h"

namespace mambaserve {

// Asks L2 to fetch this thread's share of `r` (thread `t` of `n` threads of the grid): slices of
// at least 4 KB, one bulk prefetch each, so a small range uses few threads. Nothing waits for it.
__device__ __forceinline__ void PrefetchToL2(const L2PrefetchRange& r, int64_t t, int64_t n) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if (r.bytes <= 0) return;
  constexpr int64_t kMinSlice = 4096;
  int64_t slice = (r.bytes + n - 1) / n;
  slice = slice < kMinSlice ? kMinSlice : (slice + 15) / 16 * 16;
  const int64_t begin = t * slice;
  if (begin >= r.bytes) return;
  const int64_t len = r.bytes - begin < slice ? r.bytes - begin : slice;
  const char* p = static_cast<const char*>(r.ptr) + begin;
  if (r.evict_last) {
    uint64_t policy;
    asm volatile("createpolicy.fractional.L2::evict_last.b64 %0, 1.0;" : "=l"(policy));
    asm volatile("cp.async.bulk.prefetch.L2.global.L2::cache_hint [%0], %1, %2;" ::"l"(p),
                 "r"(static_cast<uint32_t>(len)), "l"(policy)
                 : "memory");
  } else {
    asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;" ::"l"(p),
                 "r"(static_cast<uint32_t>(len))
                 : "memory");
  }
#endif
}

}  // namespace mambaserve

#endif  // MAMBASERVE_CORE_L2_PREFETCH_CUH_
