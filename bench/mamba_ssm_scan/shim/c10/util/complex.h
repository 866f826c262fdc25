// Stand-in for c10/util/complex.h (our own code, not PyTorch's): just enough of c10::complex<T>
// for selective_scan_common.h to compile (public real_/imag_, construction, + and *). The
// benchmark instantiates only real (float) weights, so none of this runs.
#pragma once

#include "c10/util/shim_macros.h"

namespace c10 {

template <typename T>
struct alignas(2 * sizeof(T)) complex {
  T real_;
  T imag_;

  complex() = default;
  SHIM_C10_HD constexpr complex(T re, T im = T(0)) : real_(re), imag_(im) {}
  SHIM_C10_HD constexpr T real() const { return real_; }
  SHIM_C10_HD constexpr T imag() const { return imag_; }

  friend SHIM_C10_HD constexpr complex operator+(const complex& a, const complex& b) {
    return complex(a.real_ + b.real_, a.imag_ + b.imag_);
  }
  friend SHIM_C10_HD constexpr complex operator*(const complex& a, const complex& b) {
    return complex(a.real_ * b.real_ - a.imag_ * b.imag_, a.real_ * b.imag_ + a.imag_ * b.real_);
  }
  friend SHIM_C10_HD constexpr complex operator*(const complex& a, T s) {
    return complex(a.real_ * s, a.imag_ * s);
  }
  friend SHIM_C10_HD constexpr complex operator*(T s, const complex& a) {
    return complex(s * a.real_, s * a.imag_);
  }
};

}  // namespace c10
