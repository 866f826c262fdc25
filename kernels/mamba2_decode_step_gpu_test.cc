// The fused CUDA Mamba-2 decode step against the CPU composition of its three ops (conv update,
// state update, gated RMSNorm; each checked against a float64 oracle by the CI tests), on the
// same random inputs, over several consecutive steps (the state carries, the kernel's arrival
// counters must be left zero). Skips without a GPU.
//
// Tolerances (relative RMS error): fp32 1e-5 (same fp32 math, different summation order and
// expf); 16-bit activations or a bf16 state 1e-2 (either side may round a value to the
// neighbouring 16-bit number). Conv windows are copies of inputs: bit-identical. State blocks of
// skipped (null-block) sequences and unused blocks: bit-identical.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/gpu_test_util.h"
#include "kernels/mamba2_decode_step.h"
#include "kernels/mamba2_decode_step_testutil.h"

namespace mambaserve {
namespace {

using namespace gpu_test;  // NOLINT: test helpers

void RunCase(const StepCase& c, uint64_t seed, const Stream& gs) {
  SCOPED_TRACE(Name(c));
  Rng rng(seed);
  StepData d = MakeData(c, rng);
  const int64_t es = DTypeSize(c.dtype);
  Bytes y(c.batch * d.I * es, 0), xbc(c.batch * d.CD * es, 0);
  Bytes conv_state = d.conv_state, ssm_state = d.ssm_state;
  Dev g_conv_w = Dev::Of(d.conv_w), g_conv_b = Dev::Of(d.conv_b), g_norm_w = Dev::Of(d.norm_w);
  Dev g_dt_bias = Dev::Of(d.dt_bias), g_A = Dev::Of(d.A), g_D = Dev::Of(d.D);
  Dev g_blocks = Dev::Of(d.blocks), g_conv = Dev::Of(conv_state), g_ssm = Dev::Of(ssm_state);
  Dev g_y = Dev::Of(y), g_xbc = Dev::Of(xbc);
  Dev g_arrivals = Dev::Of(Bytes(c.batch * 4, 0));
  Dev g_partials = Dev::Of(Bytes(c.batch * Mamba2DecodeStepPartials(MakeParams(c, d, {}).ssm) * 4));
  const auto* blocks = reinterpret_cast<const int32_t*>(d.blocks.data());

  for (int step = 0; step < 3; ++step) {
    SCOPED_TRACE(absl::StrCat("step ", step));
    const Bytes zxbcdt = RandomBytes(c.dtype, c.batch * d.R, rng);
    Dev g_zxbcdt = Dev::Of(zxbcdt);
    const Side host{zxbcdt.data(), d.conv_w.data(), d.conv_b.data(), d.norm_w.data(),
                    d.dt_bias.data(), d.A.data(), d.D.data(), blocks, conv_state.data(),
                    ssm_state.data(), xbc.data(), y.data(), nullptr, nullptr};
    const Side dev{g_zxbcdt.ptr(), g_conv_w.ptr(), g_conv_b.ptr(), g_norm_w.ptr(),
                   g_dt_bias.ptr(), g_A.ptr(), g_D.ptr(),
                   static_cast<const int32_t*>(g_blocks.ptr()), g_conv.ptr(), g_ssm.ptr(),
                   g_xbc.ptr(), g_y.ptr(), static_cast<int32_t*>(g_arrivals.ptr()),
                   static_cast<float*>(g_partials.ptr())};
    const Mamba2DecodeStepParams gp = MakeParams(c, d, dev);
    std::string why;
    ASSERT_TRUE(Mamba2DecodeStepFusable(gp, &why)) << why;
    ASSERT_TRUE(RunMamba2DecodeStep(MakeParams(c, d, host), Stream()).ok());
    const absl::Status st = RunMamba2DecodeStep(gp, gs);
    ASSERT_TRUE(st.ok()) << st;
    ASSERT_TRUE(gs.Synchronize().ok());

    // y of the sequences that ran.
    const Bytes gy = g_y.Get(y.size());
    Bytes want, got;
    for (int64_t b = 0; b < c.batch; ++b) {
      if (blocks[b] == 0) continue;
      want.insert(want.end(), y.begin() + b * d.I * es, y.begin() + (b + 1) * d.I * es);
      got.insert(got.end(), gy.begin() + b * d.I * es, gy.begin() + (b + 1) * d.I * es);
    }
    EXPECT_LT(RelErr(c.dtype, want, got), std::max(Tol(c.dtype), Tol(c.state_dtype)));
    // Conv windows: copies of inputs, bit-identical everywhere.
    const Bytes gconv = g_conv.Get(conv_state.size());
    ASSERT_EQ(0, std::memcmp(gconv.data(), conv_state.data(), conv_state.size()));
    // SSM state: close in written blocks, bit-identical elsewhere.
    const Bytes gssm = g_ssm.Get(ssm_state.size());
    const int64_t ses = DTypeSize(c.state_dtype), bytes = d.ssm_block * ses;
    for (int64_t k = 0; k < d.nb; ++k) {
      const Bytes w(ssm_state.begin() + k * bytes, ssm_state.begin() + (k + 1) * bytes);
      const Bytes g(gssm.begin() + k * bytes, gssm.begin() + (k + 1) * bytes);
      bool written = false;
      for (int64_t b = 0; b < c.batch; ++b) written |= blocks[b] == k && k != 0;
      if (written) {
        EXPECT_LT(RelErr(c.state_dtype, w, g), Tol(c.state_dtype)) << "block " << k;
      } else {
        ASSERT_EQ(0, std::memcmp(w.data(), g.data(), bytes)) << "block " << k;
      }
    }
    // The arrival counters are left zero.
    const Bytes arr = g_arrivals.Get(c.batch * 4);
    for (uint8_t v : arr) ASSERT_EQ(v, 0);
    // Next step continues from the GPU's state on both sides (so errors do not compound).
    conv_state = gconv;
    ssm_state = gssm;
  }
}

TEST(Mamba2DecodeStepGpu, FusedMatchesCpuComposition) {
  SKIP_WITHOUT_GPU();
  Stream gs = GpuStream();
  const DType f32 = DType::kF32, bf16 = DType::kBF16;
  const auto SD = ConvStateLayout::kSD, DS = ConvStateLayout::kDS;
  const std::vector<StepCase> cases = {
      // Mamba2-2.7B layer at batch 1 (two rows per thread group) and 24 (eight).
      {1, 80, 64, 1, 128, 4, 1, bf16, f32, bf16, SD, false, true, false},
      {24, 80, 64, 1, 128, 4, 1, bf16, f32, bf16, SD, false, true, false},
      {24, 80, 64, 1, 128, 4, 1, f32, f32, f32, SD, false, true, false},
      // bf16 state, DS windows, W = 3, G = 2, two norm groups, gate after the norm, D(H, P).
      {5, 8, 32, 2, 64, 3, 2, bf16, bf16, f32, DS, true, true, true},
      // N = 32 (8 lanes per row, 128 rows per block at this size), W = 2, P below a tile.
      {5, 72, 48, 3, 32, 2, 3, f32, f32, f32, SD, false, true, false},
      // N = 256 (two chunks per lane), a straddling tensor-parallel group mapping, no z.
      {3, 4, 16, 2, 256, 4, 1, f32, f32, f32, DS, false, false, false, 6, 4, 1},
      // bf16 state with N = 64 (8 lanes), one norm group per head.
      {4, 6, 16, 3, 64, 4, 6, bf16, bf16, bf16, SD, false, true, true},
      // Rows not a multiple of 16 bytes: the scalar normalisation.
      {3, 3, 20, 1, 64, 4, 1, bf16, f32, bf16, SD, true, true, false},
  };
  uint64_t seed = 700;
  for (const StepCase& c : cases) RunCase(c, seed++, gs);
}

}  // namespace
}  // namespace mambaserve
