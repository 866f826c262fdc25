// CPU selective scan (prefill) against the float64 oracle of kernels/reference_scan.h.
#include "kernels/selective_scan.h"

#include <string>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/selective_scan_test_util.h"

namespace mambaserve {
namespace {

using scan_test::CpuModeDTypeMatrix;
using scan_test::ExpectPrefillMatchesOracle;
using scan_test::kModes;
using scan_test::MakeScanProblem;
using scan_test::ModeDTypesName;
using scan_test::RunOracle;
using scan_test::RunPrefill;
using scan_test::ScanProblemOptions;

class PrefillOracleTest
    : public ::testing::TestWithParam<std::tuple<Discretization, DType, DType>> {};

TEST_P(PrefillOracleTest, MatchesFloat64Oracle) {
  const auto [mode, x_dtype, state_dtype] = GetParam();
  ScanProblemOptions o;
  o.mode = mode;
  o.x_dtype = x_dtype;
  o.bc_dtype = x_dtype;
  o.state_dtype = state_dtype;
  o.dim = 24;
  o.d_state = 16;
  o.lengths = {1, 9, 0, 130};
  o.initial_state = {true, false, true, true};
  o.final_state = {true, true, true, false};
  o.seed = 100 + static_cast<int>(mode);
  const auto p = MakeScanProblem(o);
  Stream cpu;
  auto out = RunPrefill(p, cpu);
  ASSERT_TRUE(out.ok()) << out.status();
  ExpectPrefillMatchesOracle(p, *out, RunOracle(p), DiscretizationName(mode));
}

INSTANTIATE_TEST_SUITE_P(AllModes, PrefillOracleTest, CpuModeDTypeMatrix(), ModeDTypesName());

TEST(Prefill, GroupedBCLargeStateNoGateNoBiasInPlace) {
  for (Discretization mode : kModes) {
    ScanProblemOptions o;
    o.mode = mode;
    o.dim = 12;
    o.d_state = 256;
    o.n_groups = 3;
    o.lengths = {5, 17};
    o.with_z = false;
    o.with_D = false;
    o.with_delta_bias = false;
    o.softplus = true;
    o.final_in_place = true;
    o.bc_dtype = DType::kBF16;  // B/C may have their own dtype
    o.seed = 7;
    const auto p = MakeScanProblem(o);
    Stream cpu;
    auto out = RunPrefill(p, cpu);
    ASSERT_TRUE(out.ok()) << out.status();
    ExpectPrefillMatchesOracle(p, *out, RunOracle(p), DiscretizationName(mode));
  }
}

TEST(Prefill, NoSoftplusSmallState) {
  ScanProblemOptions o;
  o.d_state = 1;
  o.softplus = false;
  o.with_delta_bias = false;
  o.lengths = {33};
  const auto p0 = MakeScanProblem(o);
  // Without softplus delta must itself be a positive step.
  auto p = p0;
  for (auto& v : p.delta) v = std::abs(v) + 0.01f;
  Stream cpu;
  auto out = RunPrefill(p, cpu);
  ASSERT_TRUE(out.ok()) << out.status();
  ExpectPrefillMatchesOracle(p, *out, RunOracle(p), "no softplus");
}

TEST(Prefill, BoundaryStatesEveryMode) {
  for (Discretization mode : kModes) {
    for (DType state_dtype : {DType::kF32, DType::kBF16}) {
      ScanProblemOptions o;
      o.mode = mode;
      o.state_dtype = state_dtype;
      o.x_dtype = DType::kBF16;
      o.bc_dtype = DType::kBF16;
      o.dim = 8;
      o.d_state = 16;
      // Sequence 0 starts mid-block and crosses several boundaries, ending on one; sequence 1
      // starts at a boundary; sequence 2 never reaches one; sequence 3 is a single token that
      // completes a block.
      o.lengths = {43, 16, 3, 1};
      o.block_size = 16;
      o.prefix_offset = {5, 32, 17, 47};
      o.seed = 300 + static_cast<int>(mode);
      const auto p = MakeScanProblem(o);
      ASSERT_EQ(p.Boundaries(0), 3);
      ASSERT_EQ(p.Boundaries(1), 1);
      ASSERT_EQ(p.Boundaries(2), 0);
      ASSERT_EQ(p.Boundaries(3), 1);
      Stream cpu;
      auto out = RunPrefill(p, cpu);
      ASSERT_TRUE(out.ok()) << out.status();
      ExpectPrefillMatchesOracle(
          p, *out, RunOracle(p),
          absl::StrCat(DiscretizationName(mode), " ", DTypeName(state_dtype)).c_str());
    }
  }
}

// Packing sequences into one call gives exactly what running them one at a time gives.
TEST(Prefill, PackedVarlenEqualsOneByOne) {
  for (Discretization mode : kModes) {
    ScanProblemOptions o;
    o.mode = mode;
    o.x_dtype = DType::kBF16;
    o.bc_dtype = DType::kBF16;
    o.lengths = {1, 12, 70, 3};
    o.initial_state = {true, false, true, true};
    o.seed = 500;
    const auto p = MakeScanProblem(o);
    Stream cpu;
    auto packed = RunPrefill(p, cpu);
    ASSERT_TRUE(packed.ok()) << packed.status();
    for (int64_t s = 0; s < p.S; ++s) {
      // Same rows, but two sequences: a dummy one over rows [0, cu[s]) with no state in or
      // out, then sequence s alone with its own blocks.
      auto q = p;
      q.S = 2;
      q.cu = {0, p.cu[s], p.cu[s + 1]};
      q.T = p.cu[s + 1];
      q.initial_block = {0, p.initial_block[s]};
      q.final_block = {0, p.final_block[s]};
      auto single = RunPrefill(q, cpu);
      ASSERT_TRUE(single.ok()) << single.status();
      for (int64_t t = p.cu[s]; t < p.cu[s + 1]; ++t) {
        for (int64_t d = 0; d < p.D; ++d) {
          ASSERT_EQ(single->y[t * p.y_stride + d], packed->y[t * p.y_stride + d])
              << DiscretizationName(mode) << " seq " << s << " t " << t;
        }
      }
      if (p.final_block[s] != 0) {
        for (int64_t i = 0; i < p.D * p.N; ++i) {
          const int64_t at = p.final_block[s] * p.block_stride + i;
          ASSERT_EQ(single->pool[at], packed->pool[at]) << DiscretizationName(mode);
        }
      }
    }
  }
}

TEST(Prefill, RejectsBadArguments) {
  ScanProblemOptions o;
  const auto p = MakeScanProblem(o);
  Stream cpu;
  auto bad = p;
  bad.initial_block[1] = static_cast<int32_t>(p.num_blocks);  // out of range
  EXPECT_FALSE(RunPrefill(bad, cpu).ok());
  ScanProblemOptions o2;
  o2.d_state = 300;
  EXPECT_FALSE(RunPrefill(MakeScanProblem(o2), cpu).ok());
  ScanProblemOptions o3;
  o3.dim = 10;
  o3.n_groups = 3;
  EXPECT_FALSE(RunPrefill(MakeScanProblem(o3), cpu).ok());
  for (int segments : {-1, 17}) {  // the CUDA launch knob is checked on every device
    ScanProblemOptions o4;
    o4.cuda_time_segments = segments;
    EXPECT_FALSE(RunPrefill(MakeScanProblem(o4), cpu).ok()) << segments;
  }
  ScanProblemOptions o5;
  o5.cuda_time_segments = 16;  // accepted, and ignored by the CPU
  EXPECT_TRUE(RunPrefill(MakeScanProblem(o5), cpu).ok());
}

}  // namespace
}  // namespace mambaserve
