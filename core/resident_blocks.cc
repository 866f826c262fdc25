#include "core/resident_blocks.h"

#include <tuple>
#include <vector>

#include "absl/status/status.h"

#if MAMBASERVE_HAS_CUDA
#include <cuda_runtime.h>

#include "core/cuda_status.h"
#include "core/status_macros.h"
#endif

namespace mambaserve {

absl::StatusOr<int64_t> ResidentBlocks(const void* kernel, int threads, size_t smem) {
#if MAMBASERVE_HAS_CUDA
  struct Entry {
    int device;
    const void* kernel;
    int threads;
    size_t smem;
    int64_t blocks;
  };
  // A handful of launch shapes per thread: a linear search is enough, and no lock is needed.
  thread_local std::vector<Entry> cache;
  int device = 0;
  CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  for (const Entry& e : cache) {
    if (std::tie(e.device, e.kernel, e.threads, e.smem) ==
        std::tie(device, kernel, threads, smem)) {
      return e.blocks;
    }
  }
  int sms = 0, per_sm = 0;
  CUDA_RETURN_IF_ERROR(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  CUDA_RETURN_IF_ERROR(
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem));
  const int64_t blocks = static_cast<int64_t>(sms) * per_sm;
  cache.push_back({device, kernel, threads, smem, blocks});
  return blocks;
#else
  (void)kernel;
  (void)threads;
  (void)smem;
  return absl::FailedPreconditionError("ResidentBlocks: built without CUDA");
#endif
}

}  // namespace mambaserve
