// Internal: the batched copy kernel's descriptor and launcher (copy_spec.cu, CUDA builds only).
#ifndef MAMBASERVE_STATE_MANAGER_COPY_SPEC_CUDA_H_
#define MAMBASERVE_STATE_MANAGER_COPY_SPEC_CUDA_H_

#include <cstdint>

#include "absl/status/status.h"

namespace mambaserve {
namespace copy_internal {

// One spec in bytes, with its vector width and its first tile in the launch.
struct CopyDescriptor {
  uint64_t src;
  uint64_t dst;
  int64_t num_rows;
  int64_t src_row_stride;  // bytes
  int64_t dst_row_stride;  // bytes
  int64_t row_bytes;
  int64_t tile_begin;  // first tile of this descriptor (descriptors sorted by it)
  int64_t vec_bytes;   // 16, 8, 4, 2 or 1: divides addresses, strides and row_bytes
};

// Vectors per tile (one CUDA block of kCopyThreads threads handles one tile).
inline constexpr int64_t kCopyThreads = 256;
inline constexpr int64_t kVectorsPerTile = kCopyThreads * 8;

// One launch over `total_tiles` tiles of `num_descs` descriptors at `d_descs` (device memory).
absl::Status LaunchBatchedCopy(const CopyDescriptor* d_descs, int64_t num_descs,
                               int64_t total_tiles, int device_index, void* stream);

}  // namespace copy_internal
}  // namespace mambaserve

#endif  // MAMBASERVE_STATE_MANAGER_COPY_SPEC_CUDA_H_
