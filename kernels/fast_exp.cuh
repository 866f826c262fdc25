// The special-function unit's base-2 exponential, for kernels that keep their exponents in log2
// units (scaled by kLog2e once, outside the hot loops), and the activations built on it (one
// definition for the Mamba-1 and Mamba-2 kernels). Internal header: .cu files only (nvcc).
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

// softplus(x) = max(x, 0) + log1p(e), e = exp(-|x|) in (0, 1], with log1p(e) = e p(e) and p a
// degree-8 polynomial fitted to log1p(e) / e on [0, 1] for relative error (2.1e-7 evaluated in
// float32; the division-based series before it: 1e-7): one special-function operation (the
// exponential) and ~12 others where that series took two, and the prefill is bound by the
// special-function unit as much as by issue. One formula for the prefill and the decode kernels,
// so the two agree.
__device__ __forceinline__ float DevSoftplus(float x) {
  const float e = FastExp2(-fabsf(x) * kLog2e);
  float p = fmaf(e, 0.005232694558799267f, -0.02950524166226387f);
  p = fmaf(e, p, 0.07822595536708832f);
  p = fmaf(e, p, -0.13663245737552643f);
  p = fmaf(e, p, 0.19106006622314453f);
  p = fmaf(e, p, -0.2484298199415207f);
  p = fmaf(e, p, 0.3331909775733948f);
  p = fmaf(e, p, -0.4999949336051941f);
  p = fmaf(e, p, 0.9999999403953552f);
  return fmaf(e, p, fmaxf(x, 0.0f));
}

// silu(x) = x / (1 + exp(-x)) with the SFU exp and reciprocal (relative error ~1e-6; tends to 0
// for x -> -inf and to x for x -> inf). FastExp2, not __expf: no denormal range check.
__device__ __forceinline__ float DevSilu(float x) {
  return __fdividef(x, 1.0f + FastExp2(-x * kLog2e));
}

}  // namespace mambaserve

#endif  // MAMBASERVE_KERNELS_FAST_EXP_CUH_
