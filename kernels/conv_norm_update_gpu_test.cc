// CUDA against CPU for causal conv1d (prefill, update), gated RMSNorm and the Mamba-2 state
// update, on the same random inputs (the CPU versions are checked against float64 oracles by
// the CI tests). Skips without a GPU.
//
// Tolerances (relative norm error): fp32 1e-5 (same fp32 math, different summation order and
// expf); bf16 / f16 outputs and a bf16 SSM state 1e-2 (the two sides may round a value to
// neighbouring 16-bit numbers). Conv states hold copies of inputs and must be bit-identical,
// as must every state block a kernel does not write.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/buffer.h"
#include "core/device.h"
#include "core/dtype.h"
#include "core/random.h"
#include "core/stream.h"
#include "gtest/gtest.h"
#include "kernels/causal_conv1d.h"
#include "kernels/gated_rmsnorm.h"
#include "kernels/gpu_test_util.h"
#include "kernels/mamba2_state_update.h"
#include "kernels/mamba2_state_update_internal.h"

namespace mambaserve {
namespace {

using namespace gpu_test;  // NOLINT: test helpers

// ---------------------------------------------------------------------------------------------
// Causal conv1d.

struct ConvCase {
  int64_t dim, width, extra_rows;
  ConvStateLayout layout;
  ConvStateAlign align;
  DType dtype;
  bool state_f32;
  std::vector<int64_t> lens;
};

std::vector<ConvCase> ConvCases() {
  std::vector<ConvCase> v;
  for (DType dt : {DType::kF32, DType::kBF16}) {
    for (int64_t W : {2, 3, 4, 8}) {
      for (auto layout : {ConvStateLayout::kSD, ConvStateLayout::kDS}) {
        for (auto align : {ConvStateAlign::kTail, ConvStateAlign::kHead}) {
          v.push_back({37 + W * 31,
                       W,
                       W % 3,
                       layout,
                       align,
                       dt,
                       W % 2 == 0,
                       {1, W - 1, 0, 200, 2, 65, 129}});
        }
      }
    }
  }
  v.push_back(
      {5376, 4, 3, ConvStateLayout::kSD, ConvStateAlign::kTail, DType::kBF16, false, {300, 1, 77}});
  // The Mamba2-2.7B decode block: exactly the window (the update's register fast path).
  v.push_back(
      {5376, 4, 0, ConvStateLayout::kSD, ConvStateAlign::kTail, DType::kBF16, false, {300, 1, 77}});
  return v;
}

TEST(ConvNormUpdateGpu, CausalConv1dPrefillMatchesCpu) {
  SKIP_WITHOUT_GPU();
  Stream gs = GpuStream();
  uint64_t seed = 1;
  for (const ConvCase& c : ConvCases()) {
    SCOPED_TRACE(absl::StrCat("dim=", c.dim, " W=", c.width, " extra=", c.extra_rows,
                              " layout=", static_cast<int>(c.layout),
                              " align=", static_cast<int>(c.align), " ", DTypeName(c.dtype)));
    Rng rng(seed++);
    const int64_t R = c.width - 1 + c.extra_rows, nb = 2 * c.lens.size() + 3;
    const DType sdt = c.state_f32 ? DType::kF32 : c.dtype;
    const int64_t pitch = c.layout == ConvStateLayout::kSD ? c.dim + 2 : R + 1;
    const int64_t bstride = (c.layout == ConvStateLayout::kSD ? R : c.dim) * pitch + 3;
    const int64_t S = c.lens.size();
    std::vector<int32_t> cu(S + 1, 0), ib(S), fb(S);
    for (int64_t s = 0; s < S; ++s) {
      cu[s + 1] = cu[s] + c.lens[s];
      ib[s] = s % 3 == 1 ? 0 : static_cast<int32_t>(1 + s);                      // 0 = zeros
      fb[s] = s % 4 == 3 ? 0 : static_cast<int32_t>(s % 2 ? 1 + s : 1 + S + s);  // some in place
    }
    const int64_t T = cu[S] + 3, xs = c.dim + 7, os = c.dim + 1;
    Bytes x = RandomBytes(c.dtype, T * xs, rng),
          w = RandomBytes(c.dtype, c.dim * c.width, rng, 0.5f),
          bias = RandomBytes(c.dtype, c.dim, rng, 0.5f), pool = RandomBytes(sdt, nb * bstride, rng),
          out = Pack(c.dtype, std::vector<float>(T * os, 768.0f));
    Dev dx = Dev::Of(x), dw = Dev::Of(w), dbias = Dev::Of(bias), dpool = Dev::Of(pool),
        dout = Dev::Of(out), dcu = Dev::Of(AsBytes(cu)), dib = Dev::Of(AsBytes(ib)),
        dfb = Dev::Of(AsBytes(fb));
    auto make = [&](bool gpu) {
      CausalConv1dParams p;
      p.w.dim = c.dim;
      p.w.width = c.width;
      p.w.weight = gpu ? dw.ptr() : w.data();
      p.w.weight_dtype = c.dtype;
      p.w.bias = gpu ? dbias.ptr() : bias.data();
      p.w.silu = true;
      p.pool.conv_state = gpu ? dpool.ptr() : pool.data();
      p.pool.state_dtype = sdt;
      p.pool.layout = c.layout;
      p.pool.align = c.align;
      p.pool.num_blocks = nb;
      p.pool.state_len = R;
      p.pool.state_block_stride = bstride;
      p.pool.state_stride = pitch;
      p.num_tokens = T;
      p.num_seqs = S;
      p.x = gpu ? dx.ptr() : x.data();
      p.x_row_stride = xs;
      p.dtype = c.dtype;
      p.out = gpu ? dout.ptr() : out.data();
      p.out_row_stride = os;
      p.cu_seqlens = gpu ? static_cast<const int32_t*>(dcu.ptr()) : cu.data();
      p.initial_state_block = gpu ? static_cast<const int32_t*>(dib.ptr()) : ib.data();
      p.final_state_block = gpu ? static_cast<const int32_t*>(dfb.ptr()) : fb.data();
      return p;
    };
    ASSERT_TRUE(RunCausalConv1d(make(false), Stream()).ok());
    const absl::Status st = RunCausalConv1d(make(true), gs);
    ASSERT_TRUE(st.ok()) << st;
    ASSERT_TRUE(gs.Synchronize().ok());
    const Bytes gout = dout.Get(out.size()), gpool = dpool.Get(pool.size());
    EXPECT_LT(RelErr(c.dtype, out, gout), Tol(c.dtype));
    // Untouched out entries (padding columns, rows past the sequences) stay 768 on both sides.
    for (int64_t i = 0; i < T * os; ++i) {
      if (LoadAsFloat(out.data(), c.dtype, i) == 768.0f) {
        ASSERT_EQ(LoadAsFloat(gout.data(), c.dtype, i), 768.0f) << i;
      }
    }
    EXPECT_TRUE(gpool == pool) << "conv state pools differ";
  }
}

TEST(ConvNormUpdateGpu, CausalConv1dUpdateMatchesCpu) {
  SKIP_WITHOUT_GPU();
  Stream gs = GpuStream();
  uint64_t seed = 100;
  for (const ConvCase& c : ConvCases()) {
    for (int64_t Ts : {1, 4}) {
      SCOPED_TRACE(absl::StrCat("dim=", c.dim, " W=", c.width, " Ts=", Ts,
                                " layout=", static_cast<int>(c.layout),
                                " align=", static_cast<int>(c.align), " ", DTypeName(c.dtype)));
      Rng rng(seed++);
      const int64_t R = c.width - 1 + std::max(c.extra_rows, Ts - 1), S = 9, nb = S + 2;
      const DType sdt = c.state_f32 ? DType::kF32 : c.dtype;
      const int64_t pitch = c.layout == ConvStateLayout::kSD ? c.dim + 2 : R + 1;
      const int64_t bstride = (c.layout == ConvStateLayout::kSD ? R : c.dim) * pitch + 3;
      std::vector<int32_t> blk(S);
      for (int64_t s = 0; s < S; ++s) blk[s] = s % 4 == 2 ? 0 : static_cast<int32_t>(1 + s);
      const int64_t ts = c.dim + 3, ss = Ts * ts + 5;
      Bytes x = RandomBytes(c.dtype, S * ss, rng),
            w = RandomBytes(c.dtype, c.dim * c.width, rng, 0.5f),
            bias = RandomBytes(c.dtype, c.dim, rng, 0.5f),
            pool = RandomBytes(sdt, nb * bstride, rng),
            out = Pack(c.dtype, std::vector<float>(S * ss, 768.0f));
      Dev dx = Dev::Of(x), dw = Dev::Of(w), dbias = Dev::Of(bias), dpool = Dev::Of(pool),
          dout = Dev::Of(out), dblk = Dev::Of(AsBytes(blk));
      auto make = [&](bool gpu) {
        CausalConv1dUpdateParams p;
        p.w.dim = c.dim;
        p.w.width = c.width;
        p.w.weight = gpu ? dw.ptr() : w.data();
        p.w.weight_dtype = c.dtype;
        p.w.bias = gpu ? dbias.ptr() : bias.data();
        p.w.silu = Ts == 1;
        p.pool.conv_state = gpu ? dpool.ptr() : pool.data();
        p.pool.state_dtype = sdt;
        p.pool.layout = c.layout;
        p.pool.align = c.align;
        p.pool.num_blocks = nb;
        p.pool.state_len = R;
        p.pool.state_block_stride = bstride;
        p.pool.state_stride = pitch;
        p.num_seqs = S;
        p.tokens_per_seq = Ts;
        p.x = gpu ? dx.ptr() : x.data();
        p.x_seq_stride = ss;
        p.x_token_stride = ts;
        p.dtype = c.dtype;
        p.out = gpu ? dout.ptr() : out.data();
        p.out_seq_stride = ss;
        p.out_token_stride = ts;
        p.state_block = gpu ? static_cast<const int32_t*>(dblk.ptr()) : blk.data();
        return p;
      };
      ASSERT_TRUE(RunCausalConv1dUpdate(make(false), Stream()).ok());
      const absl::Status st = RunCausalConv1dUpdate(make(true), gs);
      ASSERT_TRUE(st.ok()) << st;
      ASSERT_TRUE(gs.Synchronize().ok());
      const Bytes gout = dout.Get(out.size()), gpool = dpool.Get(pool.size());
      EXPECT_LT(RelErr(c.dtype, out, gout), Tol(c.dtype));
      for (int64_t i = 0; i < S * ss; ++i) {
        if (LoadAsFloat(out.data(), c.dtype, i) == 768.0f) {
          ASSERT_EQ(LoadAsFloat(gout.data(), c.dtype, i), 768.0f) << i;
        }
      }
      EXPECT_TRUE(gpool == pool) << "conv state pools differ";
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Gated RMSNorm: fused, and the split form over straddling "ranks".

TEST(ConvNormUpdateGpu, GatedRmsNormMatchesCpu) {
  SKIP_WITHOUT_GPU();
  Stream gs = GpuStream();
  uint64_t seed = 200;
  struct Shape {
    int64_t T, G, gs, tp;
  };
  for (Shape sh : {Shape{7, 1, 5120, 1}, Shape{33, 8, 640, 2}, Shape{5, 3, 37, 1},
                   Shape{9, 3, 8, 2}, Shape{4, 1, 48, 4}, Shape{6, 6, 6, 4}}) {
    for (DType dt : {DType::kF32, DType::kBF16}) {
      for (int combo = 0; combo < 4; ++combo) {
        const bool nbg = combo & 1, aligned = combo & 2;  // aligned: 16-byte vector path
        SCOPED_TRACE(absl::StrCat("T=", sh.T, " G=", sh.G, " gs=", sh.gs, " tp=", sh.tp, " ",
                                  DTypeName(dt), " nbg=", nbg, " aligned=", aligned,
                                  " seed=", seed));
        Rng rng(seed++);
        // fp32 weights with 16-bit activations on every other case; every third case without
        // a weight (w = 1), as the model runs it (the weight folded into out_proj).
        const DType wdt = seed % 2 == 0 ? DType::kF32 : dt;
        const bool no_weight = seed % 3 == 0;
        const int64_t I = sh.G * sh.gs, per = I / sh.tp;
        const int64_t ys = aligned ? I + 8 : I + 3, os = aligned ? I + 16 : I + 1;
        Bytes y = RandomBytes(dt, sh.T * ys, rng, 1.5f), z = RandomBytes(dt, sh.T * ys, rng, 2.0f),
              w = Pack(wdt, rng.UniformVector(I, 0.5f, 1.5f)),
              out = Pack(dt, std::vector<float>(sh.T * os, 768.0f));
        Dev dy = Dev::Of(y), dz = Dev::Of(z), dw = Dev::Of(w), dout = Dev::Of(out);
        std::vector<float> sums(sh.T * sh.G, 0.0f);
        Dev dsums = Dev::Of(AsBytes(sums));
        const int64_t es = DTypeSize(dt);
        auto make = [&](bool gpu, int64_t r, GatedRmsNormMode mode) {
          GatedRmsNormParams p;
          p.mode = mode;
          p.num_tokens = sh.T;
          p.dim = sh.tp == 1 ? I : per;
          const int64_t c0 = sh.tp == 1 ? 0 : r * per;
          p.dtype = dt;
          p.y = (gpu ? static_cast<uint8_t*>(dy.ptr()) : y.data()) + c0 * es;
          p.y_row_stride = ys;
          p.z = (gpu ? static_cast<uint8_t*>(dz.ptr()) : z.data()) + c0 * es;
          p.z_row_stride = ys;
          p.weight = (gpu ? static_cast<uint8_t*>(dw.ptr()) : w.data()) + c0 * DTypeSize(wdt);
          if (no_weight) p.weight = nullptr;
          p.weight_dtype = wdt;
          p.out = (gpu ? static_cast<uint8_t*>(dout.ptr()) : out.data()) + c0 * es;
          p.out_row_stride = os;
          p.group_size = sh.gs;
          p.channel_offset = c0;
          p.norm_before_gate = nbg;
          p.sums = gpu ? static_cast<float*>(dsums.ptr()) : sums.data();
          p.sums_row_stride = sh.G;
          return p;
        };
        if (sh.tp == 1) {
          ASSERT_TRUE(RunGatedRmsNorm(make(false, 0, GatedRmsNormMode::kFused), Stream()).ok());
          const absl::Status st = RunGatedRmsNorm(make(true, 0, GatedRmsNormMode::kFused), gs);
          ASSERT_TRUE(st.ok()) << st;
        } else {
          // Each rank's partial sums into its own zeroed (T, G) buffer, added on the host.
          std::vector<float> cpu_total(sh.T * sh.G, 0.0f), gpu_total(sh.T * sh.G, 0.0f);
          for (int64_t r = 0; r < sh.tp; ++r) {
            std::fill(sums.begin(), sums.end(), 0.0f);
            Dev zero = Dev::Of(AsBytes(sums));
            dsums = std::move(zero);
            ASSERT_TRUE(
                RunGatedRmsNorm(make(false, r, GatedRmsNormMode::kPartialSums), Stream()).ok());
            ASSERT_TRUE(RunGatedRmsNorm(make(true, r, GatedRmsNormMode::kPartialSums), gs).ok());
            ASSERT_TRUE(gs.Synchronize().ok());
            const Bytes g = dsums.Get(sums.size() * 4);
            const float* gf = reinterpret_cast<const float*>(g.data());
            for (size_t i = 0; i < sums.size(); ++i) {
              cpu_total[i] += sums[i];
              gpu_total[i] += gf[i];
            }
          }
          EXPECT_LT(RelErr(DType::kF32, AsBytes(cpu_total), AsBytes(gpu_total)), 1e-5);
          sums = cpu_total;
          dsums = Dev::Of(AsBytes(cpu_total));
          for (int64_t r = 0; r < sh.tp; ++r) {
            ASSERT_TRUE(RunGatedRmsNorm(make(false, r, GatedRmsNormMode::kApply), Stream()).ok());
            ASSERT_TRUE(RunGatedRmsNorm(make(true, r, GatedRmsNormMode::kApply), gs).ok());
          }
        }
        ASSERT_TRUE(gs.Synchronize().ok());
        const Bytes gout = dout.Get(out.size());
        EXPECT_LT(RelErr(dt, out, gout), Tol(dt));
        for (int64_t i = 0; i < sh.T * os; ++i) {
          if (i % os >= I) ASSERT_EQ(LoadAsFloat(gout.data(), dt, i), 768.0f);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Mamba-2 state update.

struct M2Shape {
  int64_t batch, Ts, H, P, G, N;
  int64_t first_head = 0, hpg = 0, first_group = 0;
};

void RunM2Case(const M2Shape& s, DType dt, DType sdt, bool spec_out, int variant, uint64_t seed,
               const Stream& gs, int rows = 0) {
  SCOPED_TRACE(absl::StrCat("B=", s.batch, " Ts=", s.Ts, " H=", s.H, " P=", s.P, " G=", s.G,
                            " N=", s.N, " ", DTypeName(dt), " state ", DTypeName(sdt),
                            " spec_out=", spec_out, " variant=", variant, " rows=", rows));
  Rng rng(seed);
  const int64_t xh = s.P + (variant % 2), xt = s.H * xh, xb = s.Ts * xt + (variant % 2);
  const int64_t bg = s.N, bt = s.G * bg, bb = s.Ts * bt;
  const int64_t dth = 1, dtt = s.H, dtb = s.Ts * s.H;
  const int64_t sp = s.N + (variant == 3 ? 1 : 0), sh = s.P * sp, sblk = s.H * sh;
  const int64_t nb = 2 + s.batch * (s.Ts + 1);
  Bytes x = RandomBytes(dt, s.batch * xb, rng), z = RandomBytes(dt, s.batch * xb, rng),
        B = RandomBytes(dt, s.batch * bb, rng), C = RandomBytes(dt, s.batch * bb, rng),
        dtv = Pack(dt, rng.UniformVector(s.batch * dtb, -3.0f, 1.0f)),
        y = Pack(dt, std::vector<float>(s.batch * xb, 768.0f)),
        state = RandomBytes(sdt, nb * sblk, rng, 0.7f);
  std::vector<float> dt_bias = rng.UniformVector(s.H, -2.0f, 0.5f),
                     A = rng.UniformVector(s.H, -4.0f, -0.2f),
                     D = rng.UniformVector(s.H * s.P, -1.0f, 1.0f);
  std::vector<int32_t> bin(s.batch), bout(s.batch * s.Ts);
  for (int64_t b = 0; b < s.batch; ++b) {
    bin[b] = b % 5 == 3 ? 0 : static_cast<int32_t>(1 + b);
    for (int64_t t = 0; t < s.Ts; ++t) {
      bout[b * s.Ts + t] =
          (b == 0 && t == 0) ? 0 : static_cast<int32_t>(1 + s.batch + b * s.Ts + t);
    }
  }
  Dev dx = Dev::Of(x), dz = Dev::Of(z), dB = Dev::Of(B), dC = Dev::Of(C), ddt = Dev::Of(dtv),
      dy = Dev::Of(y), dstate = Dev::Of(state), dbias = Dev::Of(AsBytes(dt_bias)),
      dA = Dev::Of(AsBytes(A)), dD = Dev::Of(AsBytes(D)), dbin = Dev::Of(AsBytes(bin)),
      dbout = Dev::Of(AsBytes(bout));
  auto make = [&](bool gpu) {
    Mamba2StateUpdateParams p;
    p.batch = s.batch;
    p.tokens_per_seq = s.Ts;
    p.num_heads = s.H;
    p.head_dim = s.P;
    p.num_groups = s.G;
    p.d_state = s.N;
    p.first_head = s.first_head;
    p.heads_per_group = s.hpg;
    p.first_group = s.first_group;
    p.dtype = dt;
    p.x = gpu ? dx.ptr() : x.data();
    p.x_batch_stride = xb, p.x_token_stride = xt, p.x_head_stride = xh;
    p.z = variant == 2 ? nullptr : (gpu ? dz.ptr() : z.data());
    p.z_batch_stride = xb, p.z_token_stride = xt, p.z_head_stride = xh;
    p.B = gpu ? dB.ptr() : B.data();
    p.B_batch_stride = bb, p.B_token_stride = bt, p.B_group_stride = bg;
    p.C = gpu ? dC.ptr() : C.data();
    p.C_batch_stride = bb, p.C_token_stride = bt, p.C_group_stride = bg;
    p.y = gpu ? dy.ptr() : y.data();
    p.y_batch_stride = xb, p.y_token_stride = xt, p.y_head_stride = xh;
    p.dt_dtype = dt;
    p.dt = gpu ? ddt.ptr() : dtv.data();
    p.dt_batch_stride = dtb, p.dt_token_stride = dtt, p.dt_head_stride = dth;
    p.dt_bias = gpu ? static_cast<const float*>(dbias.ptr()) : dt_bias.data();
    if (variant == 1) p.dt_min = 0.05f, p.dt_max = 0.6f;
    p.A = gpu ? static_cast<const float*>(dA.ptr()) : A.data();
    p.D = gpu ? static_cast<const float*>(dD.ptr()) : D.data();
    p.d_per_channel = variant == 2;
    p.state = gpu ? dstate.ptr() : state.data();
    p.state_dtype = sdt;
    p.num_blocks = nb;
    p.state_block_stride = sblk, p.state_head_stride = sh, p.state_p_stride = sp;
    p.state_block_in = gpu ? static_cast<const int32_t*>(dbin.ptr()) : bin.data();
    p.state_block_out =
        spec_out ? (gpu ? static_cast<const int32_t*>(dbout.ptr()) : bout.data()) : nullptr;
    return p;
  };
  ASSERT_TRUE(RunMamba2StateUpdate(make(false), Stream()).ok());
#if MAMBASERVE_HAS_CUDA
  const absl::Status st = rows == 0 ? RunMamba2StateUpdate(make(true), gs)
                                    : RunMamba2StateUpdateCudaRows(make(true), gs, rows);
#else
  const absl::Status st = RunMamba2StateUpdate(make(true), gs);
#endif
  ASSERT_TRUE(st.ok()) << st;
  ASSERT_TRUE(gs.Synchronize().ok());
  const Bytes gy = dy.Get(y.size()), gstate = dstate.Get(state.size());
  // A bf16 state is rounded between tokens; the two sides may round an element to neighbouring
  // bf16 values, which moves later tokens' y by ~2^-8 relative in that term.
  EXPECT_LT(RelErr(dt, y, gy), std::max(Tol(dt), s.Ts > 1 ? Tol(sdt) : 0.0));
  EXPECT_LT(RelErr(sdt, state, gstate), Tol(sdt));
  for (size_t i = 0; i < y.size() / DTypeSize(dt); ++i) {
    if (LoadAsFloat(y.data(), dt, i) == 768.0f) ASSERT_EQ(LoadAsFloat(gy.data(), dt, i), 768.0f);
  }
  // Blocks neither side wrote are bit-identical (null blocks, unwritten out blocks).
  const int64_t es = DTypeSize(sdt);
  for (int64_t k = 0; k < nb; ++k) {
    bool written = false;
    for (int64_t b = 0; b < s.batch; ++b) {
      if (bin[b] == 0) continue;
      if (!spec_out && bin[b] == k) written = true;
      for (int64_t t = 0; spec_out && t < s.Ts; ++t) written |= bout[b * s.Ts + t] == k;
    }
    if (written) continue;
    ASSERT_EQ(0,
              std::memcmp(gstate.data() + k * sblk * es, state.data() + k * sblk * es, sblk * es))
        << "block " << k;
  }
}

TEST(ConvNormUpdateGpu, Mamba2StateUpdateMatchesCpu) {
  SKIP_WITHOUT_GPU();
  Stream gs = GpuStream();
  uint64_t seed = 300;
  const std::vector<M2Shape> shapes = {
      {16, 1, 80, 64, 1, 128},        // Mamba2-2.7B layer
      {5, 1, 6, 5, 3, 7},             // odd sizes, scalar path
      {3, 1, 3, 4, 2, 9, 6, 4, 1},    // straddling rank mapping
      {4, 3, 8, 16, 2, 64},           // multi-token
      {2, 2, 4, 8, 1, 256, 1, 8, 0},  // N = 256, replicated group
      {6, 1, 4, 33, 2, 16},           // N = 16, P not a multiple of the tile
      {3, 2, 2, 8, 1, 96},            // N not a power of two (masked lanes)
  };
  for (const M2Shape& s : shapes) {
    for (DType dt : {DType::kF32, DType::kBF16}) {
      for (DType sdt : {DType::kF32, DType::kBF16}) {
        const int variant = static_cast<int>(seed % 4);
        RunM2Case(s, dt, sdt, s.Ts > 1 && seed % 2 == 0, variant, seed, gs);
        ++seed;
      }
    }
  }
  // The tuning variants (rows per thread group) the benchmark sweeps.
  for (int rows : {2, 4, 8, 16}) {
    RunM2Case(shapes[0], DType::kBF16, DType::kF32, false, 0, seed++, gs, rows);
    RunM2Case(shapes[0], DType::kBF16, DType::kBF16, false, 1, seed++, gs, rows);
    RunM2Case(shapes[3], DType::kF32, DType::kF32, true, 2, seed++, gs, rows);
    RunM2Case(shapes[5], DType::kBF16, DType::kF32, false, 0, seed++, gs, rows);
  }
}

}  // namespace
}  // namespace mambaserve
