#include "layers/mixer_conv.h"

#include "core/status_macros.h"
#include "kernels/causal_conv1d.h"
#include "kernels/model_ops.h"

namespace mambaserve {

namespace {

absl::Status CaptureBoundaryWindows(const MixerConvArgs& a, const StateTensorRef& conv,
                                    StepContext& ctx) {
  const int64_t ces = DTypeSize(conv.dtype);
  auto* base = static_cast<char*>(conv.base);
  for (const StepBatch::BoundaryWindow& w : ctx.batch.boundary_windows) {
    char* dst = base + w.dst_block * conv.block_stride * ces;
    if (w.rows_from_init > 0) {
      CopyRowsParams p{w.rows_from_init,
                       a.dim,
                       w.init_rows,
                       base + w.init_block * conv.block_stride * ces,
                       a.dim,
                       conv.dtype,
                       dst,
                       a.dim,
                       conv.dtype};
      RETURN_IF_ERROR(RunCopyRows(p, *ctx.stream));
    }
    if (w.rows_from_x > 0) {
      CopyRowsParams p{w.rows_from_x,
                       a.dim,
                       w.x_rows,
                       a.x,
                       a.x_row_stride,
                       a.dtype,
                       dst + w.rows_from_init * a.dim * ces,
                       a.dim,
                       conv.dtype};
      RETURN_IF_ERROR(RunCopyRows(p, *ctx.stream));
    }
  }
  return absl::OkStatus();
}

ConvWeights MixerConvWeights(const MixerConvArgs& a) {
  ConvWeights cw;
  cw.dim = a.dim;
  cw.width = a.width;
  cw.weight = a.weight->data();
  cw.weight_dtype = a.dtype;
  cw.bias = a.bias->data();
  cw.silu = true;
  return cw;
}

ConvStatePool MixerConvPool(const MixerConvArgs& a, const StateTensorRef& conv,
                            const StepContext& ctx) {
  ConvStatePool cp;
  cp.conv_state = conv.base;
  cp.state_dtype = conv.dtype;
  const bool ds = ctx.conv_layout == ConvLayout::kDS;
  cp.layout = ds ? ConvStateLayout::kDS : ConvStateLayout::kSD;
  cp.align = ConvStateAlign::kTail;
  cp.num_blocks = conv.num_blocks;
  cp.state_len = a.width - 1;
  cp.state_block_stride = conv.block_stride;
  // SD: (state_len, dim) rows; DS: (dim, state_len), one channel's window contiguous.
  cp.state_stride = ds ? cp.state_len : a.dim;
  return cp;
}

// The conv update of the step's decode rows.
CausalConv1dUpdateParams MixerConvDecodeParams(const MixerConvArgs& a, const StateTensorRef& conv,
                                               const StepContext& ctx) {
  CausalConv1dUpdateParams u;
  u.w = MixerConvWeights(a);
  u.pool = MixerConvPool(a, conv, ctx);
  u.num_seqs = ctx.batch.num_decode;
  u.tokens_per_seq = 1;
  u.x = a.x;
  u.x_seq_stride = a.x_row_stride;
  u.x_token_stride = a.x_row_stride;
  u.dtype = a.dtype;
  u.out = a.out;
  u.out_seq_stride = a.dim;
  u.out_token_stride = a.dim;
  u.state_block = ctx.batch.decode_blocks;
  // In a model step nothing before the conv writes a decode sequence's window (the previous
  // step has ended; prefills write other blocks).
  u.read_state_before_wait = true;
  return u;
}

}  // namespace

absl::Status RunMixerConv(const MixerConvArgs& a, const StateTensorRef& conv, StepContext& ctx) {
  RETURN_IF_ERROR(CaptureBoundaryWindows(a, conv, ctx));
  const StepBatch& bt = ctx.batch;
  const int64_t es = DTypeSize(a.dtype);
  const int64_t nd = bt.num_decode;
  if (nd > 0)
    RETURN_IF_ERROR(RunCausalConv1dUpdate(MixerConvDecodeParams(a, conv, ctx), *ctx.stream));
  if (bt.num_prefill > 0) {
    CausalConv1dParams c;
    c.w = MixerConvWeights(a);
    c.pool = MixerConvPool(a, conv, ctx);
    c.num_tokens = bt.num_tokens - nd;
    c.num_seqs = bt.num_prefill;
    c.x = static_cast<const char*>(a.x) + nd * a.x_row_stride * es;
    c.x_row_stride = a.x_row_stride;
    c.dtype = a.dtype;
    c.out = static_cast<char*>(a.out) + nd * a.dim * es;
    c.out_row_stride = a.dim;
    c.cu_seqlens = bt.prefill_cu_seqlens;
    c.initial_state_block = bt.prefill_initial_blocks;
    c.final_state_block = bt.prefill_final_blocks;
    RETURN_IF_ERROR(RunCausalConv1d(c, *ctx.stream));
  }
  return absl::OkStatus();
}

}  // namespace mambaserve
