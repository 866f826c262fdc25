#include "layers/linear.h"

#include <cmath>

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

struct Dims {
  int64_t T, in, out, xs, ys;
};

void CheckOn(Device device, DType dtype, double tol, Dims d = {13, 70, 33, 90, 40}) {
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
  auto dy = Buffer::Allocate(device, T * ys * 4);
  ASSERT_TRUE(dx.ok() && dy.ok());
  ASSERT_TRUE(lin->Forward(dx->data(), xs, T, dy->data(), ys, DType::kF32, *stream, *blas).ok());
  ASSERT_TRUE(stream->Synchronize().ok());
  std::vector<float> y(T * ys);
  ASSERT_TRUE(CopyBytes(y.data(), Device::Cpu(), dy->data(), device, T * ys * 4).ok());
  EXPECT_LT(RelErr(y.data(), ys, Oracle(x, T, xs, w, &b, out, in), T, out), tol);
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
  // 1-4 rows of bf16 with in % 8 == 0: the small-batch GEMV (odd out, unroll tails: 520 / 8 =
  // 65 vectors per row); 5 rows: cuBLAS again.
  for (int64_t T : {1, 2, 3, 4, 5})
    CheckOn(Device::Cuda(0), DType::kBF16, 1e-5, {T, 520, 77, 528, 80});
  // One row: out_proj's shape and an odd row count take the GEMV that stages each block's rows
  // in shared memory (they fit); in_proj's rows do not fit and take the streaming GEMV.
  CheckOn(Device::Cuda(0), DType::kBF16, 1e-5, {1, 5120, 2560, 5120, 2560});
  CheckOn(Device::Cuda(0), DType::kBF16, 1e-5, {1, 5120, 2561, 5120, 2563});
  CheckOn(Device::Cuda(0), DType::kBF16, 1e-5, {1, 2560, 10576, 2560, 10576});
}

}  // namespace
}  // namespace mambaserve
