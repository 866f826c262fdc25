#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/model_ops.h"

namespace mambaserve {

absl::Status RunAddRmsNormCpu(const AddRmsNormParams& p) {
  std::vector<float> r(static_cast<size_t>(p.dim));
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    const int64_t row = t * p.dim;
    double sumsq = 0;
    for (int64_t c = 0; c < p.dim; ++c) {
      float v = LoadAsFloat(p.x, p.x_dtype, row + c);
      if (p.add_residual) v += LoadAsFloat(p.residual, p.residual_dtype, row + c);
      StoreFromFloat(p.residual, p.residual_dtype, row + c, v);
      v = LoadAsFloat(p.residual, p.residual_dtype, row + c);  // as stored
      r[static_cast<size_t>(c)] = v;
      sumsq += static_cast<double>(v) * v;
    }
    const float inv = 1.0f / std::sqrt(static_cast<float>(sumsq / p.dim) + p.eps);
    for (int64_t c = 0; c < p.dim; ++c) {
      StoreFromFloat(p.out, p.out_dtype, row + c,
                     r[static_cast<size_t>(c)] * inv * LoadAsFloat(p.weight, p.weight_dtype, c));
    }
  }
  return absl::OkStatus();
}

absl::Status RunEmbeddingCpu(const EmbeddingParams& p) {
  for (int64_t t = 0; t < p.num_tokens; ++t) {
    const int64_t local = static_cast<int64_t>(p.ids[t]) - p.row_begin;
    const bool mine = local >= 0 && local < p.num_rows;
    for (int64_t c = 0; c < p.dim; ++c) {
      const float v = mine ? LoadAsFloat(p.table, p.table_dtype, local * p.dim + c) : 0.0f;
      StoreFromFloat(p.out, p.out_dtype, t * p.dim + c, v);
    }
  }
  return absl::OkStatus();
}

absl::Status RunCopyRowsCpu(const CopyRowsParams& p) {
  for (int64_t i = 0; i < p.num_rows; ++i) {
    const int64_t s = p.row_index ? p.row_index[i] : i;
    if (p.src_dtype == p.dst_dtype) {
      const int64_t es = DTypeSize(p.src_dtype);
      std::memcpy(static_cast<char*>(p.dst) + i * p.dst_row_stride * es,
                  static_cast<const char*>(p.src) + s * p.src_row_stride * es,
                  static_cast<size_t>(p.cols * es));
      continue;
    }
    for (int64_t c = 0; c < p.cols; ++c) {
      StoreFromFloat(p.dst, p.dst_dtype, i * p.dst_row_stride + c,
                     LoadAsFloat(p.src, p.src_dtype, s * p.src_row_stride + c));
    }
  }
  return absl::OkStatus();
}

}  // namespace mambaserve
