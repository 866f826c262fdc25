// Scalar math shared by every Mamba kernel, on the CPU and in CUDA device code: activations and
// the discretisation of the continuous system dh/dt = A h + B x.
//
// All functions are templates on the floating type so the float64 test oracles and the float32
// kernels use the same formulas.
#ifndef MAMBASERVE_KERNELS_MAMBA_MATH_H_
#define MAMBASERVE_KERNELS_MAMBA_MATH_H_

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define MS_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define MS_HOST_DEVICE inline
#endif

namespace mambaserve {

// Precision-preserving overloads: unqualified exp(float) on the host would pick C's
// exp(double) and narrow; these call the float function for float and the double one for
// double, on the host and in device code alike.
MS_HOST_DEVICE float Exp(float x) { return expf(x); }
MS_HOST_DEVICE double Exp(double x) { return exp(x); }
MS_HOST_DEVICE float Log1p(float x) { return log1pf(x); }
MS_HOST_DEVICE double Log1p(double x) { return log1p(x); }
MS_HOST_DEVICE float Expm1(float x) { return expm1f(x); }
MS_HOST_DEVICE double Expm1(double x) { return expm1(x); }

// softplus(x) = log(1 + exp(beta x)) / beta, and x itself once beta x exceeds `threshold`
// (PyTorch's convention; the relative difference there is below exp(-threshold)).
template <typename T>
MS_HOST_DEVICE T Softplus(T x, T beta = T(1), T threshold = T(20)) {
  const T bx = beta * x;
  return bx > threshold ? x : Log1p(Exp(bx)) / beta;
}

template <typename T>
MS_HOST_DEVICE T Sigmoid(T x) {
  return T(1) / (T(1) + Exp(-x));
}

// SiLU(x) = x * sigmoid(x).
template <typename T>
MS_HOST_DEVICE T Silu(T x) {
  return x * Sigmoid(x);
}

// Swish with slope beta: x * sigmoid(beta x); beta = 1 is SiLU.
template <typename T>
MS_HOST_DEVICE T Swish(T x, T beta) {
  return x * Sigmoid(beta * x);
}

// How the continuous parameters (dt, A, B) become the discrete recurrence
//   h_t = dA * h_{t-1} + dB * x_t.
enum class Discretization : int32_t {
  // mamba_ssm's rule: dA = exp(dt A), dB = dt B (exponential decay, Euler input).
  kDefault = 0,
  // Exact zero-order hold: dA = exp(dt A), dB = (exp(dt A) - 1) / A * B, which tends to dt B as
  // dt A -> 0 (handled by a series so A = 0 is exact).
  kZoh = 1,
  // Bilinear (Tustin): dA = (1 + dt A / 2) / (1 - dt A / 2), dB = dt B / (1 - dt A / 2).
  kBilinear = 2,
  // Dirac input: the input arrives as an impulse, so it is not scaled by dt: dA = exp(dt A),
  // dB = B.
  kDirac = 3,
  // Event-driven (asymmetric): every token carries its own integration step tau; the decay uses
  // dtA = tau * softplus(bias_A) while the input keeps the input-dependent dt: dA = exp(dtA A),
  // dB = dt B. The caller passes dtA as `dt_decay` and dt as `dt_input`.
  kEventDriven = 4,
};

inline const char* DiscretizationName(Discretization d) {
  switch (d) {
    case Discretization::kDefault:
      return "default";
    case Discretization::kZoh:
      return "zoh";
    case Discretization::kBilinear:
      return "bilinear";
    case Discretization::kDirac:
      return "dirac";
    case Discretization::kEventDriven:
      return "event_driven";
  }
  return "unknown";
}

template <typename T>
struct DiscreteStep {
  T dA;        // multiplies the previous state
  T dB_scale;  // dB = dB_scale * B
};

// (exp(x) - 1) / x, accurate near 0 and exactly 1 at 0.
template <typename T>
MS_HOST_DEVICE T Expm1OverX(T x) {
  const T ax = x < T(0) ? -x : x;
  if (ax < T(1e-4)) return T(1) + x * (T(0.5) + x * (T(1) / T(6)));
  return Expm1(x) / x;
}

// The discrete coefficients of one (token, channel, state) element. `dt_decay` scales A in the
// decay and `dt_input` scales the input; they differ only in the event-driven mode.
template <typename T>
MS_HOST_DEVICE DiscreteStep<T> Discretize(Discretization mode, T dt_decay, T dt_input, T A) {
  switch (mode) {
    case Discretization::kZoh: {
      const T x = dt_decay * A;
      return {Exp(x), dt_decay * Expm1OverX(x)};
    }
    case Discretization::kBilinear: {
      const T half = T(0.5) * dt_decay * A;
      const T inv = T(1) / (T(1) - half);
      return {(T(1) + half) * inv, dt_decay * inv};
    }
    case Discretization::kDirac:
      return {Exp(dt_decay * A), T(1)};
    case Discretization::kEventDriven:
      return {Exp(dt_decay * A), dt_input};
    case Discretization::kDefault:
    default:
      return {Exp(dt_decay * A), dt_input};
  }
}

// One step of the recurrence for one state element: returns the new state.
template <typename T>
MS_HOST_DEVICE T RecurrenceStep(const DiscreteStep<T>& step, T h_prev, T B, T x) {
  return step.dA * h_prev + step.dB_scale * B * x;
}

// Applies the dt clamp of Mamba-2 (`dt_limit`, default (0, inf)).
template <typename T>
MS_HOST_DEVICE T ClampDt(T dt, T lo, T hi) {
  return dt < lo ? lo : (dt > hi ? hi : dt);
}

}  // namespace mambaserve

#endif  // MAMBASERVE_KERNELS_MAMBA_MATH_H_
