// CPU causal conv1d (prefill and decode update) against a float64 oracle written here.
//
// Tolerances: fp32 outputs 1e-5 relative norm error (fp32 accumulation of <= 8 products plus a
// SiLU, against float64); bf16/f16 outputs 1e-2 (one final rounding to 8 or 11 mantissa bits,
// relative error <= 2^-8 per element). Conv states hold copies of inputs, so they are compared
// exactly (f32 state, or the state in the inputs' own dtype, represents every input exactly).
#include "kernels/causal_conv1d.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/dtype.h"
#include "core/random.h"
#include "core/rel_error.h"
#include "core/stream.h"
#include "gtest/gtest.h"

namespace mambaserve {
namespace {

std::vector<uint8_t> Pack(DType t, const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * DTypeSize(t));
  for (size_t i = 0; i < v.size(); ++i) StoreFromFloat(b.data(), t, static_cast<int64_t>(i), v[i]);
  return b;
}
float At(DType t, const std::vector<uint8_t>& b, int64_t i) { return LoadAsFloat(b.data(), t, i); }

double Tol(DType t) { return t == DType::kF32 ? 1e-5 : 1e-2; }

struct Case {
  int64_t dim = 37;
  int64_t width = 4;
  int64_t extra_rows = 0;  // state_len = width - 1 + extra_rows
  ConvStateLayout layout = ConvStateLayout::kSD;
  ConvStateAlign align = ConvStateAlign::kTail;
  DType dtype = DType::kF32;
  bool state_f32 = true;
  bool bias = true;
  bool silu = true;
};

std::string Name(const Case& c) {
  return absl::StrCat("dim=", c.dim, " W=", c.width, " R=", c.width - 1 + c.extra_rows,
                      c.layout == ConvStateLayout::kSD ? " SD" : " DS",
                      c.align == ConvStateAlign::kTail ? " tail" : " head", " ", DTypeName(c.dtype),
                      c.state_f32 ? " state f32" : " state=x", c.bias ? " bias" : "",
                      c.silu ? " silu" : "");
}

// Everything one test needs: weights, a poisoned random pool, helpers to read a block's rows.
struct Fixture {
  Case c;
  int64_t R, num_blocks = 9, pitch;  // pitch: SD row pitch / DS channel pitch
  int64_t wpitch;                    // weight row pitch
  DType sdt;
  std::vector<float> w, bias;  // values (rounded)
  std::vector<uint8_t> w_bytes, bias_bytes, pool;

  explicit Fixture(const Case& cs, Rng& rng) : c(cs) {
    R = c.width - 1 + c.extra_rows;
    sdt = c.state_f32 ? DType::kF32 : c.dtype;
    pitch = c.layout == ConvStateLayout::kSD ? c.dim + 3 : R + 2;  // padded, a slice of a pool
    wpitch = c.width + 1;
    w = rng.UniformVector(c.dim * wpitch, -0.6f, 0.6f);
    bias = rng.UniformVector(c.dim, -0.5f, 0.5f);
    RoundTo(c.dtype, w);
    RoundTo(c.dtype, bias);
    w_bytes = Pack(c.dtype, w);
    bias_bytes = Pack(c.dtype, bias);
    std::vector<float> pv = rng.UniformVector(num_blocks * BlockStride(), -2.0f, 2.0f);
    RoundTo(sdt, pv);
    pool = Pack(sdt, pv);
  }
  int64_t BlockStride() const {
    return c.layout == ConvStateLayout::kSD ? R * pitch + 5 : c.dim * pitch + 5;
  }
  int64_t Off(int64_t b, int64_t r, int64_t ch) const {
    return c.layout == ConvStateLayout::kSD ? b * BlockStride() + r * pitch + ch
                                            : b * BlockStride() + ch * pitch + r;
  }
  double State(int64_t b, int64_t r, int64_t ch) const { return At(sdt, pool, Off(b, r, ch)); }
  void SetState(int64_t b, int64_t r, int64_t ch, float v) {
    StoreFromFloat(pool.data(), sdt, Off(b, r, ch), v);
  }
  ConvWeights Weights() const {
    ConvWeights cw;
    cw.dim = c.dim;
    cw.width = c.width;
    cw.weight = w_bytes.data();
    cw.weight_row_stride = wpitch;
    cw.weight_dtype = c.dtype;
    cw.bias = c.bias ? bias_bytes.data() : nullptr;
    cw.silu = c.silu;
    return cw;
  }
  ConvStatePool Pool() {
    ConvStatePool s;
    s.conv_state = pool.data();
    s.state_dtype = sdt;
    s.layout = c.layout;
    s.align = c.align;
    s.num_blocks = num_blocks;
    s.state_len = R;
    s.state_block_stride = BlockStride();
    s.state_stride = pitch;
    return s;
  }
  // Oracle of one output given the W inputs ending at the current token (oldest first).
  double Out(int64_t ch, const double* win) const {
    double acc = c.bias ? bias[ch] : 0.0;
    for (int64_t k = 0; k < c.width; ++k) acc += static_cast<double>(w[ch * wpitch + k]) * win[k];
    return c.silu ? acc / (1.0 + std::exp(-acc)) : acc;
  }
  // The conv history (W-1 most recent inputs, oldest first) stored in block b.
  std::vector<double> History(int64_t b, int64_t ch) const {
    std::vector<double> h(c.width - 1, 0.0);
    if (b == 0) return h;
    const int64_t r0 = c.align == ConvStateAlign::kTail ? R - (c.width - 1) : 0;
    for (int64_t i = 0; i < c.width - 1; ++i) h[i] = State(b, r0 + i, ch);
    return h;
  }
};

// ---------------------------------------------------------------------------------------------
// Prefill against the oracle.

void RunPrefillCase(const Case& cs, uint64_t seed) {
  SCOPED_TRACE(Name(cs));
  Rng rng(seed);
  Fixture f(cs, rng);
  const int64_t W = cs.width, dim = cs.dim;
  // Sequences: shorter than W, empty, and longer ones.
  const std::vector<int64_t> lens = {1, W - 1, 0, 23, 2, 7 + W};
  const std::vector<int32_t> init = {3, 0, 5, 1, 0, 7};
  const std::vector<int32_t> fin = {3, 2, 6, 0, 4, 8};  // seq 0 continues in place
  const int64_t S = static_cast<int64_t>(lens.size());
  std::vector<int32_t> cu(S + 1, 0);
  for (int64_t s = 0; s < S; ++s) cu[s + 1] = cu[s] + static_cast<int32_t>(lens[s]);
  const int64_t T = cu[S] + 2;  // two trailing rows that belong to no sequence
  const int64_t xs = dim + 11, os = dim + 4;
  std::vector<float> xv = rng.UniformVector(T * xs, -2.0f, 2.0f);
  RoundTo(cs.dtype, xv);
  std::vector<uint8_t> x = Pack(cs.dtype, xv);
  std::vector<float> poison(T * os, 768.0f);
  std::vector<uint8_t> out = Pack(cs.dtype, poison);
  const std::vector<uint8_t> pool_before = f.pool;
  Fixture before = f;  // read-only copy for the oracle

  CausalConv1dParams p;
  p.w = f.Weights();
  p.pool = f.Pool();
  p.num_tokens = T;
  p.num_seqs = S;
  p.x = x.data();
  p.x_row_stride = xs;
  p.dtype = cs.dtype;
  p.out = out.data();
  p.out_row_stride = os;
  p.cu_seqlens = cu.data();
  p.initial_state_block = init.data();
  p.final_state_block = fin.data();
  ASSERT_TRUE(RunCausalConv1d(p, Stream()).ok());

  std::vector<double> ref, got;
  for (int64_t s = 0; s < S; ++s) {
    for (int64_t ch = 0; ch < dim; ++ch) {
      // stream = old block rows (tail: all R rows; head: the window) ++ inputs.
      std::vector<double> old_rows(f.R, 0.0);
      if (init[s] != 0) {
        for (int64_t r = 0; r < f.R; ++r) old_rows[r] = before.State(init[s], r, ch);
      }
      std::vector<double> st = before.History(init[s], ch);
      for (int64_t t = 0; t < lens[s]; ++t) st.push_back(xv[(cu[s] + t) * xs + ch]);
      for (int64_t t = 0; t < lens[s]; ++t) {
        ref.push_back(f.Out(ch, st.data() + t));
        got.push_back(At(cs.dtype, out, (cu[s] + t) * os + ch));
      }
      if (fin[s] == 0) continue;
      if (cs.align == ConvStateAlign::kTail) {
        std::vector<double> all = old_rows;
        for (int64_t t = 0; t < lens[s]; ++t) all.push_back(xv[(cu[s] + t) * xs + ch]);
        for (int64_t r = 0; r < f.R; ++r) {
          ASSERT_EQ(f.State(fin[s], r, ch), all[all.size() - f.R + r])
              << "seq " << s << " row " << r;
        }
      } else {
        for (int64_t r = 0; r < W - 1; ++r) {
          ASSERT_EQ(f.State(fin[s], r, ch), st[st.size() - (W - 1) + r])
              << "seq " << s << " row " << r;
        }
        for (int64_t r = W - 1; r < f.R; ++r) {
          ASSERT_EQ(f.State(fin[s], r, ch), before.State(fin[s], r, ch)) << "head rows >= W-1 kept";
        }
      }
    }
  }
  EXPECT_LT(RelRmsError(got, ref), Tol(cs.dtype));
  // Blocks not written keep their contents (block 0, 1, 5, 7 are never final blocks).
  for (int64_t b : {0, 1, 5, 7}) {
    for (int64_t r = 0; r < f.R; ++r)
      for (int64_t ch = 0; ch < dim; ++ch) ASSERT_EQ(f.State(b, r, ch), before.State(b, r, ch));
  }
  // Rows outside sequences and the padding columns of out are untouched.
  for (int64_t t = cu[S]; t < T; ++t)
    for (int64_t ch = 0; ch < os; ++ch) ASSERT_EQ(At(cs.dtype, out, t * os + ch), 768.0f);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t ch = dim; ch < os; ++ch) ASSERT_EQ(At(cs.dtype, out, t * os + ch), 768.0f);
}

std::vector<Case> Cases() {
  std::vector<Case> v;
  for (int64_t W : {2, 3, 4, 8}) {
    for (auto layout : {ConvStateLayout::kSD, ConvStateLayout::kDS}) {
      for (auto align : {ConvStateAlign::kTail, ConvStateAlign::kHead}) {
        for (int64_t extra : {0, 2}) {
          Case c;
          c.width = W;
          c.layout = layout;
          c.align = align;
          c.extra_rows = extra;
          c.dim = 37 + W;
          v.push_back(c);
        }
      }
    }
  }
  for (DType dt : {DType::kBF16, DType::kF16}) {
    for (bool sf : {true, false}) {
      Case c;
      c.dtype = dt;
      c.state_f32 = sf;
      c.layout = sf ? ConvStateLayout::kDS : ConvStateLayout::kSD;
      c.bias = !sf;
      c.silu = sf;
      c.extra_rows = 1;
      v.push_back(c);
    }
  }
  return v;
}

TEST(CausalConv1dCpu, PrefillMatchesOracle) {
  uint64_t seed = 1;
  for (const Case& c : Cases()) RunPrefillCase(c, seed++);
}

// ---------------------------------------------------------------------------------------------
// Decode update against the oracle, with null blocks and in-place out == x.

void RunUpdateCase(const Case& cs, int64_t Ts, bool in_place, uint64_t seed) {
  SCOPED_TRACE(absl::StrCat(Name(cs), " Ts=", Ts, in_place ? " in-place" : ""));
  Rng rng(seed);
  Case c2 = cs;
  if (c2.align == ConvStateAlign::kHead) c2.extra_rows = std::max<int64_t>(c2.extra_rows, Ts - 1);
  Fixture f(c2, rng);
  const int64_t W = cs.width, dim = cs.dim;
  const std::vector<int32_t> blocks = {4, 0, 2, 7, 0};
  const int64_t S = static_cast<int64_t>(blocks.size());
  const int64_t ts = dim + 3, ss = Ts * ts + 1;
  std::vector<float> xv = rng.UniformVector(S * ss, -2.0f, 2.0f);
  RoundTo(cs.dtype, xv);
  std::vector<uint8_t> x = Pack(cs.dtype, xv);
  std::vector<uint8_t> out_sep = Pack(cs.dtype, std::vector<float>(S * ss, 768.0f));
  std::vector<uint8_t>& out = in_place ? x : out_sep;
  Fixture before = f;

  CausalConv1dUpdateParams p;
  p.w = f.Weights();
  p.pool = f.Pool();
  p.num_seqs = S;
  p.tokens_per_seq = Ts;
  p.x = x.data();
  p.x_seq_stride = ss;
  p.x_token_stride = ts;
  p.dtype = cs.dtype;
  p.out = out.data();
  p.out_seq_stride = ss;
  p.out_token_stride = ts;
  p.state_block = blocks.data();
  ASSERT_TRUE(RunCausalConv1dUpdate(p, Stream()).ok());

  std::vector<double> ref, got;
  for (int64_t s = 0; s < S; ++s) {
    for (int64_t ch = 0; ch < dim; ++ch) {
      if (blocks[s] == 0) {
        for (int64_t j = 0; j < Ts; ++j)
          ASSERT_EQ(At(cs.dtype, out, s * ss + j * ts + ch),
                    in_place ? xv[s * ss + j * ts + ch] : 768.0f);
        continue;
      }
      std::vector<double> st = before.History(blocks[s], ch);
      for (int64_t j = 0; j < Ts; ++j) st.push_back(xv[s * ss + j * ts + ch]);
      for (int64_t j = 0; j < Ts; ++j) {
        ref.push_back(f.Out(ch, st.data() + j));
        got.push_back(At(cs.dtype, out, s * ss + j * ts + ch));
      }
      if (cs.align == ConvStateAlign::kTail) {
        std::vector<double> all;
        for (int64_t r = 0; r < f.R; ++r) all.push_back(before.State(blocks[s], r, ch));
        for (int64_t j = 0; j < Ts; ++j) all.push_back(xv[s * ss + j * ts + ch]);
        for (int64_t r = 0; r < f.R; ++r) ASSERT_EQ(f.State(blocks[s], r, ch), all[Ts + r]);
      } else {
        // rows [0, W-2+Ts) = st[1 ..]; the rest untouched.
        for (int64_t r = 0; r < W - 2 + Ts; ++r) ASSERT_EQ(f.State(blocks[s], r, ch), st[1 + r]);
        for (int64_t r = W - 2 + Ts; r < f.R; ++r)
          ASSERT_EQ(f.State(blocks[s], r, ch), before.State(blocks[s], r, ch));
      }
    }
  }
  EXPECT_LT(RelRmsError(got, ref), Tol(cs.dtype));
  for (int64_t b : {0, 1, 3, 5, 6, 8})
    for (int64_t r = 0; r < f.R; ++r)
      for (int64_t ch = 0; ch < dim; ++ch) ASSERT_EQ(f.State(b, r, ch), before.State(b, r, ch));
}

TEST(CausalConv1dCpu, UpdateMatchesOracle) {
  uint64_t seed = 100;
  for (const Case& c : Cases()) {
    for (int64_t Ts : {1, 3}) RunUpdateCase(c, Ts, /*in_place=*/Ts == 3, seed++);
  }
}

// ---------------------------------------------------------------------------------------------
// Parity: prefill n then decode m tokens (one by one, or m at once) equals prefill n + m; for a
// speculative decode of Ts tokens, the window ending at accepted token k-1 sits at rows
// [k-1, k-1+W-1) (the copy spec's source rows) when state_len = W-1+num_spec.

struct Run {
  std::vector<float> out;      // (T, dim) values
  std::vector<double> window;  // (W-1, dim) final window, oldest first
};

TEST(CausalConv1dCpu, PrefillThenDecodeEqualsLongerPrefill) {
  uint64_t seed = 500;
  for (int64_t W : {2, 3, 4, 8}) {
    for (auto layout : {ConvStateLayout::kSD, ConvStateLayout::kDS}) {
      for (auto align : {ConvStateAlign::kTail, ConvStateAlign::kHead}) {
        for (int64_t n : {int64_t{1}, W + 5}) {
          const int64_t num_spec = 3, m = 1 + num_spec;
          Case c;
          c.width = W;
          c.layout = layout;
          c.align = align;
          c.extra_rows = num_spec;
          c.dim = 19;
          SCOPED_TRACE(absl::StrCat(Name(c), " n=", n));
          Rng rng(seed++);
          Fixture f(c, rng);
          const int64_t dim = c.dim, T = n + m;
          std::vector<float> xv = rng.UniformVector(T * dim, -2.0f, 2.0f);
          std::vector<uint8_t> x = Pack(c.dtype, xv);
          // (a) prefill n+m into block 1 from zeros; (b) prefill n into block 2, then m decode
          // steps of one token; (c) prefill n into block 3, then one decode call of m tokens.
          auto prefill = [&](int64_t len, int32_t blk, std::vector<uint8_t>& o) {
            std::vector<int32_t> cu = {0, static_cast<int32_t>(len)};
            std::vector<int32_t> ib = {0}, fb = {blk};
            CausalConv1dParams p;
            p.w = f.Weights();
            p.pool = f.Pool();
            p.num_tokens = len;
            p.num_seqs = 1;
            p.x = x.data();
            p.x_row_stride = dim;
            p.dtype = c.dtype;
            p.out = o.data();
            p.out_row_stride = dim;
            p.cu_seqlens = cu.data();
            p.initial_state_block = ib.data();
            p.final_state_block = fb.data();
            ASSERT_TRUE(RunCausalConv1d(p, Stream()).ok());
          };
          auto decode = [&](int64_t t0, int64_t ts, int32_t blk, std::vector<uint8_t>& o) {
            std::vector<int32_t> b = {blk};
            CausalConv1dUpdateParams p;
            p.w = f.Weights();
            p.pool = f.Pool();
            p.num_seqs = 1;
            p.tokens_per_seq = ts;
            p.x = x.data() + t0 * dim * DTypeSize(c.dtype);
            p.x_seq_stride = ts * dim;
            p.x_token_stride = dim;
            p.dtype = c.dtype;
            p.out = o.data() + t0 * dim * DTypeSize(c.dtype);
            p.out_seq_stride = ts * dim;
            p.out_token_stride = dim;
            p.state_block = b.data();
            ASSERT_TRUE(RunCausalConv1dUpdate(p, Stream()).ok());
          };
          std::vector<uint8_t> oa = Pack(c.dtype, std::vector<float>(T * dim, 768.0f));
          std::vector<uint8_t> ob = oa, oc = oa;
          prefill(T, 1, oa);
          prefill(n, 2, ob);
          // Before decoding block 2 one token at a time, keep a copy of block 2 for (c).
          prefill(n, 3, oc);
          for (int64_t j = 0; j < m; ++j) decode(n + j, 1, 2, ob);
          decode(n, m, 3, oc);
          for (int64_t i = 0; i < T * dim; ++i) {
            ASSERT_EQ(At(c.dtype, oa, i), At(c.dtype, ob, i)) << i;
            ASSERT_EQ(At(c.dtype, oa, i), At(c.dtype, oc, i)) << i;
          }
          // Windows: (a) and (b) hold the same final window; (c) holds every accepted prefix's
          // window at rows [k-1, k-1+W-1).
          for (int64_t ch = 0; ch < dim; ++ch) {
            EXPECT_EQ(f.History(1, ch), f.History(2, ch));
            for (int64_t k = 1; k <= m; ++k) {
              for (int64_t i = 0; i < W - 1; ++i) {
                const int64_t src = n + k - 1 - (W - 2) + i;  // stream index
                const double want = src >= 0 ? xv[src * dim + ch] : 0.0;
                ASSERT_EQ(f.State(3, k - 1 + i, ch), want) << "k=" << k << " i=" << i;
              }
            }
          }
          if (align == ConvStateAlign::kTail) {
            for (int64_t r = 0; r < f.R; ++r)
              for (int64_t ch = 0; ch < dim; ++ch) {
                ASSERT_EQ(f.State(1, r, ch), f.State(2, r, ch));
                ASSERT_EQ(f.State(1, r, ch), f.State(3, r, ch));
              }
          }
        }
      }
    }
  }
}

TEST(CausalConv1dCpu, RejectsBadArguments) {
  Rng rng(9);
  Case c;
  Fixture f(c, rng);
  std::vector<int32_t> cu = {0, 1}, bad = {9};
  std::vector<float> xv(c.dim, 1.0f), ov(c.dim, 0.0f);
  CausalConv1dParams p;
  p.w = f.Weights();
  p.pool = f.Pool();
  p.num_tokens = 1;
  p.num_seqs = 1;
  p.x = xv.data();
  p.x_row_stride = c.dim;
  p.out = ov.data();
  p.out_row_stride = c.dim;
  p.cu_seqlens = cu.data();
  p.final_state_block = bad.data();
  EXPECT_FALSE(RunCausalConv1d(p, Stream()).ok());  // block out of range
  p.final_state_block = nullptr;
  EXPECT_TRUE(RunCausalConv1d(p, Stream()).ok());
  p.w.width = 9;
  EXPECT_FALSE(RunCausalConv1d(p, Stream()).ok());
  p.w.width = 4;
  p.pool.state_len = 2;
  EXPECT_FALSE(RunCausalConv1d(p, Stream()).ok());
}

}  // namespace
}  // namespace mambaserve
