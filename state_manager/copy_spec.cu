#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"
#include "core/cuda_status.h"
#include "core/status_macros.h"
#include "state_manager/copy_spec_cuda.h"

namespace mambaserve {
namespace copy_internal {
namespace {

constexpr int kUnroll = static_cast<int>(kVectorsPerTile / kCopyThreads);

// Copies vectors [first, end) of a descriptor's logical stream (row-major over its runs). Each
// thread loads all its vectors before storing any, so kUnroll loads are in flight at once.
// Batches are validated free of source/destination overlap, so the order does not matter.
template <typename V>
__device__ __forceinline__ void CopyVectors(const CopyDescriptor& d, int64_t first, int64_t end) {
  const char* src = reinterpret_cast<const char*>(d.src);
  char* dst = reinterpret_cast<char*>(d.dst);
  constexpr int64_t kV = static_cast<int64_t>(sizeof(V));
  V buf[kUnroll];
  if (d.num_rows == 1) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t i = first + u * kCopyThreads + threadIdx.x;
      if (i < end) buf[u] = *reinterpret_cast<const V*>(src + i * kV);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t i = first + u * kCopyThreads + threadIdx.x;
      if (i < end) *reinterpret_cast<V*>(dst + i * kV) = buf[u];
    }
    return;
  }
  const int64_t row_vecs = d.row_bytes / kV;
  int64_t dst_off[kUnroll];
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) {
    const int64_t i = first + u * kCopyThreads + threadIdx.x;
    if (i < end) {
      const int64_t row = i / row_vecs;
      const int64_t off = (i - row * row_vecs) * kV;
      buf[u] = *reinterpret_cast<const V*>(src + row * d.src_row_stride + off);
      dst_off[u] = row * d.dst_row_stride + off;
    }
  }
#pragma unroll
  for (int u = 0; u < kUnroll; ++u) {
    const int64_t i = first + u * kCopyThreads + threadIdx.x;
    if (i < end) *reinterpret_cast<V*>(dst + dst_off[u]) = buf[u];
  }
}

__global__ void BatchedCopyKernel(const CopyDescriptor* __restrict__ descs, int64_t num_descs) {
  const int64_t tile = static_cast<int64_t>(blockIdx.x);
  // Last descriptor whose tile_begin <= tile.
  int64_t lo = 0, hi = num_descs - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (descs[mid].tile_begin <= tile) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  const CopyDescriptor d = descs[lo];
  const int64_t total = d.num_rows * (d.row_bytes / d.vec_bytes);
  const int64_t first = (tile - d.tile_begin) * kVectorsPerTile;
  const int64_t end = min(total, first + kVectorsPerTile);
  switch (d.vec_bytes) {
    case 16:
      CopyVectors<uint4>(d, first, end);
      break;
    case 8:
      CopyVectors<uint2>(d, first, end);
      break;
    case 4:
      CopyVectors<uint32_t>(d, first, end);
      break;
    case 2:
      CopyVectors<uint16_t>(d, first, end);
      break;
    default:
      CopyVectors<uint8_t>(d, first, end);
      break;
  }
}

}  // namespace

absl::Status LaunchBatchedCopy(const CopyDescriptor* d_descs, int64_t num_descs,
                               int64_t total_tiles, int device_index, void* stream) {
  if (num_descs == 0 || total_tiles == 0) return absl::OkStatus();
  MS_CHECK_ARG(total_tiles <= 0x7fffffffLL, "batched copy: too many tiles (", total_tiles, ")");
  CUDA_RETURN_IF_ERROR(cudaSetDevice(device_index));
  // blockDim must be kCopyThreads: CopyVectors strides by it.
  BatchedCopyKernel<<<static_cast<unsigned>(total_tiles), static_cast<unsigned>(kCopyThreads), 0,
                      static_cast<cudaStream_t>(stream)>>>(d_descs, num_descs);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

}  // namespace copy_internal
}  // namespace mambaserve
