// Validation and dispatch of the Mamba-1 selective scan (prefill).
#include "kernels/selective_scan.h"

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace mambaserve {
namespace {

bool IsValidMode(Discretization m) {
  const int v = static_cast<int>(m);
  return v >= 0 && v <= static_cast<int>(Discretization::kEventDriven);
}

absl::Status Validate(const SelectiveScanParams& p, bool on_cpu) {
  MS_CHECK_ARG(p.num_tokens >= 0 && p.num_seqs >= 0, "selective_scan: negative sizes");
  MS_CHECK_ARG(p.dim > 0, "selective_scan: dim must be positive, got ", p.dim);
  MS_CHECK_ARG(p.d_state > 0 && p.d_state <= kSelectiveScanMaxDState,
               "selective_scan: d_state must be in [1, 256], got ", p.d_state);
  MS_CHECK_ARG(p.n_groups > 0 && p.dim % p.n_groups == 0, "selective_scan: n_groups ", p.n_groups,
               " must divide dim ", p.dim);
  MS_CHECK_ARG(IsValidMode(p.mode), "selective_scan: unknown discretization ",
               static_cast<int>(p.mode));
  MS_CHECK_ARG(p.cuda_time_segments >= 0 && p.cuda_time_segments <= 16,
               "selective_scan: cuda_time_segments must be in [0, 16], got ", p.cuda_time_segments);
  if (p.num_tokens == 0 && p.num_seqs == 0) return absl::OkStatus();
  MS_CHECK_ARG(p.cu_seqlens != nullptr, "selective_scan: cu_seqlens is required");
  if (p.num_tokens > 0) {
    MS_CHECK_ARG(p.u && p.delta && p.A && p.B && p.C && p.y,
                 "selective_scan: u, delta, A, B, C and y are required");
    MS_CHECK_ARG(p.u_row_stride >= p.dim && p.delta_row_stride >= p.dim &&
                     p.y_row_stride >= p.dim && (!p.z || p.z_row_stride >= p.dim),
                 "selective_scan: row strides of u, delta, z, y must be >= dim");
    MS_CHECK_ARG(p.B_row_stride >= 0 && p.C_row_stride >= 0 && p.B_group_stride >= 0 &&
                     p.C_group_stride >= 0,
                 "selective_scan: negative B/C strides");
  }
  if (p.mode == Discretization::kEventDriven) {
    MS_CHECK_ARG(p.tau != nullptr && p.bias_A != nullptr,
                 "selective_scan: event-driven mode needs tau and bias_A");
  }
  const bool uses_state = p.initial_state_block || p.final_state_block || p.block_size > 0;
  if (uses_state) {
    MS_CHECK_ARG(p.state_pool != nullptr, "selective_scan: state blocks given without a pool");
    MS_CHECK_ARG(p.state_block_stride == 0 || p.state_block_stride >= p.dim * p.d_state,
                 "selective_scan: state_block_stride smaller than dim * d_state");
  }
  MS_CHECK_ARG(p.block_size >= 0, "selective_scan: negative block_size");
  if (p.block_size > 0) {
    MS_CHECK_ARG(p.prefix_offset && p.boundary_state_blocks,
                 "selective_scan: block_size > 0 needs prefix_offset and boundary_state_blocks");
  }
  if (!on_cpu) return absl::OkStatus();
  // Host-visible arrays: check them fully.
  MS_CHECK_ARG(p.cu_seqlens[0] == 0, "selective_scan: cu_seqlens[0] must be 0");
  for (int64_t s = 0; s < p.num_seqs; ++s) {
    MS_CHECK_ARG(p.cu_seqlens[s + 1] >= p.cu_seqlens[s], "selective_scan: cu_seqlens decreases");
  }
  MS_CHECK_ARG(p.cu_seqlens[p.num_seqs] == p.num_tokens,
               "selective_scan: cu_seqlens[S] = ", p.cu_seqlens[p.num_seqs],
               " but num_tokens = ", p.num_tokens);
  auto check_block = [&](int64_t b, const char* what) -> absl::Status {
    MS_CHECK_ARG(b >= 0 && b < p.num_state_blocks, "selective_scan: ", what, " block ", b,
                 " out of range [0, ", p.num_state_blocks, ")");
    return absl::OkStatus();
  };
  for (int64_t s = 0; s < p.num_seqs; ++s) {
    if (p.initial_state_block) RETURN_IF_ERROR(check_block(p.initial_state_block[s], "initial"));
    if (p.final_state_block) RETURN_IF_ERROR(check_block(p.final_state_block[s], "final"));
    if (p.block_size > 0) {
      MS_CHECK_ARG(p.prefix_offset[s] >= 0, "selective_scan: negative prefix_offset");
      const int64_t len = p.cu_seqlens[s + 1] - p.cu_seqlens[s];
      const int64_t count =
          (p.prefix_offset[s] + len) / p.block_size - p.prefix_offset[s] / p.block_size;
      MS_CHECK_ARG(count <= p.boundary_blocks_stride, "selective_scan: sequence ", s, " crosses ",
                   count, " block boundaries but boundary_blocks_stride is ",
                   p.boundary_blocks_stride);
      for (int64_t j = 0; j < count; ++j) {
        RETURN_IF_ERROR(
            check_block(p.boundary_state_blocks[s * p.boundary_blocks_stride + j], "boundary"));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RunSelectiveScan(const SelectiveScanParams& p, const Stream& stream) {
  RETURN_IF_ERROR(Validate(p, !stream.is_cuda()));
  if (p.num_tokens == 0 && p.num_seqs == 0) return absl::OkStatus();
  if (!stream.is_cuda()) return RunSelectiveScanCpu(p);
#if MAMBASERVE_HAS_CUDA
  return RunSelectiveScanCuda(p, stream);
#else
  return absl::FailedPreconditionError(
      "selective_scan: CUDA stream given but this build has no CUDA backend");
#endif
}

}  // namespace mambaserve
