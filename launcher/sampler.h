// Token sampling from one row of logits: greedy, or temperature + top-k + top-p with a
// per-request seeded generator (the same seed gives the same tokens).
#ifndef MAMBASERVE_LAUNCHER_SAMPLER_H_
#define MAMBASERVE_LAUNCHER_SAMPLER_H_

#include <cstdint>
#include <random>

#include "absl/status/status.h"

namespace mambaserve {

struct SamplingOptions {
  float temperature = 0.0f;  // 0 = greedy
  int32_t top_k = 0;         // 0 = all
  float top_p = 1.0f;        // (0, 1]
  uint64_t seed = 0;
};

// Checks the ranges, naming the field.
absl::Status ValidateSampling(const SamplingOptions& o);

class Sampler {
 public:
  explicit Sampler(const SamplingOptions& o) : opts_(o), rng_(o.seed) {}
  int32_t Sample(const float* logits, int64_t vocab);

 private:
  SamplingOptions opts_;
  std::mt19937_64 rng_;
};

}  // namespace mambaserve

#endif  // MAMBASERVE_LAUNCHER_SAMPLER_H_
