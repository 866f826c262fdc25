// Small helpers shared by the benchmark programs.
#ifndef MAMBASERVE_BENCH_BENCH_UTIL_H_
#define MAMBASERVE_BENCH_BENCH_UTIL_H_

#include <algorithm>
#include <vector>

namespace mambaserve {

// The median sample (upper median for an even count); 0 for no samples.
inline double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace mambaserve

#endif  // MAMBASERVE_BENCH_BENCH_UTIL_H_
