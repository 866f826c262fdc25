// y = x W^T for 2-16 rows of x on tensor cores, streaming W once (batched decode: the products
// are weight-bound, ~1-4 FLOP per weight byte). cuBLAS reaches 60-80% of the weights' bandwidth
// time on the 2.7B model's in_proj / out_proj there, and as a library kernel it cannot start
// before the kernel ahead of it ends; this one is a programmatic dependent that requests its
// first weights before it waits for x, like the one-row GEMV. Measured on an H100
// (bench/RESULTS.md, thirteenth session): out_proj 12.2-13.0 us at 2-8 rows against cuBLAS's
// 14.2-20.6, the 16-layer model at batch 16 2-3% faster; from 32 rows on it loses to cuBLAS
// (x is re-read from L2 for every 16-32 rows of W), so Linear stops at 16.
//
// A warp computes 16 output rows (mma.sync m16n8k16, W as the row-major A operand) for all rows
// of x (n-tiles of 8) over a slice of K; the block's warps split K and add their partial tiles
// in shared memory. Each lane loads 16 contiguous bytes of W per row and step: lane (g, t) holds
// W[g][k0 + 8t .. 8t + 7] and W[g + 8][same], which the two k16 steps of a 32-wide k step use
// as their fragments under a fixed permutation of k (physical k0 + 8t + 4s + j plays logical k
// 2t + j (j < 2) or 2t + 8 + j - 2 of step s); x's fragments are loaded with the same
// permutation - again 16 contiguous bytes per lane - so the products are unchanged.
#include <cuda_bf16.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "core/cuda_status.h"
#include "core/dependent_launch.cuh"
#include "core/dtype.h"
#include "core/status_macros.h"
#include "core/stream.h"
#include "layers/linear_skinny.h"

namespace mambaserve {
namespace {

constexpr int kMaxWarps = 8;  // K slices per block
constexpr int kSlice = 640;   // target K per warp: in_proj 4 slices, out_proj 8 (2.7B model)
// 32-wide k steps of weight loads per batch, double-buffered: 4 measured 2-8% faster than 2 at
// 2-16 rows except out_proj at <= 8 rows (within 3%).
constexpr int kUnroll = 4;
// Below this many outputs (tiles of 16) the grid leaves most SMs idle: the Mamba-1 x_proj's 192
// outputs made 12 blocks and took 46 us at 64 rows; cuBLAS splits K across blocks instead.
constexpr int64_t kMinOut = 1024;

std::atomic<bool> g_enabled{true};

__device__ __forceinline__ void Mma(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2,
                                    uint32_t a3, uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void Store(float* p, float v) { *p = v; }
__device__ __forceinline__ void Store(__nv_bfloat16* p, float v) { *p = __float2bfloat16_rn(v); }

// kTiles n-tiles of 8 rows of x; kM 16-row tiles of W per warp, so that each x fragment a warp
// loads serves kM products (x is re-read from L2 once per 16 kM rows of W). Block: those 16 kM
// rows, blockDim.x / 32 K slices of `slice` (a multiple of 32) each.
template <typename YT, int kTiles, int kM>
__global__ void __launch_bounds__(kMaxWarps * 32)
    SkinnyKernel(const __nv_bfloat16* __restrict__ w, int64_t out, int64_t in,
                 const __nv_bfloat16* __restrict__ x, int64_t x_rs, int rows, YT* __restrict__ y,
                 int64_t y_rs, int slice) {
  extern __shared__ float red[];  // [warps][16 kM][kTiles * 8]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  const int g = lane / 4, t = lane % 4;
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * 16 * kM;
  const int64_t k_begin = static_cast<int64_t>(warp) * slice;
  const int64_t k_end = std::min<int64_t>(in, k_begin + slice);
  // This lane's weight rows g and g + 8 of each tile; a row past `out` reads row out - 1 again
  // and its sums are never stored.
  const __nv_bfloat16* w_lo[kM];
  const __nv_bfloat16* w_hi[kM];
#pragma unroll
  for (int m = 0; m < kM; ++m) {
    w_lo[m] = w + std::min<int64_t>(r0 + 16 * m + g, out - 1) * in + 8 * t;
    w_hi[m] = w + std::min<int64_t>(r0 + 16 * m + g + 8, out - 1) * in + 8 * t;
  }
  auto load_w = [&](int64_t k0, uint4(&lo)[kM][kUnroll], uint4(&hi)[kM][kUnroll]) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t k = k0 + 32 * u;
      const bool k_ok = k + 8 * t < k_end;
#pragma unroll
      for (int m = 0; m < kM; ++m) {
        lo[m][u] = k_ok ? __ldcs(reinterpret_cast<const uint4*>(w_lo[m] + k)) : uint4{};
        hi[m][u] = k_ok ? __ldcs(reinterpret_cast<const uint4*>(w_hi[m] + k)) : uint4{};
      }
    }
  };
  float acc[kM][kTiles][4] = {};
  uint4 lo[kM][kUnroll], hi[kM][kUnroll];
  load_w(k_begin, lo, hi);
  // x is the previous kernel's output; the weights above stream while it finishes.
  AllowNextKernelLaunch();
  WaitForPreviousKernels();
  for (int64_t k0 = k_begin; k0 < k_end; k0 += 32 * kUnroll) {
    uint4 nlo[kM][kUnroll], nhi[kM][kUnroll];
    load_w(k0 + 32 * kUnroll, nlo, nhi);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t k = k0 + 32 * u + 8 * t;
      const bool k_ok = k < k_end;
#pragma unroll
      for (int j = 0; j < kTiles; ++j) {
        const int n = 8 * j + g;
        const uint4 xv =
            k_ok && n < rows ? __ldg(reinterpret_cast<const uint4*>(x + n * x_rs + k)) : uint4{};
#pragma unroll
        for (int m = 0; m < kM; ++m) {
          Mma(acc[m][j], lo[m][u].x, hi[m][u].x, lo[m][u].y, hi[m][u].y, xv.x, xv.y);  // s = 0
          Mma(acc[m][j], lo[m][u].z, hi[m][u].z, lo[m][u].w, hi[m][u].w, xv.z, xv.w);  // s = 1
        }
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
      for (int m = 0; m < kM; ++m) lo[m][u] = nlo[m][u], hi[m][u] = nhi[m][u];
    }
  }
  // Partial tiles of the K slices, added in shared memory. acc[m][j]: (row 16m + g, x rows
  // 8j + 2t, 8j + 2t + 1) and (row 16m + g + 8, the same).
  constexpr int kN = kTiles * 8, kRows = 16 * kM;
  float* mine = red + warp * kRows * kN;
#pragma unroll
  for (int m = 0; m < kM; ++m) {
#pragma unroll
    for (int j = 0; j < kTiles; ++j) {
      const int lo_row = 16 * m + g, col = 8 * j + 2 * t;
      mine[lo_row * kN + col] = acc[m][j][0];
      mine[lo_row * kN + col + 1] = acc[m][j][1];
      mine[(lo_row + 8) * kN + col] = acc[m][j][2];
      mine[(lo_row + 8) * kN + col + 1] = acc[m][j][3];
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < kRows * rows; i += blockDim.x) {
    const int m = i % kRows, n = i / kRows;  // consecutive outputs of one row of x per group
    if (r0 + m >= out) continue;
    float s = 0.0f;
    for (int v = 0; v < warps; ++v) s += red[(v * kRows + m) * kN + n];
    Store(y + n * y_rs + r0 + m, s);
  }
}

// Shared memory of the partial-tile reduction: [warps][16 kM][8 kTiles] floats.
constexpr size_t ReductionBytes(int warps, int kM, int kTiles) {
  return static_cast<size_t>(warps) * 16 * kM * 8 * kTiles * sizeof(float);
}

template <typename YT, int kTiles, int kM>
absl::Status Launch(const void* w, int64_t out, int64_t in, const void* x, int64_t x_rs,
                    int64_t rows, void* y, int64_t y_rs, int warps, cudaStream_t s) {
  const int slice = static_cast<int>((in + warps * 32 - 1) / (warps * 32) * 32);
  const size_t smem = ReductionBytes(warps, kM, kTiles);
  const auto blocks = static_cast<unsigned>((out + 16 * kM - 1) / (16 * kM));
  CUDA_RETURN_IF_ERROR(LaunchDependent(SkinnyKernel<YT, kTiles, kM>, dim3(blocks), dim3(warps * 32),
                                       smem, s, static_cast<const __nv_bfloat16*>(w), out, in,
                                       static_cast<const __nv_bfloat16*>(x), x_rs,
                                       static_cast<int>(rows), static_cast<YT*>(y), y_rs, slice));
  return absl::OkStatus();
}

// Two W tiles per warp for two n-tiles where there are enough of them to keep every SM busy (~2
// blocks per SM of an H100) and the reduction fits the default 48 KB of shared memory: in_proj
// at 16 rows 24.6 us against 33.5 with one.
template <typename YT, int kTiles>
absl::Status LaunchTiles(const void* w, int64_t out, int64_t in, const void* x, int64_t x_rs,
                         int64_t rows, void* y, int64_t y_rs, cudaStream_t s) {
  const int warps = static_cast<int>(std::clamp<int64_t>((in + kSlice / 2) / kSlice, 1, kMaxWarps));
  const bool two = kTiles > 1 && out >= 8192 && ReductionBytes(warps, 2, kTiles) <= 48 * 1024;
  if (two) return Launch<YT, kTiles, 2>(w, out, in, x, x_rs, rows, y, y_rs, warps, s);
  return Launch<YT, kTiles, 1>(w, out, in, x, x_rs, rows, y, y_rs, warps, s);
}

template <typename YT>
absl::Status LaunchRows(const void* w, int64_t out, int64_t in, const void* x, int64_t x_rs,
                        int64_t rows, void* y, int64_t y_rs, cudaStream_t s) {
  static_assert(kSkinnyMaxRows <= 16);
  if (rows <= 8) return LaunchTiles<YT, 1>(w, out, in, x, x_rs, rows, y, y_rs, s);
  return LaunchTiles<YT, 2>(w, out, in, x, x_rs, rows, y, y_rs, s);
}

}  // namespace

void SetSkinnyEnabled(bool on) { g_enabled = on; }

bool SkinnyFits(DType w_dtype, int64_t out, int64_t in, const void* w, const void* x,
                int64_t x_row_stride, int64_t rows, DType y_dtype) {
  auto aligned = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; };
  return g_enabled && w_dtype == DType::kBF16 && rows >= 2 && rows <= kSkinnyMaxRows &&
         out >= kMinOut && in % 8 == 0 && x_row_stride % 8 == 0 && aligned(w) && aligned(x) &&
         (y_dtype == DType::kF32 || y_dtype == DType::kBF16);
}

absl::Status SkinnyCuda(const void* w, int64_t out, int64_t in, const void* x, int64_t x_row_stride,
                        int64_t rows, void* y, int64_t y_row_stride, DType y_dtype,
                        const Stream& stream) {
  auto s = static_cast<cudaStream_t>(stream.handle());
  if (y_dtype == DType::kF32) {
    return LaunchRows<float>(w, out, in, x, x_row_stride, rows, y, y_row_stride, s);
  }
  return LaunchRows<__nv_bfloat16>(w, out, in, x, x_row_stride, rows, y, y_row_stride, s);
}

}  // namespace mambaserve
