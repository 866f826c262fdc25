// CPU gated RMSNorm (fused and split forms) against a float64 oracle written here.
//
// Tolerances: fp32 1e-5 relative norm error (fp32 sums of <= a few hundred squares and one
// rsqrt, against float64); bf16/f16 1e-2 (inputs are exact in the oracle; the output is rounded
// once, relative error <= 2^-8 per element).
#include "kernels/gated_rmsnorm.h"

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
double Tol(DType t) { return t == DType::kF32 ? 1e-5 : 1e-2; }

struct Inputs {
  int64_t T, I, gs;
  DType dt;
  bool has_z;
  int64_t ys, zs;
  std::vector<float> y, z, w;
  std::vector<uint8_t> yb, zb, wb;
};

Inputs MakeInputs(int64_t T, int64_t I, int64_t gs, DType dt, bool has_z, Rng& rng) {
  Inputs in{T, I, gs, dt, has_z, I + 5, I + 2, {}, {}, {}, {}, {}, {}};
  in.y = rng.NormalVector(T * in.ys, 1.5f);
  in.z = rng.NormalVector(T * in.zs, 2.0f);
  in.w = rng.UniformVector(I, 0.5f, 1.5f);
  RoundTo(dt, in.y);
  RoundTo(dt, in.z);
  RoundTo(dt, in.w);
  in.yb = Pack(dt, in.y);
  in.zb = Pack(dt, in.z);
  in.wb = Pack(dt, in.w);
  return in;
}

// Oracle over all I channels: (T, I).
std::vector<double> Oracle(const Inputs& in, bool nbg, double eps) {
  std::vector<double> o(in.T * in.I);
  for (int64_t t = 0; t < in.T; ++t) {
    for (int64_t g0 = 0; g0 < in.I; g0 += in.gs) {
      double ss = 0;
      std::vector<double> v(in.gs), gate(in.gs);
      for (int64_t i = 0; i < in.gs; ++i) {
        const double y = in.y[t * in.ys + g0 + i];
        const double z = in.z[t * in.zs + g0 + i];
        gate[i] = in.has_z ? z / (1.0 + std::exp(-z)) : 1.0;
        v[i] = nbg ? y : y * gate[i];
        ss += v[i] * v[i];
      }
      const double r = 1.0 / std::sqrt(ss / in.gs + eps);
      for (int64_t i = 0; i < in.gs; ++i) {
        o[t * in.I + g0 + i] = v[i] * r * in.w[g0 + i] * (nbg ? gate[i] : 1.0);
      }
    }
  }
  return o;
}

GatedRmsNormParams Base(Inputs& in, int64_t c0, int64_t dim, bool nbg, float eps,
                        std::vector<uint8_t>& out, int64_t os) {
  const int64_t es = DTypeSize(in.dt);
  GatedRmsNormParams p;
  p.num_tokens = in.T;
  p.dim = dim;
  p.dtype = in.dt;
  p.y = in.yb.data() + c0 * es;
  p.y_row_stride = in.ys;
  p.z = in.has_z ? in.zb.data() + c0 * es : nullptr;
  p.z_row_stride = in.zs;
  p.weight = in.wb.data() + c0 * es;
  p.weight_dtype = in.dt;
  p.out = out.data() + c0 * es;
  p.out_row_stride = os;
  p.group_size = in.gs;
  p.channel_offset = c0;
  p.eps = eps;
  p.norm_before_gate = nbg;
  return p;
}

TEST(GatedRmsNormCpu, FusedMatchesOracle) {
  uint64_t seed = 1;
  struct Shape {
    int64_t T, G, gs;
  };
  for (Shape sh : {Shape{5, 1, 64}, Shape{3, 3, 37}, Shape{7, 4, 16}, Shape{1, 2, 129}}) {
    for (DType dt : {DType::kF32, DType::kBF16, DType::kF16}) {
      for (bool nbg : {false, true}) {
        for (bool has_z : {true, false}) {
          SCOPED_TRACE(absl::StrCat("T=", sh.T, " G=", sh.G, " gs=", sh.gs, " ", DTypeName(dt),
                                    " nbg=", nbg, " z=", has_z));
          Rng rng(seed++);
          const int64_t I = sh.G * sh.gs, os = I + 3;
          Inputs in = MakeInputs(sh.T, I, sh.gs, dt, has_z, rng);
          std::vector<uint8_t> out = Pack(dt, std::vector<float>(sh.T * os, 768.0f));
          GatedRmsNormParams p = Base(in, 0, I, nbg, 1e-5f, out, os);
          ASSERT_TRUE(RunGatedRmsNorm(p, Stream()).ok());
          const std::vector<double> ref = Oracle(in, nbg, 1e-5);
          std::vector<double> got;
          for (int64_t t = 0; t < sh.T; ++t) {
            for (int64_t c = 0; c < I; ++c) got.push_back(LoadAsFloat(out.data(), dt, t * os + c));
            for (int64_t c = I; c < os; ++c)
              ASSERT_EQ(LoadAsFloat(out.data(), dt, t * os + c), 768.0f);
          }
          EXPECT_LT(RelRmsError(got, ref), Tol(dt));
        }
      }
    }
  }
}

// Without a weight the norm scales by 1 (the model folds the weight into out_proj).
TEST(GatedRmsNormCpu, NullWeightIsOne) {
  Rng rng(77);
  for (DType dt : {DType::kF32, DType::kBF16}) {
    for (bool nbg : {false, true}) {
      Inputs in = MakeInputs(3, 96, 32, dt, true, rng);
      in.w.assign(in.I, 1.0f);
      std::vector<uint8_t> out = Pack(dt, std::vector<float>(in.T * in.I, 0.0f));
      GatedRmsNormParams p = Base(in, 0, in.I, nbg, 1e-5f, out, in.I);
      p.weight = nullptr;
      ASSERT_TRUE(RunGatedRmsNorm(p, Stream()).ok());
      std::vector<double> got;
      for (int64_t i = 0; i < in.T * in.I; ++i) got.push_back(LoadAsFloat(out.data(), dt, i));
      EXPECT_LT(RelRmsError(got, Oracle(in, nbg, 1e-5)), Tol(dt)) << DTypeName(dt) << nbg;
    }
  }
}

// Channels split over `tp` "ranks" in contiguous slices that straddle groups: pass 1 per rank,
// sums added on the host (the all-reduce), pass 2 per rank, equals the fused norm and the oracle.
TEST(GatedRmsNormCpu, SplitFormEqualsFused) {
  uint64_t seed = 100;
  struct Shape {
    int64_t T, G, gs, tp;
  };
  for (Shape sh : {Shape{4, 3, 8, 2}, Shape{3, 1, 48, 4}, Shape{5, 2, 21, 3}, Shape{2, 6, 6, 4}}) {
    for (DType dt : {DType::kF32, DType::kBF16}) {
      for (bool nbg : {false, true}) {
        for (bool local_sums : {false, true}) {
          SCOPED_TRACE(absl::StrCat("T=", sh.T, " G=", sh.G, " gs=", sh.gs, " tp=", sh.tp, " ",
                                    DTypeName(dt), " nbg=", nbg, " local=", local_sums));
          Rng rng(seed++);
          const int64_t I = sh.G * sh.gs, os = I + 1, T = sh.T;
          ASSERT_EQ(I % sh.tp, 0);
          const int64_t per = I / sh.tp;
          Inputs in = MakeInputs(T, I, sh.gs, dt, true, rng);
          std::vector<uint8_t> fused = Pack(dt, std::vector<float>(T * os, 768.0f));
          std::vector<uint8_t> split = fused;
          GatedRmsNormParams pf = Base(in, 0, I, nbg, 1e-5f, fused, os);
          ASSERT_TRUE(RunGatedRmsNorm(pf, Stream()).ok());
          // Pass 1: each rank writes its partial sums; the host adds them into `total`.
          std::vector<float> total(T * sh.G, 0.0f);
          std::vector<std::vector<float>> rank_sums(sh.tp);
          for (int64_t r = 0; r < sh.tp; ++r) {
            GatedRmsNormParams p = Base(in, r * per, per, nbg, 1e-5f, split, os);
            p.mode = GatedRmsNormMode::kPartialSums;
            const int64_t g0 = (r * per) / sh.gs, g1 = (r * per + per - 1) / sh.gs;
            if (local_sums) {
              rank_sums[r].assign(T * (g1 - g0 + 1), -1.0f);
              p.sums_group_offset = g0;
              p.sums_row_stride = g1 - g0 + 1;
            } else {
              rank_sums[r].assign(T * sh.G, 0.0f);  // zeroed before an all-reduce
              p.sums_row_stride = sh.G;
            }
            p.sums = rank_sums[r].data();
            ASSERT_TRUE(RunGatedRmsNorm(p, Stream()).ok());
            for (int64_t t = 0; t < T; ++t)
              for (int64_t g = g0; g <= g1; ++g)
                total[t * sh.G + g] +=
                    rank_sums[r][t * p.sums_row_stride + g - p.sums_group_offset];
          }
          // The sums themselves against float64.
          std::vector<double> ref_ss, got_ss;
          for (int64_t t = 0; t < T; ++t)
            for (int64_t g = 0; g < sh.G; ++g) {
              double ss = 0;
              for (int64_t i = 0; i < sh.gs; ++i) {
                const double y = in.y[t * in.ys + g * sh.gs + i],
                             z = in.z[t * in.zs + g * sh.gs + i];
                const double v = nbg ? y : y * z / (1.0 + std::exp(-z));
                ss += v * v;
              }
              ref_ss.push_back(ss);
              got_ss.push_back(total[t * sh.G + g]);
            }
          EXPECT_LT(RelRmsError(got_ss, ref_ss), 1e-5);
          for (int64_t r = 0; r < sh.tp; ++r) {
            GatedRmsNormParams p = Base(in, r * per, per, nbg, 1e-5f, split, os);
            p.mode = GatedRmsNormMode::kApply;
            p.sums = total.data();
            p.sums_row_stride = sh.G;
            ASSERT_TRUE(RunGatedRmsNorm(p, Stream()).ok());
          }
          const std::vector<double> ref = Oracle(in, nbg, 1e-5);
          std::vector<double> got_f, got_s;
          for (int64_t t = 0; t < T; ++t)
            for (int64_t c = 0; c < I; ++c) {
              got_f.push_back(LoadAsFloat(fused.data(), dt, t * os + c));
              got_s.push_back(LoadAsFloat(split.data(), dt, t * os + c));
            }
          EXPECT_LT(RelRmsError(got_s, ref), Tol(dt));
          EXPECT_LT(RelRmsError(got_s, got_f), dt == DType::kF32 ? 1e-6 : 1e-2);
        }
      }
    }
  }
}

TEST(GatedRmsNormCpu, FusedRejectsPartialGroups) {
  Rng rng(3);
  Inputs in = MakeInputs(2, 16, 8, DType::kF32, true, rng);
  std::vector<uint8_t> out = Pack(DType::kF32, std::vector<float>(2 * 17, 0.0f));
  GatedRmsNormParams p = Base(in, 4, 8, false, 1e-5f, out, 17);
  EXPECT_FALSE(RunGatedRmsNorm(p, Stream()).ok());
  p.mode = GatedRmsNormMode::kApply;
  EXPECT_FALSE(RunGatedRmsNorm(p, Stream()).ok());  // no sums
}

}  // namespace
}  // namespace mambaserve
