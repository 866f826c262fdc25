// Validation and dispatch of the gated RMSNorm (see gated_rmsnorm.h).
#include "kernels/gated_rmsnorm.h"

#include "absl/status/status.h"
#include "core/status_macros.h"

namespace mambaserve {

absl::Status RunGatedRmsNorm(const GatedRmsNormParams& p, const Stream& stream) {
  MS_CHECK_ARG(p.num_tokens >= 0, "gated_rmsnorm: num_tokens < 0");
  MS_CHECK_ARG(p.dim > 0, "gated_rmsnorm: dim must be > 0, got ", p.dim);
  MS_CHECK_ARG(p.group_size > 0, "gated_rmsnorm: group_size must be > 0, got ", p.group_size);
  MS_CHECK_ARG(p.channel_offset >= 0, "gated_rmsnorm: channel_offset < 0");
  MS_CHECK_ARG(p.eps >= 0.0f, "gated_rmsnorm: eps < 0");
  if (p.num_tokens == 0) return absl::OkStatus();
  MS_CHECK_ARG(p.y != nullptr, "gated_rmsnorm: y is null");
  MS_CHECK_ARG(p.y_row_stride >= p.dim || p.num_tokens == 1, "gated_rmsnorm: y_row_stride < dim");
  if (p.z != nullptr) {
    MS_CHECK_ARG(p.z_row_stride >= p.dim || p.num_tokens == 1, "gated_rmsnorm: z_row_stride < dim");
  }
  const int64_t first_group = p.channel_offset / p.group_size;
  const int64_t last_group = (p.channel_offset + p.dim - 1) / p.group_size;
  switch (p.mode) {
    case GatedRmsNormMode::kFused:
      MS_CHECK_ARG(p.dim % p.group_size == 0 && p.channel_offset % p.group_size == 0,
                   "gated_rmsnorm: fused mode needs whole groups (dim ", p.dim, ", channel_offset ",
                   p.channel_offset, ", group_size ", p.group_size, "); use the split form");
      break;
    case GatedRmsNormMode::kPartialSums:
    case GatedRmsNormMode::kApply:
      MS_CHECK_ARG(p.sums != nullptr, "gated_rmsnorm: split form needs sums");
      MS_CHECK_ARG(first_group >= p.sums_group_offset, "gated_rmsnorm: sums_group_offset ",
                   p.sums_group_offset, " > first touched group ", first_group);
      MS_CHECK_ARG(p.sums_row_stride >= last_group - p.sums_group_offset + 1 || p.num_tokens == 1,
                   "gated_rmsnorm: sums_row_stride ", p.sums_row_stride, " < groups touched");
      break;
    default:
      return absl::InvalidArgumentError("gated_rmsnorm: unknown mode");
  }
  if (p.mode != GatedRmsNormMode::kPartialSums) {
    MS_CHECK_ARG(p.out != nullptr, "gated_rmsnorm: out is null");
    MS_CHECK_ARG(p.out_row_stride >= p.dim || p.num_tokens == 1,
                 "gated_rmsnorm: out_row_stride < dim");
  }
  if (!stream.is_cuda()) return RunGatedRmsNormCpu(p);
#if MAMBASERVE_HAS_CUDA
  return RunGatedRmsNormCuda(p, stream);
#else
  return absl::FailedPreconditionError("gated_rmsnorm: built without CUDA");
#endif
}

}  // namespace mambaserve
