// Helpers of the CUDA-vs-CPU kernel tests: host byte arrays of any dtype, device copies of
// them, and the skip for machines without a GPU.
#ifndef MAMBASERVE_KERNELS_GPU_TEST_UTIL_H_
#define MAMBASERVE_KERNELS_GPU_TEST_UTIL_H_

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "core/buffer.h"
#include "core/device.h"
#include "core/dtype.h"
#include "core/random.h"
#include "core/rel_error.h"
#include "core/stream.h"
#include "gtest/gtest.h"

#define SKIP_WITHOUT_GPU() \
  if (!::mambaserve::CudaAvailable()) GTEST_SKIP() << "no CUDA device: CUDA-vs-CPU checks skipped"

namespace mambaserve::gpu_test {

using Bytes = std::vector<uint8_t>;

inline Bytes Pack(DType t, const std::vector<float>& v) {
  Bytes b(v.size() * DTypeSize(t));
  for (size_t i = 0; i < v.size(); ++i) StoreFromFloat(b.data(), t, static_cast<int64_t>(i), v[i]);
  return b;
}
template <typename T>
Bytes AsBytes(const std::vector<T>& v) {
  Bytes b(v.size() * sizeof(T));
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}
inline Bytes RandomBytes(DType t, int64_t n, Rng& rng, float stddev = 1.0f) {
  return Pack(t, rng.NormalVector(n, stddev));
}

// Relative RMS error of two arrays of dtype t (core/rel_error.h).
inline std::vector<double> Unpack(DType t, const Bytes& b) {
  std::vector<double> v(b.size() / DTypeSize(t));
  for (size_t i = 0; i < v.size(); ++i) v[i] = LoadAsFloat(b.data(), t, static_cast<int64_t>(i));
  return v;
}
inline double RelErr(DType t, const Bytes& ref, const Bytes& got) {
  return RelRmsError(Unpack(t, got), Unpack(t, ref));
}
// fp32: same math, different summation order and expf; 16-bit: the two sides may round a
// value to neighbouring 16-bit numbers.
inline double Tol(DType t) { return t == DType::kF32 ? 1e-5 : 1e-2; }

// A device copy of a host array.
struct Dev {
  Buffer buf;
  static Dev Of(const Bytes& h) {
    Dev d;
    auto b = Buffer::Allocate(Device::Cuda(0), std::max<int64_t>(16, h.size()));
    EXPECT_TRUE(b.ok()) << b.status();
    d.buf = std::move(*b);
    if (!h.empty()) {
      EXPECT_TRUE(CopyBytes(d.buf.data(), Device::Cuda(0), h.data(), Device::Cpu(), h.size()).ok());
    }
    return d;
  }
  Bytes Get(size_t n) const {
    Bytes h(n);
    EXPECT_TRUE(CopyBytes(h.data(), Device::Cpu(), buf.data(), Device::Cuda(0), n).ok());
    return h;
  }
  void* ptr() const { return buf.data(); }
};

inline Stream GpuStream() {
  auto s = Stream::Create(Device::Cuda(0));
  EXPECT_TRUE(s.ok()) << s.status();
  return std::move(*s);
}

}  // namespace mambaserve::gpu_test

#endif  // MAMBASERVE_KERNELS_GPU_TEST_UTIL_H_
