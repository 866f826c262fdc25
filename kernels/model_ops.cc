#include "kernels/model_ops.h"

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"

namespace mambaserve {
namespace {

absl::Status NotBuilt(const char* op) {
  return absl::FailedPreconditionError(
      absl::StrCat(op, ": CUDA stream given but this build has no CUDA backend"));
}

}  // namespace

absl::Status RunAddRmsNorm(const AddRmsNormParams& p, const Stream& stream) {
  MS_CHECK_ARG(p.num_tokens >= 0 && p.dim > 0, "AddRmsNorm: bad sizes tokens=", p.num_tokens,
               " dim=", p.dim);
  MS_CHECK_ARG(p.x && p.residual && p.weight && p.out, "AddRmsNorm: missing pointer");
  MS_CHECK_ARG(p.eps > 0, "AddRmsNorm: eps must be positive");
  if (p.num_tokens == 0) return absl::OkStatus();
  if (!stream.is_cuda()) return RunAddRmsNormCpu(p);
#if MAMBASERVE_HAS_CUDA
  return RunAddRmsNormCuda(p, stream);
#else
  return NotBuilt("AddRmsNorm");
#endif
}

absl::Status RunEmbedding(const EmbeddingParams& p, const Stream& stream) {
  MS_CHECK_ARG(p.num_tokens >= 0 && p.dim > 0 && p.num_rows >= 0 && p.row_begin >= 0,
               "Embedding: bad sizes");
  MS_CHECK_ARG(p.ids && p.table && p.out, "Embedding: missing pointer");
  if (p.num_tokens == 0) return absl::OkStatus();
  if (!stream.is_cuda()) return RunEmbeddingCpu(p);
#if MAMBASERVE_HAS_CUDA
  return RunEmbeddingCuda(p, stream);
#else
  return NotBuilt("Embedding");
#endif
}

absl::Status RunCopyRows(const CopyRowsParams& p, const Stream& stream) {
  MS_CHECK_ARG(p.num_rows >= 0 && p.cols >= 0, "CopyRows: bad sizes");
  MS_CHECK_ARG(p.src_row_stride >= p.cols && p.dst_row_stride >= p.cols,
               "CopyRows: row strides must be >= cols");
  if (p.num_rows == 0 || p.cols == 0) return absl::OkStatus();
  MS_CHECK_ARG(p.src && p.dst, "CopyRows: missing pointer");
  if (!stream.is_cuda()) return RunCopyRowsCpu(p);
#if MAMBASERVE_HAS_CUDA
  return RunCopyRowsCuda(p, stream);
#else
  return NotBuilt("CopyRows");
#endif
}

}  // namespace mambaserve
