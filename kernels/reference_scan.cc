#include "kernels/reference_scan.h"

namespace mambaserve {

ReferenceScanResult RunReferenceChannelScan(const ReferenceChannelScan& p) {
  const size_t L = p.x.size();
  const size_t N = p.A.size();
  ReferenceScanResult r;
  r.y.assign(L, 0.0);
  r.h_all.assign(L * N, 0.0);
  std::vector<double> h(N, 0.0);
  if (!p.h0.empty()) h.assign(p.h0.begin(), p.h0.end());
  for (size_t t = 0; t < L; ++t) {
    const double dt_decay = p.dt_decay.empty() ? p.dt[t] : p.dt_decay[t];
    double y = p.D * p.x[t];
    for (size_t n = 0; n < N; ++n) {
      const DiscreteStep<double> step = Discretize(p.mode, dt_decay, p.dt[t], p.A[n]);
      h[n] = RecurrenceStep(step, h[n], p.B[t * N + n], p.x[t]);
      y += p.C[t * N + n] * h[n];
      r.h_all[t * N + n] = h[n];
    }
    r.y[t] = y;
  }
  r.h_final = h;
  return r;
}

}  // namespace mambaserve
