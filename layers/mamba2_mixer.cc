#include "layers/mamba2_mixer.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "core/status_macros.h"
#include "kernels/gated_rmsnorm.h"
#include "kernels/mamba2_state_update.h"
#include "kernels/ssd_chunk_scan.h"
#include "layers/mixer_conv.h"

namespace mambaserve {

absl::StatusOr<Mamba2Mixer> Mamba2Mixer::Load(const config::ModelConfig& m,
                                              const Mamba2ShardPlan& plan, const WeightSource& src,
                                              const std::string& prefix, Device device,
                                              DType dtype) {
  Mamba2Mixer x;
  x.plan_ = plan;
  x.dtype_ = dtype;
  x.d_conv_ = m.d_conv();
  x.chunk_size_ = m.chunk_size();
  x.eps_ = static_cast<float>(m.norm_eps());
  x.norm_before_gate_ = m.norm_before_gate();
  x.dt_min_ = static_cast<float>(m.dt_limit_min());
  x.dt_max_ = std::isinf(m.dt_limit_max()) ? std::numeric_limits<float>::infinity()
                                           : static_cast<float>(m.dt_limit_max());
  const auto& g = plan.global;
  std::vector<float> w, b;

  // Every tensor's global shape first, so a config that does not match the checkpoint is
  // refused naming the tensor.
  const int64_t in_rows = 2 * g.d_mlp + 2 * g.d_inner + 2 * g.n_groups * g.d_state + g.num_heads;
  const int64_t conv_dim = g.d_inner + 2 * g.n_groups * g.d_state;
  RETURN_IF_ERROR(ExpectShape(src, prefix + "in_proj.weight", {in_rows, g.d_model}));
  RETURN_IF_ERROR(ExpectShape(src, prefix + "conv1d.weight", {conv_dim, 1, m.d_conv()}));
  if (m.conv_bias()) RETURN_IF_ERROR(ExpectShape(src, prefix + "conv1d.bias", {conv_dim}));
  RETURN_IF_ERROR(ExpectShape(src, prefix + "dt_bias", {g.num_heads}));
  RETURN_IF_ERROR(ExpectShape(src, prefix + "A_log", {g.num_heads}));
  RETURN_IF_ERROR(ExpectShape(src, prefix + "norm.weight", {g.d_inner}));
  RETURN_IF_ERROR(ExpectShape(src, prefix + "out_proj.weight", {g.d_model, g.d_inner + g.d_mlp}));
  // in_proj: rows [z_r | x_r | B_r | C_r | dt_r] of the fused checkpoint tensor.
  RETURN_IF_ERROR(ReadRows(src, prefix + "in_proj.weight", plan.in_proj_rows, &w));
  std::vector<float>* in_bias = nullptr;
  if (m.proj_bias()) {
    RETURN_IF_ERROR(ReadRows(src, prefix + "in_proj.bias", plan.in_proj_rows, &b));
    in_bias = &b;
  }
  ASSIGN_OR_RETURN(x.in_proj_,
                   Linear::Create(device, dtype, plan.local_in_proj_rows, g.d_model, w, in_bias));

  // conv over [x_r | B_r | C_r]: weight (C, 1, W) -> (local_conv_dim, W).
  RETURN_IF_ERROR(ReadRows(src, prefix + "conv1d.weight", plan.conv_channels, &w));
  MS_CHECK_ARG(static_cast<int64_t>(w.size()) == plan.local_conv_dim * m.d_conv(), prefix,
               "conv1d.weight: expected width ", m.d_conv());
  ASSIGN_OR_RETURN(x.conv_weight_, UploadAs(device, dtype, w));
  if (m.conv_bias()) {
    RETURN_IF_ERROR(ReadRows(src, prefix + "conv1d.bias", plan.conv_channels, &b));
    ASSIGN_OR_RETURN(x.conv_bias_, UploadAs(device, dtype, b));
  }

  // Per-head parameters (fp32).
  RETURN_IF_ERROR(ReadRows(src, prefix + "dt_bias", {plan.heads}, &w));
  ASSIGN_OR_RETURN(x.dt_bias_, UploadAs(device, DType::kF32, w));
  RETURN_IF_ERROR(ReadRows(src, prefix + "A_log", {plan.heads}, &w));
  for (float& v : w) v = -std::exp(v);
  ASSIGN_OR_RETURN(x.A_, UploadAs(device, DType::kF32, w));
  ASSIGN_OR_RETURN(auto d_shape, src.Shape(prefix + "D"));
  x.d_per_channel_ = d_shape.size() == 2;
  RETURN_IF_ERROR(ReadRows(src, prefix + "D", {plan.heads}, &w));
  ASSIGN_OR_RETURN(x.D_, UploadAs(device, DType::kF32, w));
  std::vector<float> norm_w;
  RETURN_IF_ERROR(ReadRows(src, prefix + "norm.weight", {plan.inner}, &norm_w));

  // out_proj: columns [mlp | y] of this rank's channels, the y columns scaled by the norm's
  // weight (the class comment); a bias is added by rank 0 only.
  RETURN_IF_ERROR(ReadCols(src, prefix + "out_proj.weight", plan.out_proj_cols, &w));
  const int64_t cols = plan.local_out_proj_cols, y0 = plan.local_d_mlp;
  for (int64_t r = 0; r < g.d_model; ++r) {
    for (int64_t c = 0; c < plan.local_d_inner; ++c) w[r * cols + y0 + c] *= norm_w[c];
  }
  std::vector<float>* out_bias = nullptr;
  if (m.proj_bias() && plan.rank == 0) {
    RETURN_IF_ERROR(ReadRows(src, prefix + "out_proj.bias", {{0, g.d_model}}, &b));
    out_bias = &b;
  }
  ASSIGN_OR_RETURN(x.out_proj_,
                   Linear::Create(device, dtype, g.d_model, plan.local_out_proj_cols, w, out_bias));
  return x;
}

// Local in_proj output columns (d_mlp = 0): [z (I) | xBC (CD) | dt (H)].
Mamba2Mixer::Columns Mamba2Mixer::columns() const {
  Columns c;
  c.z = 2 * plan_.local_d_mlp;
  c.xbc = c.z + plan_.local_d_inner;
  c.dt = c.xbc + plan_.local_conv_dim;
  return c;
}

Mamba2StateUpdateParams Mamba2Mixer::DecodeStateParams(const char* zx, const char* xb, void* y,
                                                       const StateTensorRef& ssm,
                                                       const StepBatch& bt) const {
  const int64_t R = plan_.local_in_proj_rows;
  const int64_t I = plan_.local_d_inner;
  const int64_t P = plan_.global.head_dim;
  const int64_t G = plan_.local_groups;
  const int64_t N = plan_.global.d_state;
  const int64_t CD = plan_.local_conv_dim;
  const int64_t es = DTypeSize(dtype_);
  Mamba2StateUpdateParams s;
  s.batch = bt.num_decode;
  s.tokens_per_seq = 1;
  s.num_heads = plan_.local_heads;
  s.head_dim = P;
  s.num_groups = G;
  s.d_state = N;
  s.first_head = plan_.groups.first_head;
  s.heads_per_group = plan_.groups.heads_per_group;
  s.first_group = plan_.groups.first_group;
  s.dtype = dtype_;
  s.x = xb;
  s.x_batch_stride = CD;
  s.x_token_stride = CD;
  s.x_head_stride = P;
  s.B = xb + I * es;
  s.B_batch_stride = CD;
  s.B_token_stride = CD;
  s.B_group_stride = N;
  s.C = xb + (I + G * N) * es;
  s.C_batch_stride = CD;
  s.C_token_stride = CD;
  s.C_group_stride = N;
  s.y = y;
  s.y_batch_stride = I;
  s.y_token_stride = I;
  s.y_head_stride = P;
  s.dt_dtype = dtype_;
  s.dt = zx + columns().dt * es;
  s.dt_batch_stride = R;
  s.dt_token_stride = R;
  s.dt_head_stride = 1;
  s.dt_bias = static_cast<const float*>(dt_bias_.data());
  s.dt_softplus = true;
  s.dt_min = dt_min_;
  s.dt_max = dt_max_;
  s.A = static_cast<const float*>(A_.data());
  s.D = static_cast<const float*>(D_.data());
  s.d_per_channel = d_per_channel_;
  s.state = ssm.base;
  s.state_dtype = ssm.dtype;
  s.num_blocks = ssm.num_blocks;
  s.state_block_stride = ssm.block_stride;
  s.state_head_stride = P * N;
  s.state_p_stride = N;
  s.state_block_in = bt.decode_blocks;
  // In a model step nothing before the update writes a decode sequence's state (the previous
  // step has ended; prefills write theirs after it).
  s.read_state_before_wait = true;
  return s;
}

GatedRmsNormParams Mamba2Mixer::NormParams(const char* zx, void* y, int64_t T) const {
  const int64_t I = plan_.local_d_inner;
  GatedRmsNormParams n;
  n.mode = GatedRmsNormMode::kFused;
  n.num_tokens = T;
  n.dim = I;
  n.dtype = dtype_;
  n.y = y;
  n.y_row_stride = I;
  n.z = zx + columns().z * DTypeSize(dtype_);
  n.z_row_stride = plan_.local_in_proj_rows;
  n.weight = nullptr;  // folded into out_proj
  n.out = y;
  n.out_row_stride = I;
  n.group_size = plan_.norm.group_size;
  n.channel_offset = plan_.inner.begin;
  n.eps = eps_;
  n.norm_before_gate = norm_before_gate_;
  return n;
}

// tp = 1 only for now: the same path under NCCL (each rank a whole group, then the all-reduce
// of out_proj) is simple but has not run on GPUs yet.
bool Mamba2Mixer::FusesDecodeNorm(const StepBatch& bt, const void* y) const {
  return plan_.tp == 1 && bt.num_tokens == 1 && bt.num_decode == 1 && !norm_before_gate_ &&
         plan_.local_d_mlp == 0 && plan_.norm.group_size == plan_.local_d_inner &&
         !plan_.norm.needs_cross_rank_sum && out_proj_.FusesInputRmsNorm(y, dtype_);
}

absl::Status Mamba2Mixer::Forward(const void* hidden, void* out, const StateTensorRef& conv,
                                  const StateTensorRef& ssm, StepContext& ctx) const {
  const StepBatch& bt = ctx.batch;
  const int64_t T = bt.num_tokens;
  const int64_t R = plan_.local_in_proj_rows;
  const int64_t I = plan_.local_d_inner;
  const int64_t H = plan_.local_heads;
  const int64_t P = plan_.global.head_dim;
  const int64_t G = plan_.local_groups;
  const int64_t N = plan_.global.d_state;
  const int64_t CD = plan_.local_conv_dim;
  const int64_t es = DTypeSize(dtype_);
  const int64_t nd = bt.num_decode;
  const Columns col = columns();

  ASSIGN_OR_RETURN(void* zxbcdt, ctx.workspace->Get(kLayerScratch, T * R * es));
  ASSIGN_OR_RETURN(void* xbc, ctx.workspace->Get(kLayerScratch + 1, T * CD * es));
  ASSIGN_OR_RETURN(void* y, ctx.workspace->Get(kLayerScratch + 2, T * I * es));
  auto* zx = static_cast<char*>(zxbcdt);
  auto* xb = static_cast<char*>(xbc);
  auto* yy = static_cast<char*>(y);

  RETURN_IF_ERROR(
      in_proj_.Forward(hidden, plan_.global.d_model, T, zxbcdt, R, dtype_, *ctx.stream, *ctx.blas));
  const MixerConvArgs ca{zx + col.xbc * es, R, xb, CD, d_conv_, &conv_weight_, &conv_bias_, dtype_};

  RETURN_IF_ERROR(RunMixerConv(ca, conv, ctx));
  const bool fused_norm = FusesDecodeNorm(bt, yy);
  if (nd > 0) {
    Mamba2StateUpdateParams s = DecodeStateParams(zx, xb, yy, ssm, bt);
    if (fused_norm) {  // y * silu(z), the gated norm's v; out_proj normalises it
      s.z = zx + col.z * es;
      s.z_batch_stride = R;
      s.z_token_stride = R;
      s.z_head_stride = P;
    }
    RETURN_IF_ERROR(RunMamba2StateUpdate(s, *ctx.stream));
  }
  if (bt.num_prefill > 0) {
    const int64_t tp_rows = T - nd;
    SsdChunkScanParams s;
    s.num_tokens = tp_rows;
    s.num_seqs = bt.num_prefill;
    s.num_heads = H;
    s.head_dim = P;
    s.num_groups = G;
    s.d_state = N;
    s.chunk_size = chunk_size_;
    s.first_head = plan_.groups.first_head;
    s.first_group = plan_.groups.first_group;
    s.heads_per_group = plan_.groups.heads_per_group;
    s.dtype = dtype_;
    s.x = xb + nd * CD * es;
    s.x_token_stride = CD;
    s.x_head_stride = P;
    s.dt = zx + (nd * R + col.dt) * es;
    s.dt_token_stride = R;
    s.dt_dtype = dtype_;
    s.dt_bias = static_cast<const float*>(dt_bias_.data());
    s.dt_softplus = true;
    s.dt_min = dt_min_;
    s.dt_max = dt_max_;
    s.A = static_cast<const float*>(A_.data());
    s.B = xb + (nd * CD + I) * es;
    s.B_token_stride = CD;
    s.B_group_stride = N;
    s.C = xb + (nd * CD + I + G * N) * es;
    s.C_token_stride = CD;
    s.C_group_stride = N;
    s.D = static_cast<const float*>(D_.data());
    s.D_per_channel = d_per_channel_;
    s.y = yy + nd * I * es;
    s.y_token_stride = I;
    s.y_head_stride = P;
    s.cu_seqlens = bt.prefill_cu_seqlens;
    s.state = ssm.base;
    s.state_dtype = ssm.dtype;
    s.num_blocks = ssm.num_blocks;
    s.state_block_stride = ssm.block_stride;
    s.state_head_stride = P * N;
    s.initial_state_block = bt.prefill_initial_blocks;
    s.final_state_block = bt.prefill_final_blocks;
    if (bt.boundary_block_size > 0) {
      s.block_size = bt.boundary_block_size;
      s.prefix_offset = bt.prefix_offsets32;
      s.boundary_state_blocks = bt.ssd_boundary_blocks;
      s.boundary_state_offsets = bt.ssd_boundary_offsets;
    }
    RETURN_IF_ERROR(RunSsdChunkScan(s, *ctx.stream));
  }

  if (fused_norm) return out_proj_.ForwardRmsNormalized(y, out, dtype_, eps_, *ctx.stream);
  // Gated RMSNorm per original group, in place on y.
  GatedRmsNormParams n = NormParams(zx, yy, T);
  if (!plan_.norm.needs_cross_rank_sum) {
    RETURN_IF_ERROR(RunGatedRmsNorm(n, *ctx.stream));
  } else {
    const int64_t G_all = plan_.norm.num_groups;
    ASSIGN_OR_RETURN(void* sums, ctx.workspace->Get(kLayerScratch + 3, T * G_all * 4));
    RETURN_IF_ERROR(ZeroBytes(sums, ctx.workspace->device(), T * G_all * 4, ctx.stream));
    n.sums = static_cast<float*>(sums);
    n.sums_row_stride = G_all;
    n.sums_group_offset = 0;
    n.mode = GatedRmsNormMode::kPartialSums;
    RETURN_IF_ERROR(RunGatedRmsNorm(n, *ctx.stream));
    RETURN_IF_ERROR(ctx.comm->AllReduceSum(sums, T * G_all, DType::kF32, *ctx.stream));
    n.mode = GatedRmsNormMode::kApply;
    RETURN_IF_ERROR(RunGatedRmsNorm(n, *ctx.stream));
  }

  RETURN_IF_ERROR(
      out_proj_.Forward(y, I, T, out, plan_.global.d_model, dtype_, *ctx.stream, *ctx.blas));
  if (ctx.tp() > 1) {
    RETURN_IF_ERROR(ctx.comm->AllReduceSum(out, T * plan_.global.d_model, dtype_, *ctx.stream));
  }
  return absl::OkStatus();
}

}  // namespace mambaserve
