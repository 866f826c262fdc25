// y = x W^T for one row of x (decode at batch 1), bf16 weights and x, fp32 accumulation.
// cuBLAS reaches 51-61% of the weights' bandwidth time on out_proj-like shapes at batch 1
// (split-K and a separate reduce; bench_gemm_algos); here one warp streams one weight row with
// 16-byte evict-first loads, four in flight per lane, x read through L1. (A version for 2-4 rows
// that re-read x per row was slower than cuBLAS at 4 rows, so only one row is done here.)
#include <cuda_bf16.h>

#include <cstdint>

#include "core/cuda_status.h"
#include "core/dtype.h"
#include "core/status_macros.h"
#include "core/stream.h"
#include "layers/linear_gemv.h"

namespace mambaserve {
namespace {

constexpr int kWarps = 8;   // output rows per block
constexpr int kUnroll = 4;  // 16-byte weight loads in flight per lane

__device__ __forceinline__ void Unpack8(const uint4& q, float (&f)[8]) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&q);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 v = __bfloat1622float2(h[i]);
    f[2 * i] = v.x, f[2 * i + 1] = v.y;
  }
}

__device__ __forceinline__ void Store(float* p, float v) { *p = v; }
__device__ __forceinline__ void Store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

template <typename YT>
__global__ void __launch_bounds__(kWarps * 32)
    GemvKernel(const __nv_bfloat16* __restrict__ w, int64_t out, int64_t in,
               const __nv_bfloat16* __restrict__ x, YT* __restrict__ y) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= out) return;
  const uint4* wr = reinterpret_cast<const uint4*>(w + row * in);
  const int64_t nvec = in / 8;
  float acc = 0.0f;
  for (int64_t v0 = lane; v0 < nvec; v0 += 32 * kUnroll) {
    uint4 wq[kUnroll];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t v = v0 + u * 32;
      wq[u] = v < nvec ? __ldcs(wr + v) : uint4{0, 0, 0, 0};
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t v = v0 + u * 32;
      if (v >= nvec) break;
      float wf[8];
      Unpack8(wq[u], wf);
      float xf[8];
      Unpack8(__ldg(reinterpret_cast<const uint4*>(x) + v), xf);
#pragma unroll
      for (int e = 0; e < 8; ++e) acc = fmaf(wf[e], xf[e], acc);
    }
  }
#pragma unroll
  for (int off = 16; off > 0; off /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, off);
  if (lane == 0) Store(y + row, acc);
}

}  // namespace

bool GemvFits(DType w_dtype, int64_t in, const void* w, const void* x, int64_t rows,
              DType y_dtype) {
  auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return w_dtype == DType::kBF16 && rows == 1 && in % 8 == 0 && aligned(w) && aligned(x) &&
         (y_dtype == DType::kF32 || y_dtype == DType::kBF16);
}

absl::Status GemvCuda(const void* w, int64_t out, int64_t in, const void* x, void* y, DType y_dtype,
                      const Stream& stream) {
  auto s = static_cast<cudaStream_t>(stream.handle());
  const unsigned grid = static_cast<unsigned>((out + kWarps - 1) / kWarps);
  const auto* wb = static_cast<const __nv_bfloat16*>(w);
  const auto* xb = static_cast<const __nv_bfloat16*>(x);
  if (y_dtype == DType::kF32) {
    GemvKernel<float><<<grid, kWarps * 32, 0, s>>>(wb, out, in, xb, static_cast<float*>(y));
  } else {
    GemvKernel<__nv_bfloat16>
        <<<grid, kWarps * 32, 0, s>>>(wb, out, in, xb, static_cast<__nv_bfloat16*>(y));
  }
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

}  // namespace mambaserve
