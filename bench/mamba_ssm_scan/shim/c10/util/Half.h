// Stand-in for c10/util/Half.h (our own code, not PyTorch's): a 2-byte IEEE half storage type,
// layout-compatible with __half, convertible to and from float (round to nearest even). Only
// named by a Converter specialization in selective_scan_common.h; the benchmark never runs fp16.
#pragma once

#include <cuda_fp16.h>

#include <cstdint>

#include "c10/util/shim_macros.h"

namespace c10 {

struct alignas(2) Half {
  uint16_t x;  // raw bits

  Half() = default;
  SHIM_C10_HD Half(float f) : x(__half_as_ushort(__float2half_rn(f))) {}
  SHIM_C10_HD operator float() const { return __half2float(__ushort_as_half(x)); }
};

static_assert(sizeof(Half) == 2 && alignof(Half) == 2, "half must be 2 bytes");

}  // namespace c10

namespace at {
using c10::Half;
}  // namespace at
