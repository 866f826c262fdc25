// Validation and dispatch of the Mamba-2 state update (see mamba2_state_update.h).
#include "kernels/mamba2_state_update.h"

#include "absl/status/status.h"
#include "core/status_macros.h"
#include "kernels/mamba2_state_update_internal.h"

namespace mambaserve {

absl::Status ValidateMamba2StateUpdate(const Mamba2StateUpdateParams& p) {
  MS_CHECK_ARG(p.batch >= 0, "mamba2_state_update: batch < 0");
  MS_CHECK_ARG(p.tokens_per_seq >= 1, "mamba2_state_update: tokens_per_seq must be >= 1");
  MS_CHECK_ARG(p.num_heads > 0 && p.head_dim > 0 && p.num_groups > 0 && p.d_state > 0,
               "mamba2_state_update: num_heads, head_dim, num_groups, d_state must be > 0");
  const int64_t hpg = p.heads_per_group > 0 ? p.heads_per_group : p.num_heads / p.num_groups;
  if (p.heads_per_group == 0) {
    MS_CHECK_ARG(p.num_heads % p.num_groups == 0, "mamba2_state_update: num_heads ", p.num_heads,
                 " not divisible by num_groups ", p.num_groups,
                 " (pass heads_per_group/first_head/first_group)");
  }
  MS_CHECK_ARG(p.first_head >= 0 && p.first_group >= 0, "mamba2_state_update: negative offsets");
  // Every local head must read a local group.
  const int64_t g_lo = p.first_head / hpg - p.first_group;
  const int64_t g_hi = (p.first_head + p.num_heads - 1) / hpg - p.first_group;
  MS_CHECK_ARG(g_lo >= 0 && g_hi < p.num_groups, "mamba2_state_update: heads map to local groups [",
               g_lo, ", ", g_hi, "], outside [0, ", p.num_groups, ")");
  MS_CHECK_ARG(p.state_dtype == DType::kF32 || p.state_dtype == DType::kBF16,
               "mamba2_state_update: state dtype must be f32 or bf16");
  MS_CHECK_ARG(p.num_blocks >= 1, "mamba2_state_update: num_blocks must be >= 1");
  MS_CHECK_ARG(p.state_p_stride >= p.d_state, "mamba2_state_update: state_p_stride < d_state");
  MS_CHECK_ARG(p.state_head_stride >= (p.head_dim - 1) * p.state_p_stride + p.d_state,
               "mamba2_state_update: state_head_stride too small");
  MS_CHECK_ARG(p.state_block_stride >= (p.num_heads - 1) * p.state_head_stride +
                                           (p.head_dim - 1) * p.state_p_stride + p.d_state,
               "mamba2_state_update: state_block_stride too small");
  if (p.batch == 0) return absl::OkStatus();
  MS_CHECK_ARG(p.x && p.B && p.C && p.y && p.dt && p.A && p.state && p.state_block_in,
               "mamba2_state_update: x, B, C, y, dt, A, state and state_block_in are required");
  return absl::OkStatus();
}

absl::Status RunMamba2StateUpdate(const Mamba2StateUpdateParams& p, const Stream& stream) {
  RETURN_IF_ERROR(ValidateMamba2StateUpdate(p));
  if (p.batch == 0) return absl::OkStatus();
  const int64_t out_stride =
      p.state_block_out_stride > 0 ? p.state_block_out_stride : p.tokens_per_seq;
  if (!stream.is_cuda()) {
    for (int64_t b = 0; b < p.batch; ++b) {
      MS_CHECK_ARG(p.state_block_in[b] >= 0 && p.state_block_in[b] < p.num_blocks,
                   "mamba2_state_update: state_block_in[", b, "] = ", p.state_block_in[b],
                   " out of range");
      if (p.state_block_out == nullptr) continue;
      for (int64_t t = 0; t < p.tokens_per_seq; ++t) {
        const int32_t k = p.state_block_out[b * out_stride + t];
        MS_CHECK_ARG(k >= 0 && k < p.num_blocks, "mamba2_state_update: state_block_out[", b, ",", t,
                     "] = ", k, " out of range");
      }
    }
    return RunMamba2StateUpdateCpu(p);
  }
#if MAMBASERVE_HAS_CUDA
  return RunMamba2StateUpdateCuda(p, stream);
#else
  return absl::FailedPreconditionError("mamba2_state_update: built without CUDA");
#endif
}

}  // namespace mambaserve
