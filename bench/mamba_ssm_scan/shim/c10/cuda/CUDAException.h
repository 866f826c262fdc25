// Stand-in for c10/cuda/CUDAException.h (our own code, not PyTorch's): the two macros the
// selective-scan launcher uses. PyTorch throws a c10::Error; a benchmark has nothing to recover,
// so these print the failing call and exit.
#pragma once

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

#define C10_CUDA_CHECK(EXPR)                                             \
  do {                                                                   \
    const cudaError_t shim_err_ = (EXPR);                                \
    if (shim_err_ != cudaSuccess) {                                      \
      std::fprintf(stderr, "CUDA error: %s failed: %s (%s:%d)\n", #EXPR, \
                   cudaGetErrorString(shim_err_), __FILE__, __LINE__);   \
      std::exit(1);                                                      \
    }                                                                    \
  } while (0)

#define C10_CUDA_KERNEL_LAUNCH_CHECK() C10_CUDA_CHECK(cudaGetLastError())
