// Validation and dispatch of the causal conv1d kernels (see causal_conv1d.h).
#include "kernels/causal_conv1d.h"

#include "absl/status/status.h"
#include "core/status_macros.h"

namespace mambaserve {
namespace {

absl::Status ValidateWeights(const ConvWeights& w) {
  MS_CHECK_ARG(w.dim > 0, "causal_conv1d: dim must be > 0, got ", w.dim);
  MS_CHECK_ARG(w.width >= 2 && w.width <= 8, "causal_conv1d: width must be in [2, 8], got ",
               w.width);
  MS_CHECK_ARG(w.weight != nullptr, "causal_conv1d: weight is null");
  MS_CHECK_ARG(w.weight_row_stride == 0 || w.weight_row_stride >= w.width,
               "causal_conv1d: weight_row_stride ", w.weight_row_stride, " < width ", w.width);
  return absl::OkStatus();
}

absl::Status ValidatePool(const ConvStatePool& s, const ConvWeights& w, DType x_dtype) {
  MS_CHECK_ARG(s.conv_state != nullptr, "causal_conv1d: conv_state is null");
  MS_CHECK_ARG(s.state_dtype == DType::kF32 || s.state_dtype == x_dtype,
               "causal_conv1d: state dtype ", DTypeName(s.state_dtype), " must be f32 or ",
               DTypeName(x_dtype));
  MS_CHECK_ARG(s.num_blocks >= 1, "causal_conv1d: num_blocks must be >= 1");
  MS_CHECK_ARG(s.state_len >= w.width - 1, "causal_conv1d: state_len ", s.state_len,
               " < width - 1 = ", w.width - 1);
  if (s.layout == ConvStateLayout::kSD) {
    MS_CHECK_ARG(s.state_stride >= w.dim, "causal_conv1d: SD state_stride ", s.state_stride,
                 " < dim ", w.dim);
    MS_CHECK_ARG(s.state_block_stride >= (s.state_len - 1) * s.state_stride + w.dim,
                 "causal_conv1d: state_block_stride ", s.state_block_stride, " too small");
  } else {
    MS_CHECK_ARG(s.state_stride >= s.state_len, "causal_conv1d: DS state_stride ", s.state_stride,
                 " < state_len ", s.state_len);
    MS_CHECK_ARG(s.state_block_stride >= (w.dim - 1) * s.state_stride + s.state_len,
                 "causal_conv1d: state_block_stride ", s.state_block_stride, " too small");
  }
  return absl::OkStatus();
}

absl::Status CheckBlocksHost(const int32_t* blocks, int64_t n, int64_t num_blocks,
                             const char* name) {
  if (blocks == nullptr) return absl::OkStatus();
  for (int64_t i = 0; i < n; ++i) {
    MS_CHECK_ARG(blocks[i] >= 0 && blocks[i] < num_blocks, "causal_conv1d: ", name, "[", i,
                 "] = ", blocks[i], " out of range [0, ", num_blocks, ")");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status RunCausalConv1d(const CausalConv1dParams& p, const Stream& stream) {
  RETURN_IF_ERROR(ValidateWeights(p.w));
  RETURN_IF_ERROR(ValidatePool(p.pool, p.w, p.dtype));
  MS_CHECK_ARG(p.num_tokens >= 0 && p.num_seqs >= 0, "causal_conv1d: negative sizes");
  MS_CHECK_ARG(p.cu_seqlens != nullptr, "causal_conv1d: cu_seqlens is null");
  if (p.num_tokens > 0) {
    MS_CHECK_ARG(p.x != nullptr && p.out != nullptr, "causal_conv1d: x or out is null");
    MS_CHECK_ARG(p.x_row_stride >= p.w.dim || p.num_tokens == 1, "causal_conv1d: x_row_stride ",
                 p.x_row_stride, " < dim ", p.w.dim);
    MS_CHECK_ARG(p.out_row_stride >= p.w.dim || p.num_tokens == 1, "causal_conv1d: out_row_stride ",
                 p.out_row_stride, " < dim ", p.w.dim);
  }
  MS_CHECK_ARG(p.x != p.out || p.num_tokens == 0, "causal_conv1d: out must not alias x");
  if (p.num_seqs == 0) return absl::OkStatus();
  if (!stream.is_cuda()) {
    MS_CHECK_ARG(p.cu_seqlens[0] >= 0, "causal_conv1d: cu_seqlens[0] < 0");
    for (int64_t s = 0; s < p.num_seqs; ++s) {
      MS_CHECK_ARG(p.cu_seqlens[s + 1] >= p.cu_seqlens[s],
                   "causal_conv1d: cu_seqlens decreases at ", s);
    }
    MS_CHECK_ARG(p.cu_seqlens[p.num_seqs] <= p.num_tokens, "causal_conv1d: cu_seqlens[num_seqs] ",
                 p.cu_seqlens[p.num_seqs], " > num_tokens ", p.num_tokens);
    RETURN_IF_ERROR(CheckBlocksHost(p.initial_state_block, p.num_seqs, p.pool.num_blocks,
                                    "initial_state_block"));
    RETURN_IF_ERROR(
        CheckBlocksHost(p.final_state_block, p.num_seqs, p.pool.num_blocks, "final_state_block"));
    return RunCausalConv1dCpu(p);
  }
#if MAMBASERVE_HAS_CUDA
  return RunCausalConv1dCuda(p, stream);
#else
  return absl::FailedPreconditionError("causal_conv1d: built without CUDA");
#endif
}

absl::Status RunCausalConv1dUpdate(const CausalConv1dUpdateParams& p, const Stream& stream) {
  RETURN_IF_ERROR(ValidateWeights(p.w));
  RETURN_IF_ERROR(ValidatePool(p.pool, p.w, p.dtype));
  MS_CHECK_ARG(p.num_seqs >= 0, "causal_conv1d_update: num_seqs < 0");
  MS_CHECK_ARG(p.tokens_per_seq >= 1, "causal_conv1d_update: tokens_per_seq must be >= 1, got ",
               p.tokens_per_seq);
  if (p.pool.align == ConvStateAlign::kHead) {
    MS_CHECK_ARG(p.pool.state_len >= p.w.width - 2 + p.tokens_per_seq,
                 "causal_conv1d_update: head-aligned state needs state_len >= width - 2 + "
                 "tokens_per_seq = ",
                 p.w.width - 2 + p.tokens_per_seq, ", got ", p.pool.state_len);
  }
  if (p.num_seqs == 0) return absl::OkStatus();
  MS_CHECK_ARG(p.x != nullptr && p.out != nullptr, "causal_conv1d_update: x or out is null");
  MS_CHECK_ARG(p.state_block != nullptr, "causal_conv1d_update: state_block is null");
  if (!stream.is_cuda()) {
    RETURN_IF_ERROR(CheckBlocksHost(p.state_block, p.num_seqs, p.pool.num_blocks, "state_block"));
    return RunCausalConv1dUpdateCpu(p);
  }
#if MAMBASERVE_HAS_CUDA
  return RunCausalConv1dUpdateCuda(p, stream);
#else
  return absl::FailedPreconditionError("causal_conv1d_update: built without CUDA");
#endif
}

}  // namespace mambaserve
