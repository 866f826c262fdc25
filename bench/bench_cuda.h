// Fail-fast CUDA error check for the benchmark programs (a benchmark has nothing to recover:
// it prints the failing call and exits).
#ifndef MAMBASERVE_BENCH_BENCH_CUDA_H_
#define MAMBASERVE_BENCH_BENCH_CUDA_H_

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

#define CHECK_CUDA(e)                                                                         \
  do {                                                                                        \
    cudaError_t err_ = (e);                                                                   \
    if (err_ != cudaSuccess) {                                                                \
      std::fprintf(stderr, "%s failed: %s (%s:%d)\n", #e, cudaGetErrorString(err_), __FILE__, \
                   __LINE__);                                                                 \
      std::exit(1);                                                                           \
    }                                                                                         \
  } while (0)

#endif  // MAMBASERVE_BENCH_BENCH_CUDA_H_
