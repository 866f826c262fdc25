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
      const float sp_bias_A = p.mode == Discretization::kEventDriven ? Softplus(p.bias_A[d]) : 0.0f;
      LoadState(p.state_pool, p.state_dtype, in_block, block_stride, d, N, h.data());
      for (int64_t t = 0; t < tokens; ++t) {
        const int64_t r = b * tokens + t;
        TokenStep(p, r, d, g, sp_bias_A, h.data(), Bv.data(), Cv.data());
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
