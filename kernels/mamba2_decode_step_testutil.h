// Random single-layer Mamba-2 decode steps for the decode-step tests: the arrays of one layer
// (in_proj output rows, conv and SSM state pools, weights) and the step's parameters over
// either host or device copies of them.
#ifndef MAMBASERVE_KERNELS_MAMBA2_DECODE_STEP_TESTUTIL_H_
#define MAMBASERVE_KERNELS_MAMBA2_DECODE_STEP_TESTUTIL_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/gpu_test_util.h"
#include "kernels/mamba2_decode_step.h"

namespace mambaserve::gpu_test {

struct StepCase {
  int64_t batch, H, P, G, N, W;
  int64_t norm_groups;  // local norm groups (group_size = H * P / norm_groups)
  DType dtype, state_dtype, conv_state_dtype;
  ConvStateLayout layout;
  bool norm_before_gate, has_z, d_per_channel;
  // Tensor-parallel group mapping (0, 0, 0 = single rank).
  int64_t first_head = 0, heads_per_group = 0, first_group = 0;
};

inline std::string Name(const StepCase& c) {
  return absl::StrCat("B=", c.batch, " H=", c.H, " P=", c.P, " G=", c.G, " N=", c.N, " W=", c.W,
                      " norm_groups=", c.norm_groups, " ", DTypeName(c.dtype), " state ",
                      DTypeName(c.state_dtype), " conv ", DTypeName(c.conv_state_dtype),
                      c.layout == ConvStateLayout::kDS ? " DS" : " SD",
                      c.norm_before_gate ? " norm-before-gate" : "", c.has_z ? "" : " no-z",
                      c.d_per_channel ? " D(H,P)" : "");
}

// Every array of one layer's decode steps, on the host; the device copies mirror them.
struct StepData {
  int64_t I, CD, R, nb, conv_pitch, conv_block, ssm_block;
  Bytes conv_w, conv_b, conv_state, ssm_state, norm_w, dt_bias, A, D, blocks;
};

inline StepData MakeData(const StepCase& c, Rng& rng) {
  StepData d;
  d.I = c.H * c.P;
  d.CD = d.I + 2 * c.G * c.N;
  d.R = d.I + d.CD + c.H + 3;  // in_proj row [z | xBC | dt] plus padding
  d.nb = c.batch + 3;
  const int64_t L = c.W - 1;
  d.conv_pitch = c.layout == ConvStateLayout::kSD ? d.CD + 1 : L + 1;
  d.conv_block = (c.layout == ConvStateLayout::kSD ? L : d.CD) * d.conv_pitch + 5;
  const int64_t vec = 16 / DTypeSize(c.state_dtype);
  d.ssm_block = (d.I * c.N + vec) / vec * vec;  // padded, still 16-byte aligned
  d.conv_w = RandomBytes(c.dtype, d.CD * c.W, rng, 0.5f);
  d.conv_b = RandomBytes(c.dtype, d.CD, rng, 0.2f);
  d.conv_state = RandomBytes(c.conv_state_dtype, d.nb * d.conv_block, rng);
  d.ssm_state = RandomBytes(c.state_dtype, d.nb * d.ssm_block, rng);
  d.norm_w = Pack(DType::kF32, rng.UniformVector(d.I, 0.5f, 1.5f));
  d.dt_bias = Pack(DType::kF32, rng.UniformVector(c.H, -2.0f, 0.5f));
  d.A = Pack(DType::kF32, rng.UniformVector(c.H, -4.0f, -0.2f));
  d.D = Pack(DType::kF32, rng.NormalVector(c.d_per_channel ? d.I : c.H));
  std::vector<int32_t> blocks(c.batch);
  for (int64_t b = 0; b < c.batch; ++b) {
    // Every third sequence after the first is skipped; the others use distinct blocks.
    blocks[b] = (b % 3 == 2) ? 0 : static_cast<int32_t>(d.nb - 1 - b);
  }
  d.blocks = AsBytes(blocks);
  return d;
}

// Pointers of one side (host or device) of the arrays a step reads and writes.
struct Side {
  const void *zxbcdt, *conv_w, *conv_b, *norm_w, *dt_bias, *A, *D;
  const int32_t* blocks;
  void *conv_state, *ssm_state, *xbc, *y;
  int32_t* arrivals;
  float* partials;
};

inline Mamba2DecodeStepParams MakeParams(const StepCase& c, const StepData& d, const Side& s) {
  const int64_t es = DTypeSize(c.dtype);
  Mamba2DecodeStepParams p;
  CausalConv1dUpdateParams& cv = p.conv;
  cv.w.dim = d.CD;
  cv.w.width = c.W;
  cv.w.weight = s.conv_w;
  cv.w.weight_dtype = c.dtype;
  cv.w.bias = s.conv_b;
  cv.w.silu = true;
  cv.pool.conv_state = s.conv_state;
  cv.pool.state_dtype = c.conv_state_dtype;
  cv.pool.layout = c.layout;
  cv.pool.align = ConvStateAlign::kTail;
  cv.pool.num_blocks = d.nb;
  cv.pool.state_len = c.W - 1;
  cv.pool.state_block_stride = d.conv_block;
  cv.pool.state_stride = d.conv_pitch;
  cv.num_seqs = c.batch;
  cv.tokens_per_seq = 1;
  cv.x = static_cast<const char*>(s.zxbcdt) + d.I * es;
  cv.x_seq_stride = cv.x_token_stride = d.R;
  cv.dtype = c.dtype;
  cv.out = s.xbc;
  cv.out_seq_stride = cv.out_token_stride = d.CD;
  cv.state_block = s.blocks;

  Mamba2StateUpdateParams& m = p.ssm;
  m.batch = c.batch;
  m.num_heads = c.H;
  m.head_dim = c.P;
  m.num_groups = c.G;
  m.d_state = c.N;
  m.first_head = c.first_head;
  m.heads_per_group = c.heads_per_group;
  m.first_group = c.first_group;
  m.dtype = c.dtype;
  char* xbc = static_cast<char*>(s.xbc);
  m.x = xbc;
  m.x_batch_stride = m.x_token_stride = d.CD;
  m.x_head_stride = c.P;
  m.B = xbc + d.I * es;
  m.C = xbc + (d.I + c.G * c.N) * es;
  m.B_batch_stride = m.B_token_stride = m.C_batch_stride = m.C_token_stride = d.CD;
  m.B_group_stride = m.C_group_stride = c.N;
  m.y = s.y;
  m.y_batch_stride = m.y_token_stride = d.I;
  m.y_head_stride = c.P;
  m.dt_dtype = c.dtype;
  m.dt = static_cast<const char*>(s.zxbcdt) + (d.I + d.CD) * es;
  m.dt_batch_stride = m.dt_token_stride = d.R;
  m.dt_bias = static_cast<const float*>(s.dt_bias);
  m.dt_min = 0.001f;
  m.dt_max = 0.8f;
  m.A = static_cast<const float*>(s.A);
  m.D = static_cast<const float*>(s.D);
  m.d_per_channel = c.d_per_channel;
  m.state = s.ssm_state;
  m.state_dtype = c.state_dtype;
  m.num_blocks = d.nb;
  m.state_block_stride = d.ssm_block;
  m.state_head_stride = c.P * c.N;
  m.state_p_stride = c.N;
  m.state_block_in = s.blocks;

  GatedRmsNormParams& n = p.norm;
  n.num_tokens = c.batch;
  n.dim = d.I;
  n.dtype = c.dtype;
  n.y = n.out = s.y;
  n.y_row_stride = n.out_row_stride = d.I;
  n.z = c.has_z ? s.zxbcdt : nullptr;
  n.z_row_stride = d.R;
  n.weight = s.norm_w;
  n.weight_dtype = DType::kF32;
  n.group_size = d.I / c.norm_groups;
  n.channel_offset = 2 * n.group_size;  // as on a rank that is not the first
  n.eps = 1e-5f;
  n.norm_before_gate = c.norm_before_gate;
  p.arrivals = s.arrivals;
  p.partial_sums = s.partials;
  return p;
}

}  // namespace mambaserve::gpu_test

#endif  // MAMBASERVE_KERNELS_MAMBA2_DECODE_STEP_TESTUTIL_H_
