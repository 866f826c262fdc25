// The relative error every numerical test reports: ||got - want|| / ||want|| over all entries
// (the relative RMS error), in double precision. Works on any indexable sequences of numbers
// (std::vector, std::span) of equal length.
#ifndef MAMBASERVE_CORE_REL_ERROR_H_
#define MAMBASERVE_CORE_REL_ERROR_H_

#include <algorithm>
#include <cmath>
#include <cstddef>

namespace mambaserve {

template <typename Got, typename Want>
double RelRmsError(const Got& got, const Want& want) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double w = static_cast<double>(want[i]);
    const double d = static_cast<double>(got[i]) - w;
    num += d * d;
    den += w * w;
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

}  // namespace mambaserve

#endif  // MAMBASERVE_CORE_REL_ERROR_H_
