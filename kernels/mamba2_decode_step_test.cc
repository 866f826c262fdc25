// The Mamba-2 decode step on the CPU (CI): it is the three ops in sequence, bad arguments are
// refused, and the fused kernel's preconditions accept the mixer's layout and refuse each
// departure from it with a reason. (The fused kernel itself: mamba2_decode_step_gpu_test.)
#include <cstring>
#include <string>

#include "gtest/gtest.h"
#include "kernels/mamba2_decode_step.h"
#include "kernels/mamba2_decode_step_testutil.h"

namespace mambaserve {
namespace {

using namespace gpu_test;  // NOLINT: test helpers

const StepCase kCase{4, 6, 16, 2, 32, 4, 2, DType::kF32, DType::kF32, DType::kF32,
                     ConvStateLayout::kSD, false, true, false};

struct HostStep {
  Rng rng{11};
  StepData d = MakeData(kCase, rng);
  Bytes zxbcdt = RandomBytes(kCase.dtype, kCase.batch * d.R, rng);
  Bytes xbc = Bytes(kCase.batch * d.CD * 4), y = Bytes(kCase.batch * d.I * 4);
  std::vector<int32_t> arrivals = std::vector<int32_t>(kCase.batch);
  std::vector<float> partials = std::vector<float>(1024);
  Side Pointers() {
    return Side{zxbcdt.data(), d.conv_w.data(), d.conv_b.data(), d.norm_w.data(),
                d.dt_bias.data(), d.A.data(), d.D.data(),
                reinterpret_cast<const int32_t*>(d.blocks.data()), d.conv_state.data(),
                d.ssm_state.data(), xbc.data(), y.data(), arrivals.data(), partials.data()};
  }
};

TEST(Mamba2DecodeStep, CpuIsTheThreeOpsInSequence) {
  HostStep a, b;  // same seed: same inputs
  ASSERT_TRUE(RunMamba2DecodeStep(MakeParams(kCase, a.d, a.Pointers()), Stream()).ok());
  const Mamba2DecodeStepParams p = MakeParams(kCase, b.d, b.Pointers());
  ASSERT_TRUE(RunCausalConv1dUpdate(p.conv, Stream()).ok());
  ASSERT_TRUE(RunMamba2StateUpdate(p.ssm, Stream()).ok());
  ASSERT_TRUE(RunGatedRmsNorm(p.norm, Stream()).ok());
  EXPECT_EQ(a.y, b.y);
  EXPECT_EQ(a.d.ssm_state, b.d.ssm_state);
  EXPECT_EQ(a.d.conv_state, b.d.conv_state);
  // And it did something: the state of a running sequence moved.
  HostStep fresh;
  EXPECT_NE(a.d.ssm_state, fresh.d.ssm_state);
}

TEST(Mamba2DecodeStep, RefusesBadArguments) {
  HostStep h;
  Mamba2DecodeStepParams p = MakeParams(kCase, h.d, h.Pointers());
  p.conv.w.width = 9;
  EXPECT_EQ(RunMamba2DecodeStep(p, Stream()).code(), absl::StatusCode::kInvalidArgument);
  p = MakeParams(kCase, h.d, h.Pointers());
  p.ssm.num_groups = 4;  // 6 heads do not split into 4 groups
  EXPECT_EQ(RunMamba2DecodeStep(p, Stream()).code(), absl::StatusCode::kInvalidArgument);
  p = MakeParams(kCase, h.d, h.Pointers());
  p.norm.group_size = 0;
  EXPECT_EQ(RunMamba2DecodeStep(p, Stream()).code(), absl::StatusCode::kInvalidArgument);
}

TEST(Mamba2DecodeStep, FusableAcceptsTheMixerLayoutAndNamesEachDeparture) {
  HostStep h;
  const Mamba2DecodeStepParams base = MakeParams(kCase, h.d, h.Pointers());
  std::string why;
  ASSERT_TRUE(Mamba2DecodeStepFusable(base, &why)) << why;
  struct Departure {
    const char* reason;
    void (*change)(Mamba2DecodeStepParams&);
  };
  const Departure departures[] = {
      {"more than one token", [](Mamba2DecodeStepParams& p) { p.conv.tokens_per_seq = 2; }},
      {"speculative", [](Mamba2DecodeStepParams& p) { p.ssm.state_block_out = p.conv.state_block; }},
      {"blocks differ", [](Mamba2DecodeStepParams& p) { p.conv.state_block = nullptr; }},
      {"tail-aligned", [](Mamba2DecodeStepParams& p) { p.conv.pool.align = ConvStateAlign::kHead; }},
      {"tail-aligned", [](Mamba2DecodeStepParams& p) { p.conv.pool.state_len += 1; }},
      {"dtypes differ", [](Mamba2DecodeStepParams& p) { p.ssm.dt_dtype = DType::kBF16; }},
      {"[x | B | C]", [](Mamba2DecodeStepParams& p) { p.ssm.B_group_stride += 1; }},
      {"the norm gates", [](Mamba2DecodeStepParams& p) { p.ssm.z = p.norm.z; }},
      {"in place", [](Mamba2DecodeStepParams& p) { p.norm.mode = GatedRmsNormMode::kApply; }},
      {"whole heads", [](Mamba2DecodeStepParams& p) { p.norm.group_size = 24; }},
      {"conv dim", [](Mamba2DecodeStepParams& p) { p.ssm.d_state = 48; }},
      {"aligned", [](Mamba2DecodeStepParams& p) { p.ssm.state_p_stride += 1; }},
      {"scratch", [](Mamba2DecodeStepParams& p) { p.arrivals = nullptr; }},
  };
  for (const Departure& dep : departures) {
    Mamba2DecodeStepParams p = base;
    dep.change(p);
    why.clear();
    EXPECT_FALSE(Mamba2DecodeStepFusable(p, &why)) << dep.reason;
    EXPECT_NE(why.find(dep.reason), std::string::npos) << "reason: " << why;
  }
  // A d_state the kernel has no lane layout for (not a power of two), laid out consistently.
  StepCase odd = kCase;
  odd.N = 24;
  Rng rng(3);
  StepData d = MakeData(odd, rng);
  Mamba2DecodeStepParams p = MakeParams(odd, d, h.Pointers());
  EXPECT_FALSE(Mamba2DecodeStepFusable(p, &why));
  EXPECT_NE(why.find("d_state 24"), std::string::npos) << why;
}

}  // namespace
}  // namespace mambaserve
