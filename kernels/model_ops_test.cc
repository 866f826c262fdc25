#include "kernels/model_ops.h"

#include <cmath>
#include <vector>

#include "core/buffer.h"
#include "core/random.h"
#include "core/rel_error.h"
#include "gtest/gtest.h"

namespace mambaserve {
namespace {

TEST(AddRmsNorm, MatchesFloat64OracleWithAndWithoutResidual) {
  Rng rng(7);
  const int64_t T = 5, D = 37;
  for (bool add : {false, true}) {
    auto x = rng.NormalVector(T * D), res = rng.NormalVector(T * D),
         w = rng.UniformVector(D, 0.5, 1.5);
    std::vector<float> res_out = res, out(T * D, NAN);
    AddRmsNormParams p{T,   D,        x.data(),    DType::kF32, res_out.data(), DType::kF32,
                       add, w.data(), DType::kF32, out.data(),  DType::kF32,    1e-5f};
    ASSERT_TRUE(RunAddRmsNorm(p, Stream()).ok());
    std::vector<double> want(T * D), want_res(T * D);
    for (int64_t t = 0; t < T; ++t) {
      double ss = 0;
      for (int64_t c = 0; c < D; ++c) {
        want_res[t * D + c] = x[t * D + c] + (add ? res[t * D + c] : 0.0);
        ss += want_res[t * D + c] * want_res[t * D + c];
      }
      const double inv = 1.0 / std::sqrt(ss / D + 1e-5);
      for (int64_t c = 0; c < D; ++c) want[t * D + c] = want_res[t * D + c] * inv * w[c];
    }
    EXPECT_LT(RelRmsError(out, want), 1e-6);  // fp32 sum of 37 terms: ~1e-7 relative
    EXPECT_LT(RelRmsError(res_out, want_res), 1e-7);
  }
}

TEST(AddRmsNorm, Bf16OutputAndResidualRounding) {
  Rng rng(8);
  const int64_t T = 3, D = 64;
  auto x = rng.NormalVector(T * D), w = rng.UniformVector(D, 0.5, 1.5);
  std::vector<bf16> res(T * D), out(T * D);
  for (int64_t i = 0; i < T * D; ++i) res[i] = ToBf16(rng.Normal());
  std::vector<bf16> res0 = res;
  AddRmsNormParams p{T,    D,        x.data(),    DType::kF32, res.data(),   DType::kBF16,
                     true, w.data(), DType::kF32, out.data(),  DType::kBF16, 1e-5f};
  ASSERT_TRUE(RunAddRmsNorm(p, Stream()).ok());
  for (int64_t i = 0; i < T * D; ++i) {
    EXPECT_EQ(res[i].bits, ToBf16(x[i] + ToFloat(res0[i])).bits);
  }
}

TEST(Embedding, VocabParallelSlicesSumToTheFullLookup) {
  Rng rng(9);
  const int64_t V = 10, D = 4, T = 6;
  auto table = rng.NormalVector(V * D);
  std::vector<int32_t> ids{0, 9, 3, 5, 4, 7};
  std::vector<float> sum(T * D, 0.f);
  for (int64_t begin : {0, 5}) {  // two ranks of 5 rows
    std::vector<float> out(T * D, NAN);
    EmbeddingParams p{T, D,          ids.data(), table.data() + begin * D, DType::kF32, begin,
                      5, out.data(), DType::kF32};
    ASSERT_TRUE(RunEmbedding(p, Stream()).ok());
    for (int64_t i = 0; i < T * D; ++i) sum[i] += out[i];
  }
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t c = 0; c < D; ++c) EXPECT_EQ(sum[t * D + c], table[ids[t] * D + c]);
  }
}

TEST(CopyRows, GatherAndConvert) {
  std::vector<float> src{1, 2, 3, 9, 4, 5, 6, 9, 7, 8, 10, 9};  // 3 rows, stride 4, 3 cols
  std::vector<int32_t> idx{2, 0};
  std::vector<bf16> dst(6);
  CopyRowsParams p{2, 3, idx.data(), src.data(), 4, DType::kF32, dst.data(), 3, DType::kBF16};
  ASSERT_TRUE(RunCopyRows(p, Stream()).ok());
  const float want[6] = {7, 8, 10, 1, 2, 3};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(ToFloat(dst[i]), want[i]);
  p.src_row_stride = 2;
  EXPECT_FALSE(RunCopyRows(p, Stream()).ok());
}

// CUDA against CPU on the same inputs; skipped where there is no GPU.
// AddRmsNorm on the GPU equals the CPU version: the 16-byte vector kernel (dims a multiple of
// 256), the register-cached one (rows up to 8192, odd sizes included) and the generic one above
// it; x and out in f32 or bf16, residual in f32 or bf16, with and without the residual add; the
// updated residual is compared too.
TEST(ModelOpsGpu, AddRmsNormMatchesCpu) {
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device; this test runs on the GPU machine";
  auto stream = Stream::Create(Device::Cuda(0));
  ASSERT_TRUE(stream.ok());
  Rng rng(12);
  const DType f32 = DType::kF32, bf = DType::kBF16;
  for (int64_t D : {300, 768, 2560, 8192, 9000}) {
    for (DType xd : {f32, bf}) {
      for (DType rd : {f32, bf}) {
        for (bool add : {true, false}) {
          const DType od = xd == f32 ? bf : (rd == f32 ? bf : f32);  // every pairing occurs
          SCOPED_TRACE(::testing::Message()
                       << "D=" << D << " x " << DTypeName(xd) << " residual " << DTypeName(rd)
                       << " out " << DTypeName(od) << " add=" << add);
          const int64_t T = 5;
          auto pack = [&](DType t, const std::vector<float>& v) {
            std::vector<uint8_t> b(v.size() * DTypeSize(t));
            for (size_t i = 0; i < v.size(); ++i)
              StoreFromFloat(b.data(), t, static_cast<int64_t>(i), v[i]);
            return b;
          };
          const std::vector<uint8_t> x = pack(xd, rng.NormalVector(T * D)),
                                     res = pack(rd, rng.NormalVector(T * D));
          const auto w = rng.UniformVector(D, 0.5, 1.5);
          auto up = [&](const void* h, int64_t bytes) {
            auto b = Buffer::Allocate(Device::Cuda(0), bytes);
            EXPECT_TRUE(b.ok());
            EXPECT_TRUE(CopyBytes(b->data(), b->device(), h, Device::Cpu(), bytes).ok());
            return std::move(*b);
          };
          const int64_t os = DTypeSize(od);
          Buffer dx = up(x.data(), x.size()), dres = up(res.data(), res.size()),
                 dw = up(w.data(), D * 4);
          auto dout = Buffer::Allocate(Device::Cuda(0), T * D * os);
          ASSERT_TRUE(dout.ok());
          AddRmsNormParams gp{T,   D,         dx.data(), xd,           dres.data(), rd,
                              add, dw.data(), f32,       dout->data(), od,          1e-5f};
          ASSERT_TRUE(RunAddRmsNorm(gp, *stream).ok());
          ASSERT_TRUE(stream->Synchronize().ok());
          std::vector<uint8_t> gout(T * D * os), cout(T * D * os), gres(res.size());
          ASSERT_TRUE(
              CopyBytes(gout.data(), Device::Cpu(), dout->data(), dout->device(), gout.size())
                  .ok());
          ASSERT_TRUE(
              CopyBytes(gres.data(), Device::Cpu(), dres.data(), dres.device(), gres.size()).ok());
          std::vector<uint8_t> cres = res;
          AddRmsNormParams cp{T,   D,        x.data(), xd,          cres.data(), rd,
                              add, w.data(), f32,      cout.data(), od,          1e-5f};
          ASSERT_TRUE(RunAddRmsNorm(cp, Stream()).ok());
          for (int64_t i = 0; i < T * D; ++i) {
            // The residual is an exact add (and rounding): identical bits.
            ASSERT_EQ(LoadAsFloat(gres.data(), rd, i), LoadAsFloat(cres.data(), rd, i)) << i;
            // Outputs may differ by one bf16 rounding step where the fp32 sums differ in order
            // (fp32 outputs: by the sum's last bits).
            const float c = LoadAsFloat(cout.data(), od, i), g = LoadAsFloat(gout.data(), od, i);
            ASSERT_NEAR(g, c, (od == f32 ? 1e-5 : 1e-2) * std::abs(c) + 1e-5) << i;
          }
        }
      }
    }
  }
}

TEST(ModelOpsGpu, EmbeddingMatchesTable) {
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device; this test runs on the GPU machine";
  auto stream = Stream::Create(Device::Cuda(0));
  ASSERT_TRUE(stream.ok());
  Rng rng(10);
  const int64_t T = 7, D = 300;
  auto x = rng.NormalVector(T * D);
  auto up = [&](const void* h, int64_t bytes) {
    auto b = Buffer::Allocate(Device::Cuda(0), bytes);
    EXPECT_TRUE(b.ok());
    EXPECT_TRUE(CopyBytes(b->data(), b->device(), h, Device::Cpu(), bytes).ok());
    return std::move(*b);
  };
  Buffer dx = up(x.data(), T * D * 4);
  std::vector<int32_t> ids{3, 1, 4, 1, 5, 6, 2};  // rows of the 7-row table x
  Buffer dids = up(ids.data(), T * 4);
  auto demb = Buffer::Allocate(Device::Cuda(0), T * D * 4);
  EmbeddingParams ep{T,
                     D,
                     static_cast<const int32_t*>(dids.data()),
                     dx.data(),
                     DType::kF32,
                     0,
                     7,
                     demb->data(),
                     DType::kF32};
  ASSERT_TRUE(RunEmbedding(ep, *stream).ok());
  ASSERT_TRUE(stream->Synchronize().ok());
  std::vector<float> gemb(T * D);
  ASSERT_TRUE(CopyBytes(gemb.data(), Device::Cpu(), demb->data(), demb->device(), T * D * 4).ok());
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t c = 0; c < D; ++c) EXPECT_EQ(gemb[t * D + c], x[ids[t] * D + c]);
  }
}

}  // namespace
}  // namespace mambaserve
