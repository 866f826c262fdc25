// Mamba-1 kernels on the GPU: CUDA prefill scan and decode update against the CPU
// implementations (and the float64 oracle), every mode, fp32/bf16, the shape matrix; prefill /
// decode parity and speculative decode on the GPU. Skips without a GPU.
#include <tuple>

#include "absl/strings/str_cat.h"
#include "core/device.h"
#include "gtest/gtest.h"
#include "kernels/mamba1_state_update.h"
#include "kernels/selective_scan.h"
#include "kernels/selective_scan_test_util.h"

namespace mambaserve {
namespace {

using namespace scan_test;

#define SKIP_WITHOUT_GPU()                                     \
  if (!CudaAvailable())                                        \
  GTEST_SKIP() << "no CUDA device (or a CPU-only build): the " \
                  "Mamba-1 GPU tests run on the GPU machine"

absl::StatusOr<Stream> GpuStream() { return Stream::Create(Device::Cuda(0)); }

// CUDA vs CPU: the two use the same formulas in fp32 but a different order of the y reduction
// and hardware exp, so they differ by fp32 rounding (~1e-6 relative); 16-bit outputs can land on
// neighbouring 16-bit values, so those compare at 16-bit tolerance. Both are also checked
// against the float64 oracle.
double CrossTol(DType t) { return t == DType::kF32 ? 2e-5 : 1e-2; }

struct Shape {
  int64_t dim, d_state, n_groups;
  std::vector<int32_t> lengths;
};

const Shape kShapes[] = {
    {64, 16, 1, {1, 7, 300}},
    {96, 16, 2, {129, 1, 64}},
    {40, 64, 1, {33, 2}},
    {24, 256, 3, {70}},
    {20, 5, 1, {17, 1, 3}},             // odd N, dim not a multiple of the channel tile
    {5120, 16, 1, {200}},               // the Mamba-2.8B width
    {5120, 16, 1, {100, 37, 128, 90}},  // enough warps for 4-warp blocks
};

// A problem of shape `sh`: the first sequence starts from zeros, the others from stored states.
ScanProblemOptions OptionsFor(const Shape& sh) {
  ScanProblemOptions o;
  o.dim = sh.dim;
  o.d_state = sh.d_state;
  o.n_groups = sh.n_groups;
  o.lengths = sh.lengths;
  o.initial_state.assign(sh.lengths.size(), true);
  o.initial_state[0] = false;
  return o;
}

class GpuPrefillTest
    : public ::testing::TestWithParam<std::tuple<Discretization, DType, DType, int>> {};

TEST_P(GpuPrefillTest, MatchesCpuAndOracle) {
  SKIP_WITHOUT_GPU();
  const auto [mode, x_dtype, state_dtype, shape_index] = GetParam();
  const Shape& sh = kShapes[shape_index];
  ScanProblemOptions o = OptionsFor(sh);
  o.mode = mode;
  o.x_dtype = x_dtype;
  o.bc_dtype = x_dtype;
  o.state_dtype = state_dtype;
  o.seed = 1000 + shape_index;
  if (shape_index % 2 == 1) {
    o.block_size = 32;
    o.prefix_offset.assign(sh.lengths.size(), 0);
    o.prefix_offset[0] = 9;
  }
  const auto p = MakeScanProblem(o);
  Stream cpu;
  auto want = RunPrefill(p, cpu);
  ASSERT_TRUE(want.ok()) << want.status();
  auto gpu = GpuStream();
  ASSERT_TRUE(gpu.ok()) << gpu.status();
  auto got = RunPrefill(p, *gpu);
  ASSERT_TRUE(got.ok()) << got.status();
  const double e = RelErr(GatherY(p, got->y, 0, p.T), GatherY(p, want->y, 0, p.T));
  EXPECT_LT(e, CrossTol(x_dtype)) << "y, CUDA vs CPU";
  std::vector<double> a(got->pool.begin(), got->pool.end()),
      b(want->pool.begin(), want->pool.end());
  EXPECT_LT(RelErr(a, b), CrossTol(state_dtype)) << "state pool, CUDA vs CPU";
  if (p.T * p.D * p.N < 20'000'000) ExpectPrefillMatchesOracle(p, *got, RunOracle(p), "CUDA");
}

INSTANTIATE_TEST_SUITE_P(
    Matrix, GpuPrefillTest,
    ::testing::Combine(::testing::ValuesIn(kModes), ::testing::Values(DType::kF32, DType::kBF16),
                       ::testing::Values(DType::kF32, DType::kBF16),
                       ::testing::Range(0, static_cast<int>(std::size(kShapes)))),
    ModeDTypesName());

TEST(GpuPrefill, F16AndMixedBCDtypes) {
  SKIP_WITHOUT_GPU();
  for (Discretization mode : kModes) {
    ScanProblemOptions o;
    o.mode = mode;
    o.x_dtype = DType::kF16;
    o.bc_dtype = DType::kF32;
    o.dim = 48;
    o.lengths = {50, 3};
    o.with_z = (mode != Discretization::kDirac);
    o.with_D = false;
    o.final_in_place = true;
    const auto p = MakeScanProblem(o);
    auto gpu = GpuStream();
    ASSERT_TRUE(gpu.ok());
    auto got = RunPrefill(p, *gpu);
    ASSERT_TRUE(got.ok()) << got.status();
    ExpectPrefillMatchesOracle(p, *got, RunOracle(p), DiscretizationName(mode));
  }
}

// Every launch geometry (1, 3 and 8 time segments, and automatic) against the CPU, with segments
// that are full, partial, empty (short sequences) or hold block boundaries (one or several: block
// size 5 is below the chunk), for the fast (default) and the generic (ZOH) step, N = 5, 16, 64,
// 256 (1, 1, 4 and 16 lanes per channel) and grouped B/C, including groups whose width is not a
// multiple of the channel tile.
TEST(GpuPrefill, EveryGeometryMatchesCpu) {
  SKIP_WITHOUT_GPU();
  auto gpu = GpuStream();
  ASSERT_TRUE(gpu.ok());
  const Shape shapes[] = {
      {64, 16, 1, {1, 7, 300, 64}},
      {40, 64, 1, {33, 130}},
      {24, 256, 3, {70}},
      {20, 5, 1, {17, 1, 150}},
      {96, 16, 2, {129, 64}},
      {120, 16, 3, {45, 80}},  // 40 channels per group: a partial last tile in every group
      {66, 16, 2, {40, 9}},    // 33 channels per group: rows copied in 2-byte units
  };
  const int geometries[] = {0, 1, 3, 8};
  int checked = 0;
  for (const Shape& sh : shapes) {
    for (Discretization mode : {Discretization::kDefault, Discretization::kZoh}) {
      for (int64_t block_size : {0, 5, 32}) {
        ScanProblemOptions o = OptionsFor(sh);
        o.mode = mode;
        o.block_size = block_size;
        if (block_size > 0) {
          o.prefix_offset.assign(sh.lengths.size(), 3);
          o.prefix_offset[0] = 0;
        }
        o.seed = 77 + checked;
        Stream cpu;
        auto want = RunPrefill(MakeScanProblem(o), cpu);
        ASSERT_TRUE(want.ok()) << want.status();
        for (int segments : geometries) {
          o.cuda_time_segments = segments;
          const auto p = MakeScanProblem(o);
          auto got = RunPrefill(p, *gpu);
          ASSERT_TRUE(got.ok()) << got.status();
          const std::string what =
              absl::StrCat(DiscretizationName(mode), " dim ", sh.dim, " N ", sh.d_state,
                           " block_size ", block_size, " time segments ", segments);
          EXPECT_LT(RelErr(GatherY(p, got->y, 0, p.T), GatherY(p, want->y, 0, p.T)), 2e-5) << what;
          std::vector<double> a(got->pool.begin(), got->pool.end()),
              b(want->pool.begin(), want->pool.end());
          EXPECT_LT(RelErr(a, b), 2e-5) << what;
          ++checked;
        }
      }
    }
  }
  EXPECT_EQ(checked, std::size(shapes) * 2 * 3 * std::size(geometries));
}

class GpuDecodeTest : public ::testing::TestWithParam<std::tuple<Discretization, DType, DType>> {};

// Decodes p on the CPU and the GPU and expects y and the whole pool to agree within the inputs' and
// the state's cross-implementation tolerances; the GPU outputs go to *got.
void ExpectDecodeMatchesCpu(const ScanProblem& p, int64_t num_spec, bool per_token_out,
                            const std::string& what, ScanOutputs* got) {
  Stream cpu;
  auto want = RunDecode(p, num_spec, per_token_out, nullptr, cpu);
  ASSERT_TRUE(want.ok()) << want.status();
  auto gpu = GpuStream();
  ASSERT_TRUE(gpu.ok());
  auto out = RunDecode(p, num_spec, per_token_out, nullptr, *gpu);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_LT(RelErr(GatherY(p, out->y, 0, p.T), GatherY(p, want->y, 0, p.T)), CrossTol(p.o.x_dtype))
      << what;
  std::vector<double> a(out->pool.begin(), out->pool.end()),
      b(want->pool.begin(), want->pool.end());
  EXPECT_LT(RelErr(a, b), CrossTol(p.o.state_dtype)) << what;
  *got = std::move(out).value();
}

TEST_P(GpuDecodeTest, MatchesCpuAndOracle) {
  SKIP_WITHOUT_GPU();
  const auto [mode, x_dtype, state_dtype] = GetParam();
  for (const Shape& sh : kShapes) {
    for (int64_t num_spec : {0, 2}) {
      ScanProblemOptions o;
      o.mode = mode;
      o.x_dtype = x_dtype;
      o.bc_dtype = x_dtype;
      o.state_dtype = state_dtype;
      o.dim = sh.dim;
      o.d_state = sh.d_state;
      o.n_groups = sh.n_groups;
      o.lengths.assign(9, static_cast<int32_t>(1 + num_spec));
      o.initial_state.assign(9, true);
      o.initial_state[4] = false;
      o.final_state = o.initial_state;
      o.final_in_place = true;
      o.delta_f32 = num_spec > 0;  // the general kernel reading an f32 delta
      const auto p = MakeScanProblem(o);
      const std::string what = absl::StrCat("dim ", sh.dim, " N ", sh.d_state, " spec ", num_spec);
      ScanOutputs got;
      ASSERT_NO_FATAL_FAILURE(ExpectDecodeMatchesCpu(p, num_spec, num_spec > 0, what, &got));
      if (num_spec == 0) ExpectPrefillMatchesOracle(p, got, RunOracle(p), what.c_str());
    }
  }
}

// Aligned rows (no row or block padding) take the vectorised decode kernels: the streamed one
// for single tokens (tiles of 128 channels, partial last tiles, two groups of 128 channels, enough
// sequences that blocks walk several items), the row kernel for speculative tokens. In place and
// into separate output blocks (every fourth the null block); with the state read before the wait
// for earlier kernels or after it; delta in x_dtype or f32 (with the early read on the streamed
// kernel's single tokens, without it on the row kernel's speculative ones, so that each kernel
// runs each option).
TEST_P(GpuDecodeTest, AlignedRowsMatchCpu) {
  SKIP_WITHOUT_GPU();
  const auto [mode, x_dtype, state_dtype] = GetParam();
  struct Case {
    int64_t dim, n_groups, batch;
  };
  for (const Case& c : {Case{64, 1, 9}, Case{200, 1, 300}, Case{256, 2, 9}, Case{5120, 1, 40}}) {
    for (int64_t num_spec : {0, 2}) {
      for (int variant = 0; variant < 4; ++variant) {
        const bool per_token_out = variant & 1, early = variant & 2;
        const bool delta_f32 = num_spec == 0 ? early : !early;
        ScanProblemOptions o;
        o.read_state_before_wait = early;
        o.delta_f32 = delta_f32;
        o.mode = mode;
        o.x_dtype = x_dtype;
        o.bc_dtype = x_dtype;
        o.state_dtype = state_dtype;
        o.dim = c.dim;
        o.d_state = 16;
        o.n_groups = c.n_groups;
        o.row_pad = 0;
        o.block_pad = 0;
        o.lengths.assign(c.batch, static_cast<int32_t>(1 + num_spec));
        o.initial_state.assign(c.batch, true);
        o.initial_state[c.batch / 2] = false;
        o.final_state = o.initial_state;
        o.final_in_place = true;
        o.seed = 77 + c.dim;
        const std::string what =
            absl::StrCat("dim ", c.dim, " G ", c.n_groups, " batch ", c.batch, " spec ", num_spec,
                         " out ", per_token_out, " early state ", early, " delta f32 ", delta_f32);
        ScanOutputs got;
        ASSERT_NO_FATAL_FAILURE(
            ExpectDecodeMatchesCpu(MakeScanProblem(o), num_spec, per_token_out, what, &got));
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Matrix, GpuDecodeTest,
                         ::testing::Combine(::testing::ValuesIn(kModes),
                                            ::testing::Values(DType::kF32, DType::kBF16),
                                            ::testing::Values(DType::kF32, DType::kBF16)),
                         ModeDTypesName());

// On the GPU the prefill and decode kernels share the device-side discretisation, so a prefill
// of n then m decodes equals a prefill of n + m up to fp32 reassociation.
TEST(GpuParity, PrefillThenDecodeEqualsLongerPrefillEveryMode) {
  SKIP_WITHOUT_GPU();
  auto gpu = GpuStream();
  ASSERT_TRUE(gpu.ok());
  for (Discretization mode : kModes) {
    for (int64_t d_state : {16, 128}) {
      ScanProblemOptions o;
      o.mode = mode;
      o.dim = 64;
      o.d_state = d_state;
      auto err = PrefillThenDecodeParity(o, {1, 5, 100}, 5, *gpu);
      ASSERT_TRUE(err.ok()) << err.status();
      EXPECT_LT(err->y, 1e-5) << DiscretizationName(mode) << " N " << d_state;
      EXPECT_LT(err->state, 1e-5) << DiscretizationName(mode) << " N " << d_state;
    }
  }
}

TEST(GpuParity, SpeculativeEqualsSequentialDecodes) {
  SKIP_WITHOUT_GPU();
  auto gpu = GpuStream();
  ASSERT_TRUE(gpu.ok());
  for (Discretization mode : kModes) {
    ScanProblemOptions o;
    o.mode = mode;
    o.dim = 64;
    auto err = SpeculativeParity(o, 5, 3, *gpu);
    ASSERT_TRUE(err.ok()) << err.status();
    EXPECT_LT(err->y, 1e-5) << DiscretizationName(mode);
    EXPECT_LT(err->state, 1e-5) << DiscretizationName(mode);
  }
}

}  // namespace
}  // namespace mambaserve
