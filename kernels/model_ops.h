// The small ops of the model stack around the mixers: fused residual add + RMSNorm, the
// (vocab-parallel) embedding lookup, and row copies with dtype conversion and optional gather.
// CPU implementations in model_ops_cpu.cc, CUDA ones in model_ops.cu. Accumulation is fp32.
#ifndef MAMBASERVE_KERNELS_MODEL_OPS_H_
#define MAMBASERVE_KERNELS_MODEL_OPS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "core/dtype.h"
#include "core/stream.h"

namespace mambaserve {

// mamba_ssm's fused add + norm, per token row t (all arrays contiguous rows of `dim`):
//   r = x[t] + residual[t]   (or r = x[t] when add_residual is false: the first layer)
//   residual[t] = r          (stored in residual_dtype, fp32 for residual_in_fp32)
//   out[t] = r * rsqrt(mean(r^2) + eps) * weight
// `r` is the value as stored in `residual` (rounded to residual_dtype), so the norm sees
// exactly what the next layer's add will read.
struct AddRmsNormParams {
  int64_t num_tokens = 0;
  int64_t dim = 0;
  const void* x = nullptr;
  DType x_dtype = DType::kF32;
  void* residual = nullptr;  // in/out
  DType residual_dtype = DType::kF32;
  bool add_residual = true;
  const void* weight = nullptr;
  DType weight_dtype = DType::kF32;
  void* out = nullptr;  // may alias x
  DType out_dtype = DType::kF32;
  float eps = 1e-5f;
};

// Vocab-parallel lookup: out[t] = table[ids[t] - row_begin] when the id lies in
// [row_begin, row_begin + num_rows), else zeros (another rank holds it; the sum over ranks of
// the outputs is the full lookup). Ids outside [0, vocab) must be refused before this runs.
struct EmbeddingParams {
  int64_t num_tokens = 0;
  int64_t dim = 0;
  const int32_t* ids = nullptr;  // (num_tokens), device or host like the other pointers
  const void* table = nullptr;   // (num_rows, dim)
  DType table_dtype = DType::kF32;
  int64_t row_begin = 0;
  int64_t num_rows = 0;
  void* out = nullptr;  // (num_tokens, dim)
  DType out_dtype = DType::kF32;
};

// dst[i, :cols] = convert(src[row_index ? row_index[i] : i, :cols]).
struct CopyRowsParams {
  int64_t num_rows = 0;
  int64_t cols = 0;
  const int32_t* row_index = nullptr;  // optional gather
  const void* src = nullptr;
  int64_t src_row_stride = 0;
  DType src_dtype = DType::kF32;
  void* dst = nullptr;  // must not overlap src
  int64_t dst_row_stride = 0;
  DType dst_dtype = DType::kF32;
};

absl::Status RunAddRmsNorm(const AddRmsNormParams& p, const Stream& stream);
absl::Status RunEmbedding(const EmbeddingParams& p, const Stream& stream);
absl::Status RunCopyRows(const CopyRowsParams& p, const Stream& stream);

absl::Status RunAddRmsNormCpu(const AddRmsNormParams& p);
absl::Status RunEmbeddingCpu(const EmbeddingParams& p);
absl::Status RunCopyRowsCpu(const CopyRowsParams& p);
#if MAMBASERVE_HAS_CUDA
absl::Status RunAddRmsNormCuda(const AddRmsNormParams& p, const Stream& stream);
absl::Status RunEmbeddingCuda(const EmbeddingParams& p, const Stream& stream);
absl::Status RunCopyRowsCuda(const CopyRowsParams& p, const Stream& stream);
#endif

}  // namespace mambaserve

#endif  // MAMBASERVE_KERNELS_MODEL_OPS_H_
