#include "layers/mamba1_mixer.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "configs/model_config.h"
#include "core/status_macros.h"
#include "kernels/mamba1_state_update.h"
#include "kernels/model_ops.h"
#include "kernels/selective_scan.h"
#include "layers/mixer_conv.h"

namespace mambaserve {

absl::StatusOr<Mamba1Mixer> Mamba1Mixer::Load(const config::ModelConfig& m,
                                              const Mamba1ShardPlan& plan, const WeightSource& src,
                                              const std::string& prefix, Device device,
                                              DType dtype) {
  Mamba1Mixer x;
  x.plan_ = plan;
  x.dtype_ = dtype;
  x.d_conv_ = m.d_conv();
  x.mode_ = ToDiscretization(m.discretization());
  MS_CHECK_ARG(x.mode_ != Discretization::kEventDriven,
               "model config: field 'discretization' EVENT_DRIVEN needs per-token integration "
               "steps that Hugging Face checkpoints do not carry");
  const auto& g = plan.global;
  const int64_t Dl = plan.local_d_inner;
  std::vector<float> w, b;
  const int64_t di = g.d_inner, n = g.d_state;
  RETURN_IF_ERROR(ExpectShape(src, prefix + "in_proj.weight", {2 * di, g.d_model}));
  RETURN_IF_ERROR(ExpectShape(src, prefix + "conv1d.weight", {di, 1, m.d_conv()}));
  if (m.conv_bias()) RETURN_IF_ERROR(ExpectShape(src, prefix + "conv1d.bias", {di}));
  RETURN_IF_ERROR(ExpectShape(src, prefix + "x_proj.weight", {g.dt_rank + 2 * n, di}));
  RETURN_IF_ERROR(ExpectShape(src, prefix + "dt_proj.weight", {di, g.dt_rank}));
  RETURN_IF_ERROR(ExpectShape(src, prefix + "dt_proj.bias", {di}));
  RETURN_IF_ERROR(ExpectShape(src, prefix + "A_log", {di, n}));
  RETURN_IF_ERROR(ExpectShape(src, prefix + "D", {di}));
  RETURN_IF_ERROR(ExpectShape(src, prefix + "out_proj.weight", {g.d_model, di}));
  RETURN_IF_ERROR(ReadRows(src, prefix + "in_proj.weight", plan.in_proj_rows, &w));
  std::vector<float>* in_bias = nullptr;
  if (m.proj_bias()) {
    RETURN_IF_ERROR(ReadRows(src, prefix + "in_proj.bias", plan.in_proj_rows, &b));
    in_bias = &b;
  }
  ASSIGN_OR_RETURN(x.in_proj_, Linear::Create(device, dtype, 2 * Dl, g.d_model, w, in_bias));
  RETURN_IF_ERROR(ReadRows(src, prefix + "conv1d.weight", {plan.conv_channels}, &w));
  MS_CHECK_ARG(static_cast<int64_t>(w.size()) == Dl * m.d_conv(), prefix,
               "conv1d.weight: expected width ", m.d_conv());
  ASSIGN_OR_RETURN(x.conv_weight_, UploadAs(device, dtype, w));
  if (m.conv_bias()) {
    RETURN_IF_ERROR(ReadRows(src, prefix + "conv1d.bias", {plan.conv_channels}, &b));
    ASSIGN_OR_RETURN(x.conv_bias_, UploadAs(device, dtype, b));
  }
  // x_proj: row-parallel over d_inner, so this rank holds columns; output fp32.
  RETURN_IF_ERROR(ReadCols(src, prefix + "x_proj.weight", {plan.x_proj_cols}, &w));
  ASSIGN_OR_RETURN(x.x_proj_, Linear::Create(device, dtype, plan.x_proj_out, Dl, w));
  // dt_proj runs on the fp32 all-reduced x_proj output, so it stays fp32.
  RETURN_IF_ERROR(ReadRows(src, prefix + "dt_proj.weight", {plan.dt_proj_rows}, &w));
  ASSIGN_OR_RETURN(x.dt_proj_, Linear::Create(device, DType::kF32, Dl, g.dt_rank, w));
  RETURN_IF_ERROR(ReadRows(src, prefix + "dt_proj.bias", {plan.dt_proj_rows}, &w));
  ASSIGN_OR_RETURN(x.dt_bias_, UploadAs(device, DType::kF32, w));
  RETURN_IF_ERROR(ReadRows(src, prefix + "A_log", {plan.a_log_rows}, &w));
  for (float& v : w) v = -std::exp(v);
  ASSIGN_OR_RETURN(x.A_, UploadAs(device, DType::kF32, w));
  RETURN_IF_ERROR(ReadRows(src, prefix + "D", {plan.d_rows}, &w));
  ASSIGN_OR_RETURN(x.D_, UploadAs(device, DType::kF32, w));
  RETURN_IF_ERROR(ReadCols(src, prefix + "out_proj.weight", {plan.out_proj_cols}, &w));
  std::vector<float>* out_bias = nullptr;
  if (m.proj_bias() && plan.rank == 0) {
    RETURN_IF_ERROR(ReadRows(src, prefix + "out_proj.bias", {{0, g.d_model}}, &b));
    out_bias = &b;
  }
  ASSIGN_OR_RETURN(x.out_proj_, Linear::Create(device, dtype, g.d_model, Dl, w, out_bias));
  return x;
}

absl::Status Mamba1Mixer::Forward(const void* hidden, void* out, const StateTensorRef& conv,
                                  const StateTensorRef& ssm, StepContext& ctx) const {
  const StepBatch& bt = ctx.batch;
  const int64_t T = bt.num_tokens;
  const int64_t Dl = plan_.local_d_inner;
  const int64_t N = plan_.global.d_state;
  const int64_t Rk = plan_.global.dt_rank;
  const int64_t XP = plan_.x_proj_out;
  const int64_t es = DTypeSize(dtype_);
  const int64_t nd = bt.num_decode;

  ASSIGN_OR_RETURN(void* xz, ctx.workspace->Get(kLayerScratch, T * 2 * Dl * es));
  ASSIGN_OR_RETURN(void* xc, ctx.workspace->Get(kLayerScratch + 1, T * Dl * es));
  ASSIGN_OR_RETURN(void* xdbl, ctx.workspace->Get(kLayerScratch + 2, T * XP * 4));
  ASSIGN_OR_RETURN(void* dt32, ctx.workspace->Get(kLayerScratch + 3, T * Dl * 4));
  ASSIGN_OR_RETURN(void* y, ctx.workspace->Get(kLayerScratch + 4, T * Dl * es));
  auto* xzc = static_cast<char*>(xz);
  auto* xcc = static_cast<char*>(xc);
  auto* yc = static_cast<char*>(y);

  RETURN_IF_ERROR(in_proj_.Forward(hidden, plan_.global.d_model, T, xz, 2 * Dl, dtype_, *ctx.stream,
                                   *ctx.blas));
  MixerConvArgs ca{xz, 2 * Dl, xc, Dl, d_conv_, &conv_weight_, &conv_bias_, dtype_};
  RETURN_IF_ERROR(RunMixerConv(ca, conv, ctx));

  // x_proj: fp32 output, all-reduced in fp32 across ranks.
  RETURN_IF_ERROR(x_proj_.Forward(xc, Dl, T, xdbl, XP, DType::kF32, *ctx.stream, *ctx.blas));
  if (ctx.tp() > 1) {
    RETURN_IF_ERROR(ctx.comm->AllReduceSum(xdbl, T * XP, DType::kF32, *ctx.stream));
  }
  RETURN_IF_ERROR(dt_proj_.Forward(xdbl, XP, T, dt32, Dl, DType::kF32, *ctx.stream, *ctx.blas));
  // The decode update reads dt_proj's f32 output as it is; the prefill scan reads delta in the
  // activation dtype, so its rows (after the decode rows) are cast.
  void* delta = dt32;
  if (dtype_ != DType::kF32 && bt.num_prefill > 0) {
    ASSIGN_OR_RETURN(delta, ctx.workspace->Get(kLayerScratch + 5, T * Dl * es));
    const CopyRowsParams cast{.num_rows = T - nd,
                              .cols = Dl,
                              .src = static_cast<char*>(dt32) + nd * Dl * 4,
                              .src_row_stride = Dl,
                              .dst = static_cast<char*>(delta) + nd * Dl * es,
                              .dst_row_stride = Dl,
                              .dst_dtype = dtype_};
    RETURN_IF_ERROR(RunCopyRows(cast, *ctx.stream));
  }
  auto* dc = static_cast<char*>(delta);
  auto* xd = static_cast<char*>(xdbl);

  if (nd > 0) {
    Mamba1StateUpdateParams s;
    s.batch = nd;
    s.dim = Dl;
    s.d_state = N;
    s.x_dtype = dtype_;
    s.bc_dtype = DType::kF32;
    s.u = xc;
    s.u_row_stride = Dl;
    s.delta = dt32;
    s.delta_dtype = DType::kF32;
    s.delta_row_stride = Dl;
    s.delta_bias = static_cast<const float*>(dt_bias_.data());
    s.delta_softplus = true;
    s.A = static_cast<const float*>(A_.data());
    s.B = xd + Rk * 4;
    s.B_row_stride = XP;
    s.C = xd + (Rk + N) * 4;
    s.C_row_stride = XP;
    s.D = static_cast<const float*>(D_.data());
    s.z = xzc + Dl * es;
    s.z_row_stride = 2 * Dl;
    s.y = y;
    s.y_row_stride = Dl;
    s.mode = mode_;
    s.state_pool = ssm.base;
    s.state_dtype = ssm.dtype;
    s.num_state_blocks = ssm.num_blocks;
    s.state_block_stride = ssm.block_stride;
    s.state_block_in = bt.decode_blocks;
    // In a model step nothing before the update writes a decode sequence's state (the previous
    // step has ended; prefills write theirs after it).
    s.read_state_before_wait = true;
    RETURN_IF_ERROR(RunMamba1StateUpdate(s, *ctx.stream));
  }
  if (bt.num_prefill > 0) {
    SelectiveScanParams s;
    s.num_tokens = T - nd;
    s.num_seqs = bt.num_prefill;
    s.dim = Dl;
    s.d_state = N;
    s.cu_seqlens = bt.prefill_cu_seqlens;
    s.x_dtype = dtype_;
    s.bc_dtype = DType::kF32;
    s.u = xcc + nd * Dl * es;
    s.u_row_stride = Dl;
    s.delta = dc + nd * Dl * es;
    s.delta_row_stride = Dl;
    s.delta_bias = static_cast<const float*>(dt_bias_.data());
    s.delta_softplus = true;
    s.A = static_cast<const float*>(A_.data());
    s.B = xd + (nd * XP + Rk) * 4;
    s.B_row_stride = XP;
    s.C = xd + (nd * XP + Rk + N) * 4;
    s.C_row_stride = XP;
    s.D = static_cast<const float*>(D_.data());
    s.z = xzc + (nd * 2 * Dl + Dl) * es;
    s.z_row_stride = 2 * Dl;
    s.y = yc + nd * Dl * es;
    s.y_row_stride = Dl;
    s.mode = mode_;
    s.state_pool = ssm.base;
    s.state_dtype = ssm.dtype;
    s.num_state_blocks = ssm.num_blocks;
    s.state_block_stride = ssm.block_stride;
    s.initial_state_block = bt.prefill_initial_blocks;
    s.final_state_block = bt.prefill_final_blocks;
    if (bt.boundary_block_size > 0 && bt.m1_boundary_stride > 0) {
      s.block_size = bt.boundary_block_size;
      s.prefix_offset = bt.prefix_offsets64;
      s.boundary_state_blocks = bt.m1_boundary_blocks;
      s.boundary_blocks_stride = bt.m1_boundary_stride;
    }
    RETURN_IF_ERROR(RunSelectiveScan(s, *ctx.stream));
  }
  RETURN_IF_ERROR(
      out_proj_.Forward(y, Dl, T, out, plan_.global.d_model, dtype_, *ctx.stream, *ctx.blas));
  if (ctx.tp() > 1) {
    RETURN_IF_ERROR(ctx.comm->AllReduceSum(out, T * plan_.global.d_model, dtype_, *ctx.stream));
  }
  return absl::OkStatus();
}

}  // namespace mambaserve
