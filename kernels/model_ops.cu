#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "core/cuda_status.h"
#include "core/dependent_launch.cuh"
#include "core/status_macros.h"
#include "kernels/cuda_dtype.cuh"
#include "kernels/model_ops.h"

namespace mambaserve {
namespace {

constexpr int kThreads = 256;

// Rows of up to kNormPer * 1024 values: one block per row, each thread keeps its kNormPer values
// (and weights) in registers, so the row is read once and every load is issued before the first
// store (the generic kernel below re-reads through memory and serialises on possible aliasing,
// ~13 us per row at decode).
constexpr int kNormPer = 8;
constexpr int kNormMaxThreads = 1024;

// 1 / sqrt(mean of squares + eps) of a row whose per-thread sums of squares are `sumsq`, for a
// block of whole warps (<= kNormMaxThreads); every thread gets the result.
__device__ __forceinline__ float BlockInvRms(float sumsq, int64_t dim, float eps) {
  __shared__ float warp_sums[kNormMaxThreads / 32];
  __shared__ float inv;
  for (int o = 16; o > 0; o /= 2) sumsq += __shfl_xor_sync(0xffffffffu, sumsq, o);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = sumsq;
  __syncthreads();
  if (threadIdx.x < 32) {
    float s = threadIdx.x < blockDim.x / 32 ? warp_sums[threadIdx.x] : 0.f;
    for (int o = 16; o > 0; o /= 2) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (threadIdx.x == 0) inv = rsqrtf(s / static_cast<float>(dim) + eps);
  }
  __syncthreads();
  return inv;
}

__global__ void __launch_bounds__(kNormMaxThreads) AddRmsNormRegKernel(AddRmsNormParams p) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * p.dim;
  float x[kNormPer], r[kNormPer], w[kNormPer];
#pragma unroll
  for (int k = 0; k < kNormPer; ++k) {
    const int64_t c = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
    x[k] = r[k] = w[k] = 0.f;
    if (c < p.dim) {
      x[k] = LoadF(p.x, p.x_dtype, row + c);
      if (p.add_residual) r[k] = LoadF(p.residual, p.residual_dtype, row + c);
      w[k] = LoadF(p.weight, p.weight_dtype, c);
    }
  }
  float sumsq = 0.f;
#pragma unroll
  for (int k = 0; k < kNormPer; ++k) {
    const int64_t c = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
    if (c < p.dim) {
      x[k] = RoundToDType(p.residual_dtype, x[k] + r[k]);
      StoreF(p.residual, p.residual_dtype, row + c, x[k]);
      sumsq += x[k] * x[k];
    }
  }
  const float inv = BlockInvRms(sumsq, p.dim, p.eps);
#pragma unroll
  for (int k = 0; k < kNormPer; ++k) {
    const int64_t c = threadIdx.x + static_cast<int64_t>(k) * blockDim.x;
    if (c < p.dim) StoreF(p.out, p.out_dtype, row + c, x[k] * inv * w[k]);
  }
}

// 8 consecutive values as floats, with 16-byte accesses (two for fp32).
__device__ __forceinline__ void Load8(const float* p, float (&v)[8]) {
  const float4 a = *reinterpret_cast<const float4*>(p);
  const float4 b = *reinterpret_cast<const float4*>(p + 4);
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}
__device__ __forceinline__ void Load8(const __nv_bfloat16* p, float (&v)[8]) {
  UnpackBf16x8(*reinterpret_cast<const uint4*>(p), v);
}
__device__ __forceinline__ void Store8(float* p, const float (&v)[8]) {
  *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  *reinterpret_cast<float4*>(p + 4) = make_float4(v[4], v[5], v[6], v[7]);
}
__device__ __forceinline__ void Store8(__nv_bfloat16* p, const float (&v)[8]) {
  uint4 q;
  __nv_bfloat162* h = reinterpret_cast<__nv_bfloat162*>(&q);
#pragma unroll
  for (int i = 0; i < 4; ++i) h[i] = __floats2bfloat162_rn(v[2 * i], v[2 * i + 1]);
  *reinterpret_cast<uint4*>(p) = q;
}
__device__ __forceinline__ float RoundAs(float, float v) { return v; }
__device__ __forceinline__ float RoundAs(__nv_bfloat16, float v) {
  return __bfloat162float(__float2bfloat16_rn(v));
}

// The decode-size row (dim a multiple of 256 up to 8192, 16-byte aligned, fp32 weight): each thread
// loads 8 values of x, the residual and the weight with 16-byte loads, once; compile-time
// dtypes keep the loads free of per-element dtype branches. At batch 1 this is one block, so
// its latency is the whole kernel (bench/RESULTS.md, decode step).
template <typename XT, typename RT, typename OT>
__global__ void __launch_bounds__(kNormMaxThreads) AddRmsNormVec8Kernel(AddRmsNormParams p) {
  // Launched as a dependent of the mixer's out_proj (LaunchVec8); the in_proj GEMV after it is
  // one too. The weights are constants: loaded before the wait.
  AllowNextKernelLaunch();
  const int64_t off = static_cast<int64_t>(blockIdx.x) * p.dim + threadIdx.x * 8;
  float x[8], r[8], w[8];
  Load8(static_cast<const float*>(p.weight) + threadIdx.x * 8, w);
  WaitForPreviousKernels();
  Load8(static_cast<const XT*>(p.x) + off, x);
  if (p.add_residual) {
    Load8(static_cast<const RT*>(p.residual) + off, r);
  } else {
#pragma unroll
    for (int k = 0; k < 8; ++k) r[k] = 0.f;
  }
  float sumsq = 0.f;
#pragma unroll
  for (int k = 0; k < 8; ++k) {
    x[k] = RoundAs(RT{}, x[k] + r[k]);
    sumsq += x[k] * x[k];
  }
  Store8(static_cast<RT*>(p.residual) + off, x);
  const float inv = BlockInvRms(sumsq, p.dim, p.eps);
#pragma unroll
  for (int k = 0; k < 8; ++k) x[k] = x[k] * inv * w[k];
  Store8(static_cast<OT*>(p.out) + off, x);
}

template <typename XT, typename RT>
cudaError_t LaunchVec8(const AddRmsNormParams& p, cudaStream_t st) {
  const dim3 grid(static_cast<unsigned>(p.num_tokens)), block(static_cast<unsigned>(p.dim / 8));
  return p.out_dtype == DType::kF32
             ? LaunchDependent(AddRmsNormVec8Kernel<XT, RT, float>, grid, block, 0, st, p)
             : LaunchDependent(AddRmsNormVec8Kernel<XT, RT, __nv_bfloat16>, grid, block, 0, st, p);
}

bool Vec8Fits(const AddRmsNormParams& p) {
  auto f32_or_bf16 = [](DType t) { return t == DType::kF32 || t == DType::kBF16; };
  auto aligned = [](const void* q) { return reinterpret_cast<uintptr_t>(q) % 16 == 0; };
  // Whole warps of 8-value threads: dim a multiple of 256.
  return p.dim % 256 == 0 && p.dim / 8 <= kNormMaxThreads && f32_or_bf16(p.x_dtype) &&
         f32_or_bf16(p.residual_dtype) && f32_or_bf16(p.out_dtype) &&
         p.weight_dtype == DType::kF32 && aligned(p.x) && aligned(p.residual) &&
         aligned(p.weight) && aligned(p.out);
}

// One block per token row; the row is walked twice (residual add + sum of squares, then scale).
__global__ void AddRmsNormKernel(AddRmsNormParams p) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * p.dim;
  float sumsq = 0.f;
  for (int64_t c = threadIdx.x; c < p.dim; c += blockDim.x) {
    float v = LoadF(p.x, p.x_dtype, row + c);
    if (p.add_residual) v += LoadF(p.residual, p.residual_dtype, row + c);
    StoreF(p.residual, p.residual_dtype, row + c, v);
    v = LoadF(p.residual, p.residual_dtype, row + c);
    sumsq += v * v;
  }
  __shared__ float warp_sums[kThreads / 32];
  for (int o = 16; o > 0; o /= 2) sumsq += __shfl_xor_sync(0xffffffffu, sumsq, o);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = sumsq;
  __syncthreads();
  __shared__ float inv;
  if (threadIdx.x == 0) {
    float s = 0.f;
    for (int w = 0; w < kThreads / 32; ++w) s += warp_sums[w];
    inv = rsqrtf(s / static_cast<float>(p.dim) + p.eps);
  }
  __syncthreads();
  for (int64_t c = threadIdx.x; c < p.dim; c += blockDim.x) {
    const float v = LoadF(p.residual, p.residual_dtype, row + c);
    StoreF(p.out, p.out_dtype, row + c, v * inv * LoadF(p.weight, p.weight_dtype, c));
  }
}

__global__ void EmbeddingKernel(EmbeddingParams p) {
  const int64_t t = blockIdx.x;
  const int64_t local = static_cast<int64_t>(p.ids[t]) - p.row_begin;
  const bool mine = local >= 0 && local < p.num_rows;
  for (int64_t c = threadIdx.x; c < p.dim; c += blockDim.x) {
    const float v = mine ? LoadF(p.table, p.table_dtype, local * p.dim + c) : 0.f;
    StoreF(p.out, p.out_dtype, t * p.dim + c, v);
  }
}

__global__ void CopyRowsKernel(CopyRowsParams p) {
  const int64_t i = blockIdx.x;
  const int64_t s = p.row_index ? p.row_index[i] : i;
  for (int64_t c = threadIdx.x; c < p.cols; c += blockDim.x) {
    StoreF(p.dst, p.dst_dtype, i * p.dst_row_stride + c,
           LoadF(p.src, p.src_dtype, s * p.src_row_stride + c));
  }
}

}  // namespace

absl::Status RunAddRmsNormCuda(const AddRmsNormParams& p, const Stream& stream) {
  auto st = static_cast<cudaStream_t>(stream.handle());
  if (Vec8Fits(p)) {
    const bool xf = p.x_dtype == DType::kF32, rf = p.residual_dtype == DType::kF32;
    using BF = __nv_bfloat16;
    const cudaError_t e = xf ? (rf ? LaunchVec8<float, float>(p, st) : LaunchVec8<float, BF>(p, st))
                             : (rf ? LaunchVec8<BF, float>(p, st) : LaunchVec8<BF, BF>(p, st));
    CUDA_RETURN_IF_ERROR(e);
    return absl::OkStatus();
  }
  if (p.dim <= int64_t{kNormPer} * kNormMaxThreads) {
    const int64_t per_thread = (p.dim + kNormPer - 1) / kNormPer;
    const int threads = static_cast<int>(std::max<int64_t>(32, (per_thread + 31) / 32 * 32));
    AddRmsNormRegKernel<<<static_cast<unsigned>(p.num_tokens), threads, 0, st>>>(p);
    CUDA_RETURN_IF_LAUNCH_ERROR();
    return absl::OkStatus();
  }
  AddRmsNormKernel<<<static_cast<unsigned>(p.num_tokens), kThreads, 0, st>>>(p);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

absl::Status RunEmbeddingCuda(const EmbeddingParams& p, const Stream& stream) {
  EmbeddingKernel<<<static_cast<unsigned>(p.num_tokens), kThreads, 0,
                    static_cast<cudaStream_t>(stream.handle())>>>(p);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

absl::Status RunCopyRowsCuda(const CopyRowsParams& p, const Stream& stream) {
  CopyRowsKernel<<<static_cast<unsigned>(p.num_rows), kThreads, 0,
                   static_cast<cudaStream_t>(stream.handle())>>>(p);
  CUDA_RETURN_IF_LAUNCH_ERROR();
  return absl::OkStatus();
}

}  // namespace mambaserve
