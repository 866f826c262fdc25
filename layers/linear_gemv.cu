// y = x W^T for one row of x (decode at batch 1), bf16 weights and x, fp32 accumulation.
// cuBLAS reaches 51-61% of the weights' bandwidth time on out_proj-like shapes at batch 1
// (split-K and a separate reduce; bench_gemm_algos); here one warp streams one weight row with
// 16-byte evict-first loads, four in flight per lane, x read through L1. (A version for 2-4 rows
// that re-read x per row was slower than cuBLAS at 4 rows, so only one row is done here.)
// kRmsX: x is RMS-normalised on the fly - every warp also sums x^2 over the row it reads anyway
// and scales its dot product by rsqrt(mean(x^2) + eps) - so that a norm without a weight (the
// Mamba-2 gated norm, its weight folded into out_proj) needs no kernel of its own.
#include <cuda_bf16.h>

#include <cstdint>

#include "core/cuda_status.h"
#include "core/dependent_launch.cuh"
#include "core/dtype.h"
#include "core/status_macros.h"
#include "core/stream.h"
#include "kernels/cuda_dtype.cuh"
#include "layers/linear_gemv.h"

namespace mambaserve {
namespace {

// Output rows per block, measured (H100, 16-layer decode step at batch 1, CUDA graph): 16 warps
// 0.995 ms, 8 warps 0.802-0.807, 4 warps 0.778-0.791, 2 warps 0.777-0.783, 1 warp 0.813
// (bench/RESULTS.md). Likely why: as a dependent launch, small blocks find room beside the
// previous kernel's blocks and start streaming earlier.
constexpr int kPlainWarps = 2;
// The RMS-normalised product (Mamba-2 out_proj at batch 1) launches as a dependent of the state
// update, whose 640 blocks fill the SMs' registers; one-warp blocks find room beside them and
// start streaming sooner: 16-layer step 0.740 vs 0.754 ms with 2 warps (4 warps 0.753; 8 loads
// in flight 0.756-0.760), 64 layers 2.613 vs 2.633 ms (H100, bench/RESULTS.md).
constexpr int kRmsWarps = 1;
constexpr int kUnroll = 4;  // 16-byte weight loads in flight per lane

__device__ __forceinline__ void Store(float* p, float v) { *p = v; }
__device__ __forceinline__ void Store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

template <typename YT, bool kRmsX, int kWarps>  // kWarps: output rows (warps) per block
__global__ void __launch_bounds__(kWarps * 32)
    GemvKernel(const __nv_bfloat16* __restrict__ w, int64_t out, int64_t in,
               const __nv_bfloat16* __restrict__ x, YT* __restrict__ y, float eps) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= out) return;
  const uint4* wr = reinterpret_cast<const uint4*>(w + row * in);
  const int64_t nvec = in / 8;
  constexpr int kStride = 32 * kUnroll;  // vectors per batch of the warp
  auto load_weights = [&](int64_t v0, uint4(&q)[kUnroll]) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t v = v0 + u * 32;
      q[u] = v < nvec ? __ldcs(wr + v) : uint4{0, 0, 0, 0};
    }
  };
  uint4 wq[kUnroll];
  load_weights(lane, wq);
  // Launched as a dependent of the kernel before it (GemvCuda): the weights above stream while
  // that kernel finishes; x is its output, so wait for it here. The kernel after it may launch
  // once every block has started (it waits for this one likewise).
  AllowNextKernelLaunch();
  WaitForPreviousKernels();
  float acc = 0.0f, ss = 0.0f;
  for (int64_t v0 = lane; v0 < nvec; v0 += kStride) {
    uint4 next[kUnroll];
    load_weights(v0 + kStride, next);  // the next batch is in flight while this one is used
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t v = v0 + u * 32;
      if (v >= nvec) break;
      float wf[8];
      UnpackBf16x8(wq[u], wf);
      float xf[8];
      UnpackBf16x8(__ldg(reinterpret_cast<const uint4*>(x) + v), xf);
#pragma unroll
      for (int e = 0; e < 8; ++e) acc = fmaf(wf[e], xf[e], acc);
      if (kRmsX) {
#pragma unroll
        for (int e = 0; e < 8; ++e) ss = fmaf(xf[e], xf[e], ss);
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) wq[u] = next[u];
  }
#pragma unroll
  for (int off = 16; off > 0; off /= 2) {
    acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (kRmsX) ss += __shfl_xor_sync(0xffffffffu, ss, off);
  }
  if (kRmsX) acc *= rsqrtf(ss / static_cast<float>(in) + eps);
  if (lane == 0) Store(y + row, acc);
}

template <typename YT, bool kRmsX>
absl::Status Launch(const void* w, int64_t out, int64_t in, const void* x, void* y, float eps,
                    cudaStream_t s) {
  constexpr int kWarps = kRmsX ? kRmsWarps : kPlainWarps;
  const auto* wb = static_cast<const __nv_bfloat16*>(w);
  const auto* xb = static_cast<const __nv_bfloat16*>(x);
  auto* yt = static_cast<YT*>(y);
  const auto blocks = static_cast<unsigned>((out + kWarps - 1) / kWarps);
  CUDA_RETURN_IF_ERROR(LaunchDependent(GemvKernel<YT, kRmsX, kWarps>, dim3(blocks),
                                       dim3(kWarps * 32), 0, s, wb, out, in, xb, yt, eps));
  return absl::OkStatus();
}

}  // namespace

bool GemvFits(DType w_dtype, int64_t in, const void* w, const void* x, int64_t rows,
              DType y_dtype) {
  auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return w_dtype == DType::kBF16 && rows == 1 && in % 8 == 0 && aligned(w) && aligned(x) &&
         (y_dtype == DType::kF32 || y_dtype == DType::kBF16);
}

absl::Status GemvCuda(const void* w, int64_t out, int64_t in, const void* x, void* y, DType y_dtype,
                      const Stream& stream, std::optional<float> x_rms_eps) {
  auto s = static_cast<cudaStream_t>(stream.handle());
  const float eps = x_rms_eps.value_or(0.0f);
  if (x_rms_eps.has_value()) {
    if (y_dtype == DType::kF32) return Launch<float, true>(w, out, in, x, y, eps, s);
    return Launch<__nv_bfloat16, true>(w, out, in, x, y, eps, s);
  }
  if (y_dtype == DType::kF32) return Launch<float, false>(w, out, in, x, y, eps, s);
  return Launch<__nv_bfloat16, false>(w, out, in, x, y, eps, s);
}

}  // namespace mambaserve
