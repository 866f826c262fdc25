// Per-token, per-channel scalar rules shared by the CPU prefill scan and the CPU decode update
// (the CUDA kernels use the same formulas through kernels/mamba_math.h). Internal header.
#ifndef MAMBASERVE_KERNELS_SELECTIVE_SCAN_INTERNAL_H_
#define MAMBASERVE_KERNELS_SELECTIVE_SCAN_INTERNAL_H_

#include <cstdint>

#include "core/dtype.h"
#include "kernels/mamba_math.h"

namespace mambaserve::scan_internal {

// The input step dt_in of one (token, channel): delta (+ bias), then softplus when asked.
inline float DtInput(float delta, const float* delta_bias, int64_t d, bool softplus) {
  float dt = delta + (delta_bias ? delta_bias[d] : 0.0f);
  return softplus ? Softplus(dt) : dt;
}

// Advances the N states of one channel by one token and returns sum_n C[n] h[n].
// B and C are the token's (group's) rows as floats.
inline float StepChannel(Discretization mode, float dt_decay, float dt_in, const float* A,
                         const float* B, const float* C, float u, float* h, int64_t N) {
  float y = 0.0f;
  for (int64_t n = 0; n < N; ++n) {
    const DiscreteStep<float> s = Discretize(mode, dt_decay, dt_in, A[n]);
    h[n] = RecurrenceStep(s, h[n], B[n], u);
    y += C[n] * h[n];
  }
  return y;
}

// Final output of one (token, channel): ssm output + D u, gated by silu(z).
inline float FinishOutput(float y_ssm, float u, const float* D, int64_t d, const void* z,
                          DType x_dtype, int64_t z_index) {
  float y = y_ssm + (D ? D[d] * u : 0.0f);
  if (z) y *= Silu(LoadAsFloat(z, x_dtype, z_index));
  return y;
}

// One token (row r) of channel d in group g: reads the row's inputs, advances the channel's N
// states h and writes y. Bv and Cv are N-float scratch rows. Params is SelectiveScanParams or
// Mamba1StateUpdateParams (the fields used here have the same names in both).
template <typename Params>
void TokenStep(const Params& p, int64_t r, int64_t d, int64_t g, float sp_bias_A, float* h,
               float* Bv, float* Cv) {
  const int64_t N = p.d_state;
  const float u = LoadAsFloat(p.u, p.x_dtype, r * p.u_row_stride + d);
  DType delta_dtype = p.x_dtype;
  if constexpr (requires { p.delta_dtype; }) delta_dtype = p.delta_dtype.value_or(p.x_dtype);
  const float dt_in = DtInput(LoadAsFloat(p.delta, delta_dtype, r * p.delta_row_stride + d),
                              p.delta_bias, d, p.delta_softplus);
  const float dt_decay = p.mode == Discretization::kEventDriven ? p.tau[r] * sp_bias_A : dt_in;
  for (int64_t n = 0; n < N; ++n) {
    Bv[n] = LoadAsFloat(p.B, p.bc_dtype, r * p.B_row_stride + g * p.B_group_stride + n);
    Cv[n] = LoadAsFloat(p.C, p.bc_dtype, r * p.C_row_stride + g * p.C_group_stride + n);
  }
  const float y_ssm = StepChannel(p.mode, dt_decay, dt_in, p.A + d * N, Bv, Cv, u, h, N);
  StoreFromFloat(p.y, p.x_dtype, r * p.y_row_stride + d,
                 FinishOutput(y_ssm, u, p.D, d, p.z, p.x_dtype, r * p.z_row_stride + d));
}

inline void LoadState(const void* pool, DType dt, int64_t block, int64_t block_stride, int64_t d,
                      int64_t N, float* h) {
  if (block == 0) {
    for (int64_t n = 0; n < N; ++n) h[n] = 0.0f;
    return;
  }
  const int64_t base = block * block_stride + d * N;
  for (int64_t n = 0; n < N; ++n) h[n] = LoadAsFloat(pool, dt, base + n);
}

inline void StoreState(void* pool, DType dt, int64_t block, int64_t block_stride, int64_t d,
                       int64_t N, const float* h) {
  if (block == 0) return;
  const int64_t base = block * block_stride + d * N;
  for (int64_t n = 0; n < N; ++n) StoreFromFloat(pool, dt, base + n, h[n]);
}

}  // namespace mambaserve::scan_internal

#endif  // MAMBASERVE_KERNELS_SELECTIVE_SCAN_INTERNAL_H_
