// Seeded random fills for tests and benchmarks (CPU memory).
#ifndef MAMBASERVE_CORE_RANDOM_H_
#define MAMBASERVE_CORE_RANDOM_H_

#include <cstdint>
#include <random>
#include <vector>

#include "core/dtype.h"

namespace mambaserve {

class Rng {
 public:
  explicit Rng(uint64_t seed) : engine_(seed) {}
  float Uniform(float lo, float hi) {
    return std::uniform_real_distribution<float>(lo, hi)(engine_);
  }
  float Normal(float mean = 0.0f, float stddev = 1.0f) {
    return std::normal_distribution<float>(mean, stddev)(engine_);
  }
  int64_t Int(int64_t lo, int64_t hi) {  // inclusive bounds
    return std::uniform_int_distribution<int64_t>(lo, hi)(engine_);
  }
  std::vector<float> UniformVector(int64_t n, float lo, float hi) {
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = Uniform(lo, hi);
    return v;
  }
  std::vector<float> NormalVector(int64_t n, float stddev = 1.0f) {
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = Normal(0.0f, stddev);
    return v;
  }

 private:
  std::mt19937_64 engine_;
};

// Rounds every value to the nearest value representable in `dtype`, so a test's float64 oracle
// sees exactly the inputs a 16-bit kernel sees.
inline void RoundTo(DType dtype, std::vector<float>& v) {
  for (auto& x : v) {
    if (dtype == DType::kBF16) x = ToFloat(ToBf16(x));
    if (dtype == DType::kF16) x = ToFloat(ToF16(x));
  }
}

}  // namespace mambaserve

#endif  // MAMBASERVE_CORE_RANDOM_H_
