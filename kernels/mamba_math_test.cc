#include "kernels/mamba_math.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/reference_scan.h"

namespace mambaserve {
namespace {

TEST(Activations, SoftplusMatchesDefinitionAndIsLinearAboveThreshold) {
  EXPECT_NEAR(Softplus(0.0), std::log(2.0), 1e-15);
  EXPECT_NEAR(Softplus(1.5), std::log1p(std::exp(1.5)), 1e-15);
  EXPECT_NEAR(Softplus(-30.0), std::exp(-30.0), 1e-25);
  EXPECT_EQ(Softplus(20.5), 20.5);  // above threshold: exactly x
  EXPECT_EQ(Softplus(25.0), 25.0);
  // beta scales the knee: softplus_beta(x) = log(1 + e^{beta x}) / beta.
  EXPECT_NEAR(Softplus(0.3, 2.0, 20.0), std::log1p(std::exp(0.6)) / 2.0, 1e-15);
  EXPECT_EQ(Softplus(11.0, 2.0, 20.0), 11.0);  // beta x = 22 > 20
  // float path agrees with double.
  EXPECT_NEAR(Softplus(0.7f), static_cast<float>(Softplus(0.7)), 1e-7f);
}

TEST(Activations, SiluAndSwish) {
  EXPECT_EQ(Silu(0.0), 0.0);
  EXPECT_NEAR(Silu(2.0), 2.0 / (1.0 + std::exp(-2.0)), 1e-15);
  EXPECT_NEAR(Silu(-40.0), 0.0, 1e-15);
  EXPECT_NEAR(Swish(1.3, 1.0), Silu(1.3), 1e-15);
  EXPECT_NEAR(Swish(1.3, 2.5), 1.3 / (1.0 + std::exp(-3.25)), 1e-15);
  // beta -> infinity tends to ReLU.
  EXPECT_NEAR(Swish(0.5, 1000.0), 0.5, 1e-12);
  EXPECT_NEAR(Swish(-0.5, 1000.0), 0.0, 1e-12);
}

TEST(Discretize, DefaultIsExpDecayAndEulerInput) {
  auto s = Discretize(Discretization::kDefault, 0.1, 0.1, -2.0);
  EXPECT_NEAR(s.dA, std::exp(-0.2), 1e-15);
  EXPECT_EQ(s.dB_scale, 0.1);
}

TEST(Discretize, ZohIsExactForConstantInput) {
  // dh/dt = a h + b x with constant x from h(0) = h0 gives h(dt) = e^{a dt} h0 + (e^{a dt}-1)/a b
  // x.
  const double a = -1.7, b = 0.8, x = 1.3, h0 = 0.4, dt = 0.35;
  auto s = Discretize(Discretization::kZoh, dt, dt, a);
  const double exact = std::exp(a * dt) * h0 + (std::exp(a * dt) - 1.0) / a * b * x;
  EXPECT_NEAR(RecurrenceStep(s, h0, b, x), exact, 1e-14);
  // Integrate numerically with tiny Euler steps as an independent check.
  double h = h0;
  const int steps = 200000;
  for (int i = 0; i < steps; ++i) h += dt / steps * (a * h + b * x);
  EXPECT_NEAR(RecurrenceStep(s, h0, b, x), h, 1e-5);
}

TEST(Discretize, ZohTendsToEulerAsDtShrinksAndHandlesZeroA) {
  for (double dt : {1e-2, 1e-4, 1e-6}) {
    auto z = Discretize(Discretization::kZoh, dt, dt, -3.0);
    // (e^{a dt} - 1)/a = dt (1 + a dt / 2 + ...): relative gap to Euler is about |a| dt / 2.
    EXPECT_NEAR(z.dB_scale / dt, 1.0, 3.0 * dt) << dt;
  }
  auto zero = Discretize(Discretization::kZoh, 0.25, 0.25, 0.0);
  EXPECT_EQ(zero.dA, 1.0);
  EXPECT_EQ(zero.dB_scale, 0.25);  // limit of (e^{a dt}-1)/a as a -> 0
  // Continuity across the series/expm1 switch at |a dt| = 1e-4.
  for (double a : {-0.99999e-4, -1.00001e-4, 0.99999e-4, 1.00001e-4}) {
    auto z = Discretize(Discretization::kZoh, 1.0, 1.0, a);
    EXPECT_NEAR(z.dB_scale, std::expm1(a) / a, 1e-13) << a;
  }
  // float version does not lose precision near zero (naive (exp(x)-1)/x would).
  auto f = Discretize(Discretization::kZoh, 1e-6f, 1e-6f, -1.0f);
  EXPECT_NEAR(f.dB_scale, 1e-6f, 1e-12f);
}

TEST(Discretize, BilinearMatchesTustinAndIsStable) {
  const double dt = 0.5, a = -4.0;
  auto s = Discretize(Discretization::kBilinear, dt, dt, a);
  EXPECT_NEAR(s.dA, (1 + dt * a / 2) / (1 - dt * a / 2), 1e-15);
  EXPECT_NEAR(s.dB_scale, dt / (1 - dt * a / 2), 1e-15);
  // A-stable: |dA| < 1 for any negative a, even a huge step.
  auto big = Discretize(Discretization::kBilinear, 100.0, 100.0, -50.0);
  EXPECT_LT(std::abs(big.dA), 1.0);
  // Second-order accurate: agrees with exp(a dt) to O(dt^3).
  auto small = Discretize(Discretization::kBilinear, 1e-3, 1e-3, a);
  EXPECT_NEAR(small.dA, std::exp(a * 1e-3), 1e-8);
}

TEST(Discretize, DiracAndEventDriven) {
  auto d = Discretize(Discretization::kDirac, 0.3, 0.3, -1.0);
  EXPECT_NEAR(d.dA, std::exp(-0.3), 1e-15);
  EXPECT_EQ(d.dB_scale, 1.0);
  // Event-driven: decay from tau * softplus(bias_A), input from dt.
  const double tau = 2.0, bias_a = 0.5, dt = 0.05;
  const double dt_a = tau * Softplus(bias_a);
  auto e = Discretize(Discretization::kEventDriven, dt_a, dt, -1.2);
  EXPECT_NEAR(e.dA, std::exp(-1.2 * dt_a), 1e-15);
  EXPECT_EQ(e.dB_scale, dt);
  EXPECT_STREQ(DiscretizationName(Discretization::kEventDriven), "event_driven");
}

TEST(ReferenceScan, HandDerivedTwoTokens) {
  // N = 1, A = 0 (no decay), default mode: h1 = dt0*B0*x0, h2 = h1 + dt1*B1*x1.
  std::vector<double> x{2.0, -1.0}, dt{0.5, 0.25}, A{0.0}, B{3.0, 4.0}, C{1.0, 2.0}, h0{1.0};
  ReferenceChannelScan p;
  p.x = x;
  p.dt = dt;
  p.A = A;
  p.B = B;
  p.C = C;
  p.D = 0.5;
  p.h0 = h0;
  auto r = RunReferenceChannelScan(p);
  // h1 = 1 + 0.5*3*2 = 4; y0 = 1*4 + 0.5*2 = 5. h2 = 4 + 0.25*4*(-1) = 3; y1 = 2*3 - 0.5 = 5.5.
  EXPECT_DOUBLE_EQ(r.h_all[0], 4.0);
  EXPECT_DOUBLE_EQ(r.y[0], 5.0);
  EXPECT_DOUBLE_EQ(r.h_final[0], 3.0);
  EXPECT_DOUBLE_EQ(r.y[1], 5.5);
}

TEST(ReferenceScan, SplittingTheSequenceAndCarryingTheStateChangesNothing) {
  const int L = 9, N = 3;
  std::vector<double> x(L), dt(L), B(L * N), C(L * N), A{-0.5, -1.0, -2.0};
  for (int i = 0; i < L; ++i) {
    x[i] = std::sin(i + 1.0);
    dt[i] = 0.1 + 0.05 * i;
  }
  for (int i = 0; i < L * N; ++i) {
    B[i] = std::cos(0.7 * i);
    C[i] = std::sin(0.3 * i + 0.2);
  }
  for (auto mode : {Discretization::kDefault, Discretization::kZoh, Discretization::kBilinear,
                    Discretization::kDirac}) {
    ReferenceChannelScan full{mode, x, dt, {}, A, B, C, 0.3, {}};
    auto all = RunReferenceChannelScan(full);
    const int cut = 4;
    ReferenceChannelScan head{mode, std::span(x).first(cut),     std::span(dt).first(cut),    {},
                              A,    std::span(B).first(cut * N), std::span(C).first(cut * N), 0.3,
                              {}};
    auto first = RunReferenceChannelScan(head);
    ReferenceChannelScan tail{mode,
                              std::span(x).subspan(cut),
                              std::span(dt).subspan(cut),
                              {},
                              A,
                              std::span(B).subspan(cut * N),
                              std::span(C).subspan(cut * N),
                              0.3,
                              first.h_final};
    auto second = RunReferenceChannelScan(tail);
    for (int t = cut; t < L; ++t) EXPECT_NEAR(second.y[t - cut], all.y[t], 1e-14);
  }
}

}  // namespace
}  // namespace mambaserve
