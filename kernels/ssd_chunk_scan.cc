// Validation and dispatch of the SSD chunked scan.
#include "kernels/ssd_chunk_scan.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace mambaserve {

absl::Status ValidateSsdChunkScanParams(const SsdChunkScanParams& p) {
  MS_CHECK_ARG(p.num_tokens >= 0, "ssd: num_tokens must be >= 0, got ", p.num_tokens);
  MS_CHECK_ARG(p.num_seqs >= 0, "ssd: num_seqs must be >= 0, got ", p.num_seqs);
  MS_CHECK_ARG(p.num_heads > 0, "ssd: num_heads must be > 0, got ", p.num_heads);
  MS_CHECK_ARG(p.head_dim > 0, "ssd: head_dim must be > 0, got ", p.head_dim);
  MS_CHECK_ARG(p.num_groups > 0, "ssd: num_groups must be > 0, got ", p.num_groups);
  MS_CHECK_ARG(p.d_state > 0, "ssd: d_state must be > 0, got ", p.d_state);
  MS_CHECK_ARG(p.chunk_size >= 16 && (p.chunk_size & (p.chunk_size - 1)) == 0,
               "ssd: chunk_size must be a power of two >= 16, got ", p.chunk_size);
  const int64_t hpg = p.heads_per_group > 0 ? p.heads_per_group : p.num_heads / p.num_groups;
  if (p.heads_per_group == 0) {
    MS_CHECK_ARG(p.num_heads % p.num_groups == 0 && p.first_head == 0 && p.first_group == 0,
                 "ssd: with heads_per_group = 0, num_heads (", p.num_heads,
                 ") must be a multiple of num_groups (", p.num_groups,
                 ") and first_head/first_group must be 0");
  }
  MS_CHECK_ARG(hpg > 0 && p.first_head >= 0 && p.first_group >= 0,
               "ssd: bad head-to-group mapping (heads_per_group ", hpg, ", first_head ",
               p.first_head, ", first_group ", p.first_group, ")");
  const int64_t g0 = p.first_head / hpg - p.first_group;
  const int64_t g1 = (p.first_head + p.num_heads - 1) / hpg - p.first_group;
  MS_CHECK_ARG(g0 >= 0 && g1 < p.num_groups, "ssd: heads map to local groups [", g0, ", ", g1,
               "] outside [0, ", p.num_groups, ")");
  MS_CHECK_ARG(p.x && p.dt && p.A && p.B && p.C && p.y, "ssd: x, dt, A, B, C and y are required");
  MS_CHECK_ARG(p.cu_seqlens || p.num_seqs == 0, "ssd: cu_seqlens is required");
  MS_CHECK_ARG(p.x_head_stride >= p.head_dim || p.num_heads == 1, "ssd: x_head_stride (",
               p.x_head_stride, ") < head_dim (", p.head_dim, ")");
  MS_CHECK_ARG(p.y_head_stride >= p.head_dim || p.num_heads == 1, "ssd: y_head_stride (",
               p.y_head_stride, ") < head_dim (", p.head_dim, ")");
  MS_CHECK_ARG(p.x_token_stride >= 0 && p.y_token_stride >= 0 && p.dt_token_stride >= 0 &&
                   p.B_token_stride >= 0 && p.C_token_stride >= 0 && p.z_token_stride >= 0,
               "ssd: strides must be >= 0");
  MS_CHECK_ARG(p.B_group_stride >= p.d_state || p.num_groups == 1, "ssd: B_group_stride < d_state");
  MS_CHECK_ARG(p.C_group_stride >= p.d_state || p.num_groups == 1, "ssd: C_group_stride < d_state");
  MS_CHECK_ARG(!p.z || p.z_head_stride >= p.head_dim || p.num_heads == 1,
               "ssd: z_head_stride < head_dim");
  MS_CHECK_ARG(!(p.dt_min > p.dt_max) && !std::isnan(p.dt_min) && !std::isnan(p.dt_max),
               "ssd: dt_limit must satisfy dt_min <= dt_max");
  // dt is a step size; with A <= 0 every decay exp(dt A) is then at most 1, which the CUDA
  // tensor-core path relies on (it clamps exp(cum_i - cum_j) at 1).
  MS_CHECK_ARG(p.dt_min >= 0.0f, "ssd: dt_min must be >= 0, got ", p.dt_min);
  MS_CHECK_ARG(p.state_dtype == DType::kF32 || p.state_dtype == DType::kBF16,
               "ssd: state_dtype must be f32 or bf16, got ", DTypeName(p.state_dtype));
  const bool uses_pool = p.initial_state_block || p.final_state_block || p.block_size > 0;
  if (uses_pool) {
    const int64_t head_stride =
        p.state_head_stride > 0 ? p.state_head_stride : p.head_dim * p.d_state;
    MS_CHECK_ARG(p.state != nullptr, "ssd: state pool pointer is null but block indices given");
    MS_CHECK_ARG(p.num_blocks >= 1, "ssd: num_blocks must be >= 1");
    MS_CHECK_ARG(head_stride >= p.head_dim * p.d_state, "ssd: state_head_stride (", head_stride,
                 ") < head_dim * d_state");
    MS_CHECK_ARG(p.state_block_stride >= p.num_heads * head_stride || p.num_blocks == 1,
                 "ssd: state_block_stride (", p.state_block_stride, ") < num_heads * head stride (",
                 p.num_heads * head_stride, ")");
  }
  MS_CHECK_ARG(p.block_size >= 0, "ssd: block_size must be >= 0");
  if (p.block_size > 0) {
    MS_CHECK_ARG(p.block_size % p.chunk_size == 0, "ssd: block_size (", p.block_size,
                 ") must be a multiple of chunk_size (", p.chunk_size, ")");
    MS_CHECK_ARG(p.boundary_state_blocks && p.boundary_state_offsets,
                 "ssd: block_size > 0 needs boundary_state_blocks and boundary_state_offsets");
  }
  return absl::OkStatus();
}

// The cost model, in token-steps of one SM (the main kernel's time for one token of one CTA,
// ~84 ns on an H100): the main kernel takes waves x (segment length + a fixed cost per CTA);
// segments add a fixed cost per call (the combine and the correction's start) and the
// correction, about kCorrectionCost per corrected token (those of segments >= 1) and CTA,
// spread over every SM. The constants come from bench_ssd_prefill --segs (bench/RESULTS_ssd.md;
// refitted in the twenty-fifth session, when 3 segments beat 8 at b=1 L=16K and 64K).
int SsdAutoSegments(int64_t ctas, int64_t mean_len, int sms) {
  constexpr double kCtaOverheadTokens = 120.0;
  constexpr double kSegmentsFixedCost = 455.0;
  constexpr double kCorrectionCost = 0.30;
  constexpr int64_t kMinSegmentTokens = 256;
  if (ctas <= 0 || sms <= 0 || mean_len <= 0) return 1;
  int best = 1;
  double best_cost = 0.0;
  for (int segs = 1; segs <= 64; ++segs) {
    const int64_t seg_len = ((mean_len + segs - 1) / segs + 63) / 64 * 64;
    if (segs > 1 && seg_len < kMinSegmentTokens) break;
    const int64_t waves = (segs * ctas + sms - 1) / sms;
    double cost = static_cast<double>(waves) * (static_cast<double>(seg_len) + kCtaOverheadTokens);
    if (segs > 1) {
      const double corrected = static_cast<double>(mean_len) * (segs - 1) / segs;
      cost += kSegmentsFixedCost + kCorrectionCost * corrected * static_cast<double>(ctas) / sms;
    }
    if (segs == 1 || cost < best_cost) {
      best = segs;
      best_cost = cost;
    }
  }
  return best;
}

absl::Status RunSsdChunkScan(const SsdChunkScanParams& p, const Stream& stream) {
  RETURN_IF_ERROR(ValidateSsdChunkScanParams(p));
  if (!stream.is_cuda()) return RunSsdChunkScanCpu(p);
#if MAMBASERVE_HAS_CUDA
  return RunSsdChunkScanCuda(p, stream);
#else
  return absl::FailedPreconditionError("ssd: CUDA stream given but built without CUDA");
#endif
}

}  // namespace mambaserve
