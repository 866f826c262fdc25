// CPU reference implementation of the Mamba-1 decode update; fp32 accumulation.
#include <vector>

#include "kernels/mamba1_state_update.h"
#include "kernels/selective_scan_internal.h"

namespace mambaserve {

absl::Status RunMamba1StateUpdateCpu(const Mamba1StateUpdateParams& p) {
  using namespace scan_internal;
  const int64_t D = p.dim, N = p.d_state;
  const int64_t dpg = D / p.n_groups;
  const int64_t tokens = 1 + p.num_spec;
  const int64_t block_stride = p.state_block_stride > 0 ? p.state_block_stride : D * N;
  std::vector<float> h(N), Bv(N), Cv(N);
  for (int64_t b = 0; b < p.batch; ++b) {
    const int64_t in_block = p.state_block_in[b];
    for (int64_t d = 0; d < D; ++d) {
      const int64_t g = d / dpg;
      const float* A = p.A + d * N;
      const float sp_bias_A = p.mode == Discretization::kEventDriven ? Softplus(p.bias_A[d]) : 0.0f;
      LoadState(p.state_pool, p.state_dtype, in_block, block_stride, d, N, h.data());
      for (int64_t t = 0; t < tokens; ++t) {
        const int64_t r = b * tokens + t;
        const float u = LoadAsFloat(p.u, p.x_dtype, r * p.u_row_stride + d);
        const float dt_in = DtInput(LoadAsFloat(p.delta, p.x_dtype, r * p.delta_row_stride + d),
                                    p.delta_bias, d, p.delta_softplus);
        const float dt_decay =
            p.mode == Discretization::kEventDriven ? p.tau[r] * sp_bias_A : dt_in;
        for (int64_t n = 0; n < N; ++n) {
          Bv[n] = LoadAsFloat(p.B, p.bc_dtype, r * p.B_row_stride + g * p.B_group_stride + n);
          Cv[n] = LoadAsFloat(p.C, p.bc_dtype, r * p.C_row_stride + g * p.C_group_stride + n);
        }
        const float y_ssm =
            StepChannel(p.mode, dt_decay, dt_in, A, Bv.data(), Cv.data(), u, h.data(), N);
        StoreFromFloat(p.y, p.x_dtype, r * p.y_row_stride + d,
                       FinishOutput(y_ssm, u, p.D, d, p.z, p.x_dtype, r * p.z_row_stride + d));
        if (p.state_block_out) {
          StoreState(p.state_pool, p.state_dtype, p.state_block_out[r], block_stride, d, N,
                     h.data());
        }
      }
      if (!p.state_block_out) {
        StoreState(p.state_pool, p.state_dtype, in_block, block_stride, d, N, h.data());
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace mambaserve
