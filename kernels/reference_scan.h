// The plain recurrence every scan kernel is checked against, in float64, one channel at a time:
//   h_t = dA_t * h_{t-1} + dB_t * x_t       (per state element n)
//   y_t = sum_n C_t[n] h_t[n] + D * x_t
// Slow and obviously correct; tests build their oracles from it.
#ifndef MAMBASERVE_KERNELS_REFERENCE_SCAN_H_
#define MAMBASERVE_KERNELS_REFERENCE_SCAN_H_

#include <cstdint>
#include <span>
#include <vector>

#include "kernels/mamba_math.h"

namespace mambaserve {

struct ReferenceChannelScan {
  Discretization mode = Discretization::kDefault;
  std::span<const double> x;         // [L]
  std::span<const double> dt;        // [L], already softplus'ed / clamped (the input step)
  std::span<const double> dt_decay;  // [L] event-driven decay step; empty = use dt
  std::span<const double> A;         // [N]
  std::span<const double> B;         // [L * N], row t is token t
  std::span<const double> C;         // [L * N]
  double D = 0.0;
  std::span<const double> h0;  // [N] initial state; empty = zeros
};

struct ReferenceScanResult {
  std::vector<double> y;        // [L]
  std::vector<double> h_final;  // [N]
  std::vector<double> h_all;    // [L * N], the state after every token
};

ReferenceScanResult RunReferenceChannelScan(const ReferenceChannelScan& p);

}  // namespace mambaserve

#endif  // MAMBASERVE_KERNELS_REFERENCE_SCAN_H_
