// cp.async (sm_80+) helpers shared by the kernels that stage global rows in shared memory while
// they compute on earlier ones. Internal header: include it only from .cu files (nvcc).
#ifndef MAMBASERVE_KERNELS_CP_ASYNC_CUH_
#define MAMBASERVE_KERNELS_CP_ASYNC_CUH_

#include <cuda_runtime.h>

namespace mambaserve {

__device__ __forceinline__ unsigned SharedAddress(const void* smem) {
  return static_cast<unsigned>(__cvta_generic_to_shared(smem));
}
// 16 bytes bypass L1 (.cg: streamed data); 8 and 4 bytes must go through it (.ca).
__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(SharedAddress(smem)), "l"(gmem));
}
__device__ __forceinline__ void CpAsync8(void* smem, const void* gmem) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(SharedAddress(smem)), "l"(gmem));
}
__device__ __forceinline__ void CpAsync4(void* smem, const void* gmem) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(SharedAddress(smem)), "l"(gmem));
}
// 16 bytes when `valid`, else 16 zero bytes written to smem without reading gmem.
__device__ __forceinline__ void CpAsync16(void* smem, const void* gmem, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(SharedAddress(smem)),
               "l"(gmem), "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
// Waits until at most kPending of this thread's committed groups are still in flight.
template <int kPending>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

}  // namespace mambaserve

#endif  // MAMBASERVE_KERNELS_CP_ASYNC_CUH_
