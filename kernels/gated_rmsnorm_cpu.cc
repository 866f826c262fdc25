// CPU reference implementation of the gated RMSNorm.
#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/status/status.h"
#include "core/dtype.h"
#include "kernels/gated_rmsnorm.h"
#include "kernels/mamba_math.h"

namespace mambaserve {

absl::Status RunGatedRmsNormCpu(const GatedRmsNormParams& p) {
  const int64_t gs = p.group_size;
  const int64_t g_first = p.channel_offset / gs;
  const int64_t g_last = (p.channel_offset + p.dim - 1) / gs;
  const int64_t ng = g_last - g_first + 1;
  std::vector<float> v(static_cast<size_t>(p.dim)), gate(static_cast<size_t>(p.dim));
  std::vector<float> ss(static_cast<size_t>(ng));
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    for (int64_t c = 0; c < p.dim; ++c) {
      const float y = LoadAsFloat(p.y, p.dtype, t * p.y_row_stride + c);
      gate[c] = p.z != nullptr ? Silu(LoadAsFloat(p.z, p.dtype, t * p.z_row_stride + c)) : 1.0f;
      v[c] = p.norm_before_gate ? y : y * gate[c];
    }
    if (p.mode != GatedRmsNormMode::kApply) {
      std::fill(ss.begin(), ss.end(), 0.0f);
      for (int64_t c = 0; c < p.dim; ++c) ss[(p.channel_offset + c) / gs - g_first] += v[c] * v[c];
    } else {
      for (int64_t g = 0; g < ng; ++g) {
        ss[g] = p.sums[t * p.sums_row_stride + g_first + g - p.sums_group_offset];
      }
    }
    if (p.mode == GatedRmsNormMode::kPartialSums) {
      for (int64_t g = 0; g < ng; ++g)
        p.sums[t * p.sums_row_stride + g_first + g - p.sums_group_offset] = ss[g];
      continue;
    }
    for (int64_t c = 0; c < p.dim; ++c) {
      const int64_t g = (p.channel_offset + c) / gs - g_first;
      const float rstd = 1.0f / std::sqrt(ss[g] / static_cast<float>(gs) + p.eps);
      float o = v[c] * rstd * (p.weight ? LoadAsFloat(p.weight, p.weight_dtype, c) : 1.0f);
      if (p.norm_before_gate) o *= gate[c];
      StoreFromFloat(p.out, p.dtype, t * p.out_row_stride + c, o);
    }
  }
  return absl::OkStatus();
}

}  // namespace mambaserve
