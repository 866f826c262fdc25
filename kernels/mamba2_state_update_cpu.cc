// CPU reference implementation of the Mamba-2 state update.
#include <cmath>
#include <vector>

#include "absl/status/status.h"
#include "core/dtype.h"
#include "kernels/mamba2_state_update.h"
#include "kernels/mamba_math.h"

namespace mambaserve {

absl::Status RunMamba2StateUpdateCpu(const Mamba2StateUpdateParams& p) {
  const int64_t H = p.num_heads, P = p.head_dim, N = p.d_state, Ts = p.tokens_per_seq;
  const int64_t hpg = p.heads_per_group > 0 ? p.heads_per_group : H / p.num_groups;
  const int64_t out_stride =
      p.state_block_out_stride > 0 ? p.state_block_out_stride : p.tokens_per_seq;
  std::vector<float> s(static_cast<size_t>(N)), Bv(static_cast<size_t>(N)),
      Cv(static_cast<size_t>(N));
  for (int64_t b = 0; b < p.batch; ++b) {
    const int64_t kin = p.state_block_in[b];
    if (kin == 0) continue;
    for (int64_t h = 0; h < H; ++h) {
      const int64_t g = (p.first_head + h) / hpg - p.first_group;
      const float A = p.A[h];
      for (int64_t pp = 0; pp < P; ++pp) {
        const int64_t srow = h * p.state_head_stride + pp * p.state_p_stride;
        for (int64_t n = 0; n < N; ++n) {
          s[n] = LoadAsFloat(p.state, p.state_dtype, kin * p.state_block_stride + srow + n);
        }
        const float D = p.D == nullptr ? 0.0f : (p.d_per_channel ? p.D[h * P + pp] : p.D[h]);
        for (int64_t t = 0; t < Ts; ++t) {
          float dt =
              LoadAsFloat(p.dt, p.dt_dtype,
                          b * p.dt_batch_stride + t * p.dt_token_stride + h * p.dt_head_stride);
          if (p.dt_bias != nullptr) dt += p.dt_bias[h];
          if (p.dt_softplus) dt = Softplus(dt);
          dt = ClampDt(dt, p.dt_min, p.dt_max);
          const float dA = std::exp(dt * A);
          const float x = LoadAsFloat(
              p.x, p.dtype, b * p.x_batch_stride + t * p.x_token_stride + h * p.x_head_stride + pp);
          const int64_t bo = b * p.B_batch_stride + t * p.B_token_stride + g * p.B_group_stride;
          const int64_t co = b * p.C_batch_stride + t * p.C_token_stride + g * p.C_group_stride;
          float y = 0.0f;
          for (int64_t n = 0; n < N; ++n) {
            s[n] = dA * s[n] + dt * LoadAsFloat(p.B, p.dtype, bo + n) * x;
            y += LoadAsFloat(p.C, p.dtype, co + n) * s[n];
          }
          y += D * x;
          if (p.z != nullptr) {
            y *= Silu(LoadAsFloat(
                p.z, p.dtype,
                b * p.z_batch_stride + t * p.z_token_stride + h * p.z_head_stride + pp));
          }
          StoreFromFloat(p.y, p.dtype,
                         b * p.y_batch_stride + t * p.y_token_stride + h * p.y_head_stride + pp, y);
          int64_t kout = -1;
          if (p.state_block_out != nullptr) {
            kout = p.state_block_out[b * out_stride + t];
          } else if (t == Ts - 1) {
            kout = kin;
          }
          if (kout > 0) {
            for (int64_t n = 0; n < N; ++n) {
              StoreFromFloat(p.state, p.state_dtype, kout * p.state_block_stride + srow + n, s[n]);
            }
          }
          // A bf16 state is carried rounded, so T_s tokens equal T_s single-token calls.
          if (p.state_dtype == DType::kBF16) {
            for (int64_t n = 0; n < N; ++n) s[n] = ToFloat(ToBf16(s[n]));
          }
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace mambaserve
