#include "layers/linear.h"

#include <cmath>
#include <utility>

#include "core/random.h"
#include "gtest/gtest.h"

namespace mambaserve {
namespace {

std::vector<double> Oracle(const std::vector<float>& x, int64_t T, int64_t xs,
                           const std::vector<float>& w, const std::vector<float>* b, int64_t out,
                           int64_t in) {
  std::vector<double> y(T * out);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t o = 0; o < out; ++o) {
      double s = b ? (*b)[o] : 0.0;
      for (int64_t i = 0; i < in; ++i) s += static_cast<double>(x[t * xs + i]) * w[o * in + i];
      y[t * out + o] = s;
    }
  }
  return y;
}

double RelErr(const float* got, int64_t gs, const std::vector<double>& want, int64_t T,
              int64_t out) {
  double num = 0, den = 0;
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t o = 0; o < out; ++o) {
      const double d = got[t * gs + o] - want[t * out + o];
      num += d * d;
      den += want[t * out + o] * want[t * out + o];
    }
  }
  return std::sqrt(num / den);
}

// The oracle of the RMS-normalised product: (x / sqrt(mean(x^2) + eps)) W^T + b, float64.
std::vector<double> RmsOracle(const std::vector<float>& x, const std::vector<float>& w,
                              const std::vector<float>& b, int64_t out, int64_t in, double eps) {
  double ss = 0;
  for (float v : x) ss += static_cast<double>(v) * v;
  const double r = 1.0 / std::sqrt(ss / in + eps);
  std::vector<double> want = Oracle(x, 1, in, w, nullptr, out, in);
  for (int64_t o = 0; o < out; ++o) want[o] = want[o] * r + b[o];
  return want;
}

struct Dims {
  int64_t T, in, out, xs, ys;
};

void CheckOn(Device device, DType dtype, double tol, Dims d = {13, 70, 33, 90, 40},
             DType y_dtype = DType::kF32) {
  Rng rng(3);
  const int64_t T = d.T, in = d.in, out = d.out, xs = d.xs, ys = d.ys;
  auto x = rng.NormalVector(T * xs), w = rng.NormalVector(out * in), b = rng.NormalVector(out);
  RoundTo(dtype, x);
  RoundTo(dtype, w);
  auto lin = Linear::Create(device, dtype, out, in, w, &b);
  ASSERT_TRUE(lin.ok()) << lin.status();
  auto stream = Stream::Create(device);
  ASSERT_TRUE(stream.ok());
  auto blas = BlasHandle::Create(*stream);
  ASSERT_TRUE(blas.ok()) << blas.status();
  auto dx = UploadAs(device, dtype, x);
  const int64_t es = DTypeSize(y_dtype);
  auto dy = Buffer::Allocate(device, T * ys * es);
  ASSERT_TRUE(dx.ok() && dy.ok());
  ASSERT_TRUE(lin->Forward(dx->data(), xs, T, dy->data(), ys, y_dtype, *stream, *blas).ok());
  ASSERT_TRUE(stream->Synchronize().ok());
  std::vector<uint8_t> yb(T * ys * es);
  ASSERT_TRUE(CopyBytes(yb.data(), Device::Cpu(), dy->data(), device, T * ys * es).ok());
  std::vector<float> y(T * ys);
  for (int64_t i = 0; i < T * ys; ++i) y[i] = LoadAsFloat(yb.data(), y_dtype, i);
  EXPECT_LT(RelErr(y.data(), ys, Oracle(x, T, xs, w, &b, out, in), T, out), tol)
      << "T=" << T << " in=" << in << " out=" << out << " y " << DTypeName(y_dtype);
}

// fp32 dot products of 70 terms: relative error ~1e-7.
TEST(Linear, CpuMatchesFloat64Oracle) { CheckOn(Device::Cpu(), DType::kF32, 1e-6); }

TEST(Linear, RefusesBadShapes) {
  std::vector<float> w(6);
  EXPECT_FALSE(Linear::Create(Device::Cpu(), DType::kF32, 2, 4, w).ok());
  EXPECT_FALSE(Linear::Create(Device::Cpu(), DType::kBF16, 2, 3, w).ok());
}

TEST(LinearGpu, MatchesOracle) {
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device; runs on the GPU machine";
  CheckOn(Device::Cuda(0), DType::kF32, 1e-5);   // cuBLAS may use TF32-free fp32: ~1e-6
  CheckOn(Device::Cuda(0), DType::kBF16, 1e-5);  // inputs pre-rounded; fp32 accumulate
  // 1 row of bf16 with in % 8 == 0: the GEMV (odd out, unroll tails: 520 / 8 = 65 vectors per
  // row); 2-5 rows and < 1024 outputs: cuBLAS.
  for (int64_t T : {1, 2, 3, 4, 5})
    CheckOn(Device::Cuda(0), DType::kBF16, 1e-5, {T, 520, 77, 528, 80});
  // 2-16 rows and >= 1024 outputs: the few-row tensor-core kernel - 1 and 2 tiles of 8 rows,
  // partial row tiles, a K slice with a tail (72 = 2 steps of 32 + 8; 200 = 6 + 8), partial W
  // tiles (1031, 8200 outputs), two W tiles per warp (>= 8192 outputs and 9-16 rows), 8 K
  // slices (5120), a bf16 y (rounded once: 2^-9 relative); 17 rows: cuBLAS.
  CheckOn(Device::Cuda(0), DType::kBF16, 1e-5, {2, 72, 1031, 80, 1040});
  CheckOn(Device::Cuda(0), DType::kBF16, 1e-5, {7, 200, 1031, 208, 1031});
  CheckOn(Device::Cuda(0), DType::kBF16, 1e-5, {9, 72, 1031, 80, 1040});
  CheckOn(Device::Cuda(0), DType::kBF16, 1e-5, {12, 200, 8200, 208, 8200});
  CheckOn(Device::Cuda(0), DType::kBF16, 1e-5, {16, 5120, 2560, 5128, 2560});
  CheckOn(Device::Cuda(0), DType::kBF16, 1e-5, {17, 5120, 1100, 5120, 1100});
  CheckOn(Device::Cuda(0), DType::kBF16, 4e-3, {13, 5120, 2560, 5128, 2568}, DType::kBF16);
  // One row: out_proj's and in_proj's shapes, and an odd row count.
  CheckOn(Device::Cuda(0), DType::kBF16, 1e-5, {1, 5120, 2560, 5120, 2560});
  CheckOn(Device::Cuda(0), DType::kBF16, 1e-5, {1, 5120, 2561, 5120, 2563});
  CheckOn(Device::Cuda(0), DType::kBF16, 1e-5, {1, 2560, 10576, 2560, 10576});
}

// The one-row GEMV with its input RMS-normalised: y = (x / rms(x)) W^T + b, rms over the row.
TEST(LinearGpu, RmsNormalizedMatchesOracle) {
  if (!CudaAvailable()) GTEST_SKIP() << "no CUDA device; runs on the GPU machine";
  const Device gpu = Device::Cuda(0);
  for (const auto [in, out] : {std::pair<int64_t, int64_t>{5120, 2560}, {520, 77}}) {
    Rng rng(in + out);
    auto x = rng.NormalVector(in, 3.0f), w = rng.NormalVector(out * in), b = rng.NormalVector(out);
    RoundTo(DType::kBF16, x);
    RoundTo(DType::kBF16, w);
    const float eps = 1e-5f;
    const std::vector<double> want = RmsOracle(x, w, b, out, in, eps);
    auto lin = Linear::Create(gpu, DType::kBF16, out, in, w, &b);
    auto stream = Stream::Create(gpu);
    auto dx = UploadAs(gpu, DType::kBF16, x);
    auto dy = Buffer::Allocate(gpu, out * 4);
    ASSERT_TRUE(lin.ok() && stream.ok() && dx.ok() && dy.ok());
    ASSERT_TRUE(lin->FusesInputRmsNorm(dx->data(), DType::kF32));
    ASSERT_TRUE(lin->ForwardRmsNormalized(dx->data(), dy->data(), DType::kF32, eps, *stream).ok());
    ASSERT_TRUE(stream->Synchronize().ok());
    std::vector<float> y(out);
    ASSERT_TRUE(CopyBytes(y.data(), Device::Cpu(), dy->data(), gpu, out * 4).ok());
    // fp32 sums of <= 5120 exact products: ~1e-6 relative.
    EXPECT_LT(RelErr(y.data(), out, want, 1, out), 1e-5) << in << "x" << out;
  }
}

// The RMS-normalised product on the CPU (f32) against the oracle; refused where it cannot run.
TEST(Linear, RmsNormalizedCpuMatchesOracle) {
  Rng rng(5);
  const int64_t in = 96, out = 13;
  auto x = rng.NormalVector(in, 3.0f), w = rng.NormalVector(out * in), b = rng.NormalVector(out);
  const std::vector<double> want = RmsOracle(x, w, b, out, in, 1e-5);
  auto lin = Linear::Create(Device::Cpu(), DType::kF32, out, in, w, &b);
  ASSERT_TRUE(lin.ok());
  ASSERT_TRUE(lin->FusesInputRmsNorm(x.data(), DType::kF32));
  std::vector<float> y(out);
  ASSERT_TRUE(lin->ForwardRmsNormalized(x.data(), y.data(), DType::kF32, 1e-5f, Stream()).ok());
  EXPECT_LT(RelErr(y.data(), out, want, 1, out), 1e-6);
  EXPECT_FALSE(lin->FusesInputRmsNorm(x.data(), DType::kBF16));
  EXPECT_FALSE(lin->ForwardRmsNormalized(x.data(), y.data(), DType::kBF16, 1e-5f, Stream()).ok());
}

}  // namespace
}  // namespace mambaserve
