// CPU Mamba-2 state update against the float64 reference recurrence (reference_scan.h), one
// (sequence, head, channel) at a time.
//
// Tolerances: fp32 1e-5 relative norm error (fp32 recurrence over a few tokens and a dot product
// of N terms, against float64); bf16/f16 inputs are exact in the oracle, so bf16/f16 outputs
// and a bf16 state get 1e-2 (one rounding per stored value, <= 2^-8 relative).
#include "kernels/mamba2_state_update.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/dtype.h"
#include "core/random.h"
#include "core/rel_error.h"
#include "core/stream.h"
#include "gtest/gtest.h"
#include "kernels/mamba_math.h"
#include "kernels/reference_scan.h"

namespace mambaserve {
namespace {

std::vector<uint8_t> Pack(DType t, const std::vector<float>& v) {
  std::vector<uint8_t> b(v.size() * DTypeSize(t));
  for (size_t i = 0; i < v.size(); ++i) StoreFromFloat(b.data(), t, static_cast<int64_t>(i), v[i]);
  return b;
}

struct Shape {
  int64_t batch, Ts, H, P, G, N;
  int64_t first_head = 0, hpg = 0, first_group = 0;  // hpg 0 = H / G
};

struct Opts {
  DType dtype = DType::kF32;
  DType state_dtype = DType::kF32;
  bool z = true;
  int d_mode = 1;  // 0 none, 1 per head, 2 per channel
  bool dt_bias = true;
  bool clamp = false;
  bool spec_out = false;  // state_block_out
};

// All host data of one problem, with padded strides.
struct Problem {
  Shape s;
  Opts o;
  int64_t hpg;
  // strides (elements)
  int64_t xh, xt, xb, bg, bt, bb, dth, dtt, dtb, sp, sh, sblk;
  int64_t num_blocks;
  std::vector<float> x, z, Bv, Cv, dt, dt_bias, A, D, state;
  std::vector<uint8_t> xb_, zb_, Bb_, Cb_, dtb_, yb_, stb_;
  std::vector<int32_t> blk_in, blk_out;

  Problem(const Shape& sh_, const Opts& o_, Rng& rng) : s(sh_), o(o_) {
    hpg = s.hpg > 0 ? s.hpg : s.H / s.G;
    xh = s.P + 1;
    xt = s.H * xh + 2;
    xb = s.Ts * xt + 3;
    bg = s.N + 2;
    bt = s.G * bg + 1;
    bb = s.Ts * bt + 1;
    dth = 2;
    dtt = s.H * dth + 1;
    dtb = s.Ts * dtt + 1;
    sp = s.N + 1;
    sh = s.P * sp + 3;
    sblk = s.H * sh + 7;
    x = rng.NormalVector(s.batch * xb);
    z = rng.NormalVector(s.batch * xb);
    Bv = rng.NormalVector(s.batch * bb);
    Cv = rng.NormalVector(s.batch * bb);
    dt = rng.UniformVector(s.batch * dtb, -3.0f, 1.0f);
    for (auto* v : {&x, &z, &Bv, &Cv, &dt}) RoundTo(o.dtype, *v);
    dt_bias = rng.UniformVector(s.H, -2.0f, 0.5f);
    A = rng.UniformVector(s.H, -4.0f, -0.2f);
    D = rng.UniformVector(s.H * s.P, -1.0f, 1.0f);
    // Blocks: sequence b reads block 1 + 2b (every third sequence the null block) and, in
    // spec mode, writes token t to block 2 + (b * Ts + t) * 2 ... keep them distinct.
    num_blocks = 2 + s.batch * (s.Ts + 1) * 2;
    state = rng.NormalVector(num_blocks * sblk, 0.7f);
    RoundTo(o.state_dtype, state);
    for (int64_t b = 0; b < s.batch; ++b) {
      blk_in.push_back(b % 3 == 1 ? 0 : static_cast<int32_t>(1 + b));
      for (int64_t t = 0; t < s.Ts; ++t) {
        // token 1 of sequence 0 is not written (0) to test that.
        const int32_t k = (b == 0 && t == 1) ? 0 : static_cast<int32_t>(1 + s.batch + b * s.Ts + t);
        blk_out.push_back(k);
      }
    }
    xb_ = Pack(o.dtype, x);
    zb_ = Pack(o.dtype, z);
    Bb_ = Pack(o.dtype, Bv);
    Cb_ = Pack(o.dtype, Cv);
    dtb_ = Pack(o.dtype, dt);
    yb_ = Pack(o.dtype, std::vector<float>(s.batch * xb, 768.0f));
    stb_ = Pack(o.state_dtype, state);
  }

  Mamba2StateUpdateParams Params() {
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
    p.dtype = o.dtype;
    p.x = xb_.data();
    p.x_batch_stride = xb, p.x_token_stride = xt, p.x_head_stride = xh;
    p.z = o.z ? zb_.data() : nullptr;
    p.z_batch_stride = xb, p.z_token_stride = xt, p.z_head_stride = xh;
    p.B = Bb_.data();
    p.B_batch_stride = bb, p.B_token_stride = bt, p.B_group_stride = bg;
    p.C = Cb_.data();
    p.C_batch_stride = bb, p.C_token_stride = bt, p.C_group_stride = bg;
    p.y = yb_.data();
    p.y_batch_stride = xb, p.y_token_stride = xt, p.y_head_stride = xh;
    p.dt_dtype = o.dtype;
    p.dt = dtb_.data();
    p.dt_batch_stride = dtb, p.dt_token_stride = dtt, p.dt_head_stride = dth;
    p.dt_bias = o.dt_bias ? dt_bias.data() : nullptr;
    p.dt_softplus = true;
    if (o.clamp) {
      p.dt_min = 0.05f;
      p.dt_max = 0.6f;
    }
    p.A = A.data();
    p.D = o.d_mode == 0 ? nullptr : D.data();
    p.d_per_channel = o.d_mode == 2;
    p.state = stb_.data();
    p.state_dtype = o.state_dtype;
    p.num_blocks = num_blocks;
    p.state_block_stride = sblk, p.state_head_stride = sh, p.state_p_stride = sp;
    p.state_block_in = blk_in.data();
    p.state_block_out = o.spec_out ? blk_out.data() : nullptr;
    return p;
  }
  double StateAt(int64_t k, int64_t h, int64_t pp, int64_t n) const {
    return LoadAsFloat(stb_.data(), o.state_dtype, k * sblk + h * sh + pp * sp + n);
  }
  double Y(int64_t b, int64_t t, int64_t h, int64_t pp) const {
    return LoadAsFloat(yb_.data(), o.dtype, b * xb + t * xt + h * xh + pp);
  }
};

void RunCase(const Shape& s, const Opts& o, uint64_t seed) {
  SCOPED_TRACE(absl::StrCat("B=", s.batch, " Ts=", s.Ts, " H=", s.H, " P=", s.P, " G=", s.G,
                            " N=", s.N, " fh=", s.first_head, " fg=", s.first_group, " ",
                            DTypeName(o.dtype), " state ", DTypeName(o.state_dtype), " z=", o.z,
                            " D=", o.d_mode, " clamp=", o.clamp, " spec=", o.spec_out));
  Rng rng(seed);
  Problem pr(s, o, rng);
  const std::vector<uint8_t> state_before = pr.stb_;
  Mamba2StateUpdateParams p = pr.Params();
  ASSERT_TRUE(RunMamba2StateUpdate(p, Stream()).ok());

  std::vector<double> ref_y, got_y, ref_s, got_s;
  std::vector<bool> written(pr.num_blocks, false);
  for (int64_t b = 0; b < s.batch; ++b) {
    const int64_t kin = pr.blk_in[b];
    for (int64_t h = 0; h < s.H; ++h) {
      const int64_t g = (s.first_head + h) / pr.hpg - s.first_group;
      for (int64_t pp = 0; pp < s.P; ++pp) {
        if (kin == 0) {
          for (int64_t t = 0; t < s.Ts; ++t) ASSERT_EQ(pr.Y(b, t, h, pp), 768.0);
          continue;
        }
        std::vector<double> x(s.Ts), dt(s.Ts), A(s.N, pr.A[h]), B(s.Ts * s.N), C(s.Ts * s.N),
            h0(s.N);
        for (int64_t t = 0; t < s.Ts; ++t) {
          x[t] = pr.x[b * pr.xb + t * pr.xt + h * pr.xh + pp];
          double d =
              pr.dt[b * pr.dtb + t * pr.dtt + h * pr.dth] + (o.dt_bias ? pr.dt_bias[h] : 0.0);
          d = Softplus<double>(d);
          if (o.clamp) d = std::min(std::max(d, 0.05), 0.6);
          dt[t] = d;
          for (int64_t n = 0; n < s.N; ++n) {
            B[t * s.N + n] = pr.Bv[b * pr.bb + t * pr.bt + g * pr.bg + n];
            C[t * s.N + n] = pr.Cv[b * pr.bb + t * pr.bt + g * pr.bg + n];
          }
        }
        for (int64_t n = 0; n < s.N; ++n)
          h0[n] = pr.state[kin * pr.sblk + h * pr.sh + pp * pr.sp + n];
        ReferenceChannelScan rs;
        rs.x = x;
        rs.dt = dt;
        rs.A = A;
        rs.B = B;
        rs.C = C;
        rs.D = o.d_mode == 0 ? 0.0 : (o.d_mode == 1 ? pr.D[h] : pr.D[h * s.P + pp]);
        rs.h0 = h0;
        const ReferenceScanResult r = RunReferenceChannelScan(rs);
        for (int64_t t = 0; t < s.Ts; ++t) {
          double y = r.y[t];
          if (o.z) {
            const double zz = pr.z[b * pr.xb + t * pr.xt + h * pr.xh + pp];
            y *= zz / (1.0 + std::exp(-zz));
          }
          ref_y.push_back(y);
          got_y.push_back(pr.Y(b, t, h, pp));
          int64_t k = -1;
          if (o.spec_out)
            k = pr.blk_out[b * s.Ts + t];
          else if (t == s.Ts - 1)
            k = kin;
          if (k <= 0) continue;
          written[k] = true;
          for (int64_t n = 0; n < s.N; ++n) {
            ref_s.push_back(r.h_all[t * s.N + n]);
            got_s.push_back(pr.StateAt(k, h, pp, n));
          }
        }
      }
    }
  }
  const double tol = (o.dtype == DType::kF32 && o.state_dtype == DType::kF32) ? 1e-5 : 1e-2;
  EXPECT_LT(RelRmsError(got_y, ref_y), tol);
  EXPECT_LT(RelRmsError(got_s, ref_s), o.state_dtype == DType::kF32 ? 1e-5 : 1e-2);
  // Blocks that were not written are bit-identical.
  const int64_t es = DTypeSize(o.state_dtype);
  for (int64_t k = 0; k < pr.num_blocks; ++k) {
    if (written[k]) continue;
    for (int64_t i = 0; i < pr.sblk * es; ++i)
      ASSERT_EQ(pr.stb_[k * pr.sblk * es + i], state_before[k * pr.sblk * es + i]) << "block " << k;
  }
}

TEST(Mamba2StateUpdateCpu, MatchesReference) {
  uint64_t seed = 1;
  const std::vector<Shape> shapes = {
      {4, 1, 4, 8, 1, 16},          {5, 1, 6, 5, 3, 7},  // odd sizes, G > 1
      {3, 1, 3, 4, 2, 9, 6, 4, 1},   // straddling rank: H=12,G=3,tp=2 rank 1 (6 + j)/4 - 1
      {4, 3, 4, 6, 2, 12},           // multi-token
      {2, 2, 2, 3, 1, 33, 1, 4, 0},  // tp % G: G=1 replicated, first_head=1
  };
  for (const Shape& s : shapes) {
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
      for (DType sdt : {DType::kF32, DType::kBF16}) {
        Opts o;
        o.dtype = dt;
        o.state_dtype = sdt;
        o.d_mode = static_cast<int>(seed % 3);
        o.z = seed % 2 == 0;
        o.clamp = seed % 4 == 1;
        o.dt_bias = seed % 5 != 2;
        o.spec_out = s.Ts > 1 && seed % 2 == 1;
        RunCase(s, o, seed++);
      }
    }
  }
}

// Ts tokens at once (in place, and writing each token's state to its own block) equal Ts
// single-token calls in sequence, bit for bit.
TEST(Mamba2StateUpdateCpu, MultiTokenEqualsSequential) {
  uint64_t seed = 50;
  for (DType sdt : {DType::kF32, DType::kBF16}) {
    for (bool spec_out : {false, true}) {
      SCOPED_TRACE(absl::StrCat(DTypeName(sdt), " spec_out=", spec_out));
      const Shape s{3, 4, 4, 8, 2, 16};
      Opts o;
      o.state_dtype = sdt;
      o.dtype = DType::kBF16;
      o.spec_out = spec_out;
      Rng rng(seed++);
      Problem multi(s, o, rng);
      Problem single = multi;
      Mamba2StateUpdateParams pm = multi.Params();
      ASSERT_TRUE(RunMamba2StateUpdate(pm, Stream()).ok());
      Mamba2StateUpdateParams ps = single.Params();
      ps.tokens_per_seq = 1;
      ps.state_block_out = nullptr;
      const int64_t es = DTypeSize(o.dtype);
      for (int64_t t = 0; t < s.Ts; ++t) {
        Mamba2StateUpdateParams q = ps;
        q.x = single.xb_.data() + t * single.xt * es;
        q.z = single.zb_.data() + t * single.xt * es;
        q.B = single.Bb_.data() + t * single.bt * es;
        q.C = single.Cb_.data() + t * single.bt * es;
        q.dt = single.dtb_.data() + t * single.dtt * es;
        q.y = single.yb_.data() + t * single.xt * es;
        ASSERT_TRUE(RunMamba2StateUpdate(q, Stream()).ok());
        if (!spec_out) continue;
        // Compare the state after token t with the block the multi-token call wrote it to.
        for (int64_t b = 0; b < s.batch; ++b) {
          const int32_t kin = single.blk_in[b], kout = multi.blk_out[b * s.Ts + t];
          if (kin == 0 || kout == 0) continue;
          for (int64_t h = 0; h < s.H; ++h)
            for (int64_t pp = 0; pp < s.P; ++pp)
              for (int64_t n = 0; n < s.N; ++n)
                ASSERT_EQ(single.StateAt(kin, h, pp, n), multi.StateAt(kout, h, pp, n));
        }
      }
      ASSERT_EQ(single.yb_, multi.yb_);
      if (!spec_out) ASSERT_EQ(single.stb_, multi.stb_);
    }
  }
}

TEST(Mamba2StateUpdateCpu, RejectsBadArguments) {
  Rng rng(7);
  Problem pr(Shape{2, 1, 4, 4, 2, 8}, Opts{}, rng);
  Mamba2StateUpdateParams p = pr.Params();
  p.num_groups = 3;  // 4 % 3 != 0
  EXPECT_FALSE(RunMamba2StateUpdate(p, Stream()).ok());
  p = pr.Params();
  pr.blk_in[0] = static_cast<int32_t>(pr.num_blocks);
  EXPECT_FALSE(RunMamba2StateUpdate(p, Stream()).ok());
  pr.blk_in[0] = 1;
  p.state_dtype = DType::kF16;
  EXPECT_FALSE(RunMamba2StateUpdate(p, Stream()).ok());
}

}  // namespace
}  // namespace mambaserve
