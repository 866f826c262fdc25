// CPU reference implementation of the causal conv1d prefill and decode update.
#include <algorithm>
#include <vector>

#include "absl/status/status.h"
#include "core/dtype.h"
#include "kernels/causal_conv1d.h"
#include "kernels/causal_conv1d_common.h"
#include "kernels/mamba_math.h"

namespace mambaserve {
namespace {

using conv_internal::StateOffset;
using conv_internal::WindowRow;

struct CpuWeights {
  std::vector<float> w;  // [dim * width]
  std::vector<float> b;  // [dim], zeros without bias
};

CpuWeights LoadWeights(const ConvWeights& cw) {
  CpuWeights r;
  const int64_t W = cw.width;
  const int64_t ws = cw.weight_row_stride > 0 ? cw.weight_row_stride : W;
  r.w.resize(static_cast<size_t>(cw.dim * W));
  r.b.assign(static_cast<size_t>(cw.dim), 0.0f);
  for (int64_t c = 0; c < cw.dim; ++c) {
    for (int64_t k = 0; k < W; ++k)
      r.w[c * W + k] = LoadAsFloat(cw.weight, cw.weight_dtype, c * ws + k);
    if (cw.bias != nullptr) r.b[c] = LoadAsFloat(cw.bias, cw.weight_dtype, c);
  }
  return r;
}

// out = act(bias + sum_k w[k] * buf[j + k]) for the window starting at buf[j].
float ConvAt(const CpuWeights& cw, int64_t c, int64_t W, const float* buf, bool silu) {
  float acc = cw.b[c];
  for (int64_t k = 0; k < W; ++k) acc += cw.w[c * W + k] * buf[k];
  return silu ? Silu(acc) : acc;
}

}  // namespace

absl::Status RunCausalConv1dCpu(const CausalConv1dParams& p) {
  const ConvStatePool& s = p.pool;
  const int64_t W = p.w.width, w1 = W - 1, R = s.state_len;
  const CpuWeights cw = LoadWeights(p.w);
  const int64_t win = WindowRow(s, W);
  std::vector<float> old(static_cast<size_t>(R));
  std::vector<float> buf;
  for (int64_t q = 0; q < p.num_seqs; ++q) {
    const int64_t t0 = p.cu_seqlens[q], L = p.cu_seqlens[q + 1] - t0;
    const int64_t ib = p.initial_state_block ? p.initial_state_block[q] : 0;
    const int64_t fb = p.final_state_block ? p.final_state_block[q] : 0;
    buf.assign(static_cast<size_t>(w1 + L), 0.0f);
    for (int64_t c = 0; c < p.w.dim; ++c) {
      // Old block rows (all of them: kTail shifts the whole block).
      for (int64_t r = 0; r < R; ++r) {
        old[r] =
            ib != 0 ? LoadAsFloat(s.conv_state, s.state_dtype, StateOffset(s, ib, r, c)) : 0.0f;
      }
      for (int64_t i = 0; i < w1; ++i) buf[i] = old[win + i];
      for (int64_t t = 0; t < L; ++t)
        buf[w1 + t] = LoadAsFloat(p.x, p.dtype, (t0 + t) * p.x_row_stride + c);
      for (int64_t t = 0; t < L; ++t) {
        StoreFromFloat(p.out, p.dtype, (t0 + t) * p.out_row_stride + c,
                       ConvAt(cw, c, W, buf.data() + t, p.w.silu));
      }
      if (fb == 0) continue;
      if (s.align == ConvStateAlign::kTail) {
        // Last R of (old R rows ++ the L inputs).
        for (int64_t r = 0; r < R; ++r) {
          const int64_t idx = r + L;  // index in (old ++ x)
          const float v = idx < R ? old[idx] : buf[w1 + idx - R];
          StoreFromFloat(s.conv_state, s.state_dtype, StateOffset(s, fb, r, c), v);
        }
      } else {
        // Last W-1 of (window ++ the L inputs) into rows [0, W-1).
        for (int64_t r = 0; r < w1; ++r) {
          StoreFromFloat(s.conv_state, s.state_dtype, StateOffset(s, fb, r, c), buf[L + r]);
        }
      }
    }
  }
  return absl::OkStatus();
}

absl::Status RunCausalConv1dUpdateCpu(const CausalConv1dUpdateParams& p) {
  const ConvStatePool& s = p.pool;
  const int64_t W = p.w.width, w1 = W - 1, R = s.state_len, Ts = p.tokens_per_seq;
  const CpuWeights cw = LoadWeights(p.w);
  const int64_t win = WindowRow(s, W);
  std::vector<float> old(static_cast<size_t>(R));
  std::vector<float> buf(static_cast<size_t>(w1 + Ts));
  for (int64_t q = 0; q < p.num_seqs; ++q) {
    const int64_t blk = p.state_block[q];
    if (blk == 0) continue;
    for (int64_t c = 0; c < p.w.dim; ++c) {
      for (int64_t r = 0; r < R; ++r) {
        old[r] = LoadAsFloat(s.conv_state, s.state_dtype, StateOffset(s, blk, r, c));
      }
      for (int64_t i = 0; i < w1; ++i) buf[i] = old[win + i];
      for (int64_t j = 0; j < Ts; ++j) {
        buf[w1 + j] = LoadAsFloat(p.x, p.dtype, q * p.x_seq_stride + j * p.x_token_stride + c);
      }
      for (int64_t j = 0; j < Ts; ++j) {
        StoreFromFloat(p.out, p.dtype, q * p.out_seq_stride + j * p.out_token_stride + c,
                       ConvAt(cw, c, W, buf.data() + j, p.w.silu));
      }
      if (s.align == ConvStateAlign::kTail) {
        for (int64_t r = 0; r < R; ++r) {
          const int64_t idx = r + Ts;
          const float v = idx < R ? old[idx] : buf[w1 + idx - R];
          StoreFromFloat(s.conv_state, s.state_dtype, StateOffset(s, blk, r, c), v);
        }
      } else {
        for (int64_t r = 0; r < w1 - 1 + Ts; ++r) {
          StoreFromFloat(s.conv_state, s.state_dtype, StateOffset(s, blk, r, c), buf[1 + r]);
        }
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace mambaserve
