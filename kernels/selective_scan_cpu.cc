// CPU reference implementation of the Mamba-1 selective scan (prefill); fp32 accumulation.
#include <vector>

#include "kernels/selective_scan.h"
#include "kernels/selective_scan_internal.h"

namespace mambaserve {

absl::Status RunSelectiveScanCpu(const SelectiveScanParams& p) {
  using namespace scan_internal;
  const int64_t D = p.dim, N = p.d_state;
  const int64_t dpg = D / p.n_groups;
  const int64_t block_stride = p.state_block_stride > 0 ? p.state_block_stride : D * N;
  std::vector<float> h(N), Bv(N), Cv(N);
  for (int64_t s = 0; s < p.num_seqs; ++s) {
    const int64_t t0 = p.cu_seqlens[s], t1 = p.cu_seqlens[s + 1];
    const int64_t in_block = p.initial_state_block ? p.initial_state_block[s] : 0;
    const int64_t out_block = p.final_state_block ? p.final_state_block[s] : 0;
    const int64_t prefix = p.block_size > 0 ? p.prefix_offset[s] : 0;
    for (int64_t d = 0; d < D; ++d) {
      const int64_t g = d / dpg;
      const float sp_bias_A = p.mode == Discretization::kEventDriven ? Softplus(p.bias_A[d]) : 0.0f;
      LoadState(p.state_pool, p.state_dtype, in_block, block_stride, d, N, h.data());
      for (int64_t t = t0; t < t1; ++t) {
        TokenStep(p, t, d, g, sp_bias_A, h.data(), Bv.data(), Cv.data());
        if (p.block_size > 0) {
          const int64_t k = prefix + (t - t0) + 1;  // tokens processed so far
          if (k % p.block_size == 0) {
            const int64_t j = k / p.block_size - prefix / p.block_size - 1;
            const int64_t dst = p.boundary_state_blocks[s * p.boundary_blocks_stride + j];
            StoreState(p.state_pool, p.state_dtype, dst, block_stride, d, N, h.data());
          }
        }
      }
      StoreState(p.state_pool, p.state_dtype, out_block, block_stride, d, N, h.data());
    }
  }
  return absl::OkStatus();
}

}  // namespace mambaserve
