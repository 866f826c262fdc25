// Device helpers shared by the Mamba-1 CUDA prefill scan and decode update, so both use the same
// per-element arithmetic (and prefill followed by decode equals a longer prefill up to fp32
// rounding of the y reduction). Internal header: include it only from .cu files (nvcc).
#ifndef MAMBASERVE_KERNELS_SELECTIVE_SCAN_CUDA_H_
#define MAMBASERVE_KERNELS_SELECTIVE_SCAN_CUDA_H_

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "core/dtype.h"
#include "kernels/fast_exp.cuh"
#include "kernels/mamba_math.h"

namespace mambaserve::scan_cuda {

constexpr int kF32 = static_cast<int>(DType::kF32);
constexpr int kBF16 = static_cast<int>(DType::kBF16);
constexpr int kF16 = static_cast<int>(DType::kF16);

__device__ __forceinline__ float LoadElem(const void* p, int dtype, int64_t i) {
  if (dtype == kBF16) return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
  if (dtype == kF16) return __half2float(static_cast<const __half*>(p)[i]);
  return static_cast<const float*>(p)[i];
}

__device__ __forceinline__ void StoreElem(void* p, int dtype, int64_t i, float v) {
  if (dtype == kBF16) {
    static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
  } else if (dtype == kF16) {
    static_cast<__half*>(p)[i] = __float2half_rn(v);
  } else {
    static_cast<float*>(p)[i] = v;
  }
}

// Modes whose decay is exp(dt_decay * A) and whose input term is a per-(token, channel) scalar
// times B: those take the fast path below (one ex2 per element, A pre-scaled by log2(e)).
template <Discretization kMode>
constexpr bool kExpDecayMode =
    kMode == Discretization::kDefault || kMode == Discretization::kDirac ||
    kMode == Discretization::kEventDriven;

// Per-(token, channel) scalars of a step, computed once and shared by the N states.
struct TokenScalars {
  float dt_in;     // input step (after bias / softplus)
  float dt_decay;  // decay step (tau * softplus(bias_A) in event mode, dt_in otherwise)
  float xin;       // fast modes: the input term's scalar (dB_scale * u); generic modes: u
  float u;
};

template <Discretization kMode>
__device__ __forceinline__ TokenScalars MakeTokenScalars(float delta, float bias, bool softplus,
                                                         float u, float event_dt_decay) {
  TokenScalars s;
  const float dt = delta + bias;
  s.dt_in = softplus ? DevSoftplus(dt) : dt;
  s.dt_decay = kMode == Discretization::kEventDriven ? event_dt_decay : s.dt_in;
  s.u = u;
  // Discretize's dB_scale * u for the fast modes: dt_in (default, event) or 1 (dirac).
  if constexpr (kMode == Discretization::kDirac) {
    s.xin = u;
  } else if constexpr (kExpDecayMode<kMode>) {
    s.xin = s.dt_in * u;
  } else {
    s.xin = u;
  }
  return s;
}

// The coefficient a state element needs: A * log2(e) for the fast modes, A otherwise.
template <Discretization kMode>
__device__ __forceinline__ float PrepareA(float A) {
  if constexpr (kExpDecayMode<kMode>) return A * kLog2e;
  return A;
}

// The coefficients of one recurrence step of one state element, h' = c.x * h + c.y. `a` comes
// from PrepareA. For the fast modes this is Discretize's exp(dt_decay A) and dB_scale evaluated
// with the SFU exp; for ZOH and bilinear it is Discretize itself.
template <Discretization kMode>
__device__ __forceinline__ float2 StepCoeffs(float a, float B, const TokenScalars& s) {
  if constexpr (kExpDecayMode<kMode>) {
    return make_float2(FastExp2(s.dt_decay * a), s.xin * B);
  } else {
    const DiscreteStep<float> st = Discretize(kMode, s.dt_decay, s.dt_in, a);
    return make_float2(st.dA, st.dB_scale * B * s.u);
  }
}

// One recurrence step of one state element: returns the new state.
template <Discretization kMode>
__device__ __forceinline__ float StepState(float h, float a, float B, const TokenScalars& s) {
  const float2 c = StepCoeffs<kMode>(a, B, s);
  return fmaf(c.x, h, c.y);
}

}  // namespace mambaserve::scan_cuda

#endif  // MAMBASERVE_KERNELS_SELECTIVE_SCAN_CUDA_H_
