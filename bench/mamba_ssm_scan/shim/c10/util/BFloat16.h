// Stand-in for c10/util/BFloat16.h (our own code, not PyTorch's): a 2-byte bfloat16 storage type,
// layout-compatible with __nv_bfloat16, convertible to and from float. The selective-scan kernel
// moves these as raw bytes (cub BlockLoad / reinterpret_cast to nv_bfloat162) and converts with
// float(x) / assignment from float; nothing else is needed. float -> bf16 rounds to nearest even.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>
#include <cstring>

#include "c10/util/shim_macros.h"

namespace c10 {

struct alignas(2) BFloat16 {
  uint16_t x;  // raw bits

  BFloat16() = default;  // trivial: cub keeps these in shared-memory unions
  SHIM_C10_HD BFloat16(float f) : x(FromFloat(f)) {}
  SHIM_C10_HD operator float() const { return ToFloat(x); }

  static SHIM_C10_HD uint16_t FromFloat(float f) {
#if defined(__CUDA_ARCH__)
    return __bfloat16_as_ushort(__float2bfloat16_rn(f));
#else
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);  // NaN
    u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
    return static_cast<uint16_t>(u >> 16);
#endif
  }
  static SHIM_C10_HD float ToFloat(uint16_t b) {
#if defined(__CUDA_ARCH__)
    return __bfloat162float(__ushort_as_bfloat16(b));
#else
    const uint32_t u = static_cast<uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
#endif
  }
};

static_assert(sizeof(BFloat16) == 2 && alignof(BFloat16) == 2, "bf16 must be 2 bytes");

}  // namespace c10

namespace at {
using c10::BFloat16;
}  // namespace at
