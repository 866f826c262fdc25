// Element access by runtime dtype for CUDA kernels (f32, bf16, f16 in memory; float in
// registers). One definition for every kernel file; stores round to nearest even.
#ifndef MAMBASERVE_KERNELS_CUDA_DTYPE_CUH_
#define MAMBASERVE_KERNELS_CUDA_DTYPE_CUH_

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "core/dtype.h"

namespace mambaserve {

__device__ __forceinline__ float LoadF(const void* p, DType t, int64_t i) {
  switch (t) {
    case DType::kF32:
      return static_cast<const float*>(p)[i];
    case DType::kBF16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    default:
      return __half2float(static_cast<const __half*>(p)[i]);
  }
}

// LoadF in two halves, for a load whose value is needed later: LoadBits only loads (f32: all 32
// bits; bf16 and f16: the low 16), so the load stays in flight until BitsToF converts it, where
// LoadF's conversion waits for the load at once.
__device__ __forceinline__ uint32_t LoadBits(const void* p, DType t, int64_t i) {
  if (t == DType::kF32) return static_cast<const uint32_t*>(p)[i];
  return static_cast<const uint16_t*>(p)[i];
}
__device__ __forceinline__ float BitsToF(uint32_t b, DType t) {
  switch (t) {
    case DType::kF32:
      return __uint_as_float(b);
    case DType::kBF16:
      return __uint_as_float(b << 16);
    default:
      return __half2float(__ushort_as_half(static_cast<unsigned short>(b)));
  }
}

__device__ __forceinline__ void StoreF(void* p, DType t, int64_t i, float v) {
  switch (t) {
    case DType::kF32:
      static_cast<float*>(p)[i] = v;
      return;
    case DType::kBF16:
      static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
      return;
    default:
      static_cast<__half*>(p)[i] = __float2half_rn(v);
      return;
  }
}

// v as it reads back after StoreF in dtype t.
__device__ __forceinline__ float RoundToDType(DType t, float v) {
  switch (t) {
    case DType::kBF16:
      return __bfloat162float(__float2bfloat16_rn(v));
    case DType::kF16:
      return __half2float(__float2half_rn(v));
    default:
      return v;
  }
}

// The eight bf16 values of one 16-byte vector, as floats (vectorised loads of bf16 rows).
__device__ __forceinline__ void UnpackBf16x8(const uint4& q, float (&v)[8]) {
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&q);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    v[2 * i] = f.x, v[2 * i + 1] = f.y;
  }
}

}  // namespace mambaserve

#endif  // MAMBASERVE_KERNELS_CUDA_DTYPE_CUH_
