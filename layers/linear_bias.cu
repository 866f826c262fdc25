#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "core/cuda_status.h"
#include "core/dtype.h"
#include "core/status_macros.h"
#include "core/stream.h"

namespace mambaserve {
namespace {

template <typename T>
__global__ void AddBiasKernel(T* y, int64_t stride, const float* bias, int64_t cols) {
  const int64_t r = blockIdx.x;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    y[r * stride + c] = static_cast<T>(static_cast<float>(y[r * stride + c]) + bias[c]);
  }
}

}  // namespace

absl::Status AddBiasCuda(void* y, int64_t y_row_stride, DType y_dtype, const float* bias,
                         int64_t rows, int64_t cols, const Stream& stream) {
  auto s = static_cast<cudaStream_t>(stream.handle());
  const unsigned grid = static_cast<unsigned>(rows);
  switch (y_dtype) {
    case DType::kBF16:
      AddBiasKernel<<<grid, 256, 0, s>>>(static_cast<__nv_bfloat16*>(y), y_row_stride, bias, cols);
      break;
    case DType::kF16:
      AddBiasKernel<<<grid, 256, 0, s>>>(static_cast<__half*>(y), y_row_stride, bias, cols);
      break;
    default:
      AddBiasKernel<<<grid, 256, 0, s>>>(static_cast<float*>(y), y_row_stride, bias, cols);
  }
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

}  // namespace mambaserve
