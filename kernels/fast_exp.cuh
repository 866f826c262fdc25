// The special-function unit's base-2 exponential, for kernels that keep their exponents in log2
// units (scaled by kLog2e once, outside the hot loops). Internal header: .cu files only (nvcc).
#ifndef MAMBASERVE_KERNELS_FAST_EXP_CUH_
#define MAMBASERVE_KERNELS_FAST_EXP_CUH_

namespace mambaserve {

constexpr float kLog2e = 1.4426950408889634f;

// 2^x on the special-function unit (relative error ~2^-22; results below 2^-126 flush to 0,
// which for a decay factor is the exact limit). One instruction: __expf adds a multiply and,
// without -ftz, a denormal range check around it.
__device__ __forceinline__ float FastExp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

}  // namespace mambaserve

#endif  // MAMBASERVE_KERNELS_FAST_EXP_CUH_
