// CUDA gated RMSNorm: one block per (token, group touched by the local channels). The block
// reduces the group's sum of squares (fused / partial-sums modes) and normalises its channels
// (fused / apply modes). Deterministic: fixed reduction order.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "absl/status/status.h"
#include "core/cuda_status.h"
#include "core/dependent_launch.cuh"
#include "core/status_macros.h"
#include "kernels/cuda_dtype.cuh"
#include "kernels/gated_rmsnorm.h"
#include "kernels/mamba_math.h"

namespace mambaserve {
namespace {

constexpr int kThreads = 256;

template <typename XT>
struct Ld {
  static __device__ __forceinline__ float F(const void* p, int64_t i);
};
template <>
__device__ __forceinline__ float Ld<float>::F(const void* p, int64_t i) {
  return static_cast<const float*>(p)[i];
}
template <>
__device__ __forceinline__ float Ld<__nv_bfloat16>::F(const void* p, int64_t i) {
  return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
}
template <>
__device__ __forceinline__ float Ld<__half>::F(const void* p, int64_t i) {
  return __half2float(static_cast<const __half*>(p)[i]);
}

template <typename XT>
__global__ void __launch_bounds__(kThreads)
    GatedRmsNormKernel(const GatedRmsNormParams p, int64_t g_first) {
  __shared__ float red[kThreads / 32];
  __shared__ float total;
  AllowNextKernelLaunch();  // launched as a dependent (RunGatedRmsNormCuda): out_proj may launch
  WaitForPreviousKernels();
  const int64_t t = blockIdx.x;
  const int64_t g = g_first + blockIdx.y;  // global group
  const int64_t c0_raw = g * p.group_size - p.channel_offset;
  const int64_t c0 = c0_raw > 0 ? c0_raw : 0;
  const int64_t c1_raw = (g + 1) * p.group_size - p.channel_offset;
  const int64_t c1 = c1_raw < p.dim ? c1_raw : p.dim;
  const int64_t yo = t * p.y_row_stride, zo = t * p.z_row_stride, oo = t * p.out_row_stride;
  const bool has_z = p.z != nullptr;
  auto value = [&](int64_t c, float* gate) {
    const float y = Ld<XT>::F(p.y, yo + c);
    *gate = has_z ? Silu(Ld<XT>::F(p.z, zo + c)) : 1.0f;
    return p.norm_before_gate ? y : y * *gate;
  };
  const int64_t sums_idx = t * p.sums_row_stride + g - p.sums_group_offset;
  float ss;
  if (p.mode == GatedRmsNormMode::kApply) {
    ss = p.sums[sums_idx];
  } else {
    float acc = 0.0f;
    for (int64_t c = c0 + threadIdx.x; c < c1; c += kThreads) {
      float gate;
      const float v = value(c, &gate);
      acc = fmaf(v, v, acc);
    }
#pragma unroll
    for (int off = 16; off > 0; off /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x / 32] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
      float s = 0.0f;
      for (int i = 0; i < kThreads / 32; ++i) s += red[i];
      total = s;
    }
    __syncthreads();
    ss = total;
    if (p.mode == GatedRmsNormMode::kPartialSums) {
      if (threadIdx.x == 0) p.sums[sums_idx] = ss;
      return;
    }
  }
  const float rstd = rsqrtf(ss / static_cast<float>(p.group_size) + p.eps);
  for (int64_t c = c0 + threadIdx.x; c < c1; c += kThreads) {
    float gate;
    const float v = value(c, &gate);
    float o = p.weight ? v * rstd * LoadF(p.weight, p.weight_dtype, c) : v * rstd;
    if (p.norm_before_gate) o *= gate;
    StoreF(p.out, p.dtype, oo + c, o);
  }
}

// Vector path: the group's local channels [c0, c1) are read as 16-byte vectors of VEC values;
// a thread keeps up to kCache of its vectors (y and gate) in registers between the two passes.
constexpr int kCache = 4;

template <typename XT, int VEC>
__device__ __forceinline__ void LoadVec(const void* base, int64_t i, float (&v)[VEC]) {
  union {
    uint4 u;
    XT e[VEC];
  } q;
  q.u = *reinterpret_cast<const uint4*>(static_cast<const XT*>(base) + i);
#pragma unroll
  for (int j = 0; j < VEC; ++j) v[j] = Ld<XT>::F(&q.e[j], 0);
}

template <typename XT, int VEC>
__device__ __forceinline__ void StoreVec(void* base, int64_t i, const float (&v)[VEC]) {
  union {
    uint4 u;
    XT e[VEC];
  } q;
#pragma unroll
  for (int j = 0; j < VEC; ++j) {
    if constexpr (sizeof(XT) == 4) {
      reinterpret_cast<float*>(&q.e[j])[0] = v[j];
    } else if constexpr (std::is_same_v<XT, __nv_bfloat16>) {
      q.e[j] = __float2bfloat16_rn(v[j]);
    } else {
      q.e[j] = __float2half_rn(v[j]);
    }
  }
  *reinterpret_cast<uint4*>(static_cast<XT*>(base) + i) = q.u;
}

template <typename XT, int VEC>
__global__ void __launch_bounds__(kThreads)
    GatedRmsNormVecKernel(const GatedRmsNormParams p, int64_t g_first) {
  __shared__ float red[kThreads / 32];
  __shared__ float total;
  AllowNextKernelLaunch();  // launched as a dependent (RunGatedRmsNormCuda): out_proj may launch
  const int64_t t = blockIdx.x;
  const int64_t g = g_first + blockIdx.y;
  const int64_t c0_raw = g * p.group_size - p.channel_offset;
  const int64_t c0 = c0_raw > 0 ? c0_raw : 0;
  const int64_t c1_raw = (g + 1) * p.group_size - p.channel_offset;
  const int64_t c1 = c1_raw < p.dim ? c1_raw : p.dim;
  const int64_t nvec = (c1 - c0) / VEC;  // the launcher guarantees divisibility
  const int64_t yo = t * p.y_row_stride + c0, zo = t * p.z_row_stride + c0;
  const int64_t oo = t * p.out_row_stride + c0;
  const bool has_z = p.z != nullptr;
  float v[kCache][VEC], gate[kCache][VEC];
  auto load = [&](int64_t vi, float(&vv)[VEC], float(&gg)[VEC]) {
    float y[VEC];
    LoadVec<XT, VEC>(p.y, yo + vi * VEC, y);
    if (has_z) {
      LoadVec<XT, VEC>(p.z, zo + vi * VEC, gg);
#pragma unroll
      for (int j = 0; j < VEC; ++j) gg[j] = Silu(gg[j]);
    } else {
#pragma unroll
      for (int j = 0; j < VEC; ++j) gg[j] = 1.0f;
    }
#pragma unroll
    for (int j = 0; j < VEC; ++j) vv[j] = p.norm_before_gate ? y[j] : y[j] * gg[j];
  };
  // fp32 weights (the mixer's) as 16-byte vectors when aligned; else one value at a time.
  const bool w_vec = p.weight_dtype == DType::kF32 && c0 % 4 == 0 &&
                     reinterpret_cast<uintptr_t>(p.weight) % 16 == 0;
  auto load_weights = [&](int64_t vi, float(&ww)[VEC]) {
    const int64_t c = c0 + vi * VEC;
    if (p.weight == nullptr) {
#pragma unroll
      for (int j = 0; j < VEC; ++j) ww[j] = 1.0f;
    } else if (w_vec) {
      const float* wp = static_cast<const float*>(p.weight) + c;
#pragma unroll
      for (int j = 0; j < VEC; j += 4) {
        const float4 q = *reinterpret_cast<const float4*>(wp + j);
        ww[j] = q.x, ww[j + 1] = q.y, ww[j + 2] = q.z, ww[j + 3] = q.w;
      }
    } else {
#pragma unroll
      for (int j = 0; j < VEC; ++j) ww[j] = LoadF(p.weight, p.weight_dtype, c + j);
    }
  };
  const int64_t sums_idx = t * p.sums_row_stride + g - p.sums_group_offset;
  float ss;
  // The weights (constants) load before the wait for the previous kernel, y and z after it;
  // after the reduction nothing waits on memory.
  float w[kCache][VEC];
#pragma unroll
  for (int k = 0; k < kCache; ++k) {
    const int64_t vi = threadIdx.x + static_cast<int64_t>(k) * kThreads;
    if (vi < nvec && p.mode != GatedRmsNormMode::kPartialSums) load_weights(vi, w[k]);
  }
  WaitForPreviousKernels();
#pragma unroll
  for (int k = 0; k < kCache; ++k) {
    const int64_t vi = threadIdx.x + static_cast<int64_t>(k) * kThreads;
    if (vi < nvec) load(vi, v[k], gate[k]);
  }
  if (p.mode == GatedRmsNormMode::kApply) {
    ss = p.sums[sums_idx];
  } else {
    float acc = 0.0f;
#pragma unroll
    for (int k = 0; k < kCache; ++k) {
      const int64_t vi = threadIdx.x + static_cast<int64_t>(k) * kThreads;
      if (vi < nvec) {
#pragma unroll
        for (int j = 0; j < VEC; ++j) acc = fmaf(v[k][j], v[k][j], acc);
      }
    }
    for (int64_t vi = threadIdx.x + static_cast<int64_t>(kCache) * kThreads; vi < nvec;
         vi += kThreads) {
      float vv[VEC], gg[VEC];
      load(vi, vv, gg);
#pragma unroll
      for (int j = 0; j < VEC; ++j) acc = fmaf(vv[j], vv[j], acc);
    }
#pragma unroll
    for (int off = 16; off > 0; off /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x / 32] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
      float sum = 0.0f;
      for (int i = 0; i < kThreads / 32; ++i) sum += red[i];
      total = sum;
    }
    __syncthreads();
    ss = total;
    if (p.mode == GatedRmsNormMode::kPartialSums) {
      if (threadIdx.x == 0) p.sums[sums_idx] = ss;
      return;
    }
  }
  const float rstd = rsqrtf(ss / static_cast<float>(p.group_size) + p.eps);
  auto emit = [&](int64_t vi, const float(&vv)[VEC], const float(&gg)[VEC], const float(&ww)[VEC]) {
    float o[VEC];
#pragma unroll
    for (int j = 0; j < VEC; ++j) {
      o[j] = vv[j] * rstd * ww[j];
      if (p.norm_before_gate) o[j] *= gg[j];
    }
    StoreVec<XT, VEC>(p.out, oo + vi * VEC, o);
  };
#pragma unroll
  for (int k = 0; k < kCache; ++k) {
    const int64_t vi = threadIdx.x + static_cast<int64_t>(k) * kThreads;
    if (vi < nvec) emit(vi, v[k], gate[k], w[k]);
  }
  for (int64_t vi = threadIdx.x + static_cast<int64_t>(kCache) * kThreads; vi < nvec;
       vi += kThreads) {
    float vv[VEC], gg[VEC], ww[VEC];
    load(vi, vv, gg);
    load_weights(vi, ww);
    emit(vi, vv, gg, ww);
  }
}

}  // namespace

absl::Status RunGatedRmsNormCuda(const GatedRmsNormParams& p, const Stream& stream) {
  const int64_t g_first = p.channel_offset / p.group_size;
  const int64_t g_last = (p.channel_offset + p.dim - 1) / p.group_size;
  const int64_t ng = g_last - g_first + 1;
  MS_CHECK_ARG(p.num_tokens <= 0x7fffffffLL && ng <= 65535, "gated_rmsnorm: grid too large");
  const dim3 grid(static_cast<unsigned>(p.num_tokens), static_cast<unsigned>(ng));
  auto st = static_cast<cudaStream_t>(stream.handle());
  // Vector path: every group boundary inside the local channels, the row strides and the
  // pointers allow 16-byte vectors.
  const int64_t vec = 16 / DTypeSize(p.dtype);
  auto aligned = [&](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  const bool use_vec =
      p.group_size % vec == 0 && p.channel_offset % vec == 0 && p.dim % vec == 0 &&
      p.y_row_stride % vec == 0 && aligned(p.y) &&
      (p.z == nullptr || (p.z_row_stride % vec == 0 && aligned(p.z))) &&
      (p.mode == GatedRmsNormMode::kPartialSums || (p.out_row_stride % vec == 0 && aligned(p.out)));
  auto launch = [&](auto kernel) -> absl::Status {
    CUDA_RETURN_IF_ERROR(LaunchDependent(kernel, grid, dim3(kThreads), 0, st, p, g_first));
    return absl::OkStatus();
  };
  if (use_vec) {
    switch (p.dtype) {
      case DType::kF32:
        return launch(GatedRmsNormVecKernel<float, 4>);
      case DType::kBF16:
        return launch(GatedRmsNormVecKernel<__nv_bfloat16, 8>);
      case DType::kF16:
        return launch(GatedRmsNormVecKernel<__half, 8>);
    }
  }
  switch (p.dtype) {
    case DType::kF32:
      return launch(GatedRmsNormKernel<float>);
    case DType::kBF16:
      return launch(GatedRmsNormKernel<__nv_bfloat16>);
    case DType::kF16:
      return launch(GatedRmsNormKernel<__half>);
  }
  return absl::InvalidArgumentError("gated_rmsnorm: unsupported dtype");
}

}  // namespace mambaserve
