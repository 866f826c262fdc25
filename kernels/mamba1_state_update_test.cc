// CPU Mamba-1 decode update: against the float64 oracle, against the prefill scan (prefill n then
// decode m equals prefill n + m, every mode), and speculative decode against sequential decodes.
#include "kernels/mamba1_state_update.h"

#include <tuple>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/selective_scan_test_util.h"

namespace mambaserve {
namespace {

using namespace scan_test;

class DecodeOracleTest : public ::testing::TestWithParam<std::tuple<Discretization, DType, DType>> {
};

TEST_P(DecodeOracleTest, MatchesFloat64Oracle) {
  const auto [mode, x_dtype, state_dtype] = GetParam();
  ScanProblemOptions o;
  o.mode = mode;
  o.x_dtype = x_dtype;
  o.bc_dtype = x_dtype;
  o.state_dtype = state_dtype;
  o.dim = 40;
  o.d_state = 16;
  o.n_groups = 2;
  o.lengths = {1, 1, 1, 1, 1};
  // Sequence 2 is a padded slot (null block: starts from zeros, writes nothing).
  o.initial_state = {true, true, false, true, true};
  o.final_state = {true, true, false, true, true};
  o.final_in_place = true;
  o.seed = 900 + static_cast<int>(mode);
  for (bool delta_f32 : {false, true}) {  // delta in x_dtype, or f32 as the model passes it
    o.delta_f32 = delta_f32;
    const auto p = MakeScanProblem(o);
    Stream cpu;
    auto out = RunDecode(p, 0, false, nullptr, cpu);
    ASSERT_TRUE(out.ok()) << out.status();
    ExpectPrefillMatchesOracle(
        p, *out, RunOracle(p),
        absl::StrCat(DiscretizationName(mode), " delta f32 ", delta_f32).c_str());
  }
}

INSTANTIATE_TEST_SUITE_P(AllModes, DecodeOracleTest, CpuModeDTypeMatrix(), ModeDTypesName());

TEST(Decode, SpeculativeOracle) {
  // Multi-token rows against the oracle, via the in-place path (last token's state).
  for (Discretization mode : kModes) {
    ScanProblemOptions o;
    o.mode = mode;
    o.lengths = {4, 4, 4};
    o.final_in_place = true;
    o.d_state = 64;
    o.seed = 11;
    const auto p = MakeScanProblem(o);
    Stream cpu;
    auto out = RunDecode(p, 3, false, nullptr, cpu);
    ASSERT_TRUE(out.ok()) << out.status();
    ExpectPrefillMatchesOracle(p, *out, RunOracle(p), DiscretizationName(mode));
  }
}

// The decode and prefill CPU paths share every scalar formula, so with an fp32 state they agree
// to rounding (in practice exactly); 1e-6 is far below any formula difference.
TEST(Decode, PrefillThenDecodeEqualsLongerPrefillEveryMode) {
  for (Discretization mode : kModes) {
    for (DType x_dtype : {DType::kF32, DType::kBF16}) {
      ScanProblemOptions o;
      o.mode = mode;
      o.x_dtype = x_dtype;
      o.bc_dtype = x_dtype;
      o.dim = 16;
      o.d_state = 16;
      o.seed = 77;
      Stream cpu;
      auto err = PrefillThenDecodeParity(o, {1, 5, 30}, 4, cpu);
      ASSERT_TRUE(err.ok()) << err.status();
      EXPECT_LT(err->y, 1e-6) << DiscretizationName(mode);
      EXPECT_LT(err->state, 1e-6) << DiscretizationName(mode);
    }
  }
}

TEST(Decode, SpeculativeEqualsSequentialDecodes) {
  for (Discretization mode : kModes) {
    for (DType state_dtype : {DType::kF32, DType::kBF16}) {
      ScanProblemOptions o;
      o.mode = mode;
      o.state_dtype = state_dtype;
      o.x_dtype = DType::kBF16;
      o.bc_dtype = DType::kBF16;
      o.seed = 31;
      Stream cpu;
      auto err = SpeculativeParity(o, 3, 3, cpu);
      ASSERT_TRUE(err.ok()) << err.status();
      // Sequential decodes round a bf16 state after every token, the speculative one too (each
      // token's state is stored), but it carries fp32 between tokens: allow bf16 rounding.
      const double tol = state_dtype == DType::kF32 ? 1e-6 : 1e-2;
      EXPECT_LT(err->y, tol) << DiscretizationName(mode);
      EXPECT_LT(err->state, tol) << DiscretizationName(mode);
    }
  }
}

TEST(Decode, RejectsBadBlocks) {
  ScanProblemOptions o;
  o.lengths = {1, 1};
  auto p = MakeScanProblem(o);
  p.initial_block[0] = static_cast<int32_t>(p.num_blocks + 3);
  Stream cpu;
  EXPECT_FALSE(RunDecode(p, 0, false, nullptr, cpu).ok());
}

}  // namespace
}  // namespace mambaserve
