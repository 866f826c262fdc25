// Hopper (sm_90) bulk copies: one instruction moves a tile of a tensor map (TMA) into shared
// memory and completes on an mbarrier (its transaction count). Internal header: include it only
// from .cu files (nvcc) compiled for sm_90.
#ifndef MAMBASERVE_KERNELS_BULK_COPY_CUH_
#define MAMBASERVE_KERNELS_BULK_COPY_CUH_

#include <cstdint>

namespace mambaserve {

// `bar` and `dst` below are shared-memory addresses (SharedAddress in cp_async.cuh).
__device__ __forceinline__ void MbarrierInit(uint32_t bar, uint32_t arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(arrivals) : "memory");
}
// Makes initialized mbarriers visible to the bulk copies that complete them; a CTA barrier
// after it makes them visible to the other threads.
__device__ __forceinline__ void FenceMbarrierInit() {
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}
// One arrival that also expects `bytes` more of bulk-copy completions in the current phase.
__device__ __forceinline__ void MbarrierArriveExpectTx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
               : "memory");
}
// Waits until the phase with parity `parity` has completed.
__device__ __forceinline__ void MbarrierWait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n"
      ".reg .pred done;\n"
      "WAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
      "@!done bra WAIT;\n"
      "}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}
// A 2D tile of a tensor map (a __grid_constant__ kernel parameter, by its generic address) at
// element coordinates (col, row) -> shared memory at `dst` (128-byte aligned), completing the
// box's bytes on `bar`. Elements outside the map's extent land as zeros.
__device__ __forceinline__ void TmaLoad2d(uint32_t dst, const void* map, int col, int row,
                                          uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, "
      "{%2, %3}], [%4];\n" ::"r"(dst),
      "l"(map), "r"(col), "r"(row), "r"(bar)
      : "memory");
}

}  // namespace mambaserve

#endif  // MAMBASERVE_KERNELS_BULK_COPY_CUH_
