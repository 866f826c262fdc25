// Validation and dispatch of the Mamba-1 decode update.
#include "kernels/mamba1_state_update.h"

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/selective_scan.h"

namespace mambaserve {
namespace {

absl::Status Validate(const Mamba1StateUpdateParams& p, bool on_cpu) {
  MS_CHECK_ARG(p.batch >= 0 && p.num_spec >= 0, "mamba1_state_update: negative sizes");
  MS_CHECK_ARG(p.dim > 0, "mamba1_state_update: dim must be positive");
  MS_CHECK_ARG(p.d_state > 0 && p.d_state <= kSelectiveScanMaxDState,
               "mamba1_state_update: d_state must be in [1, 256], got ", p.d_state);
  MS_CHECK_ARG(p.n_groups > 0 && p.dim % p.n_groups == 0, "mamba1_state_update: n_groups ",
               p.n_groups, " must divide dim ", p.dim);
  const int m = static_cast<int>(p.mode);
  MS_CHECK_ARG(m >= 0 && m <= static_cast<int>(Discretization::kEventDriven),
               "mamba1_state_update: unknown discretization ", m);
  if (p.batch == 0) return absl::OkStatus();
  MS_CHECK_ARG(p.u && p.delta && p.A && p.B && p.C && p.y && p.state_pool && p.state_block_in,
               "mamba1_state_update: u, delta, A, B, C, y, state_pool and state_block_in are "
               "required");
  MS_CHECK_ARG(p.u_row_stride >= p.dim && p.delta_row_stride >= p.dim && p.y_row_stride >= p.dim &&
                   (!p.z || p.z_row_stride >= p.dim),
               "mamba1_state_update: row strides of u, delta, z, y must be >= dim");
  MS_CHECK_ARG(p.state_block_stride == 0 || p.state_block_stride >= p.dim * p.d_state,
               "mamba1_state_update: state_block_stride smaller than dim * d_state");
  if (p.mode == Discretization::kEventDriven) {
    MS_CHECK_ARG(p.tau && p.bias_A, "mamba1_state_update: event-driven mode needs tau, bias_A");
  }
  if (!on_cpu) return absl::OkStatus();
  const int64_t rows = p.batch * (1 + p.num_spec);
  for (int64_t b = 0; b < p.batch; ++b) {
    MS_CHECK_ARG(p.state_block_in[b] >= 0 && p.state_block_in[b] < p.num_state_blocks,
                 "mamba1_state_update: state_block_in[", b, "] = ", p.state_block_in[b],
                 " out of range");
  }
  if (p.state_block_out) {
    for (int64_t r = 0; r < rows; ++r) {
      MS_CHECK_ARG(p.state_block_out[r] >= 0 && p.state_block_out[r] < p.num_state_blocks,
                   "mamba1_state_update: state_block_out[", r, "] = ", p.state_block_out[r],
                   " out of range");
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RunMamba1StateUpdate(const Mamba1StateUpdateParams& p, const Stream& stream) {
  RETURN_IF_ERROR(Validate(p, !stream.is_cuda()));
  if (p.batch == 0) return absl::OkStatus();
  if (!stream.is_cuda()) return RunMamba1StateUpdateCpu(p);
#if MAMBASERVE_HAS_CUDA
  return RunMamba1StateUpdateCuda(p, stream);
#else
  return absl::FailedPreconditionError(
      "mamba1_state_update: CUDA stream given but this build has no CUDA backend");
#endif
}

}  // namespace mambaserve
