// Device side of programmatic dependent launch (core/dependent_launch.h) and the launch helper.
#ifndef MAMBASERVE_CORE_DEPENDENT_LAUNCH_CUH_
#define MAMBASERVE_CORE_DEPENDENT_LAUNCH_CUH_

#include <cuda_runtime.h>

#include <utility>

#include "core/dependent_launch.h"

namespace mambaserve {

// Waits until the kernels before this one on the stream have finished and their writes are
// visible (a no-op when this kernel was not launched as a dependent, or before sm_90).
__device__ __forceinline__ void WaitForPreviousKernels() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

// Lets the next kernel on the stream launch (if it is a dependent) once every block of this one
// has called this; it still waits for this kernel to finish before touching its outputs.
__device__ __forceinline__ void AllowNextKernelLaunch() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Launches `kernel` as a dependent of the previous kernel on `stream` where enabled, else
// normally. The kernel must call WaitForPreviousKernels before it uses earlier kernels' memory.
template <typename... Params, typename... Args>
cudaError_t LaunchDependent(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem,
                            cudaStream_t stream, Args&&... args) {
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = 1;
  if (DependentLaunchEnabled()) {
    cfg.attrs = attr;
    cfg.numAttrs = 1;
  }
  return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

}  // namespace mambaserve

#endif  // MAMBASERVE_CORE_DEPENDENT_LAUNCH_CUH_
